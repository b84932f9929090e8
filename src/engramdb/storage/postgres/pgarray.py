"""PostgreSQL's binary form of a one-dimensional array (``array_send``/``array_recv``),
as prepared writes send their arrays and the combined call answers with them."""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["array_items", "binary_array", "joined_arrays", "length_prefixed"]

_ARRAY_HEAD = struct.Struct(">iiIii")  # ndim, has nulls, element type, length, lower bound
_LENGTH = struct.Struct(">i")
_NULL = _LENGTH.pack(-1)


def binary_array(oid: int, items: Sequence[bytes | None]) -> bytes:
    """A one-dimensional array of ``items`` (each already in the element type's binary
    form; None is NULL) in PostgreSQL's binary array format (``array_recv``)."""
    if not items:
        return struct.pack(">iiI", 0, 0, oid)
    if len(items) == 1 and items[0] is not None:  # a single write's arrays
        return _ARRAY_HEAD.pack(1, 0, oid, 1, 1) + _LENGTH.pack(len(items[0])) + items[0]
    parts = [_ARRAY_HEAD.pack(1, int(any(i is None for i in items)), oid, len(items), 1)]
    for item in items:
        parts.append(_NULL if item is None else _LENGTH.pack(len(item)) + item)
    return b"".join(parts)


def array_items(data: bytes) -> list[bytes | None]:
    """The elements of a one-dimensional array in PostgreSQL's binary form
    (:func:`binary_array`'s inverse; each element in its type's binary form)."""
    if not data or _LENGTH.unpack_from(data)[0] == 0:
        return []
    return length_prefixed(data, 20, _LENGTH.unpack_from(data, 12)[0])


def length_prefixed(data: bytes, at: int = 0, count: int = -1) -> list[bytes | None]:
    """``count`` values (all, if -1) from ``data`` at ``at``, each its length (4 bytes, big
    endian; -1 is NULL) and its bytes."""
    items: list[bytes | None] = []
    while at < len(data) and count != len(items):
        size = _LENGTH.unpack_from(data, at)[0]
        at += 4
        if size < 0:
            items.append(None)
        else:
            items.append(data[at:at + size])
            at += size
    return items


def joined_arrays(oid: int, arrays: Sequence[bytes | None]) -> tuple[bytes, list[int]]:
    """One array of all the elements of ``arrays`` (binary, one-dimensional, of element
    type ``oid``; None is an empty one), in order, and how many each held: their
    elements are copied as they are, not decoded."""
    counts: list[int] = []
    bodies: list[bytes] = []
    nulls = 0
    for data in arrays:
        if not data or _LENGTH.unpack_from(data)[0] == 0:
            counts.append(0)
            continue
        counts.append(_LENGTH.unpack_from(data, 12)[0])
        nulls |= _LENGTH.unpack_from(data, 4)[0]
        bodies.append(data[20:])
    total = sum(counts)
    if not total:
        return struct.pack(">iiI", 0, 0, oid), counts
    return _ARRAY_HEAD.pack(1, nulls, oid, total, 1) + b"".join(bodies), counts
