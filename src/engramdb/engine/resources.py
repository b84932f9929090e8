"""What every service shares: storage, embedder, configuration, judge, read audit.

:class:`Resources` is built once per database handle by the composition root
(:mod:`engramdb.engine.database`) and handed to every service. It also holds
the typed readers of current state that several services need (a principal,
grants as of a transaction, a log event as a value) and the embedding
helpers, so no service reaches into another for them. It imports only the
leaf modules of ``engine/`` (rows, the commit path, the read-audit buffer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engramdb.codec import from_micros
from engramdb.engine._commit import Vectors, commit, commit_each
from engramdb.engine.read_audit import ReadAudit
from engramdb.engine.rows import EngineConfig, PrincipalInfo
from engramdb.model import Event, MemoryDraft
from engramdb.policy.judge import Judge
from engramdb.retrieval.chat import ChatLLM, llm_from_env
from engramdb.retrieval.rank import FusionWeights
from engramdb.storage.base import Effect, Insert, RawEvent, Storage, WriteTx

__all__ = ["ADMIN", "Resources", "event_from_raw"]

ADMIN = "admin"  # the built-in admin principal: the embedded opener


def event_from_raw(raw: RawEvent) -> Event:
    """A stored log event as the public :class:`~engramdb.model.Event` value."""
    return Event(
        seq=raw.seq, tx=raw.tx, kind=raw.kind, namespace=raw.namespace, actor=raw.actor,
        recorded_at=from_micros(raw.recorded_at),  # type: ignore[arg-type]
        subject_ref=raw.subject_ref,
        payload=None if raw.payload is None else json.loads(raw.payload),
        commitment=raw.commitment, prev_hash=raw.prev_hash, hash=raw.hash,
    )


class Resources:
    """The shared resources of one database handle (no behaviour of its own beyond reads)."""

    def __init__(self, storage: Storage, *, embedder: Any, config: EngineConfig,
                 weights: FusionWeights, judge: Judge) -> None:
        self.storage = storage
        self.embedder = embedder
        self.config = config
        self.weights = weights
        # Contradiction judge for free-text conflicts; swap in an LLMJudge at will.
        self.judge = judge
        self.read_audit = ReadAudit(storage, actor=ADMIN)
        # Optional LLM for summaries and extraction (ENGRAM_LLM_URL / ENGRAM_LLM_MODEL).
        self.llm: ChatLLM | None = llm_from_env()

    # -- the embedder ------------------------------------------------------------

    @property
    def embedder_name(self) -> str:
        return "none" if self.embedder is None else str(self.embedder.name)

    @property
    def dimension(self) -> int | None:
        return None if self.embedder is None else int(self.embedder.dimension)

    def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.embedder is None or not texts:
            return None
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    def vectors_for(self, items: Sequence[MemoryDraft | str]) -> list[np.ndarray | None]:
        """Embeddings for drafts (precomputed ones kept) or plain texts, batched."""
        out: list[np.ndarray | None] = [None] * len(items)
        todo: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            if isinstance(item, MemoryDraft):
                e = item.embedding
                if e is not None:  # a draft's is a float32 array already (validate_fields)
                    out[i] = e if type(e) is np.ndarray and e.dtype == np.float32 else \
                        np.asarray(e, dtype=np.float32)
                    continue
                todo.append((i, item.text))
            else:
                todo.append((i, item))
        if todo and self.embedder is not None:
            vecs = self.embed([t for _, t in todo])
            assert vecs is not None
            for (i, _), v in zip(todo, vecs, strict=True):
                out[i] = v
        return out

    # -- the commit path -----------------------------------------------------------

    def commit(self, w: WriteTx, kind: str, actor: str, namespace: str | None,
               subject_ref: str | None, effects: Sequence[Effect],
               extra: Mapping[str, Any] | None = None, *,
               put: Sequence[tuple[str, int, np.ndarray]] = (),
               carry: Sequence[tuple[str, int, int]] = ()) -> Event:
        """:func:`engramdb.engine._commit.commit`, knowing whether vectors exist here."""
        vectors = (Vectors(put=put, carry=carry, embedded=self.embedder is not None)
                   if put or carry else None)
        return commit(w, kind, actor, namespace, subject_ref, effects, extra, vectors=vectors)

    def commit_each(self, w: WriteTx, kind: str, actor: str,
                    writes: Sequence[tuple[str | None, str | None, Sequence[Insert]]], *,
                    put: Sequence[tuple[str, int, np.ndarray]] = ()) -> None:
        """:func:`engramdb.engine._commit.commit_each`: one event per write, in bulk."""
        commit_each(w, kind, actor, writes, put=put)

    # -- typed readers of current state ---------------------------------------------

    def principal_row(self, name: str, src: Any = None) -> dict[str, Any] | None:
        """The stored principal ``name`` (through ``src``: storage or a WriteTx), or None."""
        rows = (src or self.storage).fetch("principals", {"name": name})
        return rows[0] if rows else None

    def grants_for(self, principal: PrincipalInfo, as_of: int | None) -> list[dict[str, Any]]:
        """The grant rows in force for ``principal`` (and its roles) now or at ``as_of``."""
        grantees = [principal.name, *(f"role:{r}" for r in principal.roles)]
        if as_of is None:
            return self.storage.fetch("grants", {"grantee": grantees, "tx_to": None})
        rows = self.storage.fetch("grants", {"grantee": grantees})
        return [g for g in rows
                if g["tx_from"] <= as_of and (g["tx_to"] is None or g["tx_to"] > as_of)]

    def tx_time(self, tx: int) -> int:
        return self.storage.tx_time(tx)
