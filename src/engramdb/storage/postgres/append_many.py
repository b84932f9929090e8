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
from engramdb.storage.postgres.pgarray import array_items, binary_array, joined_arrays

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
    ``engram_append``) each), all with the same barrier and channel. The writes'
    arrays are joined end to end (:func:`.pgarray.joined_arrays`), with their counts."""
    if len({(a[20], a[21]) for _, a in writes}) != 1:
        raise ValueError("writes combined in one call share its durability barrier")
    by_param = list(zip(*(args for _, args in writes), strict=True))
    joined: dict[int, bytes] = {}
    counts: dict[int, list[int]] = {}
    for i in (4, 5, 6, *range(7, 13), 14, 15, 16, 17):
        oid = _BYTEA if i == 14 else _INT8 if i == 17 else _TEXT
        joined[i], counts[i] = joined_arrays(oid, by_param[i])
    vecs = [v[4:] for v in by_param[18] if v is not None]
    vector = (struct.pack(">HH", sum(len(v) for v in vecs) // 4, 0) + b"".join(vecs)
              if vecs else None)

    def ints(oid: int, values: Sequence[Any]) -> bytes:  # bigint[] or integer[]
        return binary_array(oid, [struct.pack(">q" if oid == _INT8 else ">i", int(v or 0))
                                  for v in values])

    first = writes[0][1]
    return [binary_array(_TEXT, [t.encode() for t, _ in writes]),
            ints(_INT8, by_param[0]), ints(_INT8, by_param[1]),
            binary_array(_TEXT, by_param[2]), binary_array(_TEXT, by_param[3]),
            binary_array(_TEXT, by_param[13]),
            ints(_INT4, counts[4]), joined[4], joined[5], joined[6],
            ints(_INT4, counts[7]), *[joined[i] for i in range(7, 13)],
            joined[14], joined[15],
            ints(_INT4, counts[16]), joined[16], joined[17], vector,
            ints(_INT4, by_param[19]), first[20], first[21]]


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
