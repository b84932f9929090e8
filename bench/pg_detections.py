"""Contradictions a semantic batch flags in a large PostgreSQL namespace (issue 13).

The bench's corpus and seeds (bench/profile_writes.py ``--at``): a preload of
SIZE semantic memories in one namespace whose first ``--near`` are statements
"The X Y window is DAY", then a warm-up and a measured batch of 2,000, each
holding ``near / 2`` contradicting statements whose embeddings are the
preloaded ones plus noise (cosine ~0.99), with the indexes waited for after
each. Prints how many conflicts were flagged and a digest of their texts, to
compare two versions of the code run with the same arguments.

Usage: PYTHONPATH=src python bench/pg_detections.py 20000 --near 200
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_postgres import Corpus  # noqa: E402
from bench.profile_writes import _open, _pg_urls  # noqa: E402

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("size", type=int)
    ap.add_argument("--near", type=int, default=200)
    args = ap.parse_args()
    size, near = args.size, args.near
    with _pg_urls() as url_for:
        db = _open(url_for("detect"))
        c = Corpus()
        pre = c.drafts(size, layer="semantic", namespaces=1)
        for i in range(near):
            pre[i]["text"] = f"The {c.words[2 * i]} {c.words[2 * i + 1]} window is {DAYS[i % 7]}"
        db.admin.configure_namespace("bench/**", detect_free_text=False)
        for i in range(0, size, 5000):
            db.remember_many(pre[i:i + 5000])
        db.admin.configure_namespace("bench/**", detect_free_text=True)
        db.storage.wait_for_vector_index(timeout=600)
        for rnd in range(2):  # a warm-up batch, then the measured one, as the bench
            drafts = c.drafts(2000, layer="semantic", namespaces=1)
            for k in range(near // 2):
                i = rnd * (near // 2) + k
                v = pre[i]["embedding"] + 0.06 * c.vectors(1)[0] * np.sqrt(384) / 8
                drafts[k]["embedding"] = (v / np.linalg.norm(v)).astype(np.float32)
                drafts[k]["text"] = (f"The {c.words[2 * i]} {c.words[2 * i + 1]} window is "
                                     f"{DAYS[(i + 3) % 7]}")
            db.remember_many(drafts)
            db.storage.wait_for_vector_index(timeout=600)
        pairs = sorted(tuple(sorted(db.get(m.id).text for m in x.memories))
                       for x in db.conflicts("bench/**", status=None, limit=10000))
        print(f"conflicts {len(pairs)}  digest "
              f"{hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]}")
        db.close()


if __name__ == "__main__":
    main()
