"""Where a PostgreSQL recall's time goes: round trips and stages, per recall.

    PYTHONPATH=src:. python bench/profile_pg_recall.py --url URL [--memories N] [--queries Q]

On a database an earlier ``bench/scale_pg.py --no-time`` loaded (the same
corpus, seeded vectors, 20 namespaces, query embedding excluded, k=10), runs
Q recalls unscoped and Q scoped to one namespace and reports, p50 / p95 over
them: the whole recall, the storage's full-text and vector searches (asked
together, one round trip, where the code has ``search_text_and_vector``), the
hybrid ranking and the contested marks (wall ms), and the round trips to the
server per recall (a statement outside a pipeline is one, a pipeline is one).
A profile, not a benchmark: the wrappers cost a little; time the speed with
``bench/scale_pg.py`` (beside NumPy).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg

import engramdb
import engramdb.engine.recall as recall_module
from bench.scale import NAMESPACES, corpus, vectors

_trips = [0]


def _count_round_trips() -> None:
    execute, leave = psycopg.Connection.execute, psycopg.Pipeline.__exit__

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._pipeline is None:
            _trips[0] += 1
        return execute(self, *args, **kwargs)

    def counted_exit(self: Any, *args: Any) -> Any:
        if self.level == 1:  # the outermost block: its results are waited for here
            _trips[0] += 1
        return leave(self, *args)

    psycopg.Connection.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Pipeline.__exit__ = counted_exit  # type: ignore[method-assign]


def _timed(owner: Any, name: str, label: str, spent: dict[str, float]) -> None:
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    n, reps = args.memories, args.queries
    texts = corpus(n + reps)
    queries = [" ".join(t.split()[:6]) for t in texts[-reps:]]
    qv = vectors(n + reps, 384)[n:]
    _count_round_trips()
    spent: dict[str, float] = {}
    load = os.getloadavg()
    out: dict[str, Any] = {}
    with engramdb.open(args.url) as db:
        _timed(db.storage, "search_text", "text", spent)
        _timed(db.storage, "search_vector", "vector", spent)
        if hasattr(db.storage, "search_text_and_vector"):  # both in one round trip
            _timed(db.storage, "search_text_and_vector", "text_vector", spent)
        _timed(recall_module, "rank_hybrid", "rank", spent)
        _timed(db._svc.inbox, "mark_contested", "contested", spent)
        db.recall(queries[0], k=10, query_embedding=qv[0].tolist())  # warm-up
        for mode in ("unscoped", "scoped"):
            rows = []
            for i in range(reps):
                spent.clear()
                _trips[0] = 0
                scope = {"namespace": f"scale/ns{i % NAMESPACES}"} if mode == "scoped" else {}
                start = time.perf_counter()
                db.recall(queries[i], k=10, query_embedding=qv[i].tolist(), **scope)
                rows.append({**{k: v * 1000 for k, v in spent.items()},
                             "recall": (time.perf_counter() - start) * 1000,
                             "round_trips": _trips[0]})
            out[mode] = {key: [round(float(np.percentile([r.get(key, 0.0) for r in rows], p)), 1)
                               for p in (50, 95)]
                         for key in ("recall", "text", "vector", "text_vector", "rank",
                                     "contested", "round_trips")}
    print(json.dumps({"memories": n, "queries": reps, **out, "load_start": load,
                      "load_end": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
