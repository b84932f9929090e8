"""Many writer processes on one PostgreSQL: EngramDB beside the bare driver, same run.

Six measurements against one server (``tests.support.pg.PgServer`` with
``synchronous_commit = on``, or ``ENGRAM_TEST_PG_URL``), each with
``--processes`` writer processes (16 by default) that start together:

* ``bare_psycopg``: each process inserts one comparable row (a memory's text,
  its namespace and a 384-float embedding) per transaction, autocommit: the
  ceiling the server and this machine allow.
* ``log_append``: each process appends one hash-chained event per transaction
  through the storage seam (chain lock, hashing, commit, durability barrier)
  and nothing else: the ceiling the chain design allows, engine CPU aside;
  ``log_append_lock_through_flush`` is the same holding the lock through the
  flush (``release_before_flush=False``), the design before;
  ``log_append_prepared`` builds the event before the lock and applies it with
  one ``CALL engram_append`` (``storage.prepare``, migration 0023), the path a
  single ``remember`` takes since branch ``pgwrite``.
* ``engramdb``: each process calls ``remember`` (one single-memory write, its
  own transaction, precomputed embedding) into one database: one audit chain.
* ``engramdb_lock_through_flush``: the same with ``release_before_flush=False``,
  every writer holding the chain lock through its WAL flush (the design before
  early lock release), as the baseline.
* ``engramdb_tenants``: the same as ``engramdb`` with one database per writer
  (a chain each): what the engine reaches when writers share nothing.

Ratios to ``bare_psycopg`` are printed, with the load average (the machine is
shared; only same-run ratios mean anything). Run from a checkout:
``python bench/bench_writers.py [--processes 16] [--writes 150] [--parts append,engram]``,
or
``make bench-writers``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_postgres import Corpus, _server  # noqa: E402


def _open(url: str, **options: Any) -> Any:
    import engramdb
    from engramdb.retrieval.embed import LocalEmbedder

    # The default embedder's identity; its model never loads (embeddings are given).
    options.setdefault("release_before_flush", True)  # the design under test (opt-in)
    return engramdb.open(url, embedder=LocalEmbedder(), **options)


def _bare(url: str, count: int, seed: int, barrier: Any, results: Any) -> None:
    import psycopg

    corpus = Corpus(seed=seed, vocabulary=2000)
    rows = [(f"bench/ns{i % 20}", corpus.text(), corpus.vectors(1)[0].tobytes())
            for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        barrier.wait()
        cpu = time.process_time()
        for row in rows:
            conn.execute("INSERT INTO bare_rows (namespace, text, vec) VALUES (%s, %s, %s)",
                         row)
        cpu = time.process_time() - cpu
    results.put((count, 0, cpu))


def _engram(url: str, count: int, seed: int, barrier: Any, results: Any,
            options: dict[str, Any]) -> None:
    corpus = Corpus(seed=seed, vocabulary=2000)
    db = _open(url, **options)
    drafts = corpus.drafts(count, layer="episodic")
    errors = 0

    # ENGRAM_BENCH_PROFILE=path: the first writer runs under cProfile (CPU time) and
    # saves its statistics there, to see what a writer spends among 15 others.
    profile = os.environ.get("ENGRAM_BENCH_PROFILE") if seed == 100 else None
    prof = cProfile.Profile(time.process_time) if profile else None
    barrier.wait()
    cpu, system = time.process_time(), os.times().system
    if prof:
        prof.enable()
    for d in drafts:
        try:
            db.remember(**d)
        except Exception:
            errors += 1
    if prof and profile:
        prof.disable()
        prof.dump_stats(profile)
    cpu = time.process_time() - cpu  # a leader's thread's CPU is its process's
    system = os.times().system - system  # the part of it in the kernel
    combiner = getattr(db.storage, "combiner", None)
    db.close()
    counts = dict(combiner.counts) if combiner is not None else {}
    results.put((count - errors, errors, cpu, counts, system))


def _append(url: str, count: int, seed: int, barrier: Any, results: Any,
            options: dict[str, Any]) -> None:
    from engramdb.storage.postgres import PostgresStorage

    corpus = Corpus(seed=seed, vocabulary=2000)
    texts = [corpus.text() for _ in range(count)]
    options = dict(options)
    prepared = options.pop("prepared", False)
    storage = PostgresStorage(url, **options)
    storage.setup()
    barrier.wait()
    for i, text in enumerate(texts):
        with (storage.prepare("bench") if prepared else storage.write("bench")) as w:
            w.log("bench.note", actor="bench", namespace=f"bench/ns{i % 20}",
                  subject_ref=None, payload={"effects": [], "text": text})
    storage.close()
    results.put((count, 0))


def bench_append(url: str, processes: int, count: int, **options: Any) -> dict[str, Any]:
    """The log append alone: one hash-chained event per transaction, through the
    storage seam (chain lock, hashing, pipelined inserts, commit, barrier), no engine."""
    _open(url).close()
    out = _run(_append, [url], processes, count, options)
    out["verify_ok"] = _verified([url], {})
    return out


def _run(target: Any, urls: list[str], processes: int, count: int,
         *extra: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(urls[i % len(urls)], count, 100 + i, barrier,
                                              results, *extra))
             for i in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    busy, server = _machine_cpu(), _server_cpu(SERVER_PID[0])
    start = time.perf_counter()
    done = [results.get(timeout=1800) for _ in procs]
    seconds = time.perf_counter() - start
    busy = _machine_cpu() - busy
    for p in procs:
        p.join()
    server = _server_cpu(SERVER_PID[0]) - server
    ok = sum(d[0] for d in done)
    out = {"processes": processes, "databases": len(urls), "writes": ok,
           "errors": sum(d[1] for d in done), "seconds": round(seconds, 2),
           "per_second": round(ok / seconds),
           # CPU of the whole machine over the run, per write (server, clients and
           # anything else running: read it on a quiet machine).
           "machine_cpu_us_per_write": round(busy / max(ok, 1) * 1e6)}
    if server:  # PostgreSQL's CPU over the run and until the writers closed
        out["server_cpu_us_per_write"] = round(server / max(ok, 1) * 1e6)
    if all(len(d) > 2 for d in done):  # the writers' own CPU (engine and driver)
        out["client_cpu_us_per_write"] = round(sum(d[2] for d in done) / max(ok, 1) * 1e6)
    if all(len(d) > 4 for d in done):  # of which in the kernel (system calls, page faults)
        out["client_sys_us_per_write"] = round(sum(d[4] for d in done) / max(ok, 1) * 1e6)
    counts = [d[3] for d in done if len(d) > 3 and d[3]]
    if counts:  # the write combiner's (storage/postgres/combiner.py), summed over writers
        total = {k: sum(c.get(k, 0) for c in counts) for k in counts[0]}
        total["writes_per_call"] = round(total["sent"] / max(total["calls"], 1), 2)
        out["combiner"] = total
    return out


def _server_cpu(pid: int | None) -> float:
    """CPU seconds PostgreSQL has spent: its live processes, and the backends that
    exited (the postmaster's reaped children); 0 when the server is not ours."""
    if not pid:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(proc.name) == pid:
            total += sum(int(x) for x in fields[11:15]) / tick  # own and reaped children
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


SERVER_PID: list[int | None] = [None]


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all cores, since boot)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _verified(urls: list[str], options: dict[str, Any]) -> bool:
    ok = True
    for url in urls:
        db = _open(url, **options)
        try:
            ok = ok and db.verify().ok
        finally:
            db.close()
    return ok


def bench_engram(urls: list[str], processes: int, count: int,
                 **options: Any) -> dict[str, Any]:
    for url in urls:
        _open(url, **options).close()  # schema and embedder recorded once
    out = _run(_engram, urls, processes, count, options)
    # The HNSW projection is derived and kept up in the background (storage/postgres/
    # ann.py): how long it took after the writers to index what they wrote, and the
    # rate counting that time too (what a fleet writing without pause would sustain).
    start = time.perf_counter()
    for url in urls:
        db = _open(url, **options)
        try:
            db.storage.wait_for_vector_index(timeout=600)
        finally:
            db.close()
    out["index_catch_up_seconds"] = round(time.perf_counter() - start, 2)
    out["per_second_with_index"] = round(
        out["writes"] / (out["seconds"] + out["index_catch_up_seconds"]))
    out["verify_ok"] = _verified(urls, options)
    return out


def bench_bare(url: str, processes: int, count: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bare_rows (row_id bigserial PRIMARY KEY, "
                     "namespace text NOT NULL, text text NOT NULL, vec bytea NOT NULL)")
    return _run(_bare, [url], processes, count)


# "remember": engramdb alone, no older design; "combine": engramdb with combine=True
PARTS = ("append", "engram", "tenants")


def run(processes: int = 16, writes: int = 150,
        parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    import psycopg

    from engramdb.storage.postgres import PostgresStorage

    out: dict[str, Any] = {"cpus": os.cpu_count(),
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    with _server() as server:
        SERVER_PID[0] = server.pid
        with psycopg.connect(server.url) as conn:
            out["synchronous_commit"] = conn.execute("SHOW synchronous_commit").fetchone()[0]
        out["bare_psycopg"] = bench_bare(server.fresh_database("w_bare"), processes,
                                         writes)
        if "append" in parts:
            out["log_append"] = bench_append(server.fresh_database("w_app"), processes,
                                             writes)
            out["log_append_lock_through_flush"] = bench_append(
                server.fresh_database("w_app_old"), processes, writes,
                release_before_flush=False)
            if hasattr(PostgresStorage, "prepare"):  # since branch pgwrite
                out["log_append_prepared"] = bench_append(
                    server.fresh_database("w_app_prep"), processes, writes,
                    release_before_flush=True, prepared=True)
        if "engram" in parts:
            out["engramdb"] = bench_engram([server.fresh_database("w_one")], processes,
                                           writes)
        # "remember" (today's path) and "combine" (combine=True: the write combiner), in
        # the order given, as often as given: alternating pairs in one run.
        for i, part in enumerate(p for p in parts if p in ("remember", "combine")):
            key = "engramdb" if part == "remember" else "engramdb_combined"
            # ENGRAM_BENCH_COMBINE="leaders,connections": the combiner's shape (default 1,1)
            shape = os.environ.get("ENGRAM_BENCH_COMBINE", "1,1").split(",")
            options: dict[str, Any] = {} if part != "combine" else {"combine": {
                "leaders": int(shape[0]), "connections": int(shape[1])}}
            out[f"{key}#{i + 1}"] = bench_engram([server.fresh_database(f"w_c{i}")],
                                                 processes, writes, **options)
        if "engram" in parts:
            out["engramdb_lock_through_flush"] = bench_engram(
                [server.fresh_database("w_old")], processes, writes,
                release_before_flush=False)
        if "tenants" in parts:
            out["engramdb_tenants"] = bench_engram(
                [server.fresh_database(f"w_t{i}") for i in range(processes)], processes,
                writes)
        out["bare_psycopg_again"] = bench_bare(server.fresh_database("w_bare2"), processes,
                                               writes)
    bare = (out["bare_psycopg"]["per_second"] + out["bare_psycopg_again"]["per_second"]) / 2
    for key in list(out):
        if key.startswith(("log_append", "engramdb")):
            out[key]["ratio_to_bare"] = round(out[key]["per_second"] / bare, 3)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--writes", type=int, default=150, help="writes per process")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="which of append,engram,tenants,remember,combine to run beside "
                        "the bare clients (remember and combine in the order given, repeatable)")
    args = parser.parse_args()
    print(json.dumps(run(args.processes, args.writes, tuple(args.parts.split(","))),
                     indent=2))
