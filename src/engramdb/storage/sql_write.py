"""Rows and the write transaction of :mod:`engramdb.storage.sql`: how a state row is
encoded for and decoded from a table, and :class:`SqlWriteTx`, which applies effects,
appends log events and moves the chain head over one DB-API connection.

Split from ``sql.py`` (which keeps :class:`~engramdb.storage.sql.SqlStorage`, the reads and
the search plumbing) so each module stays one person's read; the names are re-exported there.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engramdb.codec import canonical_payload, event_hash, from_micros, json_dumps, sha256_hex
from engramdb.errors import InvalidInput, StorageError, VersionConflict
from engramdb.model import Event
from engramdb.storage.base import Effect, Head, Insert, RawEvent, Row, Update, WriteTx
from engramdb.storage.schema import CONFIG_TABLES, TABLES, TableSpec
from engramdb.storage.sql_update import same_update_run, update_statements
from engramdb.storage.sql_where import select_rows
from engramdb.storage.words import stored_words

if TYPE_CHECKING:
    from engramdb.storage.sql import SqlStorage

__all__ = ["EVENT_COLUMNS", "SqlWriteTx", "decode_row", "encode_row"]

EVENT_COLUMNS = (
    "seq, tx, kind, namespace, actor, recorded_at, subject_ref, commitment, prev_hash, hash"
)


def _spec(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        raise StorageError(f"unknown table {table!r}") from None


_LAYOUTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


def _layout(spec: TableSpec) -> tuple[frozenset[str], frozenset[str]]:
    """(every column a row may name, the JSON columns) of a table."""
    layout = _LAYOUTS.get(spec.name)
    if layout is None:
        layout = _LAYOUTS[spec.name] = (
            frozenset(spec.columns) | frozenset(spec.bookkeeping), spec.json_columns)
    return layout


def encode_row(spec: TableSpec, row: Mapping[str, Any]) -> dict[str, Any]:
    allowed, json_cols = _layout(spec)
    if not allowed.issuperset(row):
        col = next(c for c in row if c not in allowed)
        raise StorageError(f"table {spec.name} has no column {col!r}")
    out = dict(row)
    for col in json_cols:
        value = out.get(col)
        if value is not None:
            # An empty object is by far the most common metadata: skip the encoder.
            out[col] = "{}" if value == {} else json_dumps(value, what=col)
    return out


# (table, column names) -> the JSON columns among them, for decode_row.
_JSON_NAMES: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}


def decode_row(spec: TableSpec, names: Sequence[str], values: Sequence[Any]) -> Row:
    """A row from its column ``names`` and ``values``, JSON columns parsed.

    Recall decodes every candidate (about a hundred rows a query), so the row is
    built in one ``dict(zip(...))`` and only the JSON columns are visited.
    """
    row: Row = dict(zip(names, values, strict=True))
    key = (spec.name, tuple(names))
    json_names = _JSON_NAMES.get(key)
    if json_names is None:
        json_names = _JSON_NAMES[key] = tuple(
            n for n in dict.fromkeys(names) if spec.columns.get(n) == "json")
    for name in json_names:
        value = row[name]
        if value is not None:
            if value == "{}":  # by far the most common metadata: skip the parser
                row[name] = {}
            elif isinstance(value, str):
                row[name] = json.loads(value)
    return row


@functools.lru_cache(maxsize=256)
def _insert_sql(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


_EVENT_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PAYLOAD_INSERT = "INSERT INTO event_payloads (seq, salt, payload) VALUES (?, ?, ?)"


class SqlWriteTx(WriteTx):
    """A write transaction over one DB-API connection, holding the chain lock.

    Inserts (state rows, events, vectors) are buffered and sent per table with
    one ``executemany`` each, which is what makes a batch of thousands of
    memories cheap. Buffering never changes what a read inside the
    transaction sees: :meth:`fetch` and :meth:`copy_vector` send the buffered
    rows of the table they read first, an ``Update`` (whose row count decides
    a compare-and-swap) sends those of its table first, and :meth:`finish`
    sends everything before the new head is recorded. Rows of one table keep
    their order; nothing depends on the order between tables (no foreign
    keys, no cross-table triggers). Searches read committed state on another
    connection and never saw this transaction's rows, buffered or not.
    """

    # Buffered rows (all tables) that trigger a flush: bounds memory in an import.
    FLUSH_AT = 10_000

    def __init__(self, storage: SqlStorage, conn: Any, head: Head, config_tx: int = 0) -> None:
        self._storage = storage
        self._conn = conn
        self.FLUSH_AT = storage.write_flush_rows
        self._head = head
        # The transaction of the last configuration change (CONFIG_TABLES), read with
        # the locked head: the configuration rows kept in memory are exact while their
        # tag is this, until this transaction changes a configuration table itself.
        self.config_tx = config_tx
        self._config_changed = False
        self._start_seq = head.seq
        self._effects_applied = False
        self.tx = head.tx + 1
        self.recorded_at = max(time.time_ns() // 1000, head.recorded_at)
        # table -> runs of (INSERT statement, rows), in the order they were applied
        self._buffered: dict[str, list[tuple[str, list[Sequence[Any]]]]] = {}
        self._vectors: list[tuple[str, int, np.ndarray]] = []
        self._buffered_rows = 0
        # Ids of the memory rows buffered: a read of other ids need not send them first
        # (a semantic batch reads each memory's candidates, committed ones mostly).
        self._buffered_ids: set[Any] = set()
        # Raw rows of this transaction's reads, per table. Exact: every change to a
        # state table goes through apply() (other writers wait for the chain lock),
        # and each drops its table's reads. Spares the engine's repeated reads of
        # settings, schemas and principals a statement per memory.
        self._reads: dict[str, dict[tuple[Any, ...], list[Sequence[Any]]]] = {}

    @property
    def head(self) -> Head:
        return self._head

    @property
    def logged(self) -> bool:
        return self._head.seq > self._start_seq

    def reads_through(self, conn: Any) -> bool:
        """Whether ``conn`` is this transaction's own connection (a read on it sees
        what :meth:`fetch` sees, but for inserts still buffered: new rows only)."""
        return conn is self._conn

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._storage._exec(self._conn, sql, params)

    def _buffer(self, table: str, sql: str, params: Sequence[Any]) -> None:
        self._buffer_many(table, sql, [params])

    def _buffer_many(self, table: str, sql: str, rows: list[Sequence[Any]]) -> None:
        self._reads.pop(table, None)
        runs = self._buffered.setdefault(table, [])
        if runs and runs[-1][0] == sql:
            runs[-1][1].extend(rows)
        else:
            runs.append((sql, rows))
        self._buffered_rows += len(rows)
        if self._buffered_rows >= self.FLUSH_AT:
            self.flush()

    def flush(self, table: str | None = None) -> None:
        """Send the buffered inserts of ``table`` (``None``: of every table) now."""
        if table is None and self._vectors:
            # The vectors first: the largest rows (half of a batch's WAL on SQLite),
            # whose pages the backend's writeback then syncs while the rest is sent.
            self.flush("memory_vectors")
        for name in [table] if table is not None else list(self._buffered):
            if name == "memories":
                self._buffered_ids.clear()
            for sql, rows in self._buffered.pop(name, ()):
                self._storage._insert_many(self._conn, name, sql, rows)
                self._buffered_rows -= len(rows)
        if self._vectors and table in (None, "memory_vectors"):
            items, self._vectors = self._vectors, []
            self._buffered_rows -= len(items)
            self._storage._put_vectors(self._conn, items)

    def apply(self, effects: Sequence[Effect]) -> None:
        i = 0
        while i < len(effects):
            effect = effects[i]
            spec = _spec(effect.table)
            if spec.name in CONFIG_TABLES:
                self._config_changed = True
            if isinstance(effect, Insert):
                # A run of inserts into one table with the same columns (a batch's
                # memories) is buffered at once.
                row_tx, words = "row_tx" in spec.bookkeeping, "words" in spec.bookkeeping
                cols = tuple(effect.row)
                rows: list[Sequence[Any]] = []
                allowed, json_cols = _layout(spec)
                # Plain columns (a read batch's index rows): each row's values as they
                # are, the run's columns checked once.
                plain = not (spec.bookkeeping or json_cols) and allowed.issuperset(cols)
                while True:
                    if plain:
                        rows.append(list(effect.row.values()))
                    else:
                        row = encode_row(spec, effect.row)
                        if spec.name == "memories":
                            self._buffered_ids.add(row.get("id"))
                        if row_tx:
                            row["row_tx"] = self.tx
                        if words:  # the ranking's word counts (storage/words.py)
                            row["words"] = stored_words(row.get("text"))
                        rows.append(list(row.values()))
                    i += 1
                    if i == len(effects):
                        break
                    effect = effects[i]
                    if (type(effect) is not Insert or effect.table != spec.name
                            or tuple(effect.row) != cols):
                        break
                self._buffer_many(spec.name,
                                  _insert_sql(spec.name, cols if plain else tuple(row)), rows)
                continue
            if not isinstance(effect, Update):  # pragma: no cover - a closed union
                raise StorageError(f"unknown effect {effect!r}")
            run = same_update_run(effects, i)
            self._update(spec, run)
            i += len(run)
        self._effects_applied = self._effects_applied or bool(effects)

    def _update(self, spec: TableSpec, run: Sequence[Update]) -> None:
        self.flush(spec.name)
        self._reads.pop(spec.name, None)
        changes = encode_row(spec, run[0].changes)
        if "row_tx" in spec.bookkeeping:
            changes["row_tx"] = self.tx
        if "words" in spec.bookkeeping and "text" in changes:
            changes["words"] = stored_words(changes["text"])
        for sql, params, n in update_statements(spec.name, changes,
                                                encode_row(spec, run[0].expect),
                                                [e.key for e in run]):
            cur = self._exec(sql, params)
            if cur.rowcount != n:
                key = dict(run[0].key)
                raise VersionConflict(
                    f"{spec.name} row {key} changed concurrently; re-read it and retry"
                    if len(run) == 1 else f"{spec.name}: {n - cur.rowcount} of {n} rows "
                    "changed concurrently; re-read them and retry", table=spec.name, key=key)

    def log(
        self,
        kind: str,
        *,
        actor: str,
        namespace: str | None,
        subject_ref: str | None,
        payload: Mapping[str, Any],
    ) -> Event:
        prev = self._head.hash
        event, payload_row = self._chain(kind, actor, namespace, subject_ref, payload,
                                         os.urandom(16), self._head.seq + 1, prev)
        self._buffer("events", _EVENT_INSERT, event)
        self._buffer("event_payloads", _PAYLOAD_INSERT, payload_row)
        seq, tx, _, _, _, recorded_at, _, commit, _, digest = event
        self._head = Head(seq, digest, tx, recorded_at)
        return Event(
            seq=seq,
            tx=tx,
            kind=kind,
            namespace=namespace,
            actor=actor,
            recorded_at=from_micros(recorded_at),  # type: ignore[arg-type]
            subject_ref=subject_ref,
            payload=payload,
            commitment=commit,
            prev_hash=prev,
            hash=digest,
        )

    def log_many(self, kind: str, *, actor: str,
                 events: Sequence[tuple[str | None, str | None, Mapping[str, Any]]]) -> None:
        """:meth:`log` for each event, buffered as two runs (a batch of memories)."""
        if not events:
            return
        salts = os.urandom(16 * len(events))
        rows: list[Sequence[Any]] = []
        payloads: list[Sequence[Any]] = []
        seq, prev = self._head.seq, self._head.hash
        for i, (namespace, subject_ref, payload) in enumerate(events):
            seq += 1
            event, payload_row = self._chain(kind, actor, namespace, subject_ref, payload,
                                             salts[16 * i:16 * i + 16], seq, prev)
            prev = event[-1]
            rows.append(event)
            payloads.append(payload_row)
        self._head = Head(seq, prev, self.tx, self.recorded_at)
        self._buffer_many("events", _EVENT_INSERT, rows)
        self._buffer_many("event_payloads", _PAYLOAD_INSERT, payloads)

    def _chain(self, kind: str, actor: str, namespace: str | None, subject_ref: str | None,
               payload: Mapping[str, Any], salt: bytes, seq: int, prev: str
               ) -> tuple[list[Any], list[Any]]:
        """The ``events`` and ``event_payloads`` rows of event ``seq`` after hash ``prev``."""
        try:
            body = canonical_payload(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"event payload is not JSON: {exc}") from exc
        # codec.commitment(salt, payload), without encoding the payload a second time.
        commit = sha256_hex(salt + body)
        digest = event_hash(prev, seq, self.tx, kind, namespace, actor, self.recorded_at,
                            subject_ref, commit)
        event = [seq, self.tx, kind, namespace, actor, self.recorded_at, subject_ref, commit,
                 prev, digest]
        return event, [seq, salt, body.decode("utf-8")]

    def append_raw(self, event: RawEvent) -> None:
        if event.seq != self._head.seq + 1 or event.prev_hash != self._head.hash:
            raise InvalidInput(
                f"event {event.seq} does not continue the log at seq {self._head.seq}; "
                "import into an empty database, in order"
            )
        if event.tx < self._head.tx or event.recorded_at < self._head.recorded_at:
            # A log's time never goes back (`engram verify` refuses one that does), and
            # the time of a transaction is read as its last event's (storage tx_time).
            raise InvalidInput(f"event {event.seq} goes back in transaction time; "
                               "the export is not a sound log: verify its source")
        self._buffer("events", _EVENT_INSERT, [
            event.seq, event.tx, event.kind, event.namespace, event.actor, event.recorded_at,
            event.subject_ref, event.commitment, event.prev_hash, event.hash])
        self._buffer("event_payloads", _PAYLOAD_INSERT, [event.seq, event.salt, event.payload])
        self.tx = event.tx
        self.recorded_at = event.recorded_at
        self._head = Head(event.seq, event.hash, event.tx, event.recorded_at)

    def erase(self, memories: Sequence[tuple[str, int]], seqs: Sequence[int]) -> dict[str, int]:
        self.flush()
        self._reads.clear()
        keys: list[list[Any]] = [[i, int(v)] for i, v in memories]
        vectors = 0
        for mid in sorted({str(i) for i, _ in memories}):
            wanted = {int(v) for i, v in memories if i == mid}
            vectors += sum(1 for (v,) in self._exec(
                "SELECT version FROM memory_vectors WHERE id = ?", [mid]).fetchall()
                if int(v) in wanted)
        if keys:
            # Full-text entries go with the rows (a trigger in SQLite, a generated
            # column in PostgreSQL); the ANN copy with the vector (a trigger).
            self._storage._exec_many(
                self._conn, "DELETE FROM memory_vectors WHERE id = ? AND version = ?", keys)
            self._storage._exec_many(
                self._conn, "DELETE FROM memories WHERE id = ? AND version = ?", keys)
        if seqs:
            self._storage._exec_many(self._conn, "DELETE FROM event_payloads WHERE seq = ?",
                                     [[int(q)] for q in seqs])
        self._effects_applied = self._effects_applied or bool(keys or seqs)
        return {"versions": len(keys), "vectors": vectors, "event_payloads": len(seqs)}

    def put_vectors(self, items: Sequence[tuple[str, int, np.ndarray]]) -> None:
        self._vectors.extend(items)
        self._buffered_rows += len(items)
        if self._buffered_rows >= self.FLUSH_AT:
            self.flush()

    def copy_vector(self, memory_id: str, from_version: int, to_version: int) -> None:
        self.flush("memory_vectors")
        self._exec(
            "INSERT INTO memory_vectors (id, version, vec) SELECT id, ?, vec "
            "FROM memory_vectors WHERE id = ? AND version = ?",
            [to_version, memory_id, from_version],
        )

    def fetch(
        self,
        table: str,
        where: Mapping[str, Any],
        *,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        if table != "memories" or not self._unbuffered(where.get("id")):
            self.flush(table)
        spec = _spec(table)
        if table in CONFIG_TABLES and not self._config_changed:
            raw = select_rows(spec, self.config_view(table), where, order_by, limit)
            return [decode_row(spec, list(spec.columns), r) for r in raw]
        try:
            key: tuple[Any, ...] | None = (tuple(where.items()), order_by, limit)
            cached = self._reads.get(table, {}).get(key)  # type: ignore[arg-type]
        except TypeError:  # a list of values: not cached
            key, cached = None, None
        if cached is None:
            cached = self._storage._select(self._conn, table, where, order_by=order_by,
                                           limit=limit)
            if key is not None:
                self._reads.setdefault(table, {})[key] = cached
        cols = list(spec.columns)
        return [decode_row(spec, cols, r) for r in cached]

    def _unbuffered(self, ids: Any) -> bool:
        """Whether memories named by ``ids`` (an id or a list) are surely not buffered."""
        if type(ids) is str:
            return ids not in self._buffered_ids
        return type(ids) is list and all(
            type(i) is str and i not in self._buffered_ids for i in ids)

    def config_view(self, table: str) -> list[Sequence[Any]]:
        """Every raw row of configuration ``table`` as this transaction sees it: kept in
        memory while the configuration is the committed one at ``config_tx``, read
        (and never kept) once this transaction changed it."""
        if self._config_changed:
            self.flush(table)
            return self._storage._select(self._conn, table, {})
        return self._storage.config_rows(self._conn, table, self.config_tx)

    def finish(self) -> None:
        """Send what is buffered and record the new head; called just before COMMIT."""
        self.flush()
        if self._effects_applied and not self.logged:
            raise StorageError("state changed without a log event; this is a bug in EngramDB")
        if self.logged and self._config_changed:
            self._exec(
                "UPDATE chain_head SET seq = ?, hash = ?, tx = ?, recorded_at = ?, config_tx = ? "
                "WHERE id = 1",
                [self._head.seq, self._head.hash, self._head.tx, self._head.recorded_at,
                 self._head.tx],
            )
        elif self.logged:
            self._exec(
                "UPDATE chain_head SET seq = ?, hash = ?, tx = ?, recorded_at = ? WHERE id = 1",
                [self._head.seq, self._head.hash, self._head.tx, self._head.recorded_at],
            )
