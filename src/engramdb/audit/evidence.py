"""Evidence an outsider can check: proof files, checkpoint comparison, key files.

Pure (no storage), on top of :mod:`.merkle` and :mod:`.checkpoint`:

* :class:`EventProof` is the file ``engram audit prove`` writes: one event's
  envelope (the fields its chain hash covers, never the payload) and an RFC
  9162 inclusion proof of its chain hash. :func:`verify_event_proof` checks it
  against a signed :class:`~engramdb.audit.checkpoint.Checkpoint` without the
  database: the envelope recomputes the event hash, the hash is the proved
  leaf at position ``seq - 1``, and the path leads to the checkpoint's signed
  root for the checkpoint's tree size.
* :func:`compare_with_checkpoint` decides whether a log (its recomputed chain
  hashes, in ``seq`` order) still extends a checkpoint: the first
  ``tree_size`` leaves must give the signed root and head, and a consistency
  proof must tie that root to the current one.
* :func:`default_key_path` / :func:`ensure_signing_key`: the signing key
  lives next to a SQLite file as ``<db>.audit-key.pem`` (mode 0600), with its
  public half in ``<db>.audit-key.pub.pem`` for auditors.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engramdb.audit.checkpoint import (
    Checkpoint,
    SignatureCheck,
    check_checkpoint,
    generate_key,
    load_private_key,
    public_key_pem,
)
from engramdb.audit.merkle import ConsistencyProof, MerkleProof, leaf_hash, root
from engramdb.codec import chain_hash
from engramdb.errors import InvalidInput
from engramdb.model import VerifyReport

__all__ = [
    "PROOF_FORMAT",
    "CheckpointReport",
    "EventProof",
    "ProofCheck",
    "compare_with_checkpoint",
    "default_key_path",
    "ensure_signing_key",
    "public_key_path",
    "verify_event_proof",
]

PROOF_FORMAT = "engramdb.proof.v1"
_ENVELOPE = ("seq", "tx", "kind", "namespace", "actor", "recorded_at", "subject_ref",
             "commitment")


@dataclass(frozen=True, slots=True)
class EventProof:
    """One event's envelope and the inclusion proof of its chain hash.

    Attributes:
        event: the envelope fields (``seq``, ``tx``, ``kind``, ``namespace``,
            ``actor``, ``recorded_at`` in micros, ``subject_ref``,
            ``commitment``) plus ``prev_hash`` and ``hash``.
        proof: the RFC 9162 inclusion proof of ``leaf_hash(hash)``.
    """

    event: Mapping[str, Any]
    proof: MerkleProof

    @property
    def seq(self) -> int:
        return int(self.event["seq"])

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROOF_FORMAT, "event": dict(self.event), "proof": self.proof.to_dict()}

    def to_json(self) -> str:
        """The proof file's text: indented, sorted-key JSON with a final newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> EventProof:
        """Rebuild a proof from :meth:`to_dict` output, checking its shape.

        Raises:
            InvalidInput: a field is missing or malformed.
        """
        if not isinstance(data, dict) or data.get("format") != PROOF_FORMAT:
            raise InvalidInput(
                f"not an EngramDB event proof (expected format {PROOF_FORMAT!r}); pass the "
                "file `engram audit prove` wrote"
            )
        event = data.get("event")
        needed = {*_ENVELOPE, "prev_hash", "hash"}
        if not isinstance(event, dict) or set(event) != needed:
            raise InvalidInput(f"event proof field 'event' must hold exactly {sorted(needed)}")
        return cls(event=dict(event), proof=MerkleProof.from_dict(data.get("proof")))  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, text: str | bytes) -> EventProof:
        """Parse a proof file.

        Raises:
            InvalidInput: the text is not JSON or not a well-formed proof.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"event proof is not valid JSON ({exc})") from exc
        return cls.from_dict(data)


@dataclass(frozen=True, slots=True)
class ProofCheck:
    """Outcome of :func:`verify_event_proof`: ``ok`` or the reason it failed."""

    ok: bool
    reason: str | None
    signature: SignatureCheck | None = None

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason,
                "signature": self.signature.to_dict() if self.signature else None}


def verify_event_proof(proof: EventProof, checkpoint: Checkpoint,
                       public_key: Ed25519PublicKey | None = None) -> ProofCheck:
    """Check that an event is in the log a signed checkpoint describes.

    Needs neither the database nor the rest of the log.

    Args:
        proof: the proof file's content (:meth:`EventProof.from_json`).
        checkpoint: the signed checkpoint the proof was made against.
        public_key: the signer's published key. Without it the key embedded
            in the checkpoint is used and the result says it is untrusted.

    Returns:
        A :class:`ProofCheck`; ``ok`` only if the signature, the event hash,
        the leaf position and the audit path all check out.
    """
    sig = check_checkpoint(checkpoint, public_key)
    if not sig.ok:
        return ProofCheck(False, f"checkpoint signature: {sig.reason}", sig)
    ev = proof.event
    p = proof.proof
    try:
        envelope = {k: ev[k] for k in _ENVELOPE}
        recomputed = chain_hash(str(ev["prev_hash"]), envelope)
        claimed = bytes.fromhex(str(ev["hash"]))
    except (KeyError, TypeError, ValueError):
        return ProofCheck(False, "the event envelope is malformed", sig)
    if recomputed != ev["hash"]:
        return ProofCheck(False, "the event's fields do not hash to its chain hash", sig)
    if p.leaf_hash != leaf_hash(claimed).hex():
        return ProofCheck(False, "the proof is for another leaf than this event's hash", sig)
    if not isinstance(ev["seq"], int) or p.leaf_index != ev["seq"] - 1:
        return ProofCheck(False, f"the proof is for leaf {p.leaf_index}, not event {ev['seq']}",
                          sig)
    if p.tree_size != checkpoint.tree_size:
        return ProofCheck(
            False,
            f"the proof is against a log of {p.tree_size} events but the checkpoint covers "
            f"{checkpoint.tree_size}; make it with `engram audit prove SEQ --checkpoint FILE`",
            sig,
        )
    if not p.verify(checkpoint.merkle_root):
        return ProofCheck(False, "the audit path does not lead to the checkpoint's signed root",
                          sig)
    return ProofCheck(True, None if sig.trusted else sig.reason, sig)


@dataclass(frozen=True, slots=True)
class CheckpointReport:
    """Outcome of checking the stored log against a signed checkpoint.

    Attributes:
        ok: the signature verifies, the log still holds the checkpointed
            prefix unchanged, and (when it was run) the full ``verify`` passed.
        problem: why not, in words.
        signature: the signature check (``trusted`` says whose key).
        checkpoint_size: events the checkpoint covers.
        current_size: events the log holds now.
        consistency: RFC 9162 proof that the checkpointed tree is a prefix of
            the current one (``None`` when the prefix no longer matches).
        log: the full ``verify()`` report of the current log.
    """

    ok: bool
    problem: str | None
    signature: SignatureCheck | None
    checkpoint_size: int
    current_size: int
    consistency: ConsistencyProof | None = None
    log: VerifyReport | None = None

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("signature", "consistency", "log"):
            value = out[name]
            out[name] = value.to_dict() if value is not None else None
        return out


def compare_with_checkpoint(checkpoint: Checkpoint, leaves: Sequence[bytes],
                            hashes: Sequence[str]) -> tuple[str | None, ConsistencyProof | None]:
    """Whether a log still extends ``checkpoint``.

    Args:
        checkpoint: the (signature-checked) checkpoint.
        leaves: ``leaf_hash`` of every event's recomputed chain hash, in ``seq`` order.
        hashes: the events' chain hashes (hex), in ``seq`` order.

    Returns:
        ``(problem, consistency)``: ``problem`` is ``None`` when the first
        ``tree_size`` leaves give the signed root and head; ``consistency``
        is then the verified proof from the checkpoint's root to the current root.
    """
    n = checkpoint.tree_size
    if len(leaves) < n:
        return (f"the log holds {len(leaves)} events but the checkpoint covers {n}: "
                "events were deleted after the checkpoint", None)
    if n and (checkpoint.head_seq != n or hashes[n - 1] != checkpoint.head_hash):
        return (f"event {checkpoint.head_seq} no longer has the checkpointed head hash: "
                "history was rewritten after the checkpoint", None)
    if root(leaves[:n]).hex() != checkpoint.merkle_root:
        return ("the first events no longer produce the checkpoint's Merkle root: "
                "history was rewritten after the checkpoint", None)
    return None, ConsistencyProof.build(leaves, n)


def default_key_path(database: str | os.PathLike[str]) -> Path:
    """Where the checkpoint signing key of a SQLite database lives by default.

    Raises:
        InvalidInput: ``database`` is a server URL (there is no file to sit next to).
    """
    text = str(database)
    if "://" in text:
        raise InvalidInput(
            "a database server has no file to keep the signing key next to; pass --key PATH"
        )
    return Path(text + ".audit-key.pem")


def public_key_path(key_path: str | os.PathLike[str]) -> Path:
    """The published public half of a key file: ``x.pem`` -> ``x.pub.pem``."""
    p = Path(key_path)
    stem = p.name[: -len(".pem")] if p.name.endswith(".pem") else p.name
    return p.with_name(stem + ".pub.pem")


def ensure_signing_key(key_path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load the signing key at ``key_path``, creating it (mode 0600) if absent.

    ``engram init`` calls this. The public half is written next to it
    (:func:`public_key_path`) so it can be handed to auditors.

    Returns:
        The public key.

    Raises:
        InvalidInput: the file exists but is not an Ed25519 private key, or
            cannot be written.
    """
    path = Path(key_path)
    public = (load_private_key(path).public_key() if path.exists() else generate_key(path))
    pub = public_key_path(path)
    if not pub.exists():
        pub.write_text(public_key_pem(public), encoding="ascii")
    return public
