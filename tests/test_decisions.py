"""Decision records: the exact read set, explain, staleness and the change feed.

The Company X scenario from the trust issue: a research agent asserts the
outlook is positive, a planner decides on it, and a risk agent's later
assertion supersedes it. The decision must then read as stale, ``explain``
must show the research assertion as it was when the planner decided and what
replaced it, and a ``decision.stale`` event must reach the planner's feed.
All on real SQLite files with the real embedder.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

import engramdb
from engramdb.engine import import_database
from engramdb.errors import InvalidInput, InvalidMetadata, NotFound, PermissionDenied

NS = "acme/companyx"
DECISIONS = "acme/decisions"


@pytest.fixture
def company(tmp_path: Path, embedder) -> Iterator[engramdb.Database]:
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    for name, trust in (("research", 0.6), ("risk", 0.8), ("planner", 0.5), ("outsider", 0.5)):
        db.admin.create_agent(name, trust=trust)
    for name in ("research", "risk", "planner"):
        db.admin.grant(name, "acme/**", ["read", "write"])
    try:
        yield db
    finally:
        db.close()


def _positive(db: engramdb.Database, ns: str = NS) -> engramdb.Memory:
    return db.as_agent("research").remember(
        "Company X earnings outlook is positive", namespace=ns, subject="company:x",
        predicate="outlook", value="positive")


def test_decision_turns_stale_when_risk_supersedes_the_research_assertion(company):
    db = company
    research_fact = _positive(db)
    planner = db.as_agent("planner")
    recalled = planner.recall("What is the outlook for Company X?", namespace="acme/**")
    assert recalled.hits[0].memory.id == research_fact.id
    decision = planner.decide("Buy Company X", basis=recalled.receipt,
                              outcome={"action": "buy", "size": 100}, namespace=DECISIONS)
    assert decision.basis == tuple(sorted(recalled.receipt.items))
    assert (research_fact.id, 1) in [(i.id, i.version) for i in decision.basis]
    assert not decision.stale

    fresh = planner.explain(decision.id)
    assert not fresh.stale
    item = next(b for b in fresh.basis if b.item.id == research_fact.id)
    assert item.later == () and not item.stale
    cursor = db.storage.head().seq

    risk_fact = db.as_agent("risk").update(
        research_fact.id, text="Company X regulatory exposure is elevated, outlook uncertain",
        value="uncertain")

    explained = planner.explain(decision.id)
    assert explained.stale
    item = next(b for b in explained.basis if b.item.id == research_fact.id)
    # As the planner saw it when deciding ...
    assert item.then.text == "Company X earnings outlook is positive"
    assert item.then.author == "research" and item.then.status == "active"
    assert item.then.value == "positive"
    # ... and what happened since, with who wrote it.
    assert [(m.version, m.author, m.value) for m in item.later] == [(2, "risk", "uncertain")]
    assert item.now.text.startswith("Company X regulatory exposure")
    assert item.superseded and item.stale and not item.retracted and not item.erased

    stale = planner.stale_decisions("acme/**")
    assert [d.id for d in stale] == [decision.id]
    assert stale[0].stale_tx == risk_fact.tx_from

    feed = [e for e in planner.changes(since=cursor) if e.kind == "decision.stale"]
    assert len(feed) == 1
    assert feed[0].subject_ref == decision.id
    assert feed[0].namespace == DECISIONS
    assert feed[0].actor == "risk"
    assert feed[0].payload["changed"] == [{"id": research_fact.id, "version": 1}]
    # Someone who may not read the decision's namespace sees none of it in the feed.
    assert [e for e in db.as_agent("outsider").changes() if e.kind.startswith("decision.")] == []

    # Staleness is announced once: a later retraction changes nothing more.
    db.as_agent("risk").retract(research_fact.id, reason="withdrawn")
    assert [e.kind for e in planner.changes(since=cursor)].count("decision.stale") == 1
    again = planner.explain(decision.id)
    item = next(b for b in again.basis if b.item.id == research_fact.id)
    assert item.retracted and [m.version for m in item.later] == [2, 3]
    assert db.verify().ok


@pytest.mark.parametrize("policy", ["supersede", "authority"])
def test_company_x_conflict_policies_make_the_decision_stale(company, policy):
    db = company
    db.admin.declare_predicate(NS, "outlook", policy=policy)
    research_fact = _positive(db)
    planner = db.as_agent("planner")
    decision = planner.decide("Buy Company X", namespace=DECISIONS,
                              basis=planner.recall("Company X outlook", namespace=NS))
    db.as_agent("risk").remember(
        "Company X regulatory exposure is elevated, outlook uncertain", namespace=NS,
        subject="company:x", predicate="outlook", value="uncertain")
    explained = planner.explain(decision.id)
    assert explained.stale
    (item,) = [b for b in explained.basis if b.item.id == research_fact.id]
    assert item.then.status == "active"
    assert [m.status for m in item.later] == ["superseded" if policy == "supersede"
                                               else "rejected"]
    assert item.conflicts and item.conflicts[0].status == "resolved"
    assert [d.id for d in planner.stale_decisions()] == [decision.id]
    assert db.verify().ok


def test_flagged_contradiction_is_contested_but_not_stale(company):
    db = company
    db.admin.declare_predicate(NS, "outlook", policy="flag")
    research_fact = _positive(db)
    planner = db.as_agent("planner")
    decision = planner.decide("Hold Company X", namespace=DECISIONS,
                              basis=planner.recall("Company X outlook", namespace=NS))
    db.as_agent("risk").remember(
        "Company X outlook uncertain", namespace=NS, subject="company:x",
        predicate="outlook", value="uncertain")
    explained = planner.explain(decision.id)
    (item,) = [b for b in explained.basis if b.item.id == research_fact.id]
    assert item.contested and not item.stale and not explained.stale
    assert item.conflicts[0].status == "open"
    assert planner.stale_decisions() == []


def test_basis_accepts_receipts_hits_memories_pairs_and_context(company):
    db = company
    a = _positive(db)
    b = db.as_agent("research").remember("Company X hired a new CFO", namespace=NS)
    planner = db.as_agent("planner")
    r = planner.recall("Company X", namespace=NS)
    ctx = planner.context("Company X", budget_tokens=200, namespace=NS)
    forms = [r.receipt, r, ctx, list(r.hits), [a, b], [(a.id, 1), (b.id, 1)],
             [{"id": a.id, "version": 1}, {"id": b.id, "version": 1}],
             [r.receipt, ctx.receipt], r.receipt.to_dict()]
    for basis in forms:
        d = planner.decide("x", basis=basis)
        assert {(i.id, i.version) for i in d.basis} == {(a.id, 1), (b.id, 1)}, basis
        assert d.namespace == "agents/planner"


def test_bad_decisions_write_nothing(company):
    db = company
    fact = _positive(db)
    secret = db.remember("board minutes", namespace="board/private")
    planner = db.as_agent("planner")
    receipt = planner.recall("Company X outlook", namespace=NS).receipt
    before = db.storage.head()
    cases = [
        (InvalidInput, {"description": "", "basis": receipt}),
        (InvalidInput, {"description": "buy", "basis": receipt, "outcome": ["buy"]}),
        (InvalidMetadata, {"description": "buy", "basis": receipt,
                           "metadata": {"x": float("nan")}}),
        (InvalidInput, {"description": "buy", "basis": 42}),
        (InvalidInput, {"description": "buy", "basis": [(fact.id, 0)]}),
        (NotFound, {"description": "buy", "basis": [(fact.id, 7)]}),
        (NotFound, {"description": "buy", "basis": [("no-such-id", 1)]}),
        (NotFound, {"description": "buy", "basis": [secret]}),  # exists, but forbidden
        (PermissionDenied, {"description": "buy", "basis": receipt,
                            "namespace": "board/private"}),
    ]
    for error, kwargs in cases:
        with pytest.raises(error):
            planner.decide(**kwargs)
        assert db.storage.head() == before, kwargs


def test_explain_is_permission_checked(company):
    db = company
    fact = _positive(db)
    secret = db.remember("board minutes: approve the buy", namespace="board/private")
    planner = db.as_agent("planner")
    mine = planner.decide("private note", basis=[fact])
    shared = planner.decide("shared", basis=[fact], namespace=DECISIONS)
    outsider = db.as_agent("outsider")
    for d in (mine, shared):
        with pytest.raises(NotFound):
            outsider.explain(d.id)
        with pytest.raises(NotFound):
            outsider.decision(d.id)
    with pytest.raises(NotFound):
        db.as_agent("risk").explain(mine.id)  # another agent's private namespace
    assert db.as_agent("risk").explain(shared.id).decision.id == shared.id
    assert db.explain(mine.id).decision.principal == "planner"  # the admin sees all
    # The admin decides on a memory the planner cannot read; the planner, who may
    # read the decision's namespace, sees only that one basis item is hidden
    # (issue 17: not even its id).
    admins = db.decide("board call", basis=[secret, fact], namespace=DECISIONS)
    explained = planner.explain(admins.id)
    seen = {b.item.id: b for b in explained.basis}
    assert secret.id not in seen and explained.decision.basis_hidden == 1
    assert seen[fact.id].visible and seen[fact.id].then.text.startswith("Company X")
    with pytest.raises(NotFound):
        planner.explain("01a00000-0000-7000-8000-000000000000")


def test_deciding_on_an_old_version_is_stale_from_the_start(company):
    db = company
    fact = _positive(db)
    t = db.storage.head().tx
    db.as_agent("risk").update(fact.id, text="Company X outlook is uncertain", value="uncertain")
    planner = db.as_agent("planner")
    old = planner.recall("Company X outlook", namespace=NS, as_of=t)
    assert [(h.memory.id, h.memory.version) for h in old.hits] == [(fact.id, 1)]
    d = planner.decide("buy on stale news", basis=old.receipt, namespace=DECISIONS)
    assert d.stale and d.stale_tx == d.tx
    assert planner.explain(d.id).stale
    assert [e.kind for e in planner.changes(namespace=DECISIONS)] == [
        "decision.recorded", "decision.stale"]


def test_decisions_and_staleness_survive_export_and_import(company, tmp_path):
    db = company
    fact = _positive(db)
    planner = db.as_agent("planner")
    d = planner.decide("Buy Company X", basis=[fact], namespace=DECISIONS)
    db.as_agent("risk").update(fact.id, text="Company X outlook is uncertain")
    buf = io.StringIO()
    db.export(buf)
    head = db.storage.head()
    import_database(tmp_path / "copy.db", io.StringIO(buf.getvalue()), embedder=None)
    with engramdb.open(tmp_path / "copy.db", embedder=None) as copy:
        assert copy.storage.head() == head
        assert copy.verify().ok
        e = copy.explain(d.id)
        assert e.stale and e.decision.stale_tx == db.decision(d.id).stale_tx
        assert e.basis[0].then.text == "Company X earnings outlook is positive"
        assert [x.id for x in copy.stale_decisions()] == [d.id]


@pytest.mark.uses("stale_decisions", "who_read", "knowledge", "verify")
def test_decision_lifecycle_on_every_backend_and_door(cell):
    """The same decision story embedded and over HTTP, on SQLite and PostgreSQL."""
    db = cell.db
    db.admin.create_agent("planner")
    db.admin.grant("planner", "acme/**", ["read", "write"])
    fact = db.remember(
        "Company X earnings outlook is positive", namespace=NS)
    planner = db.as_agent("planner")
    ctx = planner.context("Company X outlook", budget_tokens=100, namespace=NS)
    d = planner.decide("Buy Company X", basis=ctx, namespace=DECISIONS)
    db.update(fact.id, text="Company X outlook is uncertain")
    e = planner.explain(d.id)
    assert e.stale and e.basis[0].then.text == "Company X earnings outlook is positive"
    assert [x.id for x in planner.stale_decisions()] == [d.id]
    # Read by the context (v1) and by the explanation (then v1, now v2): issue 17
    # made every read path audited.
    assert [(r.principal, r.version) for r in db.who_read(fact.id)] == [
        ("planner", 1), ("planner", 1), ("planner", 2)]
    assert db.knowledge("planner", at=d.tx, query="outlook").hits[0].memory.version == 1
    assert db.verify().ok
