"""Prepared writes: built before the chain lock, applied in one statement.

A write through :meth:`PostgresStorage.write` holds the chain-head lock from
its first statement to its COMMIT: across at least one round trip to the
client and the engine's work between them. With many writer processes on a
few cores that hold is mostly the writer waiting to be scheduled again, and
every other writer waits behind it.

A prepared write (:meth:`PostgresStorage.prepare`) does the engine's work
first, without the lock, and sends the result as one call of
``engram_append`` (a procedure, migration 0023), one statement and one round
trip: the server takes the lock, numbers the transaction and its events, fills
the placeholders, computes the commitments and chain hashes, inserts the rows,
moves the head, queues the NOTIFY, commits and (with early lock release) waits
for the flush. The lock is held only while
the server runs that statement, never while a client runs.

What the server decides is exactly what a locked write takes from the head:
``tx`` (head.tx + 1), ``recorded_at`` (the client's clock reading, sent with
the call, or the head's if that is later: transaction time never goes
backwards), each event's ``seq`` and ``prev_hash``. The client builds rows,
payloads and envelopes with *holes* for them, random 18-digit numbers
(:attr:`PreparedWriteTx.tx`, :attr:`PreparedWriteTx.recorded_at`) wherever
the engine put the transaction number or time; the payloads and envelopes are
the canonical JSON the engine hashes, so the server's digit-for-digit
replacement yields the very bytes a locked write would have hashed, and
``verify`` recomputes the same hashes. A write whose own values hold a hole's
digits anywhere but where the engine put the hole (inside a caller's string, in a
longer number) raises :class:`Unprepared` and runs under the lock, so the
replacement never changes a caller's value; the time hole lies in the years 5138 to
8307, later than any clock, so a check the engine makes against "now" that
passes with it passes with the real time too.

What a prepared write may read is the configuration (who may write where,
with which settings and schemas: ``CONFIG_TABLES``), kept in memory under
the ``config_tx`` it was read at; ``engram_append`` refuses the write if the
configuration changed since, so no write is ever applied under a grant,
setting or schema that was no longer in force when it committed. Anything
else (current memories, idempotency keys, a compare-and-swap, a search)
raises :class:`~engramdb.storage.base.Unprepared` before anything is sent,
and the engine runs the write under the lock instead.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg_pool import PoolTimeout

from engramdb.codec import canonical, canonical_payload, from_micros, random_bytes, to_micros
from engramdb.errors import InvalidInput, StorageError
from engramdb.model import Event
from engramdb.storage.base import Effect, Head, Insert, RawEvent, Row, Unprepared, WriteTx
from engramdb.storage.postgres.append_call import call_append
from engramdb.storage.postgres.combiner import Refused
from engramdb.storage.postgres.errors import is_connection_loss, translate
from engramdb.storage.postgres.listener import CHANNEL
from engramdb.storage.postgres.pgarray import binary_array as _array
from engramdb.storage.schema import CONFIG_TABLES, TABLES
from engramdb.storage.sql import decode_row, encode_row
from engramdb.storage.sql_where import select_rows
from engramdb.storage.words import stored_words

if TYPE_CHECKING:
    from engramdb.storage.postgres import PostgresStorage

__all__ = ["PreparedWrite", "PreparedWriteTx", "config_rows"]

# A row's JSON as json.dumps(row, ensure_ascii=False, separators=(",", ":")) writes it,
# by one encoder made once (json.dumps with any option builds a JSONEncoder per call),
# called as JSONEncoder.encode calls it but without building it again each call (a
# stored row is flat: its JSON columns are text already, encode_row).
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_JSON_C: Any = json.encoder  # its C functions are not in the type stubs
_C_ROW = (None if _JSON_C.c_make_encoder is None else _JSON_C.c_make_encoder(
    None, _ROW_ENCODER.default, _JSON_C.encode_basestring, None, ":", ",", False, False,
    True))


def _row_json(row: dict[str, Any]) -> str:
    if _C_ROW is None:  # pragma: no cover - CPython always has the C encoder
        return _ROW_ENCODER.encode(row)
    try:
        return "".join(_C_ROW(row, 0))
    except RecursionError as exc:  # where the encoder's own check says so
        raise ValueError("Circular reference detected") from exc

# pgvector's limit on a vector's dimensions: the vectors of one call travel end to end.
_MAX_DIMS = 16_000


class _Entropy:
    """Random bytes from the operating system (:func:`~engramdb.codec.random_bytes`),
    taken once per write rather than once per salt and placeholder."""

    __slots__ = ("_at", "_buf")

    def __init__(self, size: int = 96) -> None:
        self._buf = random_bytes(size)
        self._at = 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._buf):
            self._buf, self._at = random_bytes(max(96, n)), 0
        out = self._buf[self._at:self._at + n]
        self._at += n
        return out


def _below(n: int, entropy: _Entropy) -> int:
    """A random number in ``[0, n)`` for ``n`` below 2**60."""
    return int.from_bytes(entropy.take(12), "big") % n


def _hole(taken: set[int], entropy: _Entropy, low: int = 3 * 10**17,
          high: int = 9 * 10**17) -> int:
    """A random 18-digit number in ``[low, high)``, unlike any in ``taken``:
    unguessable (its digits are what the server replaces; :func:`_check_holes`
    keeps a write that holds them anyway off the prepared path). 96 random bits
    reduced modulo the range: the bias is below 2**-36."""
    while True:
        n = low + _below(high - low, entropy)
        if n not in taken:
            taken.add(n)
            return n


# Element types of the binary arrays sent (pg_type OIDs: text, bytea, int8).
_TEXT, _BYTEA, _INT8 = 25, 17, 20
def _utf8(text: str) -> bytes:
    if "\x00" in text:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return text.encode("utf-8")


def _texts(values: Sequence[str | None]) -> bytes:
    """A binary ``text[]`` of ``values`` (None is NULL)."""
    if len(values) == 1 and values[0] is not None:  # a single write's: one element
        item = _utf8(values[0])
        return _ONE_TEXT + _LENGTH.pack(len(item)) + item
    return _array(_TEXT, [None if v is None else _utf8(v) for v in values])


# The head of a one-element, NULL-free binary text[] (pgarray.binary_array's).
_ONE_TEXT = struct.pack(">iiIii", 1, 0, _TEXT, 1, 1)
_LENGTH = struct.Struct(">i")
# (table, columns) of a group of rows -> its binary table-name and column-list arrays,
# the same for every write of that shape (a memory row's: a handful of shapes).
_SHAPES: dict[tuple[tuple[str, tuple[str, ...]], ...], tuple[bytes, bytes]] = {}


def _shape_arrays(keys: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[bytes, bytes]:
    hit = _SHAPES.get(keys)
    if hit is None:
        hit = (_array(_TEXT, [t.encode() for t, _ in keys]),
               _array(_TEXT, [",".join(c).encode() for _, c in keys]))
        if len(_SHAPES) < 256:
            _SHAPES[keys] = hit
    return hit


def _size(vector: Any) -> int:
    """How many values ``vector`` (an array, or a list of floats) holds."""
    return vector.size if type(vector) is np.ndarray else int(np.asarray(vector).size)


def _big_endian(vector: Any) -> np.ndarray:
    """``vector``'s values as big-endian float32, flat (pgvector's binary form's body)."""
    if type(vector) is np.ndarray and vector.dtype == np.float32 and vector.ndim == 1:
        return vector.astype(">f4")  # the engine's vectors: one conversion
    return np.asarray(vector, dtype=np.float32).reshape(-1).astype(">f4")


def _placed(value: Any, holes: frozenset[int], found: dict[int, int]) -> None:
    """Count in ``found`` each time ``value`` holds one of ``holes`` as a number (where
    the engine put it). Plain dicts, lists and ints are told by their exact type, the
    cheap test on this path; other mappings and sequences are walked the same way."""
    kind = type(value)
    if kind is int:
        if value in holes:
            found[value] = found.get(value, 0) + 1
    elif kind is dict or kind is list or kind is tuple:
        # A plain int inside is tested here, not by a call per value (a memory row
        # holds a dozen, four of them the holes themselves).
        for v in (value.values() if kind is dict else value):
            kv = type(v)
            if kv is int:
                if v in holes:
                    found[v] = found.get(v, 0) + 1
            elif kv not in _LEAVES:
                _placed(v, holes, found)
    elif isinstance(value, Mapping):
        _placed(dict(value), holes, found)
    elif isinstance(value, (list, tuple)):
        _placed(list(value), holes, found)
    elif isinstance(value, int) and not isinstance(value, bool) and int(value) in holes:
        found[int(value)] = found.get(int(value), 0) + 1


# Values that never hold a hole as a number (an int subclass such as bool is checked
# by isinstance in _placed; str and float are the bulk of what is walked).
_LEAVES = frozenset({str, float, bool, type(None)})


def _check_holes(text: str, value: Any, holes: Sequence[int]) -> None:
    """Refuse to prepare a write whose encoded ``text`` holds a hole's digits anywhere but
    where the engine put the hole itself (inside a caller's string or a longer number):
    the server's digit-for-digit replacement would change that value too. Such a write
    runs under the lock, so the guarantee is exact rather than merely very likely."""
    counts = {hole: text.count(str(hole)) for hole in holes}
    if not any(counts.values()):
        return
    found: dict[int, int] = {}
    _placed(value, frozenset(holes), found)
    if any(found.get(hole, 0) != n for hole, n in counts.items()):
        raise Unprepared("a value written holds the digits of a placeholder")


def config_rows(store: PostgresStorage, table: str, config_tx: int) -> list[Sequence[Any]]:
    """Raw rows of configuration ``table`` as of ``config_tx``, for a prepared write.

    Kept rows tagged ``config_tx`` are returned as they are. Otherwise the table is
    read with the current ``config_tx`` in one statement (one snapshot); if that
    is not ``config_tx`` the write was prepared on an older configuration:
    :class:`Unprepared` (again), and the next write starts from the new one.
    """
    cache: dict[str, tuple[int, list[Sequence[Any]]]] = store.__dict__.setdefault("_config", {})
    hit = cache.get(table)
    if hit is not None and hit[0] == config_tx:
        return hit[1]
    cols = list(TABLES[table].columns)
    sql = (f"SELECT h.config_tx, {', '.join('t.' + c for c in cols)} FROM chain_head h "
           f"LEFT JOIN {table} t ON true WHERE h.id = 1")
    try:
        with store._get_pool().connection() as conn:
            found = conn.execute(sql).fetchall()
    except psycopg.Error as exc:
        store._failed(exc)
        raise translate(exc) from exc
    tag = int(found[0][0])
    rows: list[Sequence[Any]] = [tuple(r[1:]) for r in found
                                 if any(v is not None for v in r[1:])]
    cache[table] = (tag, rows)
    if tag != config_tx:
        store.config_epoch = tag
        raise Unprepared("the configuration changed while this write was prepared", again=True)
    return rows


class PreparedWriteTx(WriteTx):
    """A write transaction built without the lock; :meth:`send` applies it in one call."""

    def __init__(self, storage: PostgresStorage, config_tx: int) -> None:
        self._storage = storage
        self.config_tx = self.fixed_config = config_tx
        self.single_write = True  # engine/writes.write_prepared: one remember
        self._holes: set[int] = set()
        self._entropy = _Entropy()
        self.tx = _hole(self._holes, self._entropy)
        # Later than any clock reading: a check like valid_to > recorded_at that
        # passes with it passes with the real time (one that fails raises, and the
        # engine runs the write under the lock).
        self.recorded_at = _hole(self._holes, self._entropy, 10**17, 2 * 10**17)
        self._commit_hole = self._entropy.take(16).hex()
        # (table, columns) -> rows as JSON objects, in the order first applied
        self._rows: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._events: list[tuple[Any, ...]] = []
        self._vectors: list[tuple[str, int, np.ndarray]] = []
        self._dims = 0  # the values of every vector in _vectors
        self.stamped: Head | None = None
        self._times: tuple[datetime | None, datetime | None] | None = None  # stamp_time's
        # Sent, and the connection lost before the answer: it may have committed.
        self.outcome_unknown = False

    @property
    def head(self) -> Head:
        raise Unprepared("a prepared write does not know the head before it is applied")

    def apply(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if not isinstance(effect, Insert):
                raise Unprepared("a compare-and-swap runs under the chain lock")
            spec = TABLES.get(effect.table)
            if spec is None:
                raise StorageError(f"unknown table {effect.table!r}")
            if spec.name in CONFIG_TABLES:
                raise Unprepared("configuration changes run under the chain lock")
            row = encode_row(spec, effect.row)
            if "row_tx" in spec.bookkeeping:
                row["row_tx"] = self.tx
            if "words" in spec.bookkeeping:  # as SqlWriteTx stores them (storage/words.py)
                row["words"] = stored_words(row.get("text"))
            text = _row_json(row)
            _check_holes(text, row, (self.tx, self.recorded_at))
            # Sent as this text (arguments): each row is encoded once.
            self._rows.setdefault((spec.name, tuple(row)), []).append(text)

    def log(self, kind: str, *, actor: str, namespace: str | None, subject_ref: str | None,
            payload: Mapping[str, Any]) -> Event:
        salt = self._entropy.take(16)
        try:
            # The bytes canonical() writes (a single insert's payload without the
            # encoder's per-key work: codec.insert_payload, as the SQLite writer logs it).
            body = canonical_payload(payload).decode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"event payload is not JSON: {exc}") from exc
        _check_holes(body, payload, (self.tx, self.recorded_at))
        seq_hole = _hole(self._holes, self._entropy)
        # The fields joined by NUL, which no mark holds (digits, hex): a mark is found in
        # the joined text exactly when it is inside one of the fields.
        fields = "\x00".join([f for f in (kind, namespace, actor, subject_ref) if f is not None])
        for mark in (str(self.tx), str(self.recorded_at), str(seq_hole), self._commit_hole):
            if mark in fields:
                raise Unprepared("a value written holds the digits of a placeholder")
        envelope = canonical({
            "seq": seq_hole, "tx": self.tx, "kind": kind, "namespace": namespace,
            "actor": actor, "recorded_at": self.recorded_at, "subject_ref": subject_ref,
            "commitment": self._commit_hole,
        }).decode("utf-8")
        self._events.append((kind, namespace, actor, subject_ref, envelope, str(seq_hole),
                             salt, body))
        return Event(seq=0, tx=self.tx, kind=kind, namespace=namespace, actor=actor,
                     recorded_at=from_micros(self.recorded_at),  # type: ignore[arg-type]
                     subject_ref=subject_ref, payload=payload, commitment="", prev_hash="",
                     hash="")

    def put_vectors(self, items: Sequence[tuple[str, int, np.ndarray]]) -> None:
        self._vectors.extend(items)
        self._dims += sum(_size(v) for _, _, v in items)
        if self._dims > _MAX_DIMS:
            raise Unprepared("more vectors than one call carries")

    def copy_vector(self, memory_id: str, from_version: int, to_version: int) -> None:
        raise Unprepared("copying a stored vector reads it under the chain lock")

    def fetch(self, table: str, where: Mapping[str, Any], *, order_by: str | None = None,
              limit: int | None = None) -> list[Row]:
        if table not in CONFIG_TABLES:
            raise Unprepared(f"reading {table} runs under the chain lock")
        spec = TABLES[table]
        raw = select_rows(spec, self.config_view(table), where, order_by, limit)
        return [decode_row(spec, list(spec.columns), r) for r in raw]

    def config_view(self, table: str) -> list[Sequence[Any]]:
        """Every raw row of configuration ``table`` as of :attr:`config_tx`."""
        return config_rows(self._storage, table, self.config_tx)

    def append_raw(self, event: RawEvent) -> None:
        raise Unprepared("an import runs under the chain lock")

    def erase(self, memories: Sequence[tuple[str, int]], seqs: Sequence[int]) -> dict[str, int]:
        raise Unprepared("an erasure runs under the chain lock")

    # -- applying it -----------------------------------------------------------------

    def stamp(self, value: int) -> int:
        """The transaction number this write got, for its placeholder (else ``value``)."""
        if self.stamped is not None and value == self.tx:
            return self.stamped.tx
        return value

    def stamp_time(self, value: datetime | None) -> datetime | None:
        """The time this write was recorded at, for its placeholder (else ``value``)."""
        stamped = self.stamped
        if stamped is None or value is None:
            return value
        times = self._times
        if times is None:  # the placeholder's time and the real one, made once a write
            times = (from_micros(self.recorded_at), from_micros(stamped.recorded_at))
            self._times = times
        if value.tzinfo is not None:
            # An aware time is the placeholder's instant exactly when it equals it
            # (one comparison instead of a conversion to microseconds each call).
            if value != times[0]:
                return value
        elif to_micros(value) != self.recorded_at:  # naive: taken as UTC, as to_micros does
            return value
        return times[1]

    def arguments(self) -> list[bytes | None]:
        """The parameters of ``engram_append`` for what this write holds, encoded as
        :func:`.append_call.call_append` sends them: numbers and single texts as text,
        the arrays in PostgreSQL's binary array form (no quoting on this side, no
        unquoting on the server's), the vectors in pgvector's binary form.

        Raises:
            psycopg.DataError: a text holds a NUL byte, which PostgreSQL text cannot
                (as psycopg's own text dumpers refuse it).
        """
        shape = tuple(self._rows)
        tables, cols = _shape_arrays(shape)
        rows = [_utf8("[" + ",".join(group) + "]") for group in self._rows.values()]
        ev = list(zip(*self._events, strict=True))
        now = max(time.time_ns() // 1000, self._storage.last_recorded_at)
        vecs = None
        if len(self._vectors) == 1:  # a single write's: no concatenation
            flat = _big_endian(self._vectors[0][2])
            vecs = struct.pack(">HH", flat.size, 0) + flat.tobytes()
        elif self._vectors:
            flat = np.concatenate([_big_endian(v) for _, _, v in self._vectors])
            vecs = struct.pack(">HH", flat.size, 0) + flat.tobytes()
        dim = _size(self._vectors[0][2]) if self._vectors else 0
        return [str(self.config_tx).encode(), str(now).encode(), str(self.tx).encode(),
                str(self.recorded_at).encode(), tables, _array(_TEXT, rows),
                cols, _texts(ev[0]), _texts(ev[1]), _texts(ev[2]),
                _texts(ev[3]), _texts(ev[4]), _texts(ev[5]), self._commit_hole.encode(),
                _array(_BYTEA, list(ev[6])), _texts(ev[7]),
                _texts([i for i, _, _ in self._vectors]),
                _array(_INT8, [struct.pack(">q", int(v)) for _, v, _ in self._vectors]),
                vecs, str(dim).encode(), self._storage._durable_sql.encode(), CHANNEL.encode()]

    @property
    def empty(self) -> bool:
        return not (self._events or self._rows or self._vectors)

    @property
    def logged(self) -> bool:
        return bool(self._events)


class PreparedWrite:
    """:meth:`PostgresStorage.prepare`: the block builds the write, its end applies it.

    Inside the block this thread's reads of anything but the configuration raise
    :class:`Unprepared` (they would read state the write cannot check under the
    lock), and its reads of the configuration are answered from the write's view
    (:meth:`SqlStorage.config_scope`'s, set and restored here directly). On a clean
    exit the write is sent as one ``CALL engram_append(...)``, which commits and,
    when writes release the lock before their flush, runs the durability barrier:
    one statement, one round trip. A class rather than a generator's context: every
    single ``remember`` enters one, and the generator machinery cost more than the
    rest of the enter and exit together.
    """

    __slots__ = ("_outer", "_store", "_w")

    def __init__(self, store: PostgresStorage) -> None:
        self._store = store

    def __enter__(self) -> PreparedWriteTx:
        store = self._store
        local = store._local
        if getattr(local, "writing", False) or getattr(local, "prepared", False):
            raise StorageError("a write transaction is already open in this thread; nest "
                               "work inside it instead of opening another")
        epoch = store.config_epoch
        if epoch is None:
            try:
                with store._get_pool().connection() as conn:
                    row = conn.execute(
                        "SELECT config_tx FROM chain_head WHERE id = 1").fetchone()
            except (psycopg.Error, PoolTimeout) as exc:
                store._failed(exc)
                raise translate(exc) from exc
            epoch = store.config_epoch = int(row[0])
        w = self._w = PreparedWriteTx(store, epoch)
        self._outer = getattr(local, "config_scope", None)
        local.prepared = True
        local.config_scope = w.config_view
        return w

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        local = self._store._local
        local.config_scope = self._outer
        local.prepared = False
        if kind is None and not self._w.empty:
            _send(self._store, self._w)


def _send(store: PostgresStorage, w: PreparedWriteTx) -> None:
    if not w.logged:
        raise StorageError("state changed without a log event; this is a bug in EngramDB")
    if w._vectors:
        store._type_vectors(_size(w._vectors[0][2]))
    try:
        args = w.arguments()  # a NUL in a text raises psycopg.DataError, as sent text would
        # Autocommit: the CALL is its own transaction, which the procedure commits. The
        # pool's getconn/putconn, not its connection(): that one also enters the
        # connection's own context, whose exit "commits" (nothing, in autocommit)
        # through the connection's lock on every call.
        if store.combiner is not None:
            seq, digest, tx, recorded_at, config_tx = store.combiner.submit(args)
        else:
            pool = store._get_pool()
            conn = pool.getconn()
            try:
                seq, digest, tx, recorded_at, config_tx = call_append(conn, args,
                                                                      store._vector_oid or 0)
            finally:
                pool.putconn(conn)
    except Refused as exc:  # by the combined procedure, this write alone: nothing applied
        if exc.state == "EG001" and exc.detail:
            store.config_epoch = int(exc.detail)
            raise Unprepared("the configuration changed", again=True) from exc
        raise translate(exc.as_driver_error()) from exc
    except psycopg.Error as exc:
        detail = getattr(getattr(exc, "diag", None), "message_detail", None)
        if exc.sqlstate == "EG001" and detail:
            store.config_epoch = int(detail)
            raise Unprepared("the configuration changed", again=True) from exc
        store._failed(exc)
        w.outcome_unknown = is_connection_loss(exc)
        raise translate(exc, committing=True) from exc
    except PoolTimeout as exc:
        raise translate(exc) from exc
    store.config_epoch = int(config_tx)
    store.last_recorded_at = max(store.last_recorded_at, int(recorded_at))
    w.stamped = Head(int(seq), digest.decode(), int(tx), int(recorded_at))
    if store._vector_dim is not None:
        store._indexer.kick()
