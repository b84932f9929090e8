"""Tool statistics served from the ``tool_stats`` aggregate (issue 11, migration 0019).

Real SQLite files. Expected values are worked out by hand from the documented
rules (``ToolStats``, ``engramdb.audit.tool_stats``), never read back first.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.engine._commit import commit
from engramdb.engine.layers.procedures import tool_stats_of
from engramdb.storage.base import Insert
from tests.support.clock import WallClock
from tests.support.outcome_worker import record_outcomes
from tests.support.procs import gather

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        # Written as the engine before migration 0019 wrote them: outcomes, no aggregates.
        for ok, err in ((True, None), (False, "429"), (False, "429")):
            with db.storage.write("a") as w:
                commit(w, "tool.outcome", "a", "agents/a", None, [Insert("tool_outcomes", {
                    "id": f"o{w.tx}", "principal": "a", "namespace": "agents/a",
                    "tool": "search", "ok": int(ok), "latency_ms": 5.0, "error": err,
                    "metadata": {}, "tx": w.tx, "recorded_at": w.recorded_at})])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key IN "
                     "('tool_stats_filled', 'tool_stats_hourly_filled')")
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


_OUTCOME = st.tuples(st.integers(0, 5 * 60), st.booleans(),  # minute, ok
                     st.one_of(st.none(), st.sampled_from([1.0, 12.5, 80.0, 1234.0])),
                     st.sampled_from([None, "429", "timeout"]))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=st.lists(_OUTCOME, min_size=1, max_size=25),
       since=st.integers(-30, 6 * 60 * 60), batched=st.booleans())
def test_since_from_the_hourly_aggregate_equals_the_fold_of_the_outcomes_since(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        outcomes: list[tuple[int, bool, float | None, str | None]], since: int,
        batched: bool) -> None:
    # Whatever the times and the window, whole hours plus the edge count exactly the
    # outcomes recorded at or after ``since`` (seconds after the first whole hour),
    # as folding those outcome rows one by one does.
    path = tmp_path_factory.mktemp("since") / "s.db"
    with monkeypatch.context() as mp, engramdb.open(path, embedder=None) as db:
        a = _agent(db)
        clock = WallClock(mp, WallClock.next_hour())
        h = clock.now
        for minute, ok, ms, err in sorted(outcomes, key=lambda o: o[0]):
            clock.at(max(clock.now, h + timedelta(minutes=minute)))
            if batched:  # several at one time: one transaction, one hour
                a.tool_outcomes([{"tool": "t", "ok": ok, "latency_ms": ms, "error": err}] * 2)
            else:
                a.tool_outcome("t", ok, latency_ms=ms, error=err)
        t = h + timedelta(seconds=since)
        rows = [r for r in db.storage.fetch("tool_outcomes", {"tool": "t"})
                if r["recorded_at"] >= (t - _EPOCH) // timedelta(microseconds=1)]
        expected = [tool_stats_of("t", rows)] if rows else []
        assert db.tool_stats("t", since=t) == expected
        assert a.tool_stats(since=t) == expected
        assert db.verify().ok


def test_a_database_from_before_the_hourly_aggregate_gets_it_once_on_open(tmp_path: Path
                                                                          ) -> None:
    # As the engine wrote outcomes between migrations 0019 and 0022: each event with
    # its tool_stats rows, none hourly. Opening counts them into tool_stats_hourly by
    # one logged event, so since= and verify agree with the outcomes.
    from engramdb.audit.tool_stats import aggregate

    path = tmp_path / "old.db"
    with engramdb.open(path, embedder=None) as db:
        _agent(db)
        with db.storage.write("a") as w:
            rows = [{"id": f"o{i}", "principal": "a", "namespace": "agents/a",
                     "tool": "search", "ok": int(ok), "latency_ms": 5.0, "error": err,
                     "metadata": {}, "tx": w.tx, "recorded_at": w.recorded_at}
                    for i, (ok, err) in enumerate(((True, None), (False, "429"), (False, "429")))]
            commit(w, "tool.outcome", "a", "agents/a", None,
                   [Insert("tool_outcomes", r) for r in rows]
                   + [Insert("tool_stats", {**s, "tx": w.tx}) for s in aggregate(rows).values()])
        at = datetime.fromtimestamp(rows[0]["recorded_at"] / 1e6, UTC)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'tool_stats_hourly_filled'")
    for _ in range(2):  # the second open finds the work done
        with engramdb.open(path, embedder=None) as db:
            assert [e.kind for e in db.changes(0)].count("tool.stats") == 1
            (st,) = db.tool_stats("search", since=at)
            assert (st.calls, st.successes, st.errors) == (3, 1, (("429", 2),))
            assert db.tool_stats("search", since=at + timedelta(microseconds=1)) == []
            assert db.verify().ok
