"""Deferred durability of tool and procedure outcomes on SQLite (issue 11).

A single ``tool_outcome`` returns before its commit is synced; these tests
check the promises around that on a real SQLite file: the WAL is synced
within ``DEFERRED_FLUSH_S`` without any other write, closing the database
syncs at once, and a durable write after deferred ones is still ``FULL``.
(Surviving SIGKILL is in ``tests/test_crash.py``.)
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb.storage import base
from engramdb.storage.sqlite import flush


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The files ``os.fsync`` was called on by the deferred flush (the real fsync runs)."""
    paths: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(flush.os, "fsync", spy)
    return paths


def _agent(db: Any) -> Any:
    db.admin.create_agent("a")
    return db.as_agent("a")


def test_a_deferred_outcome_is_synced_within_the_flush_delay(tmp_path: Path,
                                                             synced: list[str]) -> None:
    with engramdb.open(tmp_path / "d.db", embedder=None) as db:
        a = _agent(db)
        wal = str(tmp_path / "d.db-wal")
        for _ in range(5):
            a.tool_outcome("fetch", True)
        assert synced == []  # returned before the sync
        deadline = time.monotonic() + base.DEFERRED_FLUSH_S + 2.0
        while not synced and time.monotonic() < deadline:
            time.sleep(0.02)
        assert synced == [wal]  # one sync for the five
        a.tool_outcome("fetch", False, durable=True)  # waits for SQLite's own sync
        time.sleep(base.DEFERRED_FLUSH_S + 0.3)
        assert synced == [wal]  # nothing deferred was pending


def test_closing_syncs_pending_deferred_outcomes_at_once(tmp_path: Path,
                                                         synced: list[str]) -> None:
    db = engramdb.open(tmp_path / "d.db", embedder=None)
    _agent(db).procedure("triage", "read the ticket")
    db.as_agent("a").procedure_outcome("triage", 1, True)
    db.close()
    assert synced == [str(tmp_path / "d.db-wal")]
    time.sleep(base.DEFERRED_FLUSH_S + 0.3)
    assert len(synced) == 1  # the timer was cancelled, not left to fire on a closed file


def test_writes_after_a_deferred_outcome_are_full_durable_again(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "d.db", embedder=None) as db:
        a = _agent(db)
        seen: list[str] = []
        writer = db.storage._conn("writer")  # this thread's writer connection
        writer.set_trace_callback(seen.append)
        a.tool_outcome("fetch", True)
        a.remember("a durable note")
        writer.set_trace_callback(None)
        levels = [s.split("=")[1].strip() for s in seen if s.startswith("PRAGMA synchronous")]
        assert levels == ["NORMAL", "FULL"]  # around the outcome's commit only
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert [s for s in seen if s == "COMMIT"] == ["COMMIT", "COMMIT"]


def test_deferred_outcomes_from_threads_all_count(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "d.db", embedder=None) as db:
        a = _agent(db)

        def record(k: int) -> None:
            for i in range(50):
                a.tool_outcome("fetch", (i + k) % 2 == 0, durable=i % 10 == 0)
        threads = [threading.Thread(target=record, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (st,) = a.tool_stats("fetch")
        assert (st.calls, st.successes) == (200, 100)
        assert db.verify().ok


@pytest.mark.postgres
def test_a_deferred_outcome_on_postgres_is_logged_and_shown_only_once_flushed(pg_url) -> None:
    # With early lock release a deferred outcome skips its own flush barrier; the
    # log's readers run theirs, so the change feed still shows it and verify holds.
    # (When its WAL reaches the disk is the server's; a test cannot see that.)
    with engramdb.open(pg_url, embedder=None, release_before_flush=True) as db:
        assert db.storage.release_before_flush, "the server commits synchronously"
        a = _agent(db)
        before = db.head().seq
        for i in range(5):
            a.tool_outcome("fetch", i % 2 == 0, latency_ms=float(i))
        a.tool_outcome("fetch", False, error="429", durable=True)
        kinds = [e.kind for e in db.changes(before)]
        assert kinds == ["tool.outcome"] * 6
        (st,) = a.tool_stats("fetch")
        assert (st.calls, st.successes, st.errors) == (6, 3, (("429", 1),))
        assert db.verify().ok
