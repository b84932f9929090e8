"""HTTP door benchmark: recall latency and throughput under 16 concurrent clients.

``run(quick)`` returns a dict of measurements (``engram bench`` can call it):

* The server is ``engramdb.server.serve`` in its own process (``workers``
  uvicorn worker processes, default 2, one per core of the machine this was
  written on; the default local embedder, SQLite, rate limiting off) on a
  free loopback port, seeded with ``memories`` realistic notes through the
  HTTP batch route.
* The load generator is another process: ``clients`` asyncio tasks, each with
  its own HTTP connection, send ``POST /v1/recall`` back to back (``k=10``)
  for ``seconds``, after a warm-up. Every query text is new (one of ten
  questions, a subject and a running number), so the server embeds every
  query: its embedding cache never answers one. Every answer's status is
  checked; latency is measured per request from send to full body.
* ``ENGRAM_BENCH_HTTP_SETTINGS`` (JSON) adds server settings, e.g.
  ``{"recall_threads": null}`` for the thread pool's own bound.
* ``server_rss_mb``: the server's resident memory after seeding (idle) and the
  peak sampled during the load.

Run from a checkout:
``python bench/bench_http.py [--quick] [--workers N] [--client httpx|raw|both]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SUBJECTS = ["billing", "the search index", "onboarding", "the mobile app", "payments",
            "the data pipeline", "customer support", "the API gateway", "pricing",
            "the recommendation model", "security review", "the EU launch"]
FACTS = ["is behind schedule by two weeks", "passed its load test at 3,000 requests per second",
         "needs a second reviewer before release", "was moved to the platform team",
         "has a known memory leak under heavy traffic", "is blocked on the legal review",
         "costs 40% more than budgeted", "got positive feedback from the pilot customers",
         "depends on the new authentication service", "will be demoed on Friday"]
QUERIES = ["what is blocking the launch", "which projects are over budget",
           "status of the search index", "memory leak", "who owns billing now",
           "load test results", "what will be demoed", "customer feedback on pricing",
           "security review status", "dependencies on authentication"]

_SERVER = """
import json, os, sys
from engramdb.server import ServerSettings, serve
extra = json.loads(os.environ.get("ENGRAM_BENCH_HTTP_SETTINGS") or "{}")
serve(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), admin_key="new",
      settings=ServerSettings(rate_limit_per_s=None, max_batch=1000, **extra),
      log_level="warning", announce=lambda line: print(line, flush=True),
      workers=int(sys.argv[3]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _start_server(path: Path, port: int, workers: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(path), str(port), str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    key = None
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"(ek_\S+)", line)
        if found:
            key = found.group(1)
        if "serving" in line:
            break
    if key is None:
        proc.kill()
        raise RuntimeError("the benchmark server did not start")
    # Keep draining the server's output so it never blocks on a full pipe.
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
    return proc, key


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _wait_healthy(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the benchmark server never became healthy")


def _seed(url: str, key: str, n: int) -> float:
    import engramdb

    db = engramdb.connect(url, key, timeout=600)
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(n):
        subject = SUBJECTS[i % len(SUBJECTS)]
        fact = FACTS[(i // len(SUBJECTS)) % len(FACTS)]
        batch.append({"text": f"Note {i}: {subject} {fact}.", "namespace": f"team/{i % 8}",
                      "layer": "episodic", "metadata": {"n": i}})
        if len(batch) == 500:
            db.remember_many(batch)
            batch = []
    if batch:
        db.remember_many(batch)
    db.recall("warm up the query path", k=10)
    db.close()
    return time.perf_counter() - started


def _rss_mb(pid: int) -> float:
    """Resident memory of the server: its process and its worker processes."""
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


# -- the load generator (runs in its own process) ----------------------------------------


def _query(seed: int, i: int) -> dict[str, Any]:
    return {"query": f"{QUERIES[i % len(QUERIES)]} for "
                     f"{SUBJECTS[(i // len(QUERIES)) % len(SUBJECTS)]} ({seed}.{i})",
            "k": 10}


async def _raw_client(url: str, key: str, until: float, warm_until: float, seed: int,
                      latencies: list[float], statuses: dict[int, int]) -> None:
    """The lean client: one keep-alive HTTP/1.1 connection over asyncio streams.

    It sends the same requests as the httpx client (same body, same headers that
    matter) but parses only the status line and ``Content-Length``, so nearly all
    of its CPU is the kernel's: 16 of them leave the machine's cores to the server.
    """
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST /v1/recall HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            "Content-Length: ")
    i = seed
    try:
        while time.perf_counter() < until:
            body = json.dumps(_query(seed, i)).encode()
            i += 1
            t0 = time.perf_counter()
            writer.write(f"{head}{len(body)}\r\n\r\n".encode() + body)
            status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
            length = None
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError("the server answered without Content-Length")
            await reader.readexactly(length)
            elapsed = time.perf_counter() - t0
            if t0 >= warm_until:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _client(url: str, key: str, until: float, warm_until: float, seed: int,
                  latencies: list[float], statuses: dict[int, int]) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        i = seed
        while time.perf_counter() < until:
            body = _query(seed, i)
            i += 1
            t0 = time.perf_counter()
            response = await http.post("/v1/recall", json=body)
            await response.aread()
            elapsed = time.perf_counter() - t0
            if t0 >= warm_until:
                latencies.append(elapsed)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1


async def _load(url: str, key: str, clients: int, seconds: float, warmup: float,
                kind: str = "httpx") -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    warm_until = start + warmup
    until = warm_until + seconds
    client = _raw_client if kind == "raw" else _client
    cpu = time.process_time()
    await asyncio.gather(*(client(url, key, until, warm_until, n * 100_000, latencies,
                                  statuses) for n in range(clients)))
    measured = time.perf_counter() - warm_until
    # The load generator's own CPU over the whole run (warm-up included), for the
    # share of the machine it takes from the server.
    return {"latencies": latencies, "statuses": statuses, "seconds": measured,
            "client_cpu_s": time.process_time() - cpu,
            "client_seconds": time.perf_counter() - start}


def _load_main(argv: list[str]) -> None:
    url, key, clients, seconds, warmup = argv[0], argv[1], int(argv[2]), float(argv[3]), \
        float(argv[4])
    kind = argv[5] if len(argv) > 5 else "httpx"
    print(json.dumps(asyncio.run(_load(url, key, clients, seconds, warmup, kind))))


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server and its worker processes."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _run_load(url: str, key: str, clients: int, seconds: float, warmup: float,
              server_pid: int, kind: str = "httpx") -> tuple[dict[str, Any], float]:
    proc = subprocess.Popen([sys.executable, __file__, "_load", url, key, str(clients),
                             str(seconds), str(warmup), kind], stdout=subprocess.PIPE, text=True)
    # Read its report while it runs: a report over the pipe's buffer (64 KB, a few
    # thousand latencies) would otherwise block it, and us waiting for it, forever.
    report: list[str] = []
    reader = threading.Thread(target=lambda: report.append(proc.stdout.read()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    peak = 0.0
    cpu = None
    started = time.perf_counter()
    while proc.poll() is None:
        peak = max(peak, _rss_mb(server_pid))
        if cpu is None and time.perf_counter() - started >= warmup:
            cpu = _cpu_s(server_pid)  # the server's CPU from the end of the warm-up on
        time.sleep(0.25)
    server_cpu = _cpu_s(server_pid) - (cpu if cpu is not None else 0.0)
    reader.join()
    result = json.loads(report[0])
    result["server_cpu_s"] = server_cpu
    return result, peak


def _summary(result: dict[str, Any], clients: int) -> dict[str, Any]:
    lat = [x * 1000 for x in result["latencies"]]
    ok = result["statuses"].get("200", result["statuses"].get(200, 0))
    return {
        "clients": clients,
        "requests": len(lat),
        "ok": ok,
        "errors": len(lat) - ok,
        "requests_per_s": round(len(lat) / result["seconds"], 1),
        "p50_ms": round(statistics.median(lat), 1),
        "p95_ms": round(_percentile(lat, 95), 1),
        "p99_ms": round(_percentile(lat, 99), 1),
        "seconds": round(result["seconds"], 1),
        # Load-independent: the server's CPU per answered recall (all its processes);
        # 300 recalls/s need 300 times this of CPU each second.
        "server_cpu_ms_per_recall": round(1000 * result["server_cpu_s"] / max(1, len(lat)), 2),
        # The load generator's CPU per recall (its rate over the whole run, warm-up
        # included): what it takes from the cores the server would otherwise have.
        "client_cpu_ms_per_recall": round(
            1000 * result["client_cpu_s"] / result["client_seconds"] * result["seconds"]
            / max(1, len(lat)), 2),
    }


def run(quick: bool = False, workers: int = 2, client: str = "httpx") -> dict[str, Any]:
    """Measure HTTP recall under load; ``quick`` uses a small corpus and short runs.

    ``client``: the load generator. ``httpx`` (default, as a Python application
    would call the server: one ``httpx.AsyncClient`` per client), ``raw`` (lean
    asyncio HTTP/1.1 keep-alive connections, which leave more of the two cores to
    the server), or ``both`` (the 16-client run with each, raw second, as
    ``recall_16_clients_raw``).

    Returns:
        A JSON-serialisable dict: ``memories``, ``seed_seconds``, ``recall_16_clients``
        (requests, errors, requests_per_s, p50/p95/p99 ms, server and load-generator
        CPU per recall), ``recall_1_client`` (the same with one client, for scale),
        ``server_rss_mb`` (idle, peak), ``cpus``.
    """
    if client not in ("httpx", "raw", "both"):
        raise ValueError("client must be 'httpx', 'raw' or 'both'")
    first = "raw" if client == "raw" else "httpx"
    n = 1_000 if quick else 5_000
    seconds = 8.0 if quick else 30.0
    warmup = 2.0 if quick else 5.0
    out: dict[str, Any] = {"quick": quick, "memories": n, "cpus": os.cpu_count(),
                           "load_start": os.getloadavg(),
                           "server": f"uvicorn, {workers} worker(s), SQLite, local MiniLM "
                                     "embedder, every query new"}
    with tempfile.TemporaryDirectory(prefix="engram-bench-http-") as tmp:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc, key = _start_server(Path(tmp) / "engram.db", port, workers)
        try:
            _wait_healthy(url)
            out["seed_seconds"] = round(_seed(url, key, n), 1)
            out["memories_per_s_seeding"] = round(n / out["seed_seconds"])
            idle = _rss_mb(proc.pid)
            single, _ = _run_load(url, key, 1, seconds / 2, warmup / 2, proc.pid, first)
            out["recall_1_client"] = {**_summary(single, 1), "client": first}
            loaded, peak = _run_load(url, key, 16, seconds, warmup, proc.pid, first)
            out["recall_16_clients"] = {**_summary(loaded, 16), "client": first}
            if client == "both":
                raw, raw_peak = _run_load(url, key, 16, seconds, warmup, proc.pid, "raw")
                out["recall_16_clients_raw"] = {**_summary(raw, 16), "client": "raw"}
                peak = max(peak, raw_peak)
            out["server_rss_mb"] = {"idle": round(idle), "peak": round(max(peak, idle))}
            out["load_end"] = os.getloadavg()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_load":
        _load_main(sys.argv[2:])
    else:
        sys.path.insert(0, str(ROOT / "src"))
        workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv \
            else 2
        client = sys.argv[sys.argv.index("--client") + 1] if "--client" in sys.argv \
            else "httpx"
        print(json.dumps(run(quick="--quick" in sys.argv, workers=workers, client=client),
                         indent=2))
