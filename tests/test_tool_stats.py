"""Tool statistics served from the ``tool_stats`` aggregate (issue 11, migration 0019).

Real SQLite files. Expected values are worked out by hand from the documented
rules (``ToolStats``, ``engramdb.audit.tool_stats``), never read back first.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb.engine._commit import commit
from engramdb.storage.base import Insert
from tests.support.outcome_worker import record_outcomes
from tests.support.procs import gather


def _agent(db: Any, name: str = "a") -> Any:
    db.admin.create_agent(name)
    return db.as_agent(name)


def test_stats_beyond_the_recency_window_follow_the_documented_rule(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "s.db", embedder=None) as db:
        a = _agent(db)
        # 100 calls, oldest first: the first 36 all fail, then 64 alternate ok / fail
        # (ending on ok), with latencies 1..100 ms and one 1234.5 ms outlier.
        script = [False] * 36 + [i % 2 == 1 for i in range(64)]
        for i, ok in enumerate(script):
            a.tool_outcome("search", ok, latency_ms=1234.5 if i == 99 else float(i + 1),
                           error=None if ok else ("429" if i < 36 else "timeout"))
        (st,) = a.tool_stats("search")
        assert (st.calls, st.successes, st.success_rate) == (100, 32, 0.32)
        # newest first: ok, fail, ok, ... (64 weighed one by one); the 36 older ones
        # keep their weights 0.5 ** (age / 10), age 64..99, at their mean rate (0/36).
        d = 0.5 ** 0.1
        window = sum(d ** age for age in range(64) if age % 2 == 0)
        total = sum(d ** age for age in range(100))
        assert st.recent_rate == pytest.approx(window / total)
        assert st.last_10_failures == 5
        # nearest rank over 1..99 and 1234.5 (kept to 3 significant digits: 1230)
        assert (st.latency_p50_ms, st.latency_p95_ms) == (50.0, 95.0)
        assert st.errors == (("429", 36), ("timeout", 32))
        assert db.verify().ok


def test_latency_bins_keep_three_significant_digits(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "s.db", embedder=None) as db:
        a = _agent(db)
        a.tool_outcome("slow", True, latency_ms=1234.5)
        a.tool_outcome("slow", True, latency_ms=0.00123456)
        (st,) = a.tool_stats("slow")
        assert (st.latency_p50_ms, st.latency_p95_ms) == (0.00123, 1230.0)


def test_verify_refolds_the_aggregate_from_the_outcomes(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "s.db", embedder=None) as db:
        a = _agent(db)
        a.tool_outcome("search", True, latency_ms=10.0)
        assert db.verify().ok
        # A logged event whose aggregate row counts an outcome that is not there:
        # the chain and the replay hold, the fold does not.
        with db.storage.write("admin") as w:
            commit(w, "tool.outcome", "admin", "agents/a", None, [Insert("tool_stats", {
                "namespace": "agents/a", "principal": "a", "tool": "ghost", "kind": "total",
                "label": "", "calls": 3, "successes": 3, "last_at": 1, "tx": w.tx})])
        report = db.verify()
        assert not report.ok
        assert "tool_stats" in (report.problem or "") and "ghost" in (report.problem or "")
        assert report.first_bad_seq == db.storage.head().seq


def test_outcomes_recorded_before_the_aggregate_are_counted_once_on_open(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "old.db"
    with engramdb.open(path, embedder=None) as db:
        _agent(db)
        # Written as the engine before migration 0019 wrote them: outcomes, no aggregate.
        for ok, err in ((True, None), (False, "429"), (False, "429")):
            with db.storage.write("a") as w:
                commit(w, "tool.outcome", "a", "agents/a", None, [Insert("tool_outcomes", {
                    "id": f"o{w.tx}", "principal": "a", "namespace": "agents/a",
                    "tool": "search", "ok": int(ok), "latency_ms": 5.0, "error": err,
                    "metadata": {}, "tx": w.tx, "recorded_at": w.recorded_at})])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'tool_stats_filled'")
    for n in range(2):  # the second open finds the work done: no second event
        with engramdb.open(path, embedder=None) as db:
            kinds = [e.kind for e in db.changes(0)]
            assert kinds.count("tool.stats") == 1
            (st,) = db.tool_stats("search")
            assert (st.calls, st.successes, st.errors) == (3 + n, 1 + n, (("429", 2),))
            assert db.verify().ok
            db.as_agent("a").tool_outcome("search", True)
    with engramdb.open(path, embedder=None) as db:
        assert (db.tool_stats("search")[0].calls, db.tool_stats("search")[0].successes) == (5, 3)
        assert db.verify().ok


def test_two_processes_recording_the_same_tool_lose_no_count(tmp_path: Path) -> None:
    path = str(tmp_path / "engram.db")
    with engramdb.open(path, embedder=None) as db:
        db.admin.create_agent("ann")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=record_outcomes, args=(path, "ann", 150, barrier, results))
             for _ in range(2)]
    errors = gather(procs, results, timeout=240)
    assert errors == [None, None]
    with engramdb.open(path, embedder=None) as db:
        (st,) = db.tool_stats("fetch")
        # each process: i in 0..149, failing when i % 3 == 0 (50 of 150), with "timeout"
        assert (st.calls, st.successes, st.errors) == (300, 200, (("timeout", 100),))
        assert (st.latency_p50_ms, st.latency_p95_ms) == (3.0, 6.0)
        assert db.verify().ok
