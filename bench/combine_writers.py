"""A host-local combiner for 16 PostgreSQL writers, as a measurement only (issue 13).

The 16 writer processes of ``bench_writers.py`` run the engine's ``remember``
as it is, except that a prepared write's ``CALL engram_append`` arguments are
sent over a Unix socket to one leader process instead of to PostgreSQL. The
leader merges whatever writes are waiting (at most ``--max-per-call``) into one
call (``bench_combine.merge``) on one of ``--leader-connections`` connections,
and answers each writer with that call's result (``--leaders``: several leader
processes, the writers split among them). Beside it, in the same server
and the same run: the writers with their own calls (today's path) and 16 bare
psycopg clients, before and after.

This is not a write path: a merged call fills only its first write's
placeholders and gives its writes one transaction number (see
``bench_combine.py``), and nothing here survives a leader that dies. It
answers one question before a combiner is built: how much of a writer's cost
one call for several writers takes away, counting the leader's own CPU.

Run from a checkout: ``python bench/combine_writers.py [--order combined,direct]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.bench_writers as bw  # noqa: E402
from bench.bench_combine import items, merge  # noqa: E402
from bench.bench_postgres import _server  # noqa: E402

_LENGTH = struct.Struct(">I")


def _pack(values: list[bytes | None]) -> bytes:
    parts = [struct.pack(">H", len(values))]
    parts += [struct.pack(">i", -1) if v is None else struct.pack(">i", len(v)) + v
              for v in values]
    body = b"".join(parts)
    return _LENGTH.pack(len(body)) + body


def _unpack(body: bytes) -> list[bytes | None]:
    return items(body, 2, struct.unpack(">H", body[:2])[0])


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the leader went away")
        buf += chunk
    return buf


def _leader(url: str, path: str, connections: int, per_call: int, ready: Any,
            stats: Any) -> None:
    import psycopg

    from engramdb.storage.postgres.append_call import _prepare, call_append

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    conns = []
    for _ in range(connections):
        conn = psycopg.connect(url, autocommit=True)
        oid = int(conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0])
        _prepare(conn, oid)
        conns.append(conn)
    cond = threading.Condition()
    queue: list[tuple[socket.socket, list[Any]]] = []
    counts, stop = [0, 0], [False]

    def send_calls(conn: Any) -> None:
        while True:
            with cond:
                while not queue and not stop[0]:
                    cond.wait()
                if not queue:
                    return
                group = queue[:per_call]
                del queue[:per_call]
            reply = _pack(list(call_append(conn, merge([a for _, a in group]), oid)))
            for sock, _ in group:
                sock.sendall(reply)
            with cond:
                counts[0] += 1
                counts[1] += len(group)

    threads = [threading.Thread(target=send_calls, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    ready.set()
    buffers: dict[Any, bytes] = {}
    cpu, writers = 0.0, 0
    while cpu == 0.0 or writers:
        got = []
        for key, _ in sel.select():
            sock = key.fileobj
            if sock is server:
                client, _ = server.accept()
                sel.register(client, selectors.EVENT_READ)
                buffers[client] = b""
                writers += 1
                cpu = cpu or time.process_time()
                continue
            data = sock.recv(1 << 20)  # type: ignore[union-attr]
            if not data:
                sel.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                del buffers[sock]
                writers -= 1
                continue
            buffers[sock] += data
            while len(buffers[sock]) >= 4:
                size = _LENGTH.unpack(buffers[sock][:4])[0]
                if len(buffers[sock]) < 4 + size:
                    break
                got.append((sock, _unpack(buffers[sock][4:4 + size])))
                buffers[sock] = buffers[sock][4 + size:]
        if got:
            with cond:
                queue.extend(got)  # type: ignore[arg-type]
                cond.notify()
    with cond:
        stop[0] = True
        cond.notify_all()
    for t in threads:
        t.join()
    stats.put((time.process_time() - cpu, counts[0], counts[1]))
    for conn in conns:
        conn.close()
    server.close()


def _writer(url: str, count: int, seed: int, barrier: Any, results: Any,
            path: str | None) -> None:
    """``bench_writers._engram``, its calls sent to the leader at ``path`` if given."""
    from engramdb.storage.postgres import prepared

    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)

        def via_leader(conn: Any, args: Any, oid: int) -> tuple[Any, ...]:
            sock.sendall(_pack(list(args)))
            size = _LENGTH.unpack(_recv(sock, 4))[0]
            return tuple(_unpack(_recv(sock, size)))

        prepared.call_append = via_leader  # type: ignore[assignment]
    bw._engram(url, count, seed, barrier, results, {})
    if path:
        sock.close()


def run_writers(server: Any, name: str, leaders: int, processes: int, writes: int,
                connections: int, per_call: int) -> dict[str, Any]:
    """16 writers on a fresh database: direct (``leaders`` 0), or through ``leaders``
    leader processes, writer i through leader i mod ``leaders``."""
    url = server.fresh_database(name)
    bw._open(url).close()
    ctx = mp.get_context("spawn")
    started, paths, stats = [], [], ctx.Queue()
    for _ in range(leaders):
        paths.append(str(Path(tempfile.mkdtemp(prefix="engram-combine-")) / "leader.sock"))
        ready = ctx.Event()
        started.append(ctx.Process(target=_leader,
                                   args=(url, paths[-1], connections, per_call, ready, stats)))
        started[-1].start()
        ready.wait()
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, writes, 100 + i, barrier, results,
                                               paths[i % leaders] if leaders else None))
             for i in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    machine, server_cpu = bw._machine_cpu(), bw._server_cpu(server.pid)
    start = time.perf_counter()
    done = [results.get(timeout=600) for _ in procs]
    seconds = time.perf_counter() - start
    machine, server_cpu = bw._machine_cpu() - machine, bw._server_cpu(server.pid) - server_cpu
    ok = sum(d[0] for d in done)
    out: dict[str, Any] = {
        "writes_per_second": round(ok / seconds), "errors": sum(d[1] for d in done),
        "client_cpu_us_per_write": round(sum(d[2] for d in done) / max(ok, 1) * 1e6),
        "server_cpu_us_per_write": round(server_cpu / max(ok, 1) * 1e6),
        "machine_cpu_us_per_write": round(machine / max(ok, 1) * 1e6)}
    if started:
        got = [stats.get(timeout=60) for _ in started]
        for leader in started:
            leader.join()
        out["leader_cpu_us_per_write"] = round(sum(g[0] for g in got) / max(ok, 1) * 1e6)
        out["writes_per_call"] = round(sum(g[2] for g in got) / max(sum(g[1] for g in got), 1),
                                       2)
    for p in procs:
        p.join()
    for path in paths:
        Path(path).unlink(missing_ok=True)
        Path(path).parent.rmdir()
    return out


def run(order: list[str], processes: int, writes: int, connections: int,
        per_call: int, leaders: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with _server() as server:
        bw.SERVER_PID[0] = server.pid
        out["bare_psycopg"] = bw.bench_bare(server.fresh_database("bare1"), processes,
                                            writes)["per_second"]
        for i, what in enumerate(order):
            out[f"{i}_{what}"] = run_writers(server, f"w{i}",
                                             leaders if what == "combined" else 0, processes,
                                             writes, connections, per_call)
        out["bare_psycopg_again"] = bw.bench_bare(server.fresh_database("bare2"), processes,
                                                  writes)["per_second"]
    bare = (out["bare_psycopg"] + out["bare_psycopg_again"]) / 2
    for value in out.values():
        if isinstance(value, dict):
            value["ratio_to_bare"] = round(value["writes_per_second"] / bare, 3)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order", default="combined,direct")
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--writes", type=int, default=150)
    parser.add_argument("--leader-connections", type=int, default=3)
    parser.add_argument("--max-per-call", type=int, default=16)
    parser.add_argument("--leaders", type=int, default=1,
                        help="leader processes in a combined run (writers split among them)")
    args = parser.parse_args()
    print(json.dumps(run(args.order.split(","), args.processes, args.writes,
                         args.leader_connections, args.max_per_call, args.leaders), indent=2))
