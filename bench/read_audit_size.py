"""What the read audit costs on disk: bytes per recall, beside a run with the audit off.

Opens a fresh SQLite database, writes ``N`` memories, performs ``M`` recalls
(``k=10``, every one returning 10 hits), flushes the read audit, checkpoints
the WAL and reports the growth of the database file plus WAL, divided by
``M``. The same run with ``set_read_audit("**", "off")`` is the baseline; the
difference is what the audit costs. The SQLite ``dbstat`` table splits the
audited run's bytes by table and index, so a figure says where the bytes go.

Two shapes of load: the default repeats 15 queries; ``--distinct`` gives
every recall its own query (a digest per read, and more distinct hits per
batch: the harder case). ``--full-batches`` flushes only at ``batch_size``
reads (256), not after the default one second: on a loaded machine a second
holds a few recalls, so batches are small and the per-batch dictionaries
dominate.

    PYTHONPATH=src python bench/read_audit_size.py [--memories N] [--recalls M]
        [--distinct] [--full-batches]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import engramdb

WORDS = ("outlook revenue churn pricing hiring roadmap launch margin risk supplier"
         " contract renewal forecast budget audit").split()


def _disk(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _by_object(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize - unused) FROM dbstat GROUP BY name")
        return {str(n): int(s) for n, s in rows}
    finally:
        conn.close()


def run(path: Path, memories: int, recalls: int, audit: bool, *, distinct: bool = False,
        full_batches: bool = False) -> dict[str, Any]:
    """One run; returns bytes per recall (file + WAL) and the per-object split."""
    db = engramdb.open(path, embedder=None)
    try:
        if full_batches:
            db.read_audit.interval_s = 3600.0
        if not audit:
            db.set_read_audit("**", "off")
        for i in range(memories):
            words = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(4))
            db.remember(f"note {i} on {words}", namespace=f"acme/team{i % 4}")
        db.flush_reads()
        _checkpoint(path)
        before, objects_before = _disk(path), _by_object(path)
        hits = 0
        for i in range(recalls):
            query = f"{WORDS[i % len(WORDS)]} note" + (f" {WORDS[(i // 15) % 15]} q{i}"
                                                       if distinct else "")
            hits += len(db.recall(query, k=10).hits)
        db.flush_reads()
    finally:
        db.close()
    _checkpoint(path)
    after, objects_after = _disk(path), _by_object(path)
    growth = {name: objects_after.get(name, 0) - objects_before.get(name, 0)
              for name in objects_after}
    return {"per_recall": (after - before) / recalls, "hits": hits / recalls,
            "objects": {n: g / recalls for n, g in growth.items() if g}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=500)
    parser.add_argument("--recalls", type=int, default=2000)
    parser.add_argument("--distinct", action="store_true", help="a new query per recall")
    parser.add_argument("--full-batches", action="store_true", help="flush at 256 reads only")
    args = parser.parse_args()
    shape = {"distinct": args.distinct, "full_batches": args.full_batches}
    with tempfile.TemporaryDirectory() as tmp:
        off = run(Path(tmp) / "off.db", args.memories, args.recalls, audit=False, **shape)
        on = run(Path(tmp) / "on.db", args.memories, args.recalls, audit=True, **shape)
    print(f"memories={args.memories} recalls={args.recalls} distinct={args.distinct} "
          f"full_batches={args.full_batches} "
          f"hits/recall={on['hits']:.1f} load={os.getloadavg()[0]:.2f}")
    print(f"bytes per recall, audit off (baseline): {off['per_recall']:8.1f}")
    print(f"bytes per recall, audit on:             {on['per_recall']:8.1f}")
    print(f"read audit cost per recall:             {on['per_recall'] - off['per_recall']:8.1f}")
    print("audited run, live bytes per recall by table/index (dbstat, excluding free space):")
    for name, size in sorted(on["objects"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:32s} {size:8.1f}")


if __name__ == "__main__":
    main()
