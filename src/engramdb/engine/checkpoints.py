"""Verifiable history: signed checkpoints, rewrite detection and inclusion proofs.

The glue between the stored log and the pure primitives of
:mod:`engramdb.audit`: one Merkle leaf per event, in ``seq`` order, from
its 32-byte chain hash. :meth:`~Checkpoints.checkpoint` signs the root
of a log that verifies; :meth:`~Checkpoints.verify_checkpoint` recomputes
every chain hash from the stored envelopes (so an edit that did not
recompute hashes is caught here too), checks that the first ``tree_size``
leaves still give the signed root and head, and proves the checkpointed
tree a prefix of the current one; :meth:`~Checkpoints.prove` gives one
event's envelope and inclusion proof for :func:`engramdb.audit.verify_event_proof`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from engramdb._guard import guard_calls
from engramdb.audit.checkpoint import (
    Checkpoint,
    check_checkpoint,
    load_private_key,
    load_public_key,
    public_key_from_pem,
    sign_checkpoint,
)
from engramdb.audit.evidence import (
    CheckpointReport,
    EventProof,
    compare_with_checkpoint,
    default_key_path,
)
from engramdb.audit.merkle import MerkleProof, hash_leaves, root
from engramdb.audit.verify import verify_storage
from engramdb.codec import GENESIS_HASH, chain_hash
from engramdb.engine.resources import Resources
from engramdb.errors import IntegrityError, InvalidInput
from engramdb.storage.base import RawEvent

if TYPE_CHECKING:
    from engramdb.model import VerifyReport

__all__ = ["LAST_CHECKPOINT", "Checkpoints"]

LAST_CHECKPOINT = "last_checkpoint"  # meta key: the last checkpoint signed here, as its JSON file


@guard_calls
class Checkpoints:
    """Verification, checkpoints and proofs over the log (admin only)."""

    def __init__(self, res: Resources) -> None:
        self._res = res
        self.storage = res.storage

    def verify(self) -> VerifyReport:
        """Check the whole log and every state row against it (buffered reads written first)."""
        self._res.read_audit.flush()
        return verify_storage(self.storage)

    def _events(self) -> Iterator[RawEvent]:
        after = 0
        while batch := self.storage.events(after=after, limit=5000):
            yield from batch
            after = batch[-1].seq

    def _chain(self) -> tuple[list[str], str | None]:
        """Every event's chain hash recomputed from its envelope, and the first break."""
        hashes: list[str] = []
        prev = GENESIS_HASH
        problem = None
        for ev in self._events():
            digest = chain_hash(prev, ev.envelope())
            if problem is None and (ev.seq != len(hashes) + 1 or ev.prev_hash != prev
                                    or ev.hash != digest):
                problem = f"event {len(hashes) + 1} does not chain: the stored log was altered"
            hashes.append(digest)
            prev = digest
        return hashes, problem

    def _database_id(self, hashes: Sequence[str]) -> str:
        # The first event's hash: fixed at creation, kept by export/import.
        return "engramdb:" + (hashes[0][:32] if hashes else "empty")

    def _key_path(self, key_path: str | os.PathLike[str] | None) -> Path:
        if key_path is not None:
            return Path(key_path)
        path = getattr(self.storage, "path", None)
        if path is None:
            raise InvalidInput("this database is not a file; pass key_path= (or --key)")
        return default_key_path(path)

    def checkpoint(self, key_path: str | os.PathLike[str] | None = None, *,
                   private_key: Ed25519PrivateKey | None = None) -> Checkpoint:
        """Sign a checkpoint of the whole log (after verifying it).

        Args:
            key_path: the Ed25519 PEM key; default ``<db file>.audit-key.pem``.
            private_key: a key object instead of a file.

        Returns:
            The signed :class:`Checkpoint`; keep it outside the database.

        Raises:
            IntegrityError: the log does not verify; a checkpoint would vouch
                for a damaged history.
            InvalidInput: the key file is missing or not an Ed25519 key.
        """
        key = private_key or load_private_key(self._key_path(key_path))
        report = self.verify()
        if not report.ok:
            raise IntegrityError(f"the log does not verify ({report.problem}); not signing it",
                                 first_bad_seq=report.first_bad_seq)
        hashes, problem = self._chain()
        if problem is not None:
            raise IntegrityError(f"{problem}; not signing it")
        hashes = hashes[: report.events_checked]
        cp = sign_checkpoint(
            database_id=self._database_id(hashes), tree_size=len(hashes),
            head_seq=len(hashes), head_hash=hashes[-1] if hashes else GENESIS_HASH,
            merkle_root=root(hash_leaves(bytes.fromhex(h) for h in hashes)), private_key=key)
        # Remembered in meta, not the log: a checkpoint is a statement about the log.
        self.storage.set_meta(LAST_CHECKPOINT, cp.to_json())
        return cp

    def last_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint :meth:`checkpoint` signed on this database, or ``None``.

        A convenience for display (the inspector's Verify view): an auditor
        should check the copy kept outside the database, not this one.
        """
        text = self.storage.meta(LAST_CHECKPOINT)
        return None if text is None else Checkpoint.from_json(text)

    def verify_checkpoint(
        self, checkpoint: Checkpoint | str | os.PathLike[str],
        public_key: Ed25519PublicKey | str | bytes | os.PathLike[str] | None = None, *,
        full: bool = True,
    ) -> CheckpointReport:
        """Check that the log still extends a signed checkpoint.

        Detects a history rewritten after the checkpoint even when the rewrite
        is internally consistent (every hash recomputed): the first
        ``tree_size`` events must still give the signed Merkle root and head,
        and a consistency proof ties that root to the current one.

        Args:
            checkpoint: a :class:`Checkpoint` or the path of its file.
            public_key: the signer's published key (object, PEM text or file);
                without it the embedded key is used and the report says so.
            full: also run :meth:`verify` on the current log (chain, replay, state).

        Returns:
            A :class:`CheckpointReport`.
        """
        cp = (checkpoint if isinstance(checkpoint, Checkpoint)
              else Checkpoint.from_json(Path(checkpoint).read_text(encoding="utf-8")))
        sig = check_checkpoint(cp, _public_key(public_key))
        self._res.read_audit.flush()
        hashes, chain_problem = self._chain()
        leaves = hash_leaves(bytes.fromhex(h) for h in hashes)
        problem: str | None = None
        consistency = None
        if not sig.ok:
            problem = f"checkpoint signature: {sig.reason}"
        elif hashes and cp.database_id != self._database_id(hashes):
            problem = ("the checkpoint is for another database, or the first event was "
                       "rewritten")
        else:
            problem, consistency = compare_with_checkpoint(cp, leaves, hashes)
        report = self.verify() if full else None
        if problem is None and chain_problem is not None:
            problem = chain_problem
        if problem is None and report is not None and not report.ok:
            problem = f"the log does not verify: {report.problem}"
        return CheckpointReport(ok=problem is None, problem=problem, signature=sig,
                                checkpoint_size=cp.tree_size, current_size=len(hashes),
                                consistency=consistency, log=report)

    def prove(self, seq: int, *, tree_size: int | None = None) -> EventProof:
        """An inclusion proof of event ``seq`` in the log (RFC 9162).

        Args:
            seq: the event's sequence number.
            tree_size: prove against the first ``tree_size`` events (a
                checkpoint's ``tree_size``); default the whole log.

        Returns:
            An :class:`~engramdb.audit.evidence.EventProof`: the event's
            envelope and the :class:`MerkleProof` (``.proof``); check it with
            :func:`engramdb.audit.verify_event_proof` and a checkpoint.

        Raises:
            InvalidInput: ``seq`` or ``tree_size`` out of range.
        """
        events = list(self._events())
        n = len(events) if tree_size is None else tree_size
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(events):
            raise InvalidInput(f"tree_size must be from 1 to {len(events)}", field="tree_size")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= n:
            raise InvalidInput(f"event seq must be from 1 to {n}", field="seq")
        leaves = hash_leaves(bytes.fromhex(e.hash) for e in events[:n])
        ev = events[seq - 1]
        event = {**ev.envelope(), "prev_hash": ev.prev_hash, "hash": ev.hash}
        return EventProof(event=event, proof=MerkleProof.build(leaves, seq - 1))


def _public_key(value: Ed25519PublicKey | str | bytes | os.PathLike[str] | None
                ) -> Ed25519PublicKey | None:
    if value is None or isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, bytes) or (isinstance(value, str) and value.lstrip().startswith("-----")):
        return public_key_from_pem(value)
    return load_public_key(value)

