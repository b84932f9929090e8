"""A PostgreSQL handle opened before ``fork()`` works in the children and in the parent.

Real processes (``multiprocessing`` with the fork start method, what gunicorn
``--preload`` and Celery prefork do) and the real PostgreSQL. The parent has
connected (its pool holds open sessions) before it forks; children and parent
then write and recall at the same time. Sharing the parent's sockets would
interleave two processes' protocol messages on one server session; closing
them in a child would end the parent's sessions.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import engramdb
from tests.conftest import _postgres

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")]

ROUNDS = 25


def _work(db: engramdb.Database, who: str) -> int:
    found = 0
    for i in range(ROUNDS):
        db.remember(f"{who} wrote note {i} about the shared ledger", namespace=f"fork/{who}")
        found += len(db.recall(f"{who} ledger note {i}", namespace=f"fork/{who}", k=3).hits)
    return found


def _child(db: engramdb.Database, who: str, queue: Any) -> None:
    try:
        queue.put((who, _work(db, who), os.getpid()))
    except BaseException as exc:  # report, never hang the parent
        queue.put((who, repr(exc), os.getpid()))
    finally:
        db.close()


def test_forked_children_and_the_parent_use_their_own_connections(tmp_path: Path, request):
    db = _postgres(tmp_path, None, request)
    try:
        db.remember("written before the fork", namespace="fork/parent")
        assert len(db.recall("written before the fork", namespace="fork/parent").hits) == 1

        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        children = [ctx.Process(target=_child, args=(db, f"child{n}", queue)) for n in range(2)]
        for child in children:
            child.start()
        parent: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: parent.update(found=_work(db, "parent")))
        worker.start()
        results = {}
        for _ in children:
            who, found, pid = queue.get(timeout=300)
            results[who] = (found, pid)
        for child in children:
            child.join(timeout=60)
        worker.join(timeout=300)

        assert all(isinstance(found, int) for found, _ in results.values()), results
        assert all(found >= ROUNDS for found, _ in results.values())  # each finds its notes
        assert parent["found"] >= ROUNDS
        assert [c.exitcode for c in children] == [0, 0]
        # The children's exits left the parent's sessions alone: it keeps working,
        # and sees what the children wrote.
        for who in ("child0", "child1", "parent"):
            hits = db.recall(f"{who} wrote note", namespace=f"fork/{who}", k=50).hits
            assert len(hits) == ROUNDS
        db.remember("written after the children exited", namespace="fork/parent")
        assert db.verify().ok
    finally:
        db.close()
