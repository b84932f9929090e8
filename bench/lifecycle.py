"""Lifecycle figures: time to erase 1 and 100 subjects; maintain over N memories, 1% due.

Erasure: a database of ``--subjects`` subjects (two versions each, one in three
with a third), then ``forget(subject=...)`` for one subject, and for 100
subjects one call each. Every ``forget`` includes its file purge (FTS5 merge
and WAL checkpoint on SQLite; ``VACUUM FULL`` and checkpoints on PostgreSQL),
which is most of its cost. Baseline in the same run: one ``update`` (a
single-version write) on the same database.

Maintain: ``--memories`` memories of which 1% have an ``expires_at`` in the
past and three groups of 100 more expiring earlier; with the clock injected
after each group's time a run finds exactly its 100 due and the next run
nothing (medians of the three rounds), and a last run (clock now) the 1%.
The same three runs over a database a tenth the size are the baseline: the
100-due and nothing-due runs should cost the same at both sizes (work follows
what is due, not the table), the 1%-due run about 10x (10x the due rows,
archived in batches of 500 per write transaction).

No embedder (``embedder=None``): the figures are the lifecycle work, not
embedding. The machine is shared: the load average is printed with each figure.

Usage::

    python bench/lifecycle.py [--subjects 1000] [--memories 100000] [--pg]
                              [--only erase|maintain]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engramdb  # noqa: E402
from engramdb.codec import to_micros  # noqa: E402


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextmanager
def database(pg: bool, name: str) -> Iterator[engramdb.Database]:
    if pg:
        from tests.support.pg import PgServer
        with PgServer(settings={"wal_recycle": False}) as url:
            db = engramdb.open(url, embedder=None)
            try:
                yield db
            finally:
                db.close()
        return
    with tempfile.TemporaryDirectory() as d:
        db = engramdb.open(Path(d) / f"{name}.db", embedder=None)
        try:
            yield db
        finally:
            db.close()


def bench_erase(pg: bool, subjects: int) -> None:
    with database(pg, "erase") as db:
        ids = []
        for start in range(0, subjects, 1000):
            ids += [m.id for m in db.remember_many([
                {"text": f"customer {i} secret note {i:06d}", "namespace": f"crm/r{i % 8}",
                 "subject": f"user:{i}", "layer": "episodic"}
                for i in range(start, min(subjects, start + 1000))])]
        for i in range(subjects):
            db.update(ids[i], text=f"customer {i} revised note {i:06d}")
            if i % 3 == 0:
                db.update(ids[i], text=f"customer {i} revised again {i:06d}")
        base = min(timed(lambda i=i: db.update(ids[i], text=f"baseline {i}"))
                   for i in range(subjects - 5, subjects))
        one = timed(lambda: db.forget(subject="user:1", reason="bench"))
        hundred = timed(lambda: [db.forget(subject=f"user:{i}", reason="bench")
                                 for i in range(100, 200)])
        assert db.verify().ok
        kind = "postgres" if pg else "sqlite"
        print(f"{kind} erase 1 subject: {one * 1000:.0f} ms; 100 subjects (100 calls): "
              f"{hundred:.1f} s ({hundred * 10:.0f} ms each); baseline update "
              f"{base * 1000:.1f} ms; ratio 1-subject/update {one / base:.0f}x; "
              f"{subjects} subjects; {load()}")


def bench_maintain(pg: bool, memories: int) -> dict[str, float]:
    """``maintain`` over ``memories`` rows: three rounds of 100 due then nothing due
    (medians), then 1% due.

    Expiry times in the past and an injected clock between them make each
    round find exactly its 100 rows due (the 1% expire last).
    """
    now = datetime.now(UTC)
    groups = [now - timedelta(hours=h) for h in (4, 3, 2)]  # 100 rows each
    late, future = now - timedelta(hours=1), now + timedelta(days=365)

    def expiry(i: int) -> datetime:
        if i % 100 == 0:
            return late
        if i % 100 in (25, 50, 75) and i // 100 < 100:
            return groups[i % 100 // 25 - 1]
        return future

    with database(pg, f"maintain{memories}") as db:
        for start in range(0, memories, 5000):
            db.remember_many([
                {"text": f"event {i} happened", "namespace": f"log/s{i % 50}",
                 "layer": "episodic", "expires_at": expiry(i)}
                for i in range(start, min(memories, start + 5000))])
        lc: Any = db.lifecycle
        due: list[float] = []
        idle: list[float] = []
        report: list[Any] = []
        for g in groups:
            lc.clock = lambda g=g: to_micros(g + timedelta(minutes=30))
            report.clear()
            due.append(timed(lambda: report.append(db.maintain())))
            idle.append(timed(lambda: report.append(db.maintain())))
            assert [len(r.expired) for r in report] == [100, 0], report
        lc.clock = lambda: to_micros(now)
        report.clear()
        last = timed(lambda: report.append(db.maintain()))
        assert len(report[0].expired) == memories // 100, report
        return {"due_100": statistics.median(due), "nothing_due": statistics.median(idle),
                "due_1pct": last, "due_1pct_rows": memories // 100}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    ap.add_argument("--only", choices=("erase", "maintain"), help="one half of the figures")
    args = ap.parse_args()
    kind = "postgres" if args.pg else "sqlite"
    if args.only != "maintain":
        bench_erase(args.pg, args.subjects)
    if args.only == "erase":
        return
    small = bench_maintain(args.pg, args.memories // 10)
    big = bench_maintain(args.pg, args.memories)
    ms = {k: {s: v * 1000 for s, v in d.items() if s != "due_1pct_rows"}
          for k, d in (("small", small), ("big", big))}
    print(f"{kind} maintain, {args.memories // 10} vs {args.memories} memories ({load()}):")
    print(f"  100 due:     {ms['small']['due_100']:.0f} ms vs {ms['big']['due_100']:.0f} ms "
          f"(ratio {big['due_100'] / small['due_100']:.2f}x for 10x the table)")
    print(f"  nothing due: {ms['small']['nothing_due']:.1f} ms vs {ms['big']['nothing_due']:.1f} ms"
          f" (ratio {big['nothing_due'] / small['nothing_due']:.2f}x)")
    print(f"  1% due:      {ms['small']['due_1pct']:.0f} ms ({small['due_1pct_rows']:.0f} rows) vs "
          f"{ms['big']['due_1pct']:.0f} ms ({big['due_1pct_rows']:.0f} rows): ratio "
          f"{big['due_1pct'] / small['due_1pct']:.1f}x for "
          f"{big['due_1pct_rows'] / max(small['due_1pct_rows'], 1):.0f}x the due rows")


if __name__ == "__main__":
    main()
