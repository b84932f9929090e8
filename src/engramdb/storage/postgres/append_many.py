"""``CALL engram_append_many``: K prepared writes in one call (migration 0040).

Each write is the parameter list :meth:`.prepared.PreparedWriteTx.arguments`
builds for ``engram_append`` (22 values, the arrays in PostgreSQL's binary form)
and a *token* (:func:`new_token`). The K lists are merged here into the
procedure's flattened arrays (each write's tables, events and vectors end to end,
with their counts), sent with ``PQsendQueryPrepared`` as :mod:`.append_call` sends
one write, and its answer split back into one :class:`Answer` per write: the
write's results, or its own error (one write failing fails no other), or
``replayed``: the token was applied before, and these are that write's results.
"""

from __future__ import annotations

import functools
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import ExecStatus

from engramdb.storage.postgres.append_call import run_prepared
from engramdb.storage.postgres.pgarray import array_items, binary_array

__all__ = ["MAX_DIMS", "Answer", "call_many", "new_token"]

_NAME = b"engramdb_append_many_0040"
_SQL = (b"CALL engram_append_many(" + b", ".join(b"$%d" % i for i in range(1, 27))
        + b", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
_INT4, _INT8, _TEXT, _BYTEA = 23, 20, 25, 17
_TEXTS, _INT8S, _INT4S, _BYTEAS = 1009, 1016, 1007, 1001
MAX_DIMS = 16_000  # pgvector's limit: the vectors of one call travel as one vector


@functools.lru_cache(maxsize=8)  # one list per vector type, not one per call
def _types(vector_oid: int) -> tuple[int, ...]:
    return (_TEXTS, _INT8S, _INT8S, _TEXTS, _TEXTS, _TEXTS,
            _INT4S, _TEXTS, _TEXTS, _TEXTS,
            _INT4S, *[_TEXTS] * 6, _BYTEAS, _TEXTS,
            _INT4S, _TEXTS, _INT8S, vector_oid, _INT4S,
            _TEXT, _TEXT)


# Everything binary but the barrier and the channel (text), as in append_call.
_FORMATS = [1] * 24 + [0, 0]


def new_token() -> str:
    """A write's token: this host's clock in microseconds (16 digits, so tokens sort by
    time: the procedure forgets old ones by a range of its primary key), and 128 random
    bits."""
    return f"{time.time_ns() // 1000:016d}-{os.urandom(16).hex()}"


@dataclass(frozen=True)
class Answer:
    """What the procedure did with one write: ``state`` is ``""`` (applied),
    ``"replayed"`` (applied before, by a call with the same token: the results are
    that write's) or the SQLSTATE of the error that refused it alone."""

    seq: int
    hash: str
    tx: int
    recorded_at: int
    config_tx: int
    state: str
    message: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.state in ("", "replayed")

    def results(self) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """As :func:`.append_call.call_append` returns them (text)."""
        return (str(self.seq).encode(), self.hash.encode(), str(self.tx).encode(),
                str(self.recorded_at).encode(), str(self.config_tx).encode())


def dims(args: Sequence[bytes | None]) -> int:
    """How many vector elements a write's arguments carry."""
    vec = args[18]
    return 0 if vec is None else struct.unpack_from(">H", vec)[0]


def merge(writes: Sequence[tuple[str, Sequence[bytes | None]]]) -> list[bytes | None]:
    """The parameters of ``engram_append_many`` for ``writes`` ((token, arguments of
    ``engram_append``) each), all with the same barrier and channel."""
    if len({(a[20], a[21]) for _, a in writes}) != 1:
        raise ValueError("writes combined in one call share its durability barrier")
    ints: dict[int, list[bytes | None]] = {i: [] for i in (0, 1)}
    singles: dict[int, list[bytes | None]] = {i: [] for i in (2, 3, 13)}
    flat: dict[int, list[bytes | None]] = {i: [] for i in (4, 5, 6, *range(7, 13), 14, 15, 16,
                                                           17)}
    counts: dict[int, list[bytes]] = {4: [], 7: [], 16: []}
    dims_: list[bytes] = []
    vecs: list[bytes] = []
    for _, args in writes:
        for i in ints:
            ints[i].append(struct.pack(">q", int(args[i] or b"0")))
        for i in singles:
            singles[i].append(args[i])
        for i in flat:
            items = array_items(args[i] or b"")
            flat[i].extend(items)
            if i in counts:
                counts[i].append(struct.pack(">i", len(items)))
        vec = args[18]
        dims_.append(struct.pack(">i", int(args[19] or b"0")))
        if vec is not None:
            vecs.append(vec[4:])
    total = sum(len(v) for v in vecs) // 4
    vector = struct.pack(">HH", total, 0) + b"".join(vecs) if vecs else None
    first = writes[0][1]
    return [binary_array(_TEXT, [t.encode() for t, _ in writes]),
            binary_array(_INT8, ints[0]), binary_array(_INT8, ints[1]),
            binary_array(_TEXT, singles[2]), binary_array(_TEXT, singles[3]),
            binary_array(_TEXT, singles[13]),
            binary_array(_INT4, list(counts[4])), binary_array(_TEXT, flat[4]),
            binary_array(_TEXT, flat[5]), binary_array(_TEXT, flat[6]),
            binary_array(_INT4, list(counts[7])),
            *[binary_array(_TEXT, flat[i]) for i in range(7, 13)],
            binary_array(_BYTEA, flat[14]), binary_array(_TEXT, flat[15]),
            binary_array(_INT4, list(counts[16])), binary_array(_TEXT, flat[16]),
            binary_array(_INT8, flat[17]), vector, binary_array(_INT4, list(dims_)),
            first[20], first[21]]


def call_many(conn: psycopg.Connection[Any], writes: Sequence[tuple[str, Sequence[bytes | None]]],
              vector_oid: int) -> list[Answer]:
    """Apply ``writes`` ((token, arguments of ``engram_append``) each) in one call on
    ``conn`` (autocommit); one :class:`Answer` per write, in order.

    Raises:
        psycopg.Error: the call failed as a whole (nothing of it committed, unless the
            connection was lost on the way back: then it may have).
    """
    params = merge(writes)
    for i in (24, 25):
        param = params[i]
        if param is not None and b"\x00" in param:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    result = run_prepared(conn, _NAME, _SQL, _types(vector_oid), params, _FORMATS,
                          result_format=1)
    if result.status != ExecStatus.TUPLES_OK:
        raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
    cols = [array_items(result.get_value(0, c) or b"") for c in range(8)]
    out = []
    for w in range(len(writes)):
        seq, digest, tx, rec, cfg, state, msg, det = (col[w] or b"" for col in cols)
        out.append(Answer(struct.unpack(">q", seq)[0], digest.decode(),
                          struct.unpack(">q", tx)[0], struct.unpack(">q", rec)[0],
                          struct.unpack(">q", cfg)[0], state.decode(), msg.decode(),
                          det.decode()))
    return out
