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

__all__ = ["Batch", "derived_effects", "index_effects", "index_rows", "key_rows", "memory_key",
           "pack", "unpack"]

_KEY_BYTES = 6  # 48 bits: six bytes on disk in SQLite, a BIGINT on PostgreSQL


def memory_key(memory_id: str) -> int:
    """The fixed-width integer ``read_index`` files a memory id under."""
    return int.from_bytes(hashlib.sha256(memory_id.encode("utf-8")).digest()[:_KEY_BYTES], "big")


class Batch:
    """Reads coded into the stored form as they arrive: :func:`pack`'s work, less at the end.

    :meth:`add` assigns a read's dictionary indexes (a few microseconds, no
    objects the collector keeps tracking); :meth:`finish` only encodes and
    compresses the coded body and hashes its memory ids for ``read_index``. The
    batch is byte for byte the one :func:`pack` makes of the same reads, and
    stays open after :meth:`finish` (a failed write is retried, or more reads
    join it).
    """

    __slots__ = ("_m", "_n", "_p", "_q", "_r", "count")

    def __init__(self) -> None:
        self.count = 0
        self._p: dict[str, int] = {}
        self._n: dict[str, int] = {}
        self._q: dict[str | None, int] = {}
        self._m: dict[tuple[str, int], int] = {}
        self._r: list[tuple[int, int, int, int, tuple[int, ...]]] = []

    def add(self, principal: str, tx: int, recorded_at: int, digest: str | None,
            items: Iterable[tuple[str, int, str]]) -> None:
        """One read: who, at which ``tx``, when (microseconds), its digest, ``(id, version,
        namespace)`` of each memory version it returned."""
        memories, namespaces = self._m, self._n
        flat: list[int] = []
        for mid, version, namespace in items:
            key = (str(mid), namespaces.setdefault(namespace, len(namespaces)))
            flat += (memories.setdefault(key, len(memories)), int(version))
        self._r.append((self._p.setdefault(principal, len(self._p)), int(tx),
                        int(recorded_at), self._q.setdefault(digest, len(self._q)),
                        tuple(flat)))
        self.count += 1

    def finish(self) -> tuple[int, str, list[int]]:
        """``(recorded_at, batch, keys)``: :func:`pack`'s pair and the batch's ``read_index``
        keys, sorted."""
        base = min(r[2] for r in self._r)
        body = {"p": list(self._p), "n": list(self._n), "q": list(self._q),
                "m": [[mid, ns] for mid, ns in self._m],
                "r": [[p, tx, at - base, q, *flat] for p, tx, at, q, flat in self._r]}
        batch = base64.b64encode(zlib.compress(canonical(body), 9)).decode("ascii")
        return base, batch, sorted({memory_key(mid) for mid, _ in self._m})


def pack(rows: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """``(recorded_at, batch)``: buffered reads in the form :func:`unpack` reads back.

    Each principal, namespace, memory id and query digest is written once per
    batch; a read is ``[principal, tx, microseconds after recorded_at, digest,
    memory, version, memory, version, ...]`` in dictionary indexes. The whole
    is compressed canonical JSON in base64 (a log payload is JSON text).
    """
    batch = Batch()
    for r in rows:
        batch.add(r["principal"], r["tx"], r["recorded_at"], r["query_digest"],
                  ((i["id"], i["version"], i["namespace"]) for i in r["items"]))
    base, text, _ = batch.finish()
    return base, text


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
    return key_rows(seq, sorted({memory_key(str(mid)) for mid in memory_ids}))


def key_rows(seq: int, keys: Iterable[int]) -> list[Insert]:
    """The ``read_index`` rows of batch ``seq`` for memory ``keys`` (sorted, distinct)."""
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
