"""What combining writes would buy 16 PostgreSQL writers: the same calls, K per call.

Sizes a combiner (several writers' single writes applied by one call and one
commit) before anyone builds one. The ``CALL engram_append`` arguments of real
single-memory ``remember`` calls are captured, then replayed into a fresh
database of the same server (``tests.support.pg.PgServer`` with
``synchronous_commit = on``; early lock release and its barrier, as the bench
writers run) by ``NC`` client processes that do nothing else, each call
carrying ``K`` of the captured writes merged into one (the procedure's general
path: K memory rows, K events, one transaction). ``16x1`` is today's shape
with the engine's Python taken out; ``2x8`` what a combiner in front of 16
writers would send.

Merged calls are a sizing device, not a write path: only the first write of a
merged call has its placeholders filled (the others keep their own digits),
and K writes share one transaction number. Rows and events are still inserted,
hashed and chained by the server exactly as a call of K memories is, so the
server's CPU per memory is what a combined call costs, or a little more (one
statement per memory row where a combined procedure could insert them in one).

Reports per configuration: server CPU per memory (every PostgreSQL process,
``bench_writers._server_cpu``), the replaying clients' CPU per memory, and
memories/s. Run from a checkout:
``python bench/bench_combine.py [--writes 2400] [--shapes 16x1,16x2,16x4,2x8] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_postgres import Corpus, _server  # noqa: E402
from bench.bench_writers import _server_cpu  # noqa: E402

# The CALL's binary array parameters (append_call._FORMATS) and the vectors' one.
_ARRAYS = (4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17)
_VECTORS = 18


def items(data: bytes, at: int, count: int) -> list[bytes | None]:
    """``count`` length-prefixed values of ``data`` from ``at`` (length -1: None)."""
    out: list[bytes | None] = []
    for _ in range(count):
        size = struct.unpack(">i", data[at:at + 4])[0]
        at += 4
        out.append(None if size < 0 else data[at:at + size])
        at += max(size, 0)
    return out


def _elements(data: bytes) -> tuple[int, list[bytes | None]]:
    """A one-dimensional binary array: its element type and elements (None: NULL)."""
    ndim, _nulls, oid = struct.unpack(">iiI", data[:12])
    if ndim == 0:
        return oid, []
    return oid, items(data, 20, struct.unpack(">i", data[12:16])[0])


def _array(oid: int, items: list[bytes | None]) -> bytes:
    if not items:
        return struct.pack(">iiI", 0, 0, oid)
    parts = [struct.pack(">iiIii", 1, int(any(i is None for i in items)), oid, len(items), 1)]
    parts += [struct.pack(">i", -1) if i is None else struct.pack(">i", len(i)) + i
              for i in items]
    return b"".join(parts)


def merge(calls: list[list[Any]]) -> list[Any]:
    """One call's arguments carrying every write of ``calls`` (see the module)."""
    if len(calls) == 1:
        return calls[0]
    out = list(calls[0])
    for i in _ARRAYS:
        oid = _elements(calls[0][i])[0]
        out[i] = _array(oid, [e for c in calls for e in _elements(c[i])[1]])
    floats = b"".join(c[_VECTORS][4:] for c in calls)  # pgvector: dim, unused, floats
    out[_VECTORS] = struct.pack(">HH", len(floats) // 4, 0) + floats
    return out


def _client(url: str, calls: list[list[Any]], vector_oid: int, barrier: Any,
            results: Any) -> None:
    import psycopg

    from engramdb.storage.postgres.append_call import _prepare, call_append

    with psycopg.connect(url, autocommit=True) as conn:
        _prepare(conn, vector_oid)
        barrier.wait()
        cpu = time.process_time()
        for args in calls:
            call_append(conn, args, vector_oid)
        results.put(time.process_time() - cpu)


def _open(url: str) -> Any:
    import engramdb
    from engramdb.retrieval.embed import LocalEmbedder

    return engramdb.open(url, embedder=LocalEmbedder(), release_before_flush=True)


def capture(url: str, count: int) -> list[list[Any]]:
    """The arguments of ``count`` single-memory remembers' calls, as sent."""
    from engramdb.storage.postgres import prepared

    captured: list[list[Any]] = []
    original = prepared.call_append

    def recording(conn: Any, args: Any, oid: int) -> Any:
        captured.append(list(args))
        return original(conn, args, oid)

    prepared.call_append = recording  # type: ignore[assignment]
    try:
        db = _open(url)
        for draft in Corpus(seed=1, vocabulary=2000).drafts(count, layer="episodic"):
            db.remember(**draft)
        db.close()
    finally:
        prepared.call_append = original  # type: ignore[assignment]
    return captured


def replay(server: Any, name: str, captured: list[list[Any]], clients: int,
           per_call: int, warm: int = 50) -> dict[str, Any]:
    import psycopg

    from engramdb.storage.postgres.append_call import _prepare, call_append

    url = server.fresh_database(name)
    db = _open(url)
    db.storage._indexer.kick = lambda: None  # nothing indexed behind the writers' backs
    db.close()
    with psycopg.connect(url, autocommit=True) as conn:
        config = str(conn.execute("SELECT config_tx FROM chain_head").fetchone()[0]).encode()
        oid = int(conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0])
        _prepare(conn, oid)
        for args in captured[:warm]:
            call_append(conn, [config, *args[1:]], oid)
    writes = [[config, *a[1:]] for a in captured[warm:]]
    calls = [merge(writes[i:i + per_call]) for i in range(0, len(writes), per_call)]
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(url, calls[i::clients], oid, barrier, results))
             for i in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    server_cpu, start = _server_cpu(server.pid), time.perf_counter()
    client_cpu = sum(results.get(timeout=600) for _ in procs)
    seconds = time.perf_counter() - start
    server_cpu = _server_cpu(server.pid) - server_cpu
    for p in procs:
        p.join()
    with psycopg.connect(url, autocommit=True) as conn:
        stored = int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])
    if stored != warm + len(writes):
        raise RuntimeError(f"{stored} memories stored, {warm + len(writes)} sent")
    return {"memories_per_second": round(len(writes) / seconds),
            "server_cpu_us_per_memory": round(server_cpu / len(writes) * 1e6),
            "client_cpu_us_per_memory": round(client_cpu / len(writes) * 1e6)}


def run(writes: int, shapes: list[tuple[int, int]], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"cpus": os.cpu_count(),
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with _server() as server:
        captured = capture(server.fresh_database("capture"), writes + 50)
        for r in range(rounds):
            for clients, per_call in shapes:
                key = f"{clients}x{per_call}"
                out.setdefault(key, []).append(
                    replay(server, f"r{r}_{key}", captured, clients, per_call))
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2400)
    parser.add_argument("--shapes", default="16x1,16x2,16x4,2x8",
                        help="clients x writes per call, comma separated")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    shapes = [(int(a), int(b)) for a, b in (s.split("x") for s in args.shapes.split(","))]
    print(json.dumps(run(args.writes, shapes, args.rounds), indent=2))
