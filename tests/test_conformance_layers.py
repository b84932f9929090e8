"""Conformance of the memory layers: every new call on SQLite, PostgreSQL and over HTTP.

Same ``db`` fixture as ``test_conformance.py`` (every backend and door, the
real embedder); only the public API. Expected values are worked out by hand
from the documented rules, never read back from the engine first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engramdb import NotFound, PermissionDenied, VersionConflict
from engramdb.errors import BlockTooLarge, InvalidInput, LLMNotConfigured
from engramdb.retrieval.tokens import count_tokens
from tests.conftest import CONFORMANCE
from tests.support.clock import WallClock


@pytest.fixture(params=CONFORMANCE)
def backend(request) -> str:
    """Every backend and door of ``db``, the MCP door included (tests/conftest.py)."""
    return request.param


T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def head_seq(db: Any) -> int:
    seq = 0
    for event in db.changes(0):
        seq = event.seq
    return seq


def agents(db: Any, *names: str) -> list[Any]:
    for n in names:
        db.admin.create_agent(n)
    return [db.as_agent(n) for n in names]


# -- working blocks ------------------------------------------------------------------------


@pytest.mark.uses("changes")
def test_pin_versions_compare_and_swap_limits_and_unpin(db: Any) -> None:
    (a,) = agents(db, "alice")
    goal = a.pin("goal", "Ship v1 by Friday", limit_tokens=10)
    assert (goal.version, goal.layer, goal.namespace, goal.author) == (
        1, "working", "agents/alice", "alice")
    assert goal.metadata["block"] == "goal"
    plan = a.pin("plan", "1. tests 2. docs", session="s1")
    assert a.pin("goal", "Ship v1 by Monday", expected_version=1).version == 2
    with pytest.raises(VersionConflict) as err:
        a.pin("goal", "Ship v1 next year", expected_version=1)
    assert err.value.details["current_version"] == 2
    with pytest.raises(VersionConflict):
        a.pin("goal", "a second goal", expected_version=0)  # create-only, but it exists
    # The limit given at version 1 still holds: 11+ tokens are refused, not cut.
    long = "Ship v1 by Monday and then v2 by the end of the following month"
    assert count_tokens(long) > 10
    before = head_seq(db)
    with pytest.raises(BlockTooLarge):
        a.pin("goal", long)
    assert head_seq(db) == before
    assert [(m.metadata["block"], m.text) for m in a.blocks()] == [
        ("goal", "Ship v1 by Monday")]
    assert {m.metadata["block"] for m in a.blocks("s1")} == {"goal", "plan"}
    assert [m.text for m in db.history(goal.id)] == ["Ship v1 by Friday", "Ship v1 by Monday"]
    gone = a.unpin("plan", session="s1")
    assert (gone.id, gone.status) == (plan.id, "retracted")
    assert [m.metadata["block"] for m in a.blocks("s1")] == ["goal"]
    with pytest.raises(NotFound):
        a.unpin("plan", session="s1")
    with pytest.raises(InvalidInput):
        a.pin("", "text")
    with pytest.raises(InvalidInput):
        a.pin("goal", "text", limit_tokens=0)


# -- episodes ------------------------------------------------------------------------------


def test_episodes_in_order_by_session_agent_and_time(db: Any) -> None:
    a, b = agents(db, "alice", "bob")
    a.episode("s1", "user", "Book a flight to Oslo", at=T0 + timedelta(minutes=2))
    a.episode("s1", "assistant", "Three flights found", at=T0 + timedelta(minutes=3),
              metadata={"tool": "flights"})
    a.episode("s1", "user", "Hello", at=T0)  # recorded late, happened first
    a.episode("s2", "user", "Another session", at=T0 + timedelta(minutes=5))
    b.episode("s9", "user", "Bob's own session", at=T0 + timedelta(minutes=1))

    s1 = a.episodes("s1")
    assert [(e.metadata["role"], e.text) for e in s1] == [
        ("user", "Hello"), ("user", "Book a flight to Oslo"), ("assistant", "Three flights found")]
    assert all(e.layer == "episodic" and e.session == "s1" for e in s1)
    assert s1[2].metadata == {"tool": "flights", "role": "assistant"}
    assert [e.text for e in a.episodes("s1", limit=2)] == [
        "Book a flight to Oslo", "Three flights found"]
    window = a.episodes(agent="alice", since=T0 + timedelta(minutes=2),
                        until=T0 + timedelta(minutes=4))
    assert [e.text for e in window] == ["Book a flight to Oslo", "Three flights found"]
    # Bob cannot read Alice's episodes without a grant; then he can.
    assert b.episodes("s1") == [] and b.episodes(agent="alice") == []
    assert [e.text for e in b.episodes()] == ["Bob's own session"]
    db.admin.grant("bob", "agents/alice", ["read"])
    assert [e.text for e in b.episodes("s1")] == [e.text for e in s1]
    with pytest.raises(PermissionDenied):
        b.episode("s1", "user", "injected", namespace="agents/alice")
    with pytest.raises(InvalidInput):
        a.episode("", "user", "no session")
    with pytest.raises(InvalidInput):
        a.episode("s1", "user", "x", metadata={"role": "spoofed"})


@pytest.mark.uses("changes")
def test_summarize_without_a_model_and_extract_needs_one(db: Any) -> None:
    (a,) = agents(db, "alice")
    a.episode("s1", "user", "Book a flight to Oslo for Friday. I prefer a window seat.")
    a.episode("s1", "assistant", "The morning SAS flight to Oslo leaves at 07:10. "
              "It has window seats left.")
    sources = a.episodes("s1")
    summary = a.summarize("s1")
    assert summary.layer == "episodic" and summary.author == "alice"
    assert summary.metadata["summary_of"] == "s1" and summary.metadata["episodes"] == 2
    assert summary.metadata["method"] == "extractive"
    assert summary.text.startswith("Summary of session s1 (2 episodes")
    # Extractive: every summary line is a sentence said in the session, by its speaker.
    said = {f"{e.metadata['role']}: {s}" for e in sources
            for s in e.text.replace(". ", ".\n").split("\n")}
    lines = summary.text.split("\n")[1:]
    assert lines and set(lines) <= said
    # Its sources are recorded in the same transaction, one row per episode.
    derived = [e for e in db.changes(0) if e.kind == "memory.derived"]
    assert len(derived) == 1 and derived[0].subject_ref == summary.id
    rows = [eff["row"] for eff in derived[0].payload["effects"]]
    assert {(r["source_id"], r["source_version"], r["kind"], r["derived_version"])
            for r in rows} == {(e.id, 1, "summary", 1) for e in sources}
    assert a.episodes("s1") == sources  # a summary is not an episode of the session

    before = head_seq(db)
    with pytest.raises(LLMNotConfigured, match="ENGRAM_LLM_URL"):
        a.extract("s1")
    with pytest.raises(LLMNotConfigured):
        a.summarize("s1", method="llm")
    with pytest.raises(NotFound):
        a.summarize("no-such-session")
    assert head_seq(db) == before


# -- tools and procedures --------------------------------------------------------------------


def test_tool_stats_match_a_hand_computed_expectation(db: Any) -> None:
    a, b = agents(db, "alice", "bob")
    script = [  # oldest first: ok, latency, error
        (True, 100, None), (True, 200, None), (False, 300, "429"),
        (True, 400, None), (False, 500, "timeout"), (False, 600, "429")]
    for ok, ms, err in script:
        a.tool_outcome("web_search", ok, latency_ms=ms, error=err)
    b.tool_outcome("web_search", True, latency_ms=50)
    b.tool_outcome("calculator", True)

    (st,) = a.tool_stats("web_search")
    assert (st.tool, st.calls, st.successes, st.success_rate) == ("web_search", 6, 3, 0.5)
    # newest first the outcomes are F F T F T T, weighted 0.5 ** (age / 10)
    w = [0.5 ** (age / 10) for age in range(6)]
    assert st.recent_rate == pytest.approx((w[2] + w[4] + w[5]) / sum(w))
    assert st.recent_rate < st.success_rate  # the newest calls failed
    assert st.last_10_failures == 3
    assert (st.latency_p50_ms, st.latency_p95_ms) == (300.0, 600.0)  # nearest rank
    assert st.errors == (("429", 2), ("timeout", 1))
    assert st.agents == ("alice",)
    assert "3 of the last 6 calls failed" in st.note() and "429" in st.note()

    # Fleet-wide for whoever may read both agents' outcomes (the admin).
    fleet = {s.tool: s for s in db.tool_stats()}
    assert (fleet["web_search"].calls, fleet["web_search"].agents) == (7, ("alice", "bob"))
    assert fleet["calculator"].calls == 1
    assert [s.calls for s in db.tool_stats("web_search", agent="bob")] == [1]
    assert db.tool_stats(since=datetime.now(UTC) + timedelta(hours=1)) == []
    # Bob sees only his own until he may read Alice's namespace.
    assert {(s.tool, s.calls) for s in b.tool_stats()} == {("web_search", 1), ("calculator", 1)}
    db.admin.grant("bob", "agents/alice", ["read"])
    assert [s.calls for s in b.tool_stats("web_search")] == [7]
    with pytest.raises(InvalidInput):
        a.tool_outcome("web_search", "yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        a.tool_outcome("web_search", True, latency_ms=-1)


def test_outcomes_are_recorded_alike_deferred_or_durable(db: Any) -> None:
    # Durability is when the call returns, not what it records: both count.
    (a,) = agents(db, "alice")
    a.tool_outcome("fetch", True, latency_ms=5)
    a.tool_outcome("fetch", False, error="429", durable=True)
    a.procedure("triage", "read the ticket, then the logs")
    a.procedure_outcome("triage", 1, True)
    a.procedure_outcome("triage", 1, False, durable=True)
    (st,) = a.tool_stats("fetch")
    assert (st.calls, st.successes, st.errors) == (2, 1, (("429", 1),))
    (proc,) = a.procedures()
    assert [(v.version, v.uses, v.successes) for v in proc.versions] == [(1, 2, 1)]
    for bad in ("yes", 1):
        with pytest.raises(InvalidInput, match="durable"):
            a.tool_outcome("fetch", True, durable=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="durable"):
            a.procedure_outcome("triage", 1, True, durable=bad)  # type: ignore[arg-type]
    assert a.tool_stats("fetch")[0].calls == 2  # the refused calls wrote nothing


@pytest.mark.uses("verify")
def test_tool_stats_since_a_time_count_whole_hours_and_the_edge(db: Any, monkeypatch) -> None:
    # Answered from the hourly aggregate: whole hours after ``since`` plus the
    # outcomes of since's own hour from since on. Outcomes at chosen times.
    a, b = agents(db, "alice", "bob")
    clock = WallClock(monkeypatch, WallClock.next_hour(plus=24))
    h = clock.now  # a whole hour
    script = [  # minutes after h, agent, tool, ok, latency, error
        (10, a, "web_search", True, 100, None), (20, a, "web_search", False, 200, "429"),
        (30, b, "web_search", True, 50, None), (40, a, "web_search", True, 300, None),
        (65, a, "web_search", False, 400, "timeout"), (110, a, "web_search", True, 500, None),
        (120, b, "calculator", True, None, None), (180, a, "web_search", False, 600, "429")]
    for minutes, who, tool, ok, ms, err in script:
        clock.at(h + timedelta(minutes=minutes))
        who.tool_outcome(tool, ok, latency_ms=ms, error=err)
    clock.at(h + timedelta(minutes=200))

    # From 20 minutes into the first hour: its outcomes from then on, then whole hours.
    (st,) = a.tool_stats("web_search", since=h + timedelta(minutes=20))
    assert (st.calls, st.successes) == (5, 2)  # F(20) T(40) F(65) T(110) F(180)
    assert st.errors == (("429", 2), ("timeout", 1))
    # nearest rank over 200, 300, 400, 500, 600: rank 3 and rank 5
    assert (st.latency_p50_ms, st.latency_p95_ms) == (400.0, 600.0)
    w = [0.5 ** (age / 10) for age in range(5)]  # newest first: F T F T F
    assert st.recent_rate == pytest.approx((w[1] + w[3]) / sum(w))
    assert st.last_10_failures == 3
    assert st.last_at == h + timedelta(minutes=180)
    # An hour boundary: whole hours only.
    (st,) = a.tool_stats("web_search", since=h + timedelta(hours=1))
    assert (st.calls, st.successes, st.errors) == (3, 1, (("429", 1), ("timeout", 1)))
    # Fleet-wide (the admin reads both agents), since 25 minutes in, as an ISO string.
    fleet = {s.tool: s for s in db.tool_stats(since=(h + timedelta(minutes=25)).isoformat())}
    assert sorted(fleet) == ["calculator", "web_search"]
    assert (fleet["web_search"].calls, fleet["web_search"].successes) == (5, 3)
    assert fleet["web_search"].agents == ("alice", "bob")
    assert (fleet["web_search"].latency_p50_ms, fleet["web_search"].latency_p95_ms) == (
        400.0, 600.0)  # 50, 300, 400, 500, 600: ranks 3 and 5
    assert (fleet["calculator"].calls, fleet["calculator"].latency_p50_ms) == (1, None)
    assert [s.calls for s in db.tool_stats("web_search", since=h, agent="bob")] == [1]
    # Bob reads only his own outcomes.
    assert {(s.tool, s.calls) for s in b.tool_stats(since=h)} == {
        ("web_search", 1), ("calculator", 1)}
    # The edge alone (all in since's hour), and nothing after the last call.
    assert [(s.calls, s.successes) for s in a.tool_stats(
        "web_search", since=h + timedelta(minutes=180, microseconds=1))] == []
    assert [(s.calls, s.errors) for s in a.tool_stats(
        "web_search", since=h + timedelta(minutes=179))] == [(1, (("429", 1),))]
    assert db.tool_stats(since=h + timedelta(hours=5)) == []
    assert db.verify().ok


@pytest.mark.uses("changes")
def test_tool_outcomes_batch_is_one_write_all_or_nothing(db: Any) -> None:
    (a,) = agents(db, "alice")
    db.admin.grant("alice", "team/tools", ["read", "write"])
    before = head_seq(db)
    assert a.tool_outcomes([
        {"tool": "web_search", "ok": True, "latency_ms": 120},
        {"tool": "web_search", "ok": False, "latency_ms": 900, "error": "429"},
        {"tool": "calculator", "ok": True, "namespace": "team/tools"},
    ]) == 3
    # one event per namespace
    assert [(e.kind, e.namespace) for e in db.changes(before)] == [
        ("tool.outcome", "agents/alice"), ("tool.outcome", "team/tools")]
    assert {(s.tool, s.calls, s.successes, s.errors) for s in a.tool_stats()} == {
        ("web_search", 2, 1, (("429", 1),)), ("calculator", 1, 1, ())}
    assert a.tool_outcomes([]) == 0
    before = head_seq(db)
    with pytest.raises(InvalidInput, match=r"outcomes?[ .]1"):  # names the bad item
        a.tool_outcomes([{"tool": "web_search", "ok": True}, {"tool": "web_search", "ok": 1}])
    with pytest.raises(InvalidInput, match=r"outcomes?[ .]0"):
        a.tool_outcomes([{"tool": "web_search", "ok": True, "latency": 3}])
    with pytest.raises(InvalidInput):
        a.tool_outcomes({"tool": "web_search", "ok": True})  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        a.tool_outcomes([{"tool": "web_search", "ok": True},
                         {"tool": "web_search", "ok": True, "namespace": "elsewhere"}])
    assert head_seq(db) == before  # nothing of a refused batch was written
    assert [s.calls for s in a.tool_stats("web_search")] == [2]
    assert db.verify().ok


def test_procedure_versions_outcomes_and_recommendation(db: Any) -> None:
    a, b = agents(db, "alice", "bob")
    db.admin.grant("bob", "team/playbooks", ["read"])
    db.admin.grant("alice", "team/playbooks", ["read", "write"])
    v1 = a.procedure("triage", "Read the ticket, then ask for logs", namespace="team/playbooks")
    v2 = a.procedure("triage", "Read the ticket, reproduce the bug, bisect, then ask for logs",
                     namespace="team/playbooks", expected_version=1)
    assert (v1.id, v1.version, v2.id, v2.version) == (v2.id, 1, v1.id, 2)
    assert v2.layer == "procedural"
    with pytest.raises(VersionConflict):
        a.procedure("triage", "stale edit", namespace="team/playbooks", expected_version=1)
    # Scripted history: version 1 succeeds 2 of 6 times, version 2 5 of 6 (Bob reports).
    for ok in (True, False, False, True, False, False):
        b.procedure_outcome("triage", 1, ok, namespace="team/playbooks")
    for ok in (True, True, False, True, True, True):
        b.procedure_outcome("triage", 2, ok, namespace="team/playbooks")
    with pytest.raises(NotFound):
        b.procedure_outcome("triage", 3, True, namespace="team/playbooks")

    # Outcomes live in Bob's namespace: the admin and Bob count them.
    for who in (db, b):
        (info,) = who.procedures("team/**")
        assert (info.name, info.version, info.text) == ("triage", 2, v2.text)
        assert [(v.version, v.uses, v.successes) for v in info.versions] == [
            (1, 6, 2), (2, 6, 5)]
    rec = b.recommend("triage a support ticket", k=3)
    assert rec[0].kind == "procedure" and (rec[0].name, rec[0].version) == ("triage", 2)
    assert rec[0].expected_rate == pytest.approx((5 + 1) / (6 + 2))
    assert (rec[0].evidence["uses"], rec[0].evidence["successes"]) == (6, 5)
    assert [v["successes"] for v in rec[0].evidence["versions"]] == [2, 5]
    # Alice may not read Bob's outcomes: to her, no version has evidence yet.
    (mine,) = a.procedures("team/**")
    assert [(v.uses, v.successes) for v in mine.versions] == [(0, 0), (0, 0)]
    assert b.procedures("agents/**") == []


# -- the context builder ----------------------------------------------------------------------


@pytest.mark.uses("context.tokenizer")
def test_context_assembles_four_layers_within_budget_and_quota(db: Any) -> None:
    (a,) = agents(db, "alice")
    db.admin.grant("alice", "travel/**", ["read", "write"])
    goal = a.pin("goal", "Get Dana to Oslo by Friday under 400 EUR")
    a.procedure("book-flight", "Search flights with web_search, compare prices, then book",
                namespace="travel/playbooks")
    for i in range(10):
        a.tool_outcome("web_search", i % 5 not in (1, 2), error=None if i % 5 not in (1, 2)
                       else "429")
    pos = a.remember("Dana's budget for the Oslo trip is positive", namespace="travel/dana",
                     subject="person:dana", predicate="trip_budget", value="ok")
    neg = a.remember("Dana's budget for the Oslo trip is exhausted", namespace="travel/dana",
                     subject="person:dana", predicate="trip_budget", value="exhausted")
    for i in range(6):
        a.episode("s1", "user" if i % 2 == 0 else "assistant",
                  f"Step {i}: we discussed the Oslo flight options, seats and prices at length "
                  "with several detours about hotels and trains")
    task = "book a flight to Oslo for Dana with web_search"

    ctx = a.context(task, 600, session="s1")
    assert ctx.tokens == count_tokens(ctx.text) <= 600
    kinds = [p.kind for p in ctx.parts]
    assert kinds[0] == "block" and "[pinned] [goal]: " + goal.text in ctx.parts[0].text
    assert {"block", "procedure", "tool", "fact", "episode"} <= set(kinds)
    assert [p.text for p in ctx.parts] == ctx.text.split("\n")
    assert all(p.tokens == count_tokens(p.text) for p in ctx.parts)
    tool = next(p for p in ctx.parts if p.kind == "tool")
    assert "web_search: 4 of the last 10 calls failed" in tool.text and "429" in tool.text
    contested = [p for p in ctx.parts if "[contested]" in p.text]
    assert {p.memory_id for p in contested} == {pos.id, neg.id}
    assert any(f"[rival {neg.id}]" in p.text for p in contested)
    # The receipt is exactly the memories shown, in text order.
    assert [(i.id, i.version) for i in ctx.receipt.items] == [
        (p.memory_id, p.version) for p in ctx.parts if p.memory_id is not None]
    assert [(h.memory.id, h.memory.version) for h in ctx.items] == [
        (i.id, i.version) for i in ctx.receipt.items]
    assert a.decide("book the SAS flight", basis=ctx.receipt).basis

    small = a.context(task, 600, session="s1", quotas={"episodic": 60})
    assert sum(p.tokens + 1 for p in small.parts if p.layer == "episodic") <= 60 + 1
    assert any(x.layer == "episodic" and x.reason == "quota" for x in small.left_out)
    tight = a.context(task, 40, session="s1")
    assert tight.tokens <= 40 and tight.parts[0].kind == "block"
    assert tight.left_out and all(x.reason in ("budget", "quota") for x in tight.left_out)
    with pytest.raises(InvalidInput):
        a.context(task, 100, quotas={"dreams": 5})
    with pytest.raises(InvalidInput):
        a.context(task, 100, tokenizer="o200k_base")  # would download its ranks
