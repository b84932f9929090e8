"""Verifiable history for the audit log: Merkle proofs and signed checkpoints.

Pure primitives, no storage: :mod:`engramdb.audit.merkle` builds RFC 9162
Merkle trees, inclusion and consistency proofs over the log's event chain
hashes; :mod:`engramdb.audit.checkpoint` signs and verifies checkpoints
(size, head and Merkle root of the log) with Ed25519 keys kept outside the
database. The engine forms one leaf per log event, in ``seq`` order, from the
event's 32-byte chain hash: ``leaf_hash(bytes.fromhex(event.hash))``.
:mod:`engramdb.audit.evidence` holds what an outsider checks without the
database: proof files (:class:`EventProof`, :func:`verify_event_proof`) and
the signing-key location next to a database file.
"""

from engramdb.audit.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    SignatureCheck,
    check_checkpoint,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_from_pem,
    public_key_pem,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from engramdb.audit.evidence import (
    PROOF_FORMAT,
    CheckpointReport,
    EventProof,
    ProofCheck,
    compare_with_checkpoint,
    default_key_path,
    ensure_signing_key,
    public_key_path,
    verify_event_proof,
)
from engramdb.audit.merkle import (
    HASH_SIZE,
    ConsistencyProof,
    MerkleProof,
    consistency_proof,
    empty_root,
    hash_leaves,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "HASH_SIZE",
    "PROOF_FORMAT",
    "Checkpoint",
    "CheckpointReport",
    "ConsistencyProof",
    "EventProof",
    "MerkleProof",
    "ProofCheck",
    "SignatureCheck",
    "check_checkpoint",
    "compare_with_checkpoint",
    "consistency_proof",
    "default_key_path",
    "empty_root",
    "ensure_signing_key",
    "generate_key",
    "hash_leaves",
    "inclusion_proof",
    "key_id",
    "leaf_hash",
    "load_private_key",
    "load_public_key",
    "public_key_from_pem",
    "public_key_path",
    "public_key_pem",
    "root",
    "sign_checkpoint",
    "verify_checkpoint_signature",
    "verify_consistency",
    "verify_event_proof",
    "verify_inclusion",
]
