"""Lifecycle figures: time to erase 1 and 100 subjects; maintain over N memories, 1% due.

Erasure: a database of ``--subjects`` subjects (two versions each, one in three
with a third), then ``forget(subject=...)`` for one subject, and for 100
subjects one call each. Every ``forget`` includes its file purge (FTS5 merge
and WAL checkpoint on SQLite; ``VACUUM FULL`` and checkpoints on PostgreSQL),
which is most of its cost. Baseline in the same run: one ``update`` (a
single-version write) on the same database.

Maintain: ``--memories`` memories of which 1% have an ``expires_at`` in the
past; the figure is one ``maintain()`` run that expires them. Baselines in the
same run: the second ``maintain()`` (nothing due: the fixed cost) and the same
1%-due run over a database a tenth the size (work follows what is due, not
the table).

No embedder (``embedder=None``): the figures are the lifecycle work, not
embedding. The machine is shared: the load average is printed with each figure.

Usage::

    python bench/lifecycle.py [--subjects 1000] [--memories 100000] [--pg]
"""

from __future__ import annotations

import argparse
import os
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


def bench_maintain(pg: bool, memories: int) -> tuple[float, float, int]:
    past = datetime.now(UTC) - timedelta(hours=1)
    future = datetime.now(UTC) + timedelta(days=365)
    with database(pg, f"maintain{memories}") as db:
        for start in range(0, memories, 5000):
            db.remember_many([
                {"text": f"event {i} happened", "namespace": f"log/s{i % 50}",
                 "layer": "episodic", "expires_at": past if i % 100 == 0 else future}
                for i in range(start, min(memories, start + 5000))])
        report: list[Any] = []
        first = timed(lambda: report.append(db.maintain()))
        second = timed(lambda: report.append(db.maintain()))
        assert len(report[0].expired) == memories // 100 and report[1].changed == 0
        return first, second, len(report[0].expired)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = ap.parse_args()
    kind = "postgres" if args.pg else "sqlite"
    bench_erase(args.pg, args.subjects)
    small = bench_maintain(args.pg, args.memories // 10)
    big = bench_maintain(args.pg, args.memories)
    print(f"{kind} maintain over {args.memories} memories, {big[2]} due: {big[0] * 1000:.0f} ms; "
          f"nothing due (second run): {big[1] * 1000:.0f} ms; over {args.memories // 10} "
          f"memories, {small[2]} due: {small[0] * 1000:.0f} ms; ratio big/small "
          f"{big[0] / small[0]:.1f}x for 10x the due rows; {load()}")


if __name__ == "__main__":
    main()
