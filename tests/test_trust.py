"""Multi-agent trust: conflicts as data, quarantine, rollback, retiring agents, provenance.

The Company X scenario of docs/trust.md runs here for every policy: a research
agent and a risk agent write contradicting outlook assertions at the same
moment (two threads released by one barrier) into a shared namespace; each
test checks what the database holds, what a third agent's ``recall``
returns, what the conflict inbox says, and that nothing was lost.

Tests run on the engine over every storage backend (SQLite file, real
PostgreSQL) with the real embedder.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb import ContradictionError, NotFound, PermissionDenied, Unauthenticated
from engramdb.errors import InvalidInput, InvalidMetadata, InvalidPolicy, ValueTypeError
from engramdb.policy.judge import HeuristicJudge, LLMJudge
from tests.support.openai_server import OpenAICompatServer

NS = "acme/companies/x"
RESEARCH = "Company X earnings outlook is positive"
RISK = "Company X regulatory exposure is elevated, outlook uncertain"

# The read audit flushes its buffer from a background thread (every second or
# 256 reads), so a slow run may log a ``reads.recorded`` event between any two
# writes; assertions about the events a write logs leave those out.
READS = "reads.recorded"


@pytest.fixture
def tdb(engine_db) -> engramdb.Database:
    """The engine below every door, on each storage backend (conftest's ``engine_db``):
    the HTTP door's client reaches these same engine methods through its own routes."""
    return engine_db


def team(db: engramdb.Database) -> dict[str, Any]:
    """research (trust 0.5), risk (trust 0.9), planner (reads only), lead (admin on acme)."""
    db.admin.create_agent("research", roles=["analyst"], trust=0.5)
    db.admin.create_agent("risk", roles=["risk-officer"], trust=0.9)
    db.admin.create_agent("planner", trust=0.5)
    db.admin.create_agent("lead", trust=0.8)
    db.admin.grant("role:analyst", "acme/**", ["read", "write"])
    db.admin.grant("role:risk-officer", "acme/**", ["read", "write"])
    db.admin.grant("planner", "acme/**", ["read"])
    db.admin.grant("lead", "acme/**", ["read", "write", "admin"])
    return {n: db.as_agent(n) for n in ("research", "risk", "planner", "lead")}


def concurrently(*calls: Any) -> list[Any]:
    """Run calls in threads released together; return results (or the exceptions raised)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, fn: Any) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = fn()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def company_x(db: engramdb.Database, policy: str, **declare: Any) -> dict[str, Any]:
    """Declare the outlook predicate, let research and risk write at once."""
    agents = team(db)
    db.admin.declare_predicate("acme/**", "outlook", policy=policy, **declare)
    research, risk = concurrently(
        lambda: agents["research"].remember(RESEARCH, namespace=NS, subject="company:x",
                                            predicate="outlook", value="positive"),
        lambda: agents["risk"].remember(RISK, namespace=NS, subject="company:x",
                                        predicate="outlook", value="uncertain"))
    return {**agents, "w_research": research, "w_risk": risk}


def planner_view(s: dict[str, Any]) -> list[engramdb.Hit]:
    return list(s["planner"].recall("Company X outlook", namespace="acme/**").hits)


def texts_held(db: engramdb.Database) -> set[str]:
    """Every text in every version of every memory the admin can find, whatever its status."""
    found = db.recall("Company X outlook", namespace="acme/**", k=50,
                      filters={"statuses": list(engramdb.model.STATUSES)}).memories
    return {v.text for m in found for v in db.history(m.id)}


# --------------------------------------------------------------------------- Company X


def test_flag_keeps_both_and_recall_marks_them_contested(tdb) -> None:
    s = company_x(tdb, "flag")
    research, risk = s["w_research"], s["w_risk"]
    assert research.status == risk.status == "active"
    hits = {h.memory.author: h for h in planner_view(s)}
    assert set(hits) == {"research", "risk"}
    assert hits["research"].contested and hits["risk"].contested
    assert hits["research"].rivals == (risk.id,)
    assert hits["risk"].rivals == (research.id,)
    inbox = s["planner"].conflicts("acme/**")
    assert len(inbox) == 1
    c = inbox[0]
    assert (c.status, c.policy, c.outcome, c.detector) == ("open", "flag", "flagged", "exact")
    assert {m.id for m in c.memories} == {research.id, risk.id}
    assert "'positive'" in c.reason and "'uncertain'" in c.reason
    # The later writer learns about the conflict from its own write.
    later = research if research.tx_from > risk.tx_from else risk
    assert [x.id for x in later.conflicts] == [c.id]
    assert tdb.verify().ok


def test_authority_rejects_the_lower_trust_assertion_with_a_reason(tdb) -> None:
    s = company_x(tdb, "authority")
    research = tdb.get(s["w_research"].id)
    risk = tdb.get(s["w_risk"].id)
    assert research.status == "rejected"
    assert risk.status == "active"
    assert [h.memory.id for h in planner_view(s)] == [risk.id]
    assert not planner_view(s)[0].contested
    (c,) = s["planner"].conflicts("acme/**", status=None)
    assert (c.status, c.outcome, c.winner) == ("resolved", "rejected", risk.id)
    assert "risk (trust 0.9) outranks research (trust 0.5)" in c.reason
    # Nothing lost: the rejected assertion keeps its words, author and time.
    assert RESEARCH in {v.text for v in tdb.history(research.id)}
    assert research.author == "research"
    assert tdb.verify().ok


def test_authority_ranking_by_role_beats_trust(tdb) -> None:
    agents = team(tdb)
    tdb.admin.configure_namespace("acme/**", authority=["role:analyst"])
    tdb.admin.declare_predicate("acme/**", "outlook", policy="authority")
    risk = agents["risk"].remember(RISK, namespace=NS, subject="company:x",
                                   predicate="outlook", value="uncertain")
    research = agents["research"].remember(RESEARCH, namespace=NS, subject="company:x",
                                           predicate="outlook", value="positive")
    assert research.status == "active"
    assert tdb.get(risk.id).status == "rejected"
    assert "ranked 1 of 1" in research.conflicts[0].reason


def test_authority_tie_between_different_agents_is_flagged(tdb) -> None:
    agents = team(tdb)
    tdb.admin.update_agent("risk", trust=0.5)
    tdb.admin.declare_predicate("acme/**", "outlook", policy="authority")
    a = agents["research"].remember(RESEARCH, namespace=NS, subject="company:x",
                                    predicate="outlook", value="positive")
    b = agents["risk"].remember(RISK, namespace=NS, subject="company:x",
                                predicate="outlook", value="uncertain")
    assert (tdb.get(a.id).status, b.status) == ("active", "active")
    (c,) = tdb.conflicts(NS)
    assert c.status == "open" and "authority tie" in c.reason


def test_supersede_closes_the_earlier_fact_and_keeps_both_in_history(tdb) -> None:
    s = company_x(tdb, "supersede")
    first, second = sorted([s["w_research"], s["w_risk"]], key=lambda m: m.tx_from)
    old = tdb.get(first.id)
    assert old.status == "superseded"
    assert old.valid_to == second.valid_from
    assert [v.status for v in tdb.history(first.id)] == ["superseded", "superseded"]
    assert tdb.history(first.id)[0].valid_to is None  # the original version is unchanged
    assert [h.memory.id for h in planner_view(s)] == [second.id]
    (c,) = s["planner"].conflicts("acme/**", status="resolved")
    assert (c.outcome, c.winner) == ("superseded", second.id)
    # Valid-time history: just before the second fact began, the first one held.
    before = second.valid_from - timedelta(microseconds=1)
    past = s["planner"].recall("Company X outlook", namespace="acme/**", valid_at=before,
                               filters={"statuses": ["active", "superseded"]})
    assert [m.id for m in past.memories] == [first.id]
    assert tdb.verify().ok


def test_supersede_backfilled_older_fact_is_valid_only_until_the_newer(tdb) -> None:
    agents = team(tdb)
    tdb.admin.declare_predicate("acme/**", "ceo", policy="supersede")
    now = datetime.now(UTC)
    alice = agents["research"].remember("X's CEO is Alice", namespace=NS, subject="company:x",
                                        predicate="ceo", value="Alice",
                                        valid_from=now - timedelta(days=30))
    bob = agents["research"].remember("X's CEO was Bob", namespace=NS, subject="company:x",
                                      predicate="ceo", value="Bob",
                                      valid_from=now - timedelta(days=400))
    assert bob.status == "superseded"
    assert bob.valid_to == alice.valid_from
    assert tdb.get(alice.id).status == "active"


def test_reject_refuses_the_second_writer_and_writes_nothing(tdb) -> None:
    agents = team(tdb)
    tdb.admin.declare_predicate("acme/**", "outlook", policy="reject")
    results = concurrently(
        lambda: agents["research"].remember(RESEARCH, namespace=NS, subject="company:x",
                                            predicate="outlook", value="positive"),
        lambda: agents["risk"].remember(RISK, namespace=NS, subject="company:x",
                                        predicate="outlook", value="uncertain"))
    errors = [r for r in results if isinstance(r, Exception)]
    kept = [r for r in results if isinstance(r, engramdb.Memory)]
    assert len(errors) == 1 and len(kept) == 1
    err = errors[0]
    assert isinstance(err, ContradictionError)
    assert [r["id"] for r in err.rivals] == [kept[0].id]
    assert "nothing was written" in err.message.lower()
    view = [h.memory.id for h in agents["planner"].recall("Company X outlook",
                                                          namespace="acme/**").hits]
    assert view == [kept[0].id]
    assert agents["planner"].conflicts("acme/**", status=None) == []
    # A retry is refused too, and leaves the log exactly where it was.
    head = tdb.storage.head()
    loser = "risk" if kept[0].author == "research" else "research"
    with pytest.raises(ContradictionError):
        agents[loser].remember("Company X outlook is mixed", namespace=NS,
                               subject="company:x", predicate="outlook", value="mixed")
    assert tdb.storage.head() == head


def test_merge_lww_converges_on_the_later_valid_time_and_keeps_every_contribution(tdb
                                                                                  ) -> None:
    agents = team(tdb)
    tdb.admin.declare_predicate("acme/**", "outlook", merge="lww")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    a, b = concurrently(
        lambda: agents["research"].remember(RESEARCH, namespace=NS, subject="company:x",
                                            predicate="outlook", value="positive",
                                            valid_from=t0 + timedelta(hours=1)),
        lambda: agents["risk"].remember(RISK, namespace=NS, subject="company:x",
                                        predicate="outlook", value="uncertain",
                                        valid_from=t0))
    assert a.id == b.id  # one merged memory
    merged = tdb.get(a.id)
    assert merged.value == "positive"  # the later valid time wins whatever the order
    history = tdb.history(a.id)
    assert {(v.author, v.metadata["_crdt"]["op"]) for v in history} == {
        ("research", "positive"), ("risk", "uncertain")}
    assert tdb.conflicts(NS, status=None) == []


def test_nothing_is_lost_under_any_policy(tmp_path: Path, embedder) -> None:
    for policy in ("flag", "authority", "supersede"):
        with engramdb.open(tmp_path / f"{policy}.db", embedder=embedder) as db:
            company_x(db, policy)
            assert {RESEARCH, RISK} <= texts_held(db), policy


# --------------------------------------------------------------------------- free text


def test_free_text_contradiction_is_judged_and_flagged(tdb) -> None:
    agents = team(tdb)
    a = agents["research"].remember("The deploy window for X is Friday", namespace=NS)
    b = agents["risk"].remember("The deploy window for X is Monday", namespace=NS)
    (c,) = b.conflicts
    assert c.detector == "heuristic"
    assert "'Monday' vs 'Friday'" in c.reason
    assert {m.id for m in c.memories} == {a.id, b.id}
    hits = {h.memory.id: h for h in agents["planner"].recall("deploy window",
                                                              namespace="acme/**").hits}
    assert hits[a.id].contested and hits[a.id].rivals == (b.id,)
    # Unrelated and compatible texts are not conflicts.
    c2 = agents["risk"].remember("X opened an office in Lisbon", namespace=NS)
    assert c2.conflicts == ()


def test_free_text_detection_can_be_switched_off_per_namespace(tdb) -> None:
    agents = team(tdb)
    tdb.admin.configure_namespace(NS, detect_free_text=False)
    agents["research"].remember("The deploy window for X is Friday", namespace=NS)
    b = agents["risk"].remember("The deploy window for X is Monday", namespace=NS)
    assert b.conflicts == ()
    other = agents["risk"].remember("The deploy window for Y is Friday", namespace="acme/y")
    later = agents["risk"].remember("The deploy window for Y is Monday", namespace="acme/y")
    assert other.conflicts == () and len(later.conflicts) == 1


def test_free_text_in_one_transaction_sees_earlier_writes_of_that_transaction(tdb) -> None:
    team(tdb)
    # The PostgreSQL backend types its vector column on the first vector ever
    # written (DDL held until commit), which blocks any read of vectors from
    # another connection inside that first transaction; a database that has
    # stored one vector is past that point.
    tdb.remember("warm-up note", namespace="acme/other")
    with tdb.transaction() as tx:
        tx.remember("The launch review for X is on Tuesday", namespace=NS)
        second = tx.remember("The launch review for X is on Thursday", namespace=NS)
    assert len(second.conflicts) == 1


def test_llm_judge_is_pluggable(tmp_path: Path, embedder) -> None:
    def verdict(req: dict[str, Any]) -> str:
        statements = json.loads(req["messages"][-1]["content"])
        clash = "bullish" in statements["A"]["text"] + statements["B"]["text"]
        return json.dumps({"verdict": "contradiction" if clash else "compatible",
                           "confidence": 0.9, "reason": "model says the stances clash"})

    with OpenAICompatServer(chat_handler=verdict) as server, \
            engramdb.open(tmp_path / "e.db", embedder=embedder) as db:
        db.judge = LLMJudge(server.base_url, "judge-model", fallback=HeuristicJudge())
        db.remember("Desk view on X: we are bearish", namespace=NS)
        m = db.remember("Desk view on X: we are bullish", namespace=NS)
        (c,) = m.conflicts
        assert c.detector == "llm:judge-model"
        assert "model says the stances clash" in c.reason
        assert any(r["path"].endswith("/chat/completions") for r in server.requests)


# --------------------------------------------------------------------------- inbox and resolve


def test_resolve_needs_admin_applies_the_outcome_and_is_logged(tdb) -> None:
    s = company_x(tdb, "flag")
    (c,) = s["planner"].conflicts("acme/**")
    with pytest.raises(PermissionDenied):
        s["planner"].resolve(c.id, winner=s["w_risk"].id, reason="risk has the filing")
    tdb.admin.create_agent("outsider")
    with pytest.raises(NotFound):
        tdb.as_agent("outsider").resolve(c.id, winner=s["w_risk"].id)
    with pytest.raises(InvalidInput):
        s["lead"].resolve(c.id, winner="not-a-member")
    seq = tdb.storage.head().seq
    done = s["lead"].resolve(c.id, winner=s["w_risk"].id, reason="risk has the filing")
    assert (done.status, done.winner, done.resolved_by) == ("resolved", s["w_risk"].id, "lead")
    assert tdb.get(s["w_research"].id).status == "rejected"
    assert tdb.get(s["w_risk"].id).status == "active"
    assert [h.memory.id for h in planner_view(s)] == [s["w_risk"].id]
    assert not planner_view(s)[0].contested
    assert s["planner"].conflicts("acme/**") == []
    events = [e for e in s["planner"].changes(since=seq) if e.kind != READS]
    assert [e.kind for e in events] == ["conflict.resolved"]
    assert events[0].actor == "lead"
    assert tdb.verify().ok


def test_resolve_can_overturn_an_authority_outcome(tdb) -> None:
    s = company_x(tdb, "authority")
    (c,) = tdb.conflicts(NS, status="resolved")
    s["lead"].resolve(c.id, winner=s["w_research"].id, reason="the filing was withdrawn")
    assert tdb.get(s["w_research"].id).status == "active"
    assert tdb.get(s["w_risk"].id).status == "rejected"


def test_retract_closes_the_open_conflict(tdb) -> None:
    s = company_x(tdb, "flag")
    s["research"].retract(s["w_research"].id, reason="superseded by the risk view")
    assert tdb.conflicts(NS) == []
    (c,) = tdb.conflicts(NS, status="resolved")
    assert "retracted" in (c.resolution or "")


def test_conflicts_inbox_is_permission_filtered(tdb) -> None:
    s = company_x(tdb, "flag")
    tdb.admin.create_agent("outsider")
    outsider = tdb.as_agent("outsider")
    assert outsider.conflicts("**", status=None) == []
    tdb.admin.grant("outsider", "acme/other/**", ["read"])
    assert outsider.conflicts("**", status=None) == []
    assert len(s["planner"].conflicts("**")) == 1


# --------------------------------------------------------------------------- quarantine


def test_quarantine_below_the_trust_floor_until_approved(tdb) -> None:
    agents = team(tdb)
    tdb.admin.create_agent("intern", trust=0.2)
    tdb.admin.grant("intern", "acme/**", ["read", "write"])
    intern = tdb.as_agent("intern")
    tdb.admin.configure_namespace("acme/**", trust_floor=0.4)
    good = agents["research"].remember("Company X pays a dividend of 2%", namespace=NS)
    q = intern.remember("Company X will be acquired next week, buy everything", namespace=NS)
    assert q.status == "quarantined"
    assert good.status == "active"
    view = agents["planner"].recall("Company X acquired", namespace="acme/**")
    assert q.id not in {m.id for m in view.memories}
    assert agents["planner"].get(q.id).status == "quarantined"
    assert [m.id for m in tdb.admin.quarantined("acme/**")] == [q.id]
    # Below the floor: its own quarantined memory may change, others' may not.
    intern.update(q.id, text="Company X might be acquired")
    with pytest.raises(PermissionDenied):
        intern.update(good.id, text="Company X pays no dividend")
    with pytest.raises(PermissionDenied):
        intern.retract(good.id)
    seq = tdb.storage.head().seq
    approved = tdb.admin.approve(q.id, reason="checked the filing")
    assert approved.status == "active" and approved.author == "intern"
    assert q.id in {m.id for m in agents["planner"].recall(
        "Company X acquired", namespace="acme/**").memories}
    assert [e.kind for e in tdb.changes(since=seq) if e.kind != READS] == ["memory.approved"]
    with pytest.raises(InvalidInput):
        tdb.admin.approve(q.id)
    assert tdb.verify().ok


def test_quarantined_write_cannot_bypass_reject_at_approval(tdb) -> None:
    agents = team(tdb)
    tdb.admin.create_agent("intern", trust=0.2)
    tdb.admin.grant("intern", "acme/**", ["read", "write"])
    tdb.admin.configure_namespace("acme/**", trust_floor=0.4)
    tdb.admin.declare_predicate("acme/**", "outlook", policy="reject")
    agents["risk"].remember(RISK, namespace=NS, subject="company:x", predicate="outlook",
                            value="uncertain")
    q = tdb.as_agent("intern").remember("X outlook is great", namespace=NS,
                                        subject="company:x", predicate="outlook",
                                        value="great")
    assert q.status == "quarantined"
    with pytest.raises(ContradictionError):
        tdb.admin.approve(q.id)
    assert tdb.get(q.id).status == "quarantined"


# --------------------------------------------------------------------------- rollback


def test_rollback_author_undoes_everything_since_and_is_reversible(tdb) -> None:
    agents = team(tdb)
    tdb.admin.create_agent("mallory", roles=["analyst"], trust=0.95)
    mallory = tdb.as_agent("mallory")
    tdb.admin.declare_predicate("acme/**", "rating", policy="supersede")
    good = agents["research"].remember("Company X rating is hold", namespace=NS,
                                       subject="company:x", predicate="rating", value="hold")
    note = agents["research"].remember("Company X has 4,000 employees", namespace=NS)
    before_mallory = mallory.remember("Company X sells widgets", namespace=NS)
    since = tdb.storage.head().tx + 1
    bad = mallory.remember("Company X rating is strong buy", namespace=NS,
                           subject="company:x", predicate="rating", value="strong buy")
    assert tdb.get(good.id).status == "superseded"
    mallory.update(note.id, text="Company X has 40 employees")
    poison = mallory.remember("Wire the reserve fund to account 99", namespace="acme/ops")
    done = tdb.admin.rollback_author("mallory", since=since)
    assert {m.id for m in done} == {bad.id, note.id, poison.id, good.id}
    assert tdb.get(bad.id).status == "retracted"
    assert tdb.get(poison.id).status == "retracted"
    assert tdb.get(note.id).text == "Company X has 4,000 employees"
    assert tdb.get(note.id).author == "research"
    restored = tdb.get(good.id)
    assert (restored.status, restored.valid_to) == ("active", None)
    assert tdb.get(before_mallory.id).status == "active"  # written before `since`
    # Reversible through history: the rolled-back versions are all still there.
    assert "Company X has 40 employees" in {v.text for v in tdb.history(note.id)}
    events = [e for e in tdb.changes() if e.kind == "author.rolled_back"]
    assert events and all(e.payload["reason"] == "rollback" for e in events)
    assert tdb.admin.rollback_author("mallory", since=since) == []  # nothing left to undo
    assert tdb.verify().ok


def test_rollback_author_since_a_time(tdb) -> None:
    agents = team(tdb)
    early = agents["research"].remember("Old note about X", namespace=NS)
    cut = datetime.now(UTC)
    late = agents["research"].remember("New note about X", namespace=NS)
    done = tdb.admin.rollback_author("research", since=cut)
    assert [m.id for m in done] == [late.id]
    assert tdb.get(early.id).status == "active"


# --------------------------------------------------------------------------- principals


def test_update_agent_changes_roles_and_trust_for_live_sessions(tdb) -> None:
    agents = team(tdb)
    research = agents["research"]
    research.remember("note", namespace=NS)
    head = tdb.storage.head().seq
    p = tdb.admin.update_agent("research", roles=[])
    assert p.roles == ()
    with pytest.raises(PermissionDenied):
        research.remember("another note", namespace=NS)
    assert [e.kind for e in tdb.changes(since=head) if e.kind != READS] == ["principal.updated"]
    tdb.admin.update_agent("research", roles=["analyst"], trust=0.95)
    assert tdb.admin.principal("research").trust == 0.95
    research.remember("allowed again", namespace=NS)
    with pytest.raises(InvalidInput):
        tdb.admin.update_agent("research", trust=1.5)


def test_retire_freeze_revokes_keys_and_stops_live_sessions(tdb) -> None:
    key = tdb.admin.create_agent("scout")
    tdb.admin.grant("scout", "acme/**", ["read", "write"])
    scout = tdb.session_for_key(key)
    m = scout.remember("Scout saw X's new product", namespace=NS)
    frozen = tdb.admin.retire_agent("scout", "freeze")
    assert frozen.status == "frozen"
    with pytest.raises(Unauthenticated):
        tdb.admin.authenticate(key)
    with pytest.raises(PermissionDenied):
        scout.remember("still here?", namespace=NS)
    with pytest.raises(PermissionDenied):
        tdb.as_agent("scout")
    assert tdb.get(m.id).status == "active"
    tdb.admin.reactivate_agent("scout")
    with pytest.raises(Unauthenticated):
        tdb.admin.authenticate(key)  # old keys stay revoked
    assert tdb.as_agent("scout").get(m.id).id == m.id


def test_retire_transfer_hands_the_private_namespace_to_a_successor(tdb) -> None:
    tdb.admin.create_agent("old")
    tdb.admin.create_agent("heir")
    secret = tdb.as_agent("old").remember("old's working notes on X")
    with pytest.raises(NotFound):
        tdb.as_agent("heir").get(secret.id)
    with pytest.raises(InvalidInput):
        tdb.admin.retire_agent("old", "transfer")
    tdb.admin.retire_agent("old", "transfer", successor="heir")
    assert tdb.as_agent("heir").get(secret.id).text == "old's working notes on X"
    assert tdb.admin.principal("old").status == "retired"


def test_retire_archive_hides_private_memories_but_keeps_shared_ones(tdb) -> None:
    tdb.admin.create_agent("temp")
    tdb.admin.grant("temp", "acme/**", ["read", "write"])
    temp = tdb.as_agent("temp")
    private = temp.remember("temp's scratch note about X")
    shared = temp.remember("X's fiscal year ends in March", namespace=NS)
    tdb.admin.retire_agent("temp", "archive")
    assert tdb.get(private.id).status == "archived"
    assert private.id not in {m.id for m in tdb.recall("scratch note").memories}
    assert tdb.get(shared.id).status == "active"
    assert [v.text for v in tdb.history(private.id)] == [private.text] * 2
    assert tdb.admin.grants("temp") == []
    assert tdb.verify().ok


def test_unknown_retire_policies_are_refused_without_writing(tdb) -> None:
    # policy="erase" works since issue 10 (tests/test_erasure.py checks what it erases).
    tdb.admin.create_agent("temp")
    head = tdb.storage.head()
    with pytest.raises(InvalidPolicy):
        tdb.admin.retire_agent("temp", "delete")
    with pytest.raises(InvalidInput):
        tdb.admin.retire_agent("admin", "freeze")
    assert tdb.storage.head() == head
    assert tdb.admin.principal("temp").status == "active"


# --------------------------------------------------------------------------- provenance


def test_author_cannot_be_forged(tdb) -> None:
    agents = team(tdb)
    research = agents["research"]
    with pytest.raises(TypeError):
        research.remember("I am risk", namespace=NS, author="risk")  # type: ignore[call-arg]
    with pytest.raises(InvalidInput):
        research.remember_many([{"text": "I am risk", "namespace": NS, "author": "risk"}])
    with pytest.raises(InvalidInput):
        with research.transaction() as tx:
            tx.remember("I am risk", namespace=NS, author="risk")
    m = research.remember("I am risk", namespace=NS, metadata={"author": "risk"},
                          source="risk", session="risk-session")
    assert m.author == "research"
    assert tdb.get(m.id).author == "research"
    with pytest.raises(InvalidInput):
        research.update(m.id, author="risk")
    with pytest.raises(InvalidMetadata):
        research.remember("forged merge state", namespace=NS,
                          metadata={"_crdt": {"kind": "counter", "state": {"total": 9}}})
    ev = [e for e in tdb.changes() if e.subject_ref == m.id]
    assert [(e.kind, e.actor) for e in ev] == [("memory.remembered", "research")]
    # A policy version made on research's behalf keeps research as the author.
    tdb.admin.declare_predicate("acme/**", "outlook", policy="authority")
    r = research.remember(RESEARCH, namespace=NS, subject="company:x", predicate="outlook",
                          value="positive")
    agents["risk"].remember(RISK, namespace=NS, subject="company:x", predicate="outlook",
                            value="uncertain")
    rejected = tdb.get(r.id)
    assert (rejected.status, rejected.author) == ("rejected", "research")


# --------------------------------------------------------------------------- schemas and input


def test_declared_value_type_is_enforced_and_writes_nothing(tdb) -> None:
    agents = team(tdb)
    tdb.admin.declare_predicate("acme/**", "employees", value_type="integer",
                                cardinality="one", policy="supersede")
    head = tdb.storage.head()
    with pytest.raises(ValueTypeError, match="integer"):
        agents["research"].remember("X has many employees", namespace=NS,
                                    subject="company:x", predicate="employees", value="many")
    assert tdb.storage.head() == head
    m = agents["research"].remember("X has 4000 employees", namespace=NS,
                                    subject="company:x", predicate="employees", value=4000)
    with pytest.raises(ValueTypeError):
        agents["research"].update(m.id, value=4000.5)
    assert tdb.get(m.id).value == 4000


def test_schema_resolution_most_specific_wins_and_defaults_apply(tdb) -> None:
    tdb.admin.declare_predicate("acme/**", "owner", policy="reject")
    tdb.admin.declare_predicate("acme/companies/*", "owner", policy="flag", cardinality="many")
    assert tdb.admin.schema_for(NS, "owner").cardinality == "many"
    assert tdb.admin.schema_for("acme/ops", "owner").policy == "reject"
    default = tdb.admin.schema_for("other/ns", "owner")
    assert (default.declared, default.cardinality, default.policy) == (False, "one", "flag")
    tdb.admin.configure_namespace("other/**", default_policy="supersede")
    assert tdb.admin.schema_for("other/ns", "owner").policy == "supersede"
    tdb.admin.undeclare_predicate("acme/companies/*", "owner")
    assert tdb.admin.schema_for(NS, "owner").policy == "reject"


def test_cardinality_many_never_conflicts(tdb) -> None:
    agents = team(tdb)
    tdb.admin.declare_predicate("acme/**", "office", cardinality="many")
    agents["research"].remember("X has an office in Paris", namespace=NS,
                                subject="company:x", predicate="office", value="Paris")
    m = agents["risk"].remember("X has an office in Tokyo", namespace=NS,
                                subject="company:x", predicate="office", value="Tokyo")
    assert m.conflicts == () and tdb.conflicts(NS) == []


@pytest.mark.parametrize("kwargs, error", [
    ({"policy": "vote"}, InvalidPolicy),
    ({"merge": "average"}, InvalidPolicy),
    ({"policy": "merge"}, InvalidPolicy),
    ({"merge": "set", "policy": "flag"}, InvalidPolicy),
    ({"merge": "counter", "cardinality": "many"}, InvalidPolicy),
    ({"cardinality": "several"}, InvalidInput),
    ({"value_type": "money"}, InvalidInput),
])
def test_bad_declarations_are_typed_errors_and_write_nothing(tdb, kwargs, error) -> None:
    head = tdb.storage.head()
    with pytest.raises(error):
        tdb.admin.declare_predicate("acme/**", "outlook", **kwargs)
    assert tdb.storage.head() == head
    assert tdb.admin.predicates() == []


def test_bad_namespace_settings_are_refused(tdb) -> None:
    head = tdb.storage.head()
    for bad in ({"default_policy": "vote"}, {"default_policy": "merge"}):
        with pytest.raises(InvalidPolicy):
            tdb.admin.configure_namespace("acme/**", **bad)
    for bad in ({"trust_floor": 2}, {"colour": "red"}, {"authority": "risk"}):
        with pytest.raises(InvalidInput):
            tdb.admin.configure_namespace("acme/**", **bad)
    with pytest.raises(engramdb.errors.InvalidNamespace):
        tdb.admin.configure_namespace("acme/***", trust_floor=0.5)
    assert tdb.storage.head() == head


def test_an_update_that_contradicts_is_checked_like_a_new_write(tdb) -> None:
    agents = team(tdb)
    tdb.admin.declare_predicate("acme/**", "outlook", policy="reject")
    agents["risk"].remember(RISK, namespace=NS, subject="company:x", predicate="outlook",
                            value="uncertain")
    m = agents["research"].remember("Company X outlook is uncertain", namespace=NS,
                                    subject="company:x", predicate="outlook", value="uncertain")
    head = tdb.storage.head()
    with pytest.raises(ContradictionError):
        agents["research"].update(m.id, value="positive", text=RESEARCH)
    assert tdb.storage.head() == head
    tdb.admin.declare_predicate("acme/**", "outlook", policy="flag")
    changed = agents["research"].update(m.id, value="positive", text=RESEARCH)
    assert len(changed.conflicts) == 1
    # Touching the memory again does not flag the same pair twice.
    agents["research"].update(m.id, importance=0.9)
    agents["research"].update(m.id, text="Company X earnings outlook is clearly positive")
    assert len(tdb.conflicts(NS)) == 1


def test_quarantined_contribution_joins_the_merge_only_when_approved(tdb) -> None:
    agents = team(tdb)
    tdb.admin.create_agent("intern", trust=0.2)
    tdb.admin.grant("intern", "acme/**", ["read", "write"])
    tdb.admin.configure_namespace("acme/**", trust_floor=0.4)
    tdb.admin.declare_predicate("acme/**", "visits", merge="counter")
    merged = agents["research"].remember("3 client visits", namespace=NS, subject="company:x",
                                         predicate="visits", value=3)
    q = tdb.as_agent("intern").remember("1000 client visits", namespace=NS,
                                        subject="company:x", predicate="visits", value=1000)
    assert q.status == "quarantined" and q.id != merged.id
    assert tdb.get(merged.id).value == 3
    result = tdb.admin.approve(q.id)
    assert (result.id, result.value, result.author) == (merged.id, 1003, "intern")
    assert tdb.get(q.id).status == "superseded"  # folded into the merged memory
    assert tdb.verify().ok
