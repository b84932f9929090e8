"""The composition root: opening a database, building its services, handing out sessions.

``engramdb.open(path_or_url)`` returns a :class:`Database`. It builds the
shared :class:`~engramdb.engine.resources.Resources` (storage, embedder,
configuration, judge, read audit) and the
:class:`~engramdb.engine.services.Services` over them, and is itself the
admin's :class:`~engramdb.engine.session.Session` (the embedded opener is the
admin); agents get theirs from :meth:`as_agent`. The database-wide operations
(verify, export, checkpoints, knowledge at T, read-audit settings) delegate to
their service. Doors learn about the backend only through :meth:`info`,
:meth:`head` and :meth:`wait_for_events`, never through ``storage``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from engramdb import telemetry
from engramdb._guard import guard_and_trace
from engramdb.engine.admin import Admin
from engramdb.engine.checkpoints import Checkpoints
from engramdb.engine.lifecycle import Lifecycle
from engramdb.engine.read_audit import ReadAudit
from engramdb.engine.resources import ADMIN, Resources, event_from_raw
from engramdb.engine.rows import EngineConfig, PrincipalInfo, check_count, check_id
from engramdb.engine.services import Services
from engramdb.engine.session import Session
from engramdb.errors import (
    EmbedderMismatch,
    EngramError,
    InvalidInput,
    MissingExtra,
    NotFound,
    PermissionDenied,
)
from engramdb.lifecycle_values import MaintenanceReport
from engramdb.model import Event, Memory, RecallResult, VerifyReport, check_namespace
from engramdb.policy.judge import HeuristicJudge, Judge
from engramdb.retrieval.chat import ChatLLM
from engramdb.retrieval.rank import FusionWeights
from engramdb.storage.base import Head, Insert, Storage, StorageInfo

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from engramdb.audit.checkpoint import Checkpoint
    from engramdb.audit.evidence import CheckpointReport, EventProof
    from engramdb.engine.portability import ExportSummary, ImportSummary

__all__ = ["Database", "import_database", "open_database"]



@guard_and_trace
class Database(Session):
    """An open EngramDB database, acting as its admin.

    Use :func:`engramdb.open` rather than constructing this directly.
    """

    def __init__(self, storage: Storage, *, embedder: Any, config: EngineConfig | None = None,
                 weights: FusionWeights | None = None) -> None:
        telemetry.configure_from_env()  # OTEL_* variables, read once per process
        # (cast: the frozen dataclass's read-only ``name`` satisfies Judge at run time)
        res = Resources(storage, embedder=embedder, config=config or EngineConfig(),
                        weights=weights or FusionWeights(), judge=cast(Judge, HeuristicJudge()))
        super().__init__(Services(res), PrincipalInfo(ADMIN, ("admin",), 1.0, is_admin=True))
        self._svc.layers.procedures.fill_stats(ADMIN)

    # -- what the services share ------------------------------------------------------

    @property
    def storage(self) -> Storage:
        return self._res.storage

    @property
    def embedder(self) -> Any:
        return self._res.embedder

    @property
    def config(self) -> EngineConfig:
        return self._res.config

    @property
    def weights(self) -> FusionWeights:
        return self._res.weights

    @property
    def judge(self) -> Judge:
        """The contradiction judge for free-text conflicts; assign an LLMJudge at will."""
        return self._res.judge

    @judge.setter
    def judge(self, value: Judge) -> None:
        self._res.judge = value

    @property
    def read_audit(self) -> ReadAudit:
        return self._res.read_audit

    @property
    def embedder_name(self) -> str:
        return self._res.embedder_name

    @property
    def dimension(self) -> int | None:
        return self._res.dimension

    @property
    def llm(self) -> ChatLLM | None:
        """The optional LLM of summaries and extraction (default: ``ENGRAM_LLM_URL``)."""
        return self._res.llm

    @llm.setter
    def llm(self, value: ChatLLM | None) -> None:
        self._res.llm = value

    # -- lifecycle --------------------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """The lifecycle service (its ``clock`` may be replaced, e.g. in tests)."""
        return self._svc.lifecycle

    def close(self) -> None:
        self._res.read_audit.close()  # buffered read-audit records are written first
        with contextlib.suppress(EngramError):  # buffered reinforcement, best effort
            self._svc.lifecycle.flush_usage()
        self._res.storage.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<engramdb.Database {self.storage.url} embedder={self.embedder_name}>"

    def _bootstrap(self) -> None:
        """Record the embedder and create the admin principal, once per database."""
        storage = self.storage
        recorded = storage.meta("embedder")
        mine = {"name": self.embedder_name,
                "dimension": 0 if self.embedder is None else self.dimension}
        if recorded is None:
            storage.set_meta("embedder", json.dumps(mine, sort_keys=True))
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
        if self._res.principal_row(ADMIN) is None:
            with storage.write(ADMIN) as w:
                if self._res.principal_row(ADMIN, w) is not None:
                    return
                row = {"name": ADMIN, "kind": "admin", "roles": ["admin"], "trust": 1.0,
                       "status": "active", "created_tx": w.tx, "metadata": {}}
                self._res.commit(w, "principal.created", ADMIN, None, ADMIN,
                                 [Insert("principals", row)])

    # -- sessions ----------------------------------------------------------------

    def as_agent(self, name: str) -> Session:
        """A session whose every call is attributed to and checked for ``name``.

        Raises:
            NotFound: no such principal.
            PermissionDenied: the principal is frozen or retired.
        """
        r = self._res.principal_row(name)
        if r is None:
            raise NotFound(f"no principal {name!r}", name=name,
                           fix={"action": "create_agent", "name": name})
        if r["status"] != "active":
            fix = {"action": "reactivate_agent", "name": name} if r["status"] == "frozen" else None
            raise PermissionDenied(f"principal {name!r} is {r['status']} and cannot act",
                                   **({"fix": fix} if fix else {}))
        return Session(self._svc, PrincipalInfo(name=r["name"], roles=tuple(r["roles"]),
                                                trust=float(r["trust"]),
                                                is_admin=r["kind"] == "admin"))

    def session_for_key(self, api_key: str) -> Session:
        """The session of the principal an API key belongs to (the doors use this)."""
        return self.as_agent(self.admin.authenticate(api_key))

    # -- the storage seam, as the doors may see it ---------------------------------------

    def info(self) -> StorageInfo:
        """Which backend this is and where: what doors may show (never the storage itself)."""
        return self.storage.info()

    def head(self) -> Head:
        """The log's head: last seq, last tx, its hash and time."""
        return self.storage.head()

    def counts(self) -> dict[str, int]:
        """Rows per state table (for metrics)."""
        return self.storage.counts()

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Block until the log has an event after seq ``after`` or ``timeout`` s pass.

        PostgreSQL wakes on LISTEN/NOTIFY; SQLite polls its file. Returns whether
        there is a newer event (re-read with :meth:`changes` either way).
        """
        check_count(after, "after")
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                or not 0 <= timeout <= 3600):
            raise InvalidInput("timeout must be a number of seconds from 0 to 3600",
                               field="timeout")
        return self.storage.wait_for_events(after, timeout)

    def event(self, seq: int) -> Event | None:
        """Log event ``seq`` as a value (``None``: no such event)."""
        check_count(seq, "seq")
        raws = self.storage.events(after=seq - 1, limit=1)
        return event_from_raw(raws[0]) if raws and raws[0].seq == seq else None

    # -- database-wide operations ----------------------------------------------------

    def maintain(self) -> MaintenanceReport:
        """Apply every lifecycle policy now: expiry, decay, capacity (admin).

        Incremental, idempotent and safe to run from several processes at once;
        logged as one ``lifecycle.maintained`` event when anything changed.

        Returns:
            :class:`MaintenanceReport` of what it did.
        """
        return self._svc.lifecycle.maintain(self.principal.name)

    def restore(self, memory_id: str) -> Memory:
        """Bring an archived (or expired) memory back to ``active`` as a new version.

        Raises:
            NotFound: no such memory.
            InvalidInput: the memory is not archived.
        """
        return self._svc.lifecycle.restore(self.principal.name, check_id(memory_id))

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
        return self._svc.log.verify()

    def checkpoint(self, key_path: str | os.PathLike[str] | None = None, *,
                   private_key: Ed25519PrivateKey | None = None) -> Checkpoint:
        return self._svc.log.checkpoint(key_path, private_key=private_key)

    def verify_checkpoint(
        self, checkpoint: Checkpoint | str | os.PathLike[str],
        public_key: Ed25519PublicKey | str | bytes | os.PathLike[str] | None = None, *,
        full: bool = True,
    ) -> CheckpointReport:
        return self._svc.log.verify_checkpoint(checkpoint, public_key, full=full)

    def prove(self, seq: int, *, tree_size: int | None = None) -> EventProof:
        return self._svc.log.prove(seq, tree_size=tree_size)

    def last_checkpoint(self) -> Checkpoint | None:
        return self._svc.log.last_checkpoint()

    checkpoint.__doc__ = Checkpoints.checkpoint.__doc__
    verify_checkpoint.__doc__ = Checkpoints.verify_checkpoint.__doc__
    prove.__doc__ = Checkpoints.prove.__doc__
    last_checkpoint.__doc__ = Checkpoints.last_checkpoint.__doc__

    def knowledge(
        self,
        agent: str,
        *,
        at: int | datetime | str,
        query: str | None = None,
        namespace: str = "**",
        valid_at: datetime | str | None = None,
        k: int | None = None,
        layers: Sequence[str] | None = None,
    ) -> RecallResult | list[Memory]:
        """What ``agent`` could have recalled at transaction time ``at``.

        The agent's grants are taken as they stood at ``at`` (not today's),
        and memories as they were current then; ``valid_at`` further keeps
        only facts that held in the world at that moment.

        Args:
            agent: the principal's name.
            at: transaction time: a tx number, a datetime or an ISO string.
            query: with a query, the recall the agent would have got
                (``k`` hits, default 10); without, every memory it could
                read then, newest first (at most ``k`` if given).
            namespace: a glob narrowing the namespaces considered.
            valid_at: valid time.
            layers: restrict to these layers.

        Raises:
            NotFound: no such principal.
            InvalidInput: missing ``at``, bad glob, query or ``k``.
        """
        return self._svc.knowledge.knowledge(self._caller, agent, at=at, query=query,
                                             namespace=namespace, valid_at=valid_at, k=k,
                                             layers=layers)

    def set_read_audit(self, pattern: str, mode: str, *, rate: float | None = None) -> None:
        self.admin.set_read_audit(pattern, mode, rate=rate)

    set_read_audit.__doc__ = Admin.set_read_audit.__doc__

    def read_audit_mode(self, namespace: str) -> tuple[str, float]:
        """The ``(mode, rate)`` that applies to reads of ``namespace``."""
        return self._res.read_audit.mode_for(check_namespace(namespace))

    def flush_reads(self) -> int:
        """Write buffered read-audit records now; returns how many."""
        return self._res.read_audit.flush()


def open_database(target: str | Path = "engram.db", *, embedder: Any = "default",
                  synchronous: str = "FULL", config: EngineConfig | None = None,
                  create: bool = True, **storage_options: Any) -> Database:
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
        create: make a new SQLite database when ``target`` does not exist
            (default); with ``False`` a missing file is :class:`NotFound`.
            (A PostgreSQL database must exist already; its tables are made.)

    Raises:
        NotFound: ``create=False`` and there is no SQLite file at ``target``.
        EmbedderMismatch: the database was built with another embedder.
        MissingExtra: the backend or embedder needs an optional extra.
        StorageError: the database cannot be opened.
    """
    if not create:
        _require_existing(target)
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


def _require_existing(target: str | Path) -> None:
    text = str(target)
    if "://" in text or text == ":memory:" or Path(text).is_file():
        return
    raise NotFound(f"no database at {text}", path=text,
                   fix={"action": "init_database", "path": text})


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
        if storage_options.get("combine") is False:  # a door's flag left off
            storage_options = {k: v for k, v in storage_options.items() if k != "combine"}
        unknown = set(storage_options) - {"busy_timeout_s"}
        if "combine" in unknown:
            raise InvalidInput("combine (the write combiner) is for PostgreSQL; a SQLite "
                               "database commits one write at a time through its own lock: "
                               "drop combine / --combine", field="combine")
        if unknown:
            raise InvalidInput(f"unknown options for SQLite: {sorted(unknown)}; it takes "
                               "busy_timeout_s (how long a write waits for the lock)")
        from engramdb.storage.sqlite import SQLiteStorage

        storage = SQLiteStorage(target_s, synchronous=synchronous, **storage_options)
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
