"""The database handle: opening, the embedder, and the engine-wide operations.

``engramdb.open(path_or_url)`` returns a :class:`Database`. The handle is
itself the admin's :class:`~engramdb.engine.session.Session` (the embedded
opener is the admin) and hands out agent sessions with :meth:`as_agent`.
It owns what is shared by every session: the storage backend, the embedder
(whose identity the database records and enforces), and the configuration.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np

from engramdb.codec import from_micros
from engramdb.engine.admin import Admin
from engramdb.engine.audit import AuditDatabase
from engramdb.engine.layers import Layers
from engramdb.engine.read_audit import ReadAudit
from engramdb.engine.rows import EngineConfig
from engramdb.engine.session import PrincipalInfo, Session, hits_from, receipt_for
from engramdb.engine.trust import TrustEngine
from engramdb.errors import (
    EmbedderMismatch,
    InvalidInput,
    MissingExtra,
    NotFound,
    PermissionDenied,
)
from engramdb.model import Event, MemoryDraft, RecallFilter, RecallResult, VerifyReport
from engramdb.policy.judge import HeuristicJudge, Judge
from engramdb.retrieval.chat import ChatLLM, llm_from_env
from engramdb.retrieval.rank import FusionWeights, fuse
from engramdb.storage.base import Insert, RawEvent, Storage, WriteTx, effect_to_dict

if TYPE_CHECKING:
    from engramdb.engine.portability import ExportSummary, ImportSummary

__all__ = ["Database", "import_database", "open_database"]

ADMIN = "admin"


class Database(AuditDatabase, Session):
    """An open EngramDB database, acting as its admin.

    Use :func:`engramdb.open` rather than constructing this directly.
    """

    def __init__(self, storage: Storage, *, embedder: Any, config: EngineConfig | None = None,
                 weights: FusionWeights | None = None) -> None:
        super().__init__(self, PrincipalInfo(ADMIN, ("admin",), 1.0, is_admin=True))
        self.storage = storage
        self.embedder = embedder
        self.config = config or EngineConfig()
        self.weights = weights or FusionWeights()
        self.admin = Admin(self)
        # Contradiction judge for free-text conflicts; swap in an LLMJudge at will.
        # (cast: the frozen dataclass's read-only ``name`` satisfies Judge at run time)
        self.judge: Judge = cast(Judge, HeuristicJudge())
        self._trust = TrustEngine(self)
        self._layers = Layers()
        # Optional LLM for summaries and extraction (ENGRAM_LLM_URL / ENGRAM_LLM_MODEL).
        self.llm: ChatLLM | None = llm_from_env()
        self._principals_lock = threading.Lock()
        self.read_audit = ReadAudit(self)

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        self.read_audit.close()  # buffered read-audit records are written first
        self.storage.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<engramdb.Database {self.storage.url} embedder={self.embedder_name}>"

    @property
    def embedder_name(self) -> str:
        return "none" if self.embedder is None else str(self.embedder.name)

    @property
    def dimension(self) -> int | None:
        return None if self.embedder is None else int(self.embedder.dimension)

    def _bootstrap(self) -> None:
        """Record the embedder and create the admin principal, once per database."""
        recorded = self.storage.meta("embedder")
        mine = {"name": self.embedder_name,
                "dimension": 0 if self.embedder is None else self.dimension}
        if recorded is None:
            self.storage.set_meta("embedder", json.dumps(mine, sort_keys=True))
        else:
            theirs = json.loads(recorded)
            if theirs != mine:
                raise EmbedderMismatch(
                    f"this database was built with embedder {theirs['name']} "
                    f"(dimension {theirs['dimension']}), not {mine['name']} "
                    f"(dimension {mine['dimension']}); open it with embedder="
                    f"{theirs['name']!r}, or re-embed into a new database (engram export/import)",
                    recorded=theirs,
                    requested=mine,
                )
        if not self.storage.fetch("principals", {"name": ADMIN}):
            with self.storage.write(ADMIN) as w:
                if w.fetch("principals", {"name": ADMIN}):
                    return
                row = {"name": ADMIN, "kind": "admin", "roles": ["admin"], "trust": 1.0,
                       "status": "active", "created_tx": w.tx, "metadata": {}}
                effects = [Insert("principals", row)]
                w.apply(effects)
                w.log("principal.created", actor=ADMIN, namespace=None, subject_ref=ADMIN,
                      payload={"effects": [effect_to_dict(e) for e in effects]})

    # -- sessions ----------------------------------------------------------------

    def as_agent(self, name: str) -> Session:
        """A session whose every call is attributed to and checked for ``name``.

        Raises:
            NotFound: no such principal.
            PermissionDenied: the principal is frozen or retired.
        """
        rows = self.storage.fetch("principals", {"name": name})
        if not rows:
            raise NotFound(f"no principal {name!r}; create it with db.admin.create_agent",
                           name=name)
        r = rows[0]
        if r["status"] != "active":
            raise PermissionDenied(f"principal {name!r} is {r['status']} and cannot act")
        return Session(self, PrincipalInfo(name=r["name"], roles=tuple(r["roles"]),
                                           trust=float(r["trust"]),
                                           is_admin=r["kind"] == "admin"))

    def session_for_key(self, api_key: str) -> Session:
        """The session of the principal an API key belongs to (the doors use this)."""
        return self.as_agent(self.admin.authenticate(api_key))

    def _grants_for(self, principal: PrincipalInfo, as_of: int | None) -> list[dict[str, Any]]:
        grantees = [principal.name, *(f"role:{r}" for r in principal.roles)]
        if as_of is None:
            return self.storage.fetch("grants", {"grantee": grantees, "tx_to": None})
        rows = self.storage.fetch("grants", {"grantee": grantees})
        return [g for g in rows
                if g["tx_from"] <= as_of and (g["tx_to"] is None or g["tx_to"] > as_of)]

    # -- embeddings ----------------------------------------------------------------

    def _embed(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.embedder is None or not texts:
            return None
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    def _vectors_for(self, items: Sequence[MemoryDraft | str]) -> list[np.ndarray | None]:
        """Embeddings for drafts (precomputed ones kept) or plain texts, batched."""
        out: list[np.ndarray | None] = [None] * len(items)
        todo: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            if isinstance(item, MemoryDraft):
                if item.embedding is not None:
                    out[i] = np.asarray(item.embedding, dtype=np.float32)
                    continue
                todo.append((i, item.text))
            else:
                todo.append((i, item))
        if todo and self.embedder is not None:
            vecs = self._embed([t for _, t in todo])
            assert vecs is not None
            for (i, _), v in zip(todo, vecs, strict=True):
                out[i] = v
        return out

    def _copy_vector(self, w: WriteTx, memory_id: str, from_version: int,
                     to_version: int) -> None:
        if self.embedder is not None:
            w.copy_vector(memory_id, from_version, to_version)

    # -- recall ---------------------------------------------------------------------

    def _recall(self, session: Session, query: str, flt: RecallFilter, k: int,
                as_of: int | None, *, query_embedding: np.ndarray | None = None
                ) -> RecallResult:
        head = self.storage.head()
        read_tx = head.tx if as_of is None else min(as_of, head.tx)
        if flt.as_of is None:
            # Pin the read to the head we saw, so the receipt names a real snapshot.
            flt = RecallFilter(**{**_filter_fields(flt), "as_of": read_tx})
        if flt.namespaces is not None and not flt.namespaces:
            return RecallResult((), receipt_for((), read_tx, flt.valid_at,
                                                session.principal.name, query))
        n = max(self.config.recall_candidates, k * 3)
        text_hits = self.storage.search_text(query, flt, n)
        vector_hits: list[Any] = []
        if self.embedder is not None:
            if query_embedding is None:
                qv = self._embed([query])
                assert qv is not None
                query_embedding = qv[0]
            vector_hits = self.storage.search_vector(query_embedding, flt, n)
        now = head.recorded_at if as_of is None else self._tx_time(read_tx)
        scored = fuse(text_hits, vector_hits, now_micros=now, k=k, weights=self.weights)
        hits = self._trust.mark_contested(hits_from(scored, flt.as_of), as_of)
        return RecallResult(hits, receipt_for(hits, read_tx, flt.valid_at,
                                              session.principal.name, query))

    def _tx_time(self, tx: int) -> int:
        return self.storage.tx_time(tx)

    # -- log ------------------------------------------------------------------------

    def _event(self, raw: RawEvent) -> Event:
        return Event(
            seq=raw.seq, tx=raw.tx, kind=raw.kind, namespace=raw.namespace, actor=raw.actor,
            recorded_at=from_micros(raw.recorded_at),  # type: ignore[arg-type]
            subject_ref=raw.subject_ref,
            payload=None if raw.payload is None else json.loads(raw.payload),
            commitment=raw.commitment, prev_hash=raw.prev_hash, hash=raw.hash,
        )

    def export(self, out: IO[str], *, progress: Callable[[int], None] | None = None
               ) -> ExportSummary:
        """Write the whole log to ``out`` as JSONL (backup, restore, migration).

        :func:`import_database` replays the file into a new database with the
        same head hash. The format is described in :mod:`engramdb.engine.portability`.

        Args:
            out: a text file opened for writing.
            progress: called with the number of events written so far.
        """
        from engramdb.engine.portability import export_log

        self.read_audit.flush()
        return export_log(self.storage, out, progress=progress)

    def verify(self) -> VerifyReport:
        """Check the whole log and every state row against it.

        Returns:
            A :class:`VerifyReport`: ``ok``, or the first bad event and why.
        """
        from engramdb.audit.verify import verify_storage

        self.read_audit.flush()
        return verify_storage(self.storage)


def _filter_fields(flt: RecallFilter) -> dict[str, Any]:
    return {name: getattr(flt, name) for name in RecallFilter.__slots__}


def open_database(target: str | Path = "engram.db", *, embedder: Any = "default",
                  synchronous: str = "FULL", config: EngineConfig | None = None,
                  **storage_options: Any) -> Database:
    """Open (creating if needed) an EngramDB database.

    Args:
        target: a SQLite file path (default ``engram.db``) or a
            ``postgresql://`` URL.
        embedder: ``"default"`` (the database's recorded embedder, or the local
            all-MiniLM-L6-v2 for a new database), an embedder spec string
            (``"local"``, ``"openai:<base_url>#<model>"``), an ``Embedder``
            object, or ``None`` / ``"none"`` for full-text only.
        synchronous: SQLite durability, ``FULL`` (default) or ``NORMAL``.
        config: limits and tuning.

    Raises:
        EmbedderMismatch: the database was built with another embedder.
        MissingExtra: the backend or embedder needs an optional extra.
        StorageError: the database cannot be opened.
    """
    storage = _open_storage(target, synchronous, storage_options)
    try:
        storage.setup()
        emb = _resolve_embedder(storage, embedder)
        db = Database(storage, embedder=emb, config=config)
        db._bootstrap()
    except BaseException:
        storage.close()
        raise
    return db


def import_database(target: str | Path, lines: Iterable[str], *, embedder: Any = "default",
                    synchronous: str = "FULL", progress: Callable[[int], None] | None = None,
                    **storage_options: Any) -> ImportSummary:
    """Restore an ``engram export`` file into a new, empty database.

    Every event is appended verbatim and its effects replayed, so the result
    has the same head hash as the source and ``verify()`` passes; memory
    texts are re-embedded to rebuild the vector index. Open the result with
    :func:`engramdb.open` afterwards.

    Args:
        target: a SQLite path or ``postgresql://`` URL holding no events yet.
        lines: the export's lines (an open text file works).
        embedder: ``"default"`` re-embeds with the embedder the export names;
            a spec or ``Embedder`` re-embeds with that one instead.
        synchronous: SQLite durability during the import.
        progress: called with the number of events imported so far.

    Raises:
        InvalidInput: the target already holds events, or the file is damaged
            or edited (the message names the line).
    """
    from engramdb.engine.portability import import_log, read_header

    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise InvalidInput("the export file is empty; there is no header line")
    header = read_header(first)
    storage = _open_storage(target, synchronous, storage_options)
    try:
        storage.setup()
        if storage.head().seq != 0:
            raise InvalidInput(
                f"cannot import into {target}: it already holds {storage.head().seq} events; "
                "import restores into a new, empty database (give a path that does not exist "
                "yet)",
                events=storage.head().seq,
            )
        if embedder == "default":
            embedder = header["embedder"]["name"]
        emb = _resolve_embedder(storage, embedder)
        name = "none" if emb is None else str(emb.name)
        storage.set_meta("embedder", json.dumps(
            {"name": name, "dimension": 0 if emb is None else int(emb.dimension)},
            sort_keys=True))
        summary = import_log(storage, itertools.chain([first], it),
                             embed=None if emb is None else emb.embed, progress=progress)
        Database(storage, embedder=emb)._bootstrap()
    finally:
        storage.close()
    return summary


def _open_storage(target: str | Path, synchronous: str,
                  storage_options: dict[str, Any]) -> Storage:
    target_s = str(target)
    storage: Storage
    if target_s.startswith(("postgresql://", "postgres://")):
        try:
            from engramdb.storage.postgres import PostgresStorage
        except ImportError as exc:
            raise MissingExtra(
                "PostgreSQL needs the extra: pip install 'engramdb[postgres]'"
            ) from exc
        storage = PostgresStorage(target_s, **storage_options)
    else:
        if storage_options:
            raise InvalidInput(f"unknown options for SQLite: {sorted(storage_options)}")
        from engramdb.storage.sqlite import SQLiteStorage

        storage = SQLiteStorage(target_s, synchronous=synchronous)
    return storage


def _resolve_embedder(storage: Storage, embedder: Any) -> Any:
    if embedder is None or embedder == "none":
        return None
    if not isinstance(embedder, str):
        return embedder
    from engramdb.retrieval import embed as embed_mod

    if embedder == "default":
        recorded = storage.meta("embedder")
        if recorded is not None:
            name = json.loads(recorded)["name"]
            if name == "none":
                return None
            return embed_mod.embedder_from_spec(name)
        return embed_mod.default_embedder()
    return embed_mod.embedder_from_spec(embedder)
