"""No lost update: many processes doing compare-and-swap on shared memories.

Eight real processes (``multiprocessing`` spawn, so nothing is inherited but
arguments) open the same SQLite file and increment three shared counters
through the public API: ``get``, then ``update(text=str(n + 1),
expected_version=v)``, retrying on :class:`VersionConflict`. Each process
counts the increments the database acknowledged. If the database ever lost
an update or let two writers build on the same version, a counter would end
below the number of acknowledged increments, a version would be missing or
doubled, or a version's text would not be its predecessor's plus one.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import engramdb
from tests.support.procs import gather
from tests.support.workers import cas_worker

WORKERS = 8
COUNTERS = 3
QUOTA = 50  # acknowledged increments per worker


def test_cas_increments_from_eight_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "engram.db")
    # Workers run FTS-only (embedder=None): embeddings play no part in
    # compare-and-swap, and loading the model in eight children would cost
    # far more than the test itself.
    with engramdb.open(path, embedder=None) as db:
        ids = [db.remember("0", namespace="shared/counters", metadata={"counter": i}).id
               for i in range(COUNTERS)]
        agents = [f"worker-{n}" for n in range(WORKERS)]
        for name in agents:
            db.admin.create_agent(name)
        for name in agents:
            db.admin.grant(name, "shared/**", ["read", "write"])

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=cas_worker,
                         args=(path, name, ids, QUOTA, 1000 + n, barrier, results))
             for n, name in enumerate(agents)]
    reports = gather(procs, results, timeout=240)

    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, errors[0]
    assert all(p.exitcode == 0 for p in procs)

    acked: Counter[str] = Counter()
    acked_by: dict[tuple[str, str], int] = {}
    for r in reports:
        for mid, n in r["acked"].items():
            acked[mid] += n
            acked_by[(mid, r["agent"])] = n
    assert sum(acked.values()) == WORKERS * QUOTA
    # Contention must actually have happened, or this test proves nothing.
    assert sum(r["conflicts"] for r in reports) > 0

    with engramdb.open(path, embedder=None) as db:
        for mid in ids:
            current = db.get(mid)
            assert int(current.text) == acked[mid], f"counter {mid} lost updates"
            hist = db.history(mid)
            assert [m.version for m in hist] == list(range(1, acked[mid] + 2))
            # Each version builds on exactly the one before it.
            assert [m.text for m in hist] == [str(v - 1) for v in range(1, len(hist) + 1)]
            assert [m.tx_to for m in hist[:-1]] == [m.tx_from for m in hist[1:]]
            assert sum(1 for m in hist if m.tx_to is None) == 1
            # Per process: versions it authored == increments it was told succeeded.
            authored = Counter(m.author for m in hist[1:])
            for name in agents:
                assert authored[name] == acked_by.get((mid, name), 0), (mid, name)
        report = db.verify()
        assert report.ok, report
        assert report.events_checked == db.storage.head().seq
