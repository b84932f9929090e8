"""Export and import: the whole log as JSONL, and bulk loading of plain memories.

An export is the backup, the restore path and the migration path between
backends. It holds the log, not the state: the state tables are projections
of the log (DESIGN.md, principle 1), so replaying the log rebuilds them, and
the vector index is derived and is rebuilt by re-embedding.

Format (``version`` 1), one JSON object per line:

* line 1, the header: ``{"format": "engramdb-export", "version": 1,
  "embedder": {"name", "dimension"}, "schema": {"tables": {...}},
  "head": {"seq", "hash", "tx"}, "events": N, "exported_at": ISO time}``;
* then every event exactly as stored, in order: ``seq, tx, kind, namespace,
  actor, recorded_at`` (integer microseconds), ``subject_ref, commitment,
  prev_hash, hash, salt`` (hex) and ``payload`` (the JSON object whose
  canonical form the commitment covers; ``null`` once erased).

Import goes into an empty database only. Before anything is written, each
event is checked against the chain (its link, its hash and its payload
commitment), so an edited or truncated file is refused with the line that is
wrong. Events are appended verbatim with :meth:`WriteTx.append_raw` and their
effects replayed with :meth:`WriteTx.apply`, a batch of whole transactions at
a time, so the imported database ends at the same head hash and verifies.

Plain memories (``{"text": ..., "namespace": ..., ...}`` per line) are a
different thing: new writes by the importing principal, loaded with
``remember_many`` in batches (:func:`load_memories`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from engramdb.audit.read_batches import derived_effects
from engramdb.codec import GENESIS_HASH, canonical, chain_hash, commitment
from engramdb.errors import EngramError, InvalidInput, StorageError
from engramdb.storage.base import Effect, Insert, RawEvent, Storage, effect_from_dict
from engramdb.storage.schema import TABLES

if TYPE_CHECKING:
    from engramdb.engine.session import Session

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MEMORY_FIELDS",
    "ExportSummary",
    "ImportSummary",
    "LoadSummary",
    "export_log",
    "import_log",
    "load_memories",
    "read_header",
]

EXPORT_FORMAT = "engramdb-export"
EXPORT_VERSION = 1
_EVENT_FIELDS = ("seq", "tx", "kind", "namespace", "actor", "recorded_at", "subject_ref",
                 "commitment", "prev_hash", "hash", "salt", "payload")
# What one line of a plain-memories file may say: the arguments of ``remember``.
MEMORY_FIELDS = frozenset({
    "text", "namespace", "layer", "subject", "predicate", "value", "metadata", "importance",
    "confidence", "source", "session", "valid_from", "valid_to", "expires_at", "embedding",
    "idempotency_key",
})

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote: the number of events and the head it ends at."""

    events: int
    head_seq: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import replayed: events, transactions, memory versions re-embedded."""

    events: int
    transactions: int
    vectors: int
    head_seq: int
    head_hash: str


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What a plain-memories load stored: memories, and the lines read."""

    memories: int
    lines: int


# --------------------------------------------------------------------------- export


def _schema() -> dict[str, Any]:
    return {"tables": {name: {"key": list(spec.key), "columns": dict(spec.columns)}
                       for name, spec in TABLES.items()}}


def _event_line(ev: RawEvent, erased: Mapping[int, Mapping[str, Any]] | None = None
                ) -> dict[str, Any]:
    gone = (erased or {}).get(ev.seq)
    payload: Any = None if ev.payload is None else json.loads(ev.payload)
    if gone is not None and ev.payload is None:
        # An erased event: no salt, and instead of its payload the erasure's record
        # of its effects on rows that were not erased (import replays them here).
        payload = {"erased": gone["erasure_id"], "effects": gone.get("effects") or []}
    return {
        "seq": ev.seq,
        "tx": ev.tx,
        "kind": ev.kind,
        "namespace": ev.namespace,
        "actor": ev.actor,
        "recorded_at": ev.recorded_at,
        "subject_ref": ev.subject_ref,
        "commitment": ev.commitment,
        "prev_hash": ev.prev_hash,
        "hash": ev.hash,
        "salt": None if ev.salt is None else ev.salt.hex(),
        "payload": payload,
    }


def export_log(storage: Storage, out: IO[str], *, batch: int = 5000,
               progress: Progress | None = None) -> ExportSummary:
    """Write the header and every event up to the current head to ``out``.

    Events are immutable once written, so reading them in batches while
    other writers append yields exactly the log up to the head read first.

    Args:
        storage: the backend to read.
        out: a text file opened for writing.
        batch: events read per query.
        progress: called with the number of events written so far.

    Returns:
        :class:`ExportSummary` of what was written.
    """
    head = storage.head()
    recorded = storage.meta("embedder")
    embedder = json.loads(recorded) if recorded else {"name": "none", "dimension": 0}
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "embedder": embedder,
        "schema": _schema(),
        "head": {"seq": head.seq, "hash": head.hash, "tx": head.tx},
        "events": head.seq,
        "exported_at": datetime.now(UTC).isoformat(),
    }
    out.write(json.dumps(header, sort_keys=True, ensure_ascii=False) + "\n")
    erased = {int(r["seq"]): r for r in storage.scan("erased_events")}
    after = 0
    last_hash = GENESIS_HASH
    while after < head.seq:
        events = storage.events(after=after, limit=min(batch, head.seq - after))
        if not events:
            break
        for ev in events:
            out.write(json.dumps(_event_line(ev, erased), ensure_ascii=False) + "\n")
            last_hash = ev.hash
        after = events[-1].seq
        if progress is not None:
            progress(after)
    if after != head.seq or last_hash != head.hash:
        raise StorageError(
            f"the log ended at event {after} but its head is event {head.seq}; run "
            "`engram verify` on the source database before exporting it"
        )
    return ExportSummary(events=head.seq, head_seq=head.seq, head_hash=head.hash)


# --------------------------------------------------------------------------- import


def _bad(line: int, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(f"export line {line}: {message}", line=line, **details)


def read_header(line: str) -> dict[str, Any]:
    """Parse and check the header line of an export.

    Raises:
        InvalidInput: not an EngramDB export, a newer format, or a schema with
            tables or columns this version does not know.
    """
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad(1, f"not JSON ({exc.msg}); is this an `engram export` file?") from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise _bad(1, "not an EngramDB export header; for a file of plain memories "
                      "use `engram import --memories`")
    if header.get("version") != EXPORT_VERSION:
        raise _bad(1, f"export format version {header.get('version')!r} is not supported "
                      f"(this EngramDB reads version {EXPORT_VERSION}); upgrade EngramDB")
    tables = (header.get("schema") or {}).get("tables") or {}
    for name, spec in tables.items():
        known = TABLES.get(name)
        unknown = [] if known is None else sorted(set(spec.get("columns", {})) - set(known.columns))
        if known is None or unknown:
            what = f"table {name!r}" if known is None else f"columns {unknown} of {name!r}"
            raise _bad(1, f"the export has {what}, which this EngramDB does not know; import "
                          "with the version that exported it or a newer one")
    emb = header.get("embedder")
    if not isinstance(emb, dict) or not isinstance(emb.get("name"), str):
        raise _bad(1, "the header does not name the embedder")
    head = header.get("head")
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int):
        raise _bad(1, "the header does not give the head of the log")
    return header


def _raw_event(line_no: int, text: str, prev_hash: str, expected_seq: int) -> RawEvent:
    """Decode one event line and check it continues the chain at ``prev_hash``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(line_no, f"not JSON ({exc.msg}); the file is damaged") from exc
    if not isinstance(data, dict) or set(data) != set(_EVENT_FIELDS):
        raise _bad(line_no, "not an event line: an event has exactly the fields "
                            f"{', '.join(_EVENT_FIELDS)}")
    try:
        salt = None if data["salt"] is None else bytes.fromhex(data["salt"])
        if salt is None and isinstance(data["payload"], dict) and "erased" in data["payload"]:
            data["payload"] = None  # erased: its restated effects are read by _effects
        payload = None if data["payload"] is None else canonical(data["payload"]).decode("utf-8")
        ev = RawEvent(
            seq=int(data["seq"]), tx=int(data["tx"]), kind=str(data["kind"]),
            namespace=data["namespace"], actor=str(data["actor"]),
            recorded_at=int(data["recorded_at"]), subject_ref=data["subject_ref"],
            commitment=str(data["commitment"]), prev_hash=str(data["prev_hash"]),
            hash=str(data["hash"]), salt=salt, payload=payload,
        )
    except (TypeError, ValueError) as exc:
        raise _bad(line_no, f"malformed event ({exc}); the file is damaged") from exc
    if ev.seq != expected_seq:
        raise _bad(line_no, f"expected event {expected_seq} but found event {ev.seq}: events "
                            "are missing, repeated or out of order", seq=ev.seq)
    if ev.prev_hash != prev_hash:
        raise _bad(line_no, f"event {ev.seq} does not link to the event before it: the file "
                            "was edited or events were removed", seq=ev.seq)
    if chain_hash(prev_hash, ev.envelope()) != ev.hash:
        raise _bad(line_no, f"event {ev.seq} was changed: its hash does not recompute",
                   seq=ev.seq)
    if payload is not None and (
        salt is None or commitment(salt, data["payload"]) != ev.commitment
    ):
        raise _bad(line_no, f"event {ev.seq} payload was changed: it no longer matches its "
                            "commitment", seq=ev.seq)
    return ev


def _effects(line_no: int, ev: RawEvent, text: str) -> list[Effect]:
    try:
        if ev.payload is None:
            # An erased event carries the erasure's record of its surviving effects.
            restated = json.loads(text).get("payload") or {}
            return [effect_from_dict(e) for e in restated.get("effects", [])]
        payload = json.loads(ev.payload)
        # A read batch's index rows are derived from its payload, not logged.
        return [*(effect_from_dict(e) for e in payload.get("effects", [])),
                *derived_effects(payload)]
    except (KeyError, TypeError, AttributeError) as exc:
        raise _bad(line_no, f"event {ev.seq} has malformed effects ({exc})",
                   seq=ev.seq) from exc


def _memory_texts(effects: Iterable[Effect]) -> Iterator[tuple[str, int, str]]:
    """``(id, version, text)`` of every memory version these effects write text for."""
    for eff in effects:
        if eff.table != "memories":
            continue
        if isinstance(eff, Insert):
            text = eff.row.get("text")
            if isinstance(text, str) and text:
                yield str(eff.row["id"]), int(eff.row["version"]), text
        else:
            text = eff.changes.get("text")
            if isinstance(text, str) and text:
                yield str(eff.key["id"]), int(eff.key["version"]), text


@dataclass(slots=True)
class _Pending:
    line: int
    event: RawEvent
    effects: list[Effect]


def _batches(lines: Iterator[tuple[int, str]], events_per_batch: int
             ) -> Iterator[list[_Pending]]:
    """Group checked events into batches that never split one transaction."""
    prev_hash = GENESIS_HASH
    expected = 1
    batch: list[_Pending] = []
    for line_no, text in lines:
        if not text.strip():
            continue
        ev = _raw_event(line_no, text, prev_hash, expected)
        if batch and len(batch) >= events_per_batch and ev.tx != batch[-1].event.tx:
            yield batch
            batch = []
        batch.append(_Pending(line_no, ev, _effects(line_no, ev, text)))
        prev_hash = ev.hash
        expected += 1
    if batch:
        yield batch


def import_log(storage: Storage, lines: Iterable[str], *,
               embed: Callable[[Sequence[str]], np.ndarray] | None,
               events_per_batch: int = 2000, progress: Progress | None = None
               ) -> ImportSummary:
    """Replay an export onto an empty ``storage``.

    Args:
        storage: a set-up backend whose log is empty.
        lines: the export's lines, header first (an open text file works).
        embed: the embedder's ``embed`` (texts -> unit vectors), or ``None``
            for a database without vectors.
        events_per_batch: events per write transaction (rounded up to whole
            transactions).
        progress: called with the number of events imported so far.

    Returns:
        :class:`ImportSummary`; its head equals the header's.

    Raises:
        InvalidInput: the target is not empty, or a line of the file is not
            what the chain says (nothing from that line's batch is written;
            earlier batches are, so start again with a new database).
    """
    existing = storage.head()
    if existing.seq != 0:
        raise InvalidInput(
            f"cannot import into a database that already holds {existing.seq} events; "
            "import restores into a new, empty database: give a path or URL with nothing in it",
            events=existing.seq,
        )
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise InvalidInput("the export file is empty; there is no header line")
    header = read_header(first[1])
    events = 0
    transactions = 0
    vectors = 0
    for batch in _batches(numbered, events_per_batch):
        to_embed: dict[tuple[str, int], str] = {}
        for p in batch:
            for mid, version, text in _memory_texts(p.effects):
                to_embed[(mid, version)] = text
        items: list[tuple[str, int, np.ndarray]] = []
        if embed is not None and to_embed:
            unique = sorted(set(to_embed.values()))
            matrix = np.asarray(embed(unique), dtype=np.float32)
            by_text = dict(zip(unique, matrix, strict=True))
            items = [(mid, version, by_text[text]) for (mid, version), text in to_embed.items()]
        with storage.write("import") as w:
            last_tx = None
            for p in batch:
                try:
                    w.append_raw(p.event)
                    w.apply(p.effects)
                except EngramError as exc:
                    raise _bad(p.line, f"event {p.event.seq} cannot be replayed: {exc}; "
                                       "nothing from this batch was written",
                               seq=p.event.seq) from exc
                if p.event.tx != last_tx:
                    transactions += 1
                    last_tx = p.event.tx
            if items:
                w.put_vectors(items)
        events += len(batch)
        vectors += len(items)
        if progress is not None:
            progress(events)
    head = storage.head()
    want = header["head"]
    if head.seq != want["seq"] or head.hash != want.get("hash"):
        raise InvalidInput(
            f"the export ends at event {head.seq} but its header says the log ends at event "
            f"{want['seq']}: the file was truncated; export again",
            events=events,
        )
    return ImportSummary(events=events, transactions=transactions, vectors=vectors,
                         head_seq=head.seq, head_hash=head.hash)


# --------------------------------------------------------------------------- memories


def _memory_line(line_no: int, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"line {line_no}: not JSON ({exc.msg}); each line must be one "
                           'object such as {"text": "...", "namespace": "..."}',
                           line=line_no) from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"line {line_no}: expected a JSON object with at least \"text\"",
                           line=line_no)
    unknown = sorted(set(data) - MEMORY_FIELDS)
    if unknown:
        raise InvalidInput(f"line {line_no}: unknown fields {unknown}; use "
                           f"{', '.join(sorted(MEMORY_FIELDS))}", line=line_no)
    return data


def load_memories(session: Session, lines: Iterable[str], *, batch_size: int = 500,
                  progress: Progress | None = None) -> LoadSummary:
    """Store one memory per JSONL line as ``session``, a batch per transaction.

    Each line holds the arguments of :meth:`Session.remember` (``text``
    required). Lines are checked before their batch is written, so a bad line
    is reported with its number and nothing from its batch is stored; the
    batches before it are.

    Raises:
        InvalidInput: (or a subclass) naming the line, with ``details['line']``
            and ``details['stored']`` (memories stored before it).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size must be a positive integer")
    stored = 0
    read = 0
    batch: list[Any] = []

    def flush() -> None:
        nonlocal stored, batch
        if batch:
            stored += len(session.remember_many(batch))
            batch = []
            if progress is not None:
                progress(read)

    for line_no, text in enumerate(lines, start=1):
        read = line_no
        if not text.strip():
            continue
        try:
            data = _memory_line(line_no, text)
            batch.append(session._draft(**data))
        except EngramError as exc:
            msg = exc.message if exc.message.startswith(f"line {line_no}:") else (
                f"line {line_no}: {exc.message}")
            details = {**exc.details, "line": line_no, "stored": stored}
            raise type(exc)(f"{msg} (nothing from this batch was written; {stored} memories "
                            "from earlier lines are stored)", **details) from exc
        if len(batch) >= batch_size:
            flush()
    flush()
    return LoadSummary(memories=stored, lines=read)
