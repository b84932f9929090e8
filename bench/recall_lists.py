"""The recall lists of the scale bench's queries, to compare two versions of the code.

    PYTHONPATH=src:. python bench/recall_lists.py --url URL --out FILE [--as-of TX]
    python bench/recall_lists.py --compare A.json B.json

On a database an earlier ``bench/scale_pg.py --no-time`` (or ``bench/scale.py``)
loaded, runs the bench's Q queries (query embedding given, k=10) unscoped and
scoped to one namespace of 20 and writes each list's (id, version, score) to
FILE. ``--as-of TX`` pins the read point: recency is then measured from that
transaction's time, so two runs (two versions of the code) can agree on the
scores too; unpinned, "now" is the head's time, which the read audit's own
writes move between runs. ``--compare`` counts the lists identical in ids,
versions and order, and in scores as well.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.scale import NAMESPACES, corpus, vectors


def dump(url: str, out: str, n: int, reps: int, as_of: int | None) -> None:
    import engramdb

    texts = corpus(n + reps)
    queries = [" ".join(t.split()[:6]) for t in texts[-reps:]]
    qv = vectors(n + reps, 384)[n:]
    lists = []
    with engramdb.open(url) as db:
        for mode in ("unscoped", "scoped"):
            for i in range(reps):
                kw: dict[str, object] = {} if as_of is None else {"as_of": as_of}
                if mode == "scoped":
                    kw["namespace"] = f"scale/ns{i % NAMESPACES}"
                found = db.recall(queries[i], k=10, query_embedding=qv[i].tolist(), **kw)
                lists.append([[h.memory.id, h.memory.version, repr(h.score)]
                              for h in found.hits])
    Path(out).write_text(json.dumps(lists))
    print(f"{len(lists)} lists, {sum(len(x) == 10 for x in lists)} with 10 hits")


def compare(a_path: str, b_path: str) -> None:
    a = json.loads(Path(a_path).read_text())
    b = json.loads(Path(b_path).read_text())
    same = sum(x == y for x, y in zip(a, b, strict=True))
    order = sum([h[:2] for h in x] == [h[:2] for h in y] for x, y in zip(a, b, strict=True))
    print(f"identical ids, versions and order: {order} of {len(a)}; "
          f"with the same scores too: {same} of {len(a)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url")
    parser.add_argument("--out")
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--as-of", type=int, default=None)
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.url and args.out:
        dump(args.url, args.out, args.memories, args.queries, args.as_of)
    else:
        parser.error("give --url and --out, or --compare A B")


if __name__ == "__main__":
    main()
