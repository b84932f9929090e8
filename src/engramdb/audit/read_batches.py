"""The stored form of the read audit since schema version 21: a batch per flush.

A flush of buffered reads is one ``reads.recorded`` event whose payload holds
the batch, dictionary-coded and compressed (:func:`pack`), and whose one
logged effect inserts a ``read_batches`` row naming that event. Beside it, the
same transaction writes one ``read_index`` row, two integers, per distinct
memory of the batch: ``(memory_key(id), seq)``. So ``who_read(memory)`` looks
the memory's key up in an index, decodes only the batches it names, and keeps
the reads whose memory id matches exactly (a key is a 48-bit hash; a
collision costs one extra decode, never a wrong answer).

``read_index`` rows are derived, not logged: :func:`derived_effects` computes
them from an event's payload, the same way on the write path, in ``verify``'s
replay and in ``import``, so they are checked like any state table.

Reads recorded before version 21 stay in ``reads`` and ``read_items``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engramdb.codec import canonical
from engramdb.storage.base import Insert

__all__ = ["derived_effects", "index_effects", "index_rows", "memory_key", "pack", "unpack"]

_KEY_BYTES = 6  # 48 bits: six bytes on disk in SQLite, a BIGINT on PostgreSQL


def memory_key(memory_id: str) -> int:
    """The fixed-width integer ``read_index`` files a memory id under."""
    return int.from_bytes(hashlib.sha256(memory_id.encode("utf-8")).digest()[:_KEY_BYTES], "big")


def pack(rows: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """``(recorded_at, batch)``: buffered reads in the form :func:`unpack` reads back.

    Each principal, namespace, memory id and query digest is written once per
    batch; a read is ``[principal, tx, microseconds after recorded_at, digest,
    memory, version, memory, version, ...]`` in dictionary indexes. The whole
    is compressed canonical JSON in base64 (a log payload is JSON text).
    """
    principals: dict[str, int] = {}
    namespaces: dict[str, int] = {}
    digests: dict[str | None, int] = {}
    memories: dict[tuple[str, int], int] = {}
    base = min(int(r["recorded_at"]) for r in rows)
    reads = []
    for r in rows:
        entry = [principals.setdefault(r["principal"], len(principals)), int(r["tx"]),
                 int(r["recorded_at"]) - base, digests.setdefault(r["query_digest"], len(digests))]
        for item in r["items"]:
            key = (str(item["id"]), namespaces.setdefault(item["namespace"], len(namespaces)))
            entry += [memories.setdefault(key, len(memories)), int(item["version"])]
        reads.append(entry)
    body = {"p": list(principals), "n": list(namespaces), "q": list(digests),
            "m": [[mid, ns] for mid, ns in memories], "r": reads}
    return base, base64.b64encode(zlib.compress(canonical(body), 9)).decode("ascii")


def _body(batch: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(batch)))
    return body


def unpack(seq: int, recorded_at: int, batch: str) -> list[dict[str, Any]]:
    """The reads of one batch, each shaped like a row of the older ``reads`` table."""
    body = _body(batch)
    out = []
    for n, entry in enumerate(body["r"]):
        pairs = list(zip(entry[4::2], entry[5::2], strict=True))
        out.append({
            "id": f"{seq}/{n}", "principal": body["p"][entry[0]], "tx": entry[1],
            "recorded_at": recorded_at + entry[2], "query_digest": body["q"][entry[3]],
            "items": [{"id": body["m"][m][0], "version": v} for m, v in pairs],
            "namespaces": sorted({body["n"][body["m"][m][1]] for m, _ in pairs}),
        })
    return out


def index_effects(seq: int, batch: str) -> list[Insert]:
    """The ``read_index`` rows of one batch: one per distinct memory key."""
    return index_rows(seq, (mid for mid, _ in _body(batch)["m"]))


def index_rows(seq: int, memory_ids: Iterable[Any]) -> list[Insert]:
    """:func:`index_effects` of the batch that :func:`pack` makes of reads naming
    ``memory_ids``, without decoding it again (the write path holds the reads)."""
    keys = sorted({memory_key(str(mid)) for mid in memory_ids})
    return [Insert("read_index", {"memory_key": k, "seq": seq}) for k in keys]


def derived_effects(payload: Mapping[str, Any]) -> list[Insert]:
    """What an event's payload implies beyond its logged effects: its batch's index rows."""
    batch = payload.get("batch")
    if not isinstance(batch, str):
        return []
    out: list[Insert] = []
    for eff in payload.get("effects") or []:
        if eff.get("op") == "insert" and eff.get("table") == "read_batches":
            out += index_effects(int(eff["row"]["seq"]), batch)
    return out
