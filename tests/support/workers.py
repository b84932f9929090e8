"""Code that runs in child processes for the concurrency and crash tests.

Two entry points, each a real client of the public API in its own process:

* :func:`cas_worker` is started with ``multiprocessing`` (spawn) by
  ``tests/test_concurrency.py``: it opens the shared SQLite file as one agent
  and performs compare-and-swap increments until it has its quota of
  acknowledged ones, reporting what it counted through a queue.
* ``python tests/support/workers.py remember-stream PATH`` is started with
  ``subprocess`` by ``tests/test_crash.py`` and killed with SIGKILL: it writes
  forever and prints each acknowledged write to stdout (flushed) only after
  the call that made it has returned, so the parent knows exactly which
  writes the database promised to keep.

Both open the database with ``embedder=None``: the properties under test
(serialised writers, compare-and-swap, durability of the log) do not depend on
embeddings, and loading the model in every child would cost seconds each.
"""

from __future__ import annotations

import random
import sys
import traceback
from typing import Any

import engramdb
from engramdb import VersionConflict

__all__ = ["cas_worker", "outcome_stream", "remember_stream"]


def cas_worker(path: str, agent: str, ids: list[str], quota: int, seed: int,
               barrier: Any, results: Any) -> None:
    """Increment counters by compare-and-swap until ``quota`` increments are acknowledged.

    Each counter memory holds its value as text. One increment reads the
    current version with ``get``, writes ``str(value + 1)`` with
    ``expected_version`` and, on :class:`VersionConflict`, re-reads and retries.
    An increment counts only once ``update`` has returned.

    Args:
        path: the SQLite file every worker shares.
        agent: the principal this process acts as (its name ends up as author).
        ids: the counter memories to pick from.
        quota: acknowledged increments to make before stopping.
        seed: seeds the choice of counter, so runs are reproducible.
        barrier: a ``multiprocessing`` barrier so that every worker starts together.
        results: a ``multiprocessing`` queue receiving one dict per worker.
    """
    try:
        rng = random.Random(seed)
        acked = dict.fromkeys(ids, 0)
        conflicts = 0
        with engramdb.open(path, embedder=None) as db:
            me = db.as_agent(agent)
            barrier.wait(timeout=120)
            for _ in range(quota):
                mid = rng.choice(ids)
                while True:
                    current = me.get(mid)
                    try:
                        me.update(mid, text=str(int(current.text) + 1),
                                  expected_version=current.version)
                    except VersionConflict as exc:
                        if exc.current_version is None or exc.current_version <= current.version:
                            raise AssertionError(
                                f"conflict reported version {exc.current_version} after "
                                f"reading {current.version}"
                            ) from exc
                        conflicts += 1
                        continue
                    acked[mid] += 1
                    break
        results.put({"agent": agent, "acked": acked, "conflicts": conflicts, "error": None})
    except BaseException:
        results.put({"agent": agent, "acked": {}, "conflicts": 0,
                     "error": traceback.format_exc()})


def remember_stream(path: str) -> None:
    """Write forever; print each acknowledged write after its call returns.

    Lines: ``ready`` once the database is open; ``one <id>`` after a single
    ``remember``; ``tx <group> <id> <id> <id>`` after a three-memory
    transaction has committed. Every memory carries ``metadata.group`` so the
    parent can check that a transaction is all or nothing after the crash.
    """
    out = sys.stdout
    with engramdb.open(path, embedder=None) as db:
        print("ready", file=out, flush=True)
        group = 0
        while True:
            group += 1
            if group % 2:
                m = db.remember(f"stream note {group}", namespace="crash/stream",
                                metadata={"group": group, "size": 1})
                print(f"one {m.id}", file=out, flush=True)
            else:
                with db.transaction() as tx:
                    ids = [tx.remember(f"stream batch {group} part {i}", namespace="crash/tx",
                                       metadata={"group": group, "size": 3}).id
                           for i in range(3)]
                print(f"tx {group} {' '.join(ids)}", file=out, flush=True)


def outcome_stream(path: str) -> None:
    """Record deferred tool outcomes forever; print ``outcome <n>`` after each returns.

    Every tenth is a durable ``remember`` instead (``one <id>``), so deferred and
    durable commits interleave in the WAL as they do in an agent's loop.
    """
    out = sys.stdout
    with engramdb.open(path, embedder=None) as db:
        db.admin.create_agent("worker")
        me = db.as_agent("worker")
        print("ready", file=out, flush=True)
        n = 0
        while True:
            n += 1
            if n % 10 == 0:
                m = me.remember(f"stream note {n}", metadata={"group": n, "size": 1})
                print(f"one {m.id}", file=out, flush=True)
            else:
                me.tool_outcome("fetch", n % 3 != 0, latency_ms=float(n % 50))
                print(f"outcome {n}", file=out, flush=True)


_MODES = {"remember-stream": remember_stream, "outcome-stream": outcome_stream}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in _MODES:
        sys.exit(f"usage: workers.py {'|'.join(_MODES)} PATH")
    _MODES[sys.argv[1]](sys.argv[2])
