"""The conformance suite: behaviour every backend and door must show.

Every test takes the ``db`` fixture of ``tests/conftest.py`` (parametrised
over the backends and doors in ``BACKENDS``, with the real embedder) and uses
only the public API, so a new backend or door joins by adding a fixture
there. What is checked is what a user of EngramDB would notice: versions and
their times, reads as of a transaction or a moment, recall ranking and
filters, receipts, access control, the change feed and transactions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import engramdb
from engramdb import NotFound, PermissionDenied, ReceiptItem, VersionConflict
from engramdb.errors import InvalidInput
from tests.conftest import CONFORMANCE


@pytest.fixture(params=CONFORMANCE)
def backend(request) -> str:
    """Every backend and door of ``db``, the MCP door included (tests/conftest.py)."""
    return request.param


T2020 = datetime(2020, 1, 1, tzinfo=UTC)
T2023 = datetime(2023, 1, 1, tzinfo=UTC)


def last_seq(db: Any) -> int:
    seq = 0
    for event in db.changes(0):
        seq = event.seq
    return seq


def ids(result: Any) -> set[str]:
    return {h.memory.id for h in result.hits}


def committed(value: Any) -> Any:
    """A remote transaction returns a PendingMemory; after commit it holds the Memory."""
    return getattr(value, "memory", value)


# -- remember / get / history / update / retract -----------------------------------


def test_remember_and_get_round_trip(db: Any) -> None:
    before = datetime.now(UTC)
    m = db.remember("Café Noir opens at 8am on weekdays", namespace="city/food",
                    layer="episodic", subject="place:cafe-noir", predicate="opens_at",
                    value={"weekday": "08:00", "days": [1, 2, 3, 4, 5]},
                    metadata={"source": {"kind": "web", "lang": "fr"}, "stars": 4.5,
                              "tags": ["coffee", "☕"], "open": True, "note": None},
                    importance=0.7, confidence=0.9, source="crawler", session="s1")
    after = datetime.now(UTC)
    assert (m.version, m.status, m.tx_to, m.author) == (1, "active", None, "admin")
    assert m.namespace == "city/food" and m.layer == "episodic"
    assert before - timedelta(seconds=1) <= m.recorded_at <= after + timedelta(seconds=1)
    assert m.valid_from == m.recorded_at and m.valid_to is None
    got = db.get(m.id)
    assert got == m
    assert got.value == {"weekday": "08:00", "days": [1, 2, 3, 4, 5]}
    assert got.metadata == {"source": {"kind": "web", "lang": "fr"}, "stars": 4.5,
                            "tags": ["coffee", "☕"], "open": True, "note": None}
    assert (got.importance, got.confidence, got.source, got.session) == (0.7, 0.9, "crawler", "s1")
    assert db.history(m.id) == [m]


def test_ids_are_time_ordered_and_tx_increases(db: Any) -> None:
    written = [db.remember(f"event number {i}", namespace="log/a") for i in range(5)]
    assert [m.id for m in written] == sorted(m.id for m in written)
    txs = [m.tx_from for m in written]
    assert txs == sorted(txs) and len(set(txs)) == 5


def test_provenance_comes_from_the_engine(db: Any) -> None:
    db.admin.create_agent("scout")
    db.admin.grant("scout", "field/**", ["read", "write"])
    scout = db.as_agent("scout")
    private = scout.remember("my own note")
    assert private.namespace == "agents/scout" and private.author == "scout"
    shared = scout.remember("River level is high", namespace="field/river")
    assert shared.author == "scout"
    revised = db.update(shared.id, text="River level is very high")
    assert [m.author for m in db.history(shared.id)] == ["scout", "admin"]
    assert revised.author == "admin"


def test_update_makes_a_new_version_and_closes_the_old(db: Any) -> None:
    m = db.remember("Quarterly target is 100 units", namespace="sales/q1",
                    metadata={"owner": "kim"}, importance=0.8)
    m2 = db.update(m.id, text="Quarterly target is 120 units", expected_version=1)
    assert (m2.id, m2.version, m2.status, m2.tx_to) == (m.id, 2, "active", None)
    assert m2.tx_from > m.tx_from
    # Fields not named in the update carry over.
    assert (m2.metadata, m2.importance, m2.namespace) == ({"owner": "kim"}, 0.8, "sales/q1")
    v1, v2 = db.history(m.id)
    assert (v1.version, v1.text, v1.status, v1.tx_to) == (
        1, "Quarterly target is 100 units", "superseded", m2.tx_from)
    assert v2 == m2 == db.get(m.id)
    m3 = db.update(m.id, metadata={"owner": "lee"})
    assert (m3.version, m3.text, m3.metadata) == (3, m2.text, {"owner": "lee"})


@pytest.mark.uses("changes")
def test_stale_expected_version_raises_and_writes_nothing(db: Any) -> None:
    m = db.remember("Door code is 1111", namespace="ops/site")
    db.update(m.id, text="Door code is 2222", expected_version=1)
    cursor = last_seq(db)
    with pytest.raises(VersionConflict) as info:
        db.update(m.id, text="Door code is 3333", expected_version=1)
    assert info.value.current_version == 2
    assert "version 2" in info.value.message
    assert last_seq(db) == cursor
    assert db.get(m.id).text == "Door code is 2222"
    with pytest.raises(VersionConflict):
        db.retract(m.id, expected_version=1)
    assert db.get(m.id).status == "active"


@pytest.mark.uses("verify")
def test_retract_ends_validity_and_keeps_history(db: Any) -> None:
    m = db.remember("The bridge is closed", namespace="city/traffic")
    r = db.retract(m.id, reason="reopened this morning")
    assert (r.version, r.status) == (2, "retracted")
    assert r.valid_to is not None and r.valid_to <= datetime.now(UTC) + timedelta(seconds=1)
    assert db.get(m.id) == r
    assert [v.status for v in db.history(m.id)] == ["superseded", "retracted"]
    with pytest.raises(InvalidInput):
        db.update(m.id, text="The bridge is closed again")
    assert db.verify().ok


# -- time travel ---------------------------------------------------------------------


def test_as_of_by_transaction_returns_what_was_current(db: Any) -> None:
    m1 = db.remember("Alpha project is on track", namespace="pm/alpha")
    m2 = db.update(m1.id, text="Alpha project is late")
    m3 = db.retract(m1.id, reason="project cancelled")
    assert db.get(m1.id, as_of=m1.tx_from) == m1
    assert db.get(m1.id, as_of=m2.tx_from) == m2
    assert db.get(m1.id, as_of=m3.tx_from) == m3
    with pytest.raises(NotFound):
        db.get(m1.id, as_of=m1.tx_from - 1)
    # A read as of a point keeps saying what it said then.
    assert db.get(m1.id, as_of=m1.tx_from).tx_to is None
    assert db.get(m1.id, as_of=m1.tx_from).status == "active"
    assert [v.version for v in db.history(m1.id, as_of=m2.tx_from)] == [1, 2]
    old = db.recall("alpha project", namespace="pm/**", as_of=m1.tx_from)
    assert [(h.memory.version, h.memory.text) for h in old.hits] == [(1, m1.text)]
    assert old.receipt.as_of == m1.tx_from
    assert len(db.recall("alpha project", namespace="pm/**")) == 0


def test_as_of_by_datetime(db: Any) -> None:
    m1 = db.remember("Price of widgets is 10", namespace="shop/prices")
    m2 = db.update(m1.id, text="Price of widgets is 12")
    assert db.get(m1.id, as_of=m1.recorded_at).text == m1.text
    assert db.get(m1.id, as_of=m2.recorded_at).text == m2.text
    assert db.get(m1.id, as_of=m2.recorded_at.isoformat()).text == m2.text
    with pytest.raises(NotFound):
        db.get(m1.id, as_of=m1.recorded_at - timedelta(microseconds=1))
    hits = db.recall("widgets price", namespace="shop/**", as_of=m1.recorded_at).hits
    assert [h.memory.text for h in hits] == [m1.text]


def test_valid_time(db: Any) -> None:
    alice = db.remember("Alice is the chief executive", namespace="org/people",
                        valid_from=T2020, valid_to=T2023)
    bob = db.remember("Bob is the chief executive", namespace="org/people",
                      valid_from=T2023)
    mid_2021, in_2024 = datetime(2021, 6, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)
    assert ids(db.recall("chief executive", namespace="org/**", valid_at=mid_2021)) == {alice.id}
    assert ids(db.recall("chief executive", namespace="org/**", valid_at=in_2024)) == {bob.id}
    assert ids(db.recall("chief executive", namespace="org/**")) == {alice.id, bob.id}
    assert db.get(alice.id, valid_at=mid_2021) == alice
    with pytest.raises(NotFound):
        db.get(alice.id, valid_at=in_2024)
    with pytest.raises(NotFound):
        db.get(bob.id, valid_at=datetime(2019, 1, 1, tzinfo=UTC))


# -- recall --------------------------------------------------------------------------

TOPICS = {
    "revenue": "Acme's quarterly revenue grew twelve percent on strong software sales",
    "cat": "Our cat likes to sleep on the warm windowsill every afternoon",
    "ci": "The deployment pipeline runs the integration tests before each release",
    "everest": "Mount Everest is the highest mountain above sea level",
    "pasta": "Fresh basil and ripe tomatoes make a good pasta sauce",
}
PARAPHRASES = [
    ("How did the company's earnings change last quarter?", "revenue"),
    ("pet napping in the sunshine", "cat"),
    ("automated checks that run before shipping code", "ci"),
    ("tallest peak on earth", "everest"),
    ("Italian cooking with herbs", "pasta"),
]


def test_recall_ranks_the_relevant_memory_first(db: Any) -> None:
    by_topic = {topic: db.remember(text, namespace="kb/misc").id for topic, text in TOPICS.items()}
    for query, topic in PARAPHRASES:
        r = db.recall(query, namespace="kb/**", k=3)
        assert r.hits, query
        assert r.hits[0].memory.id == by_topic[topic], (
            query, [h.memory.text for h in r.hits])
        scores = [h.score for h in r.hits]
        assert scores == sorted(scores, reverse=True)
        top = r.hits[0].why
        assert {"relevance", "recency", "importance"} <= set(top)
        assert "vector_similarity" in top


def test_recall_explains_full_text_matches(db: Any) -> None:
    m = db.remember("The zebrafish tank needs new filters", namespace="lab/care")
    db.remember("The office plants need watering", namespace="lab/care")
    hit = db.recall("zebrafish filters", namespace="lab/**", k=1).hits[0]
    assert hit.memory.id == m.id
    assert hit.why["text_rank"] == 1.0 and hit.why["text_score"] > 0


FILLER = "Routine status report number {i} about the warehouse stock"


@pytest.fixture
def crowded(db: Any) -> dict[str, Any]:
    """200 ordinary memories plus groups of 5 that each differ in one filterable way."""
    db.admin.create_agent("carol")
    db.admin.grant("carol", "a/**", ["read", "write"])
    carol = db.as_agent("carol")
    db.remember_many([{"text": FILLER.format(i=i), "namespace": "a/bulk",
                       "metadata": {"kind": "bulk", "n": i}} for i in range(200)])
    groups: dict[str, set[str]] = {}

    def group(name: str, writer: Any = db, **fields: Any) -> None:
        made = writer.remember_many([{"text": FILLER.format(i=f"{name}-{j}"), **fields}
                                     for j in range(5)])
        groups[name] = {m.id for m in made}

    group("b", namespace="b/target")
    group("procedural", namespace="a/bulk", layer="procedural")
    group("carol", writer=carol, namespace="a/bulk")
    group("priority-int", namespace="a/bulk", metadata={"priority": 1})
    group("priority-str", namespace="a/bulk", metadata={"priority": "1"})
    group("priority-bool", namespace="a/bulk", metadata={"priority": True})
    group("old", namespace="a/bulk", valid_from=T2020)
    mark = datetime.now(UTC)
    group("late", namespace="a/bulk")
    return {"groups": groups, "mark": mark}


FILTERS: dict[str, dict[str, Any]] = {
    "b": {"namespace": "b/**"},
    "procedural": {"layers": ["procedural"]},
    "carol": {"filters": {"author": "carol"}},
    "priority-int": {"filters": {"metadata": {"priority": 1}}},
    "priority-str": {"filters": {"metadata": {"priority": "1"}}},
    "priority-bool": {"filters": {"metadata": {"priority": True}}},
    "old": {"filters": {"valid_before": T2023}},
    "late": {"filters": {"recorded_after": "mark"}},
}


@pytest.mark.uses("remember_many")
def test_recall_filters_run_inside_the_query(db: Any, crowded: dict[str, Any]) -> None:
    # 230 memories match the words of the query; each filter selects exactly 5.
    # A filter applied after fetching a candidate list would come back short.
    failures = []
    for name, args in FILTERS.items():
        args = {**args}
        if args.get("filters", {}).get("recorded_after") == "mark":
            args["filters"] = {"recorded_after": crowded["mark"]}
        want = crowded["groups"][name]
        got = ids(db.recall("routine status report on warehouse stock", k=5, **args))
        if got != want:
            failures.append(f"{name}: {len(got & want)} of 5 right, {len(got - want)} wrong")
        fewer = ids(db.recall("routine status report", k=3, **args))
        if len(fewer) != 3 or not fewer <= want:
            failures.append(f"{name} with k=3: {len(fewer)} hits, {len(fewer - want)} wrong")
    assert not failures, failures


@pytest.mark.uses("remember_many")
def test_recall_filters_combine(db: Any, crowded: dict[str, Any]) -> None:
    groups = crowded["groups"]
    both = db.recall("status report", namespace="a/**", k=50,
                     filters={"author": "carol", "recorded_before": crowded["mark"]})
    assert ids(both) == groups["carol"]
    none = db.recall("status report", namespace="b/**", k=50, filters={"author": "carol"})
    assert len(none) == 0
    assert len(db.recall("status report", k=1000)) == 240


def test_superseded_and_retracted_are_excluded_unless_asked(db: Any) -> None:
    kept = db.remember("Server rack 4 runs hot", namespace="dc/racks")
    newer = db.update(kept.id, text="Server rack 4 runs very hot")
    gone = db.remember("Server rack 7 runs hot", namespace="dc/racks")
    retracted = db.retract(gone.id, reason="sensor fault")

    default = db.recall("server rack runs hot", namespace="dc/**", k=10)
    assert [(h.memory.id, h.memory.version) for h in default.hits] == [(kept.id, 2)]
    assert default.hits[0].memory == newer

    everything = db.recall("server rack runs hot", namespace="dc/**", k=10,
                           filters={"include_superseded": True,
                                    "statuses": ["active", "retracted"]})
    got = {(h.memory.id, h.memory.version, h.memory.status) for h in everything.hits}
    assert got == {(kept.id, 1, "superseded"), (kept.id, 2, "active"),
                   (gone.id, 1, "superseded"), (gone.id, 2, "retracted")}
    only_retracted = db.recall("server rack", namespace="dc/**",
                               filters={"statuses": ["retracted"]})
    assert [h.memory for h in only_retracted.hits] == [retracted]
    history = db.recall("server rack", namespace="dc/**", filters={"include_superseded": True})
    assert {(h.memory.id, h.memory.version) for h in history.hits} == {
        (kept.id, 1), (kept.id, 2), (gone.id, 1)}


def test_receipt_lists_exactly_what_was_returned(db: Any) -> None:
    for i in range(6):
        db.remember(f"Shipment {i} left the depot", namespace="logistics/out")
    m = db.remember("Shipment 9 left the depot late", namespace="logistics/out")
    db.update(m.id, text="Shipment 9 left the depot very late")
    r = db.recall("shipment left depot", namespace="logistics/**", k=4)
    assert len(r.hits) == 4
    assert tuple(r.receipt.items) == tuple(ReceiptItem(h.memory.id, h.memory.version)
                                           for h in r.hits)
    assert len(r.receipt) == 4 and r.receipt.principal == "admin"
    assert r.receipt.query_digest
    # The receipt is enough to read the same versions again later.
    db.update(r.hits[0].memory.id, text="Shipment changed after the read")
    for item, hit in zip(r.receipt, r.hits, strict=True):
        assert db.get(item.id, as_of=r.receipt.as_of) == hit.memory


# -- access control ------------------------------------------------------------------


@pytest.mark.uses("changes")
def test_deny_by_default(db: Any) -> None:
    secret = db.remember("The launch date is 3 March", namespace="corp/plans")
    db.admin.create_agent("eve")
    eve = db.as_agent("eve")
    assert len(eve.recall("launch date", k=10)) == 0
    assert len(eve.recall("launch date", namespace="corp/**", k=10)) == 0
    cursor = last_seq(db)
    with pytest.raises(PermissionDenied):
        eve.remember("I was here", namespace="corp/plans")
    assert last_seq(db) == cursor
    own = eve.remember("my scratch note about launch dates")
    assert ids(eve.recall("launch date", k=10)) == {own.id}
    assert all(e.namespace == "agents/eve" for e in eve.changes(0))
    assert secret.id not in {e.subject_ref for e in eve.changes(0)}


def test_forbidden_id_looks_like_unknown_id(db: Any) -> None:
    secret = db.remember("Salary bands for 2026", namespace="hr/pay")
    unknown = "01900000-0000-7000-8000-000000000001"
    db.admin.create_agent("eve")
    eve = db.as_agent("eve")
    calls = {
        "get": lambda mid: eve.get(mid),
        "get as_of": lambda mid: eve.get(mid, as_of=secret.tx_from),
        "history": lambda mid: eve.history(mid),
        "update": lambda mid: eve.update(mid, text="changed"),
        "update with version": lambda mid: eve.update(mid, text="x", expected_version=1),
        "retract": lambda mid: eve.retract(mid),
    }
    for name, call in calls.items():
        with pytest.raises(NotFound) as forbidden:
            call(secret.id)
        with pytest.raises(NotFound) as missing:
            call(unknown)
        assert type(forbidden.value) is type(missing.value), name
        assert (forbidden.value.message.replace(secret.id, "<id>")
                == missing.value.message.replace(unknown, "<id>")), name
        assert set(forbidden.value.details) == set(missing.value.details), name
    assert db.get(secret.id) == secret


def test_grants_open_exactly_their_namespaces(db: Any) -> None:
    team = db.remember("Team offsite is in May", namespace="corp/team/events")
    board = db.remember("Board offsite is in June", namespace="corp/board")
    db.admin.create_agent("ann")
    grant = db.admin.grant("ann", "corp/team/**", ["read"])
    ann = db.as_agent("ann")
    assert ids(ann.recall("offsite", k=10)) == {team.id}
    assert ann.get(team.id) == team
    with pytest.raises(NotFound):
        ann.get(board.id)
    with pytest.raises(PermissionDenied):  # may read, may not write
        ann.update(team.id, text="Team offsite moved to July")
    db.admin.revoke(grant.id)
    assert len(ann.recall("offsite", k=10)) == 0
    with pytest.raises(NotFound):
        ann.get(team.id)


def test_role_grants_apply_to_members(db: Any) -> None:
    note = db.remember("Incident 42 is resolved", namespace="ops/incidents")
    db.admin.create_agent("oncall-bot", roles=["sre"])
    db.admin.grant("role:sre", "ops/**", ["read", "write"])
    bot = db.as_agent("oncall-bot")
    assert bot.get(note.id) == note
    assert bot.update(note.id, text="Incident 42 is resolved and reviewed").author == "oncall-bot"


# -- change feed ---------------------------------------------------------------------


@pytest.mark.uses("changes")
def test_changes_feed_is_ordered_and_resumable(db: Any) -> None:
    start = last_seq(db)
    a = db.remember("Feed item one", namespace="feed/a")
    db.update(a.id, text="Feed item one, edited")
    db.retract(a.id)
    b = db.remember("Feed item two", namespace="feed/b")
    events = list(db.changes(start))
    assert [(e.kind, e.subject_ref) for e in events] == [
        ("memory.remembered", a.id), ("memory.updated", a.id),
        ("memory.retracted", a.id), ("memory.remembered", b.id)]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and seqs[0] == start + 1 and len(set(seqs)) == 4
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert [e.seq for e in db.changes(seqs[1])] == seqs[2:]
    assert [e.subject_ref for e in db.changes(start, namespace="feed/b")] == [b.id]
    assert list(db.changes(seqs[-1])) == []


@pytest.mark.uses("changes")
def test_changes_feed_shows_only_what_you_may_read(db: Any) -> None:
    db.admin.create_agent("ann")
    db.admin.grant("ann", "feed/open/**", ["read"])
    ann = db.as_agent("ann")
    start = last_seq(db)
    shown = db.remember("Weather report for Monday", namespace="feed/open")
    hidden = db.remember("Minutes of the board meeting", namespace="feed/closed")
    db.admin.create_agent("bob")
    seen = [e.subject_ref for e in ann.changes(start)]
    assert seen == [shown.id]
    assert hidden.id not in {e.subject_ref for e in ann.changes(0)}
    # The admin sees everything, including events that belong to no namespace.
    admin_kinds = [e.kind for e in db.changes(start)]
    assert admin_kinds == ["memory.remembered", "memory.remembered", "principal.created"]


# -- transactions ----------------------------------------------------------------------


@pytest.mark.uses("transaction")
def test_transaction_commits_everything_in_one_transaction(db: Any) -> None:
    existing = db.remember("Stock of bolts is 50", namespace="inv/bolts")
    with db.transaction() as tx:
        a = tx.remember("Stock of nuts is 20", namespace="inv/nuts")
        b = tx.update(existing.id, text="Stock of bolts is 45", expected_version=1)
        c = tx.remember("Stock of washers is 5", namespace="inv/washers")
        d = tx.update(c.id, text="Stock of washers is 6")
    a, b, c, d = (committed(x) for x in (a, b, c, d))
    assert len({a.tx_from, b.tx_from, c.tx_from, d.tx_from}) == 1
    assert a.tx_from > existing.tx_from
    assert db.get(existing.id).text == "Stock of bolts is 45"
    assert db.get(c.id).text == "Stock of washers is 6"
    assert db.get(a.id) == a
    assert db.verify().ok


@pytest.mark.uses("transaction", "changes")
def test_transaction_aborted_by_an_exception_leaves_no_trace(db: Any) -> None:
    existing = db.remember("Budget is 1000", namespace="fin/budget")
    cursor = last_seq(db)

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon):
        with db.transaction() as tx:
            tx.remember("Budget note that must vanish", namespace="fin/budget")
            tx.update(existing.id, text="Budget is 0")
            raise Abandon
    assert last_seq(db) == cursor
    assert db.get(existing.id) == existing
    assert len(db.recall("budget note vanish", namespace="fin/**", k=10)) == 1
    assert db.verify().ok


@pytest.mark.uses("transaction")
def test_transaction_with_a_failing_write_is_all_or_nothing(db: Any) -> None:
    existing = db.remember("Lamp is on", namespace="home/lamp")
    db.update(existing.id, text="Lamp is off")
    cursor = last_seq(db)
    with pytest.raises(VersionConflict):
        with db.transaction() as tx:
            tx.remember("Heater is on", namespace="home/heater")
            tx.update(existing.id, text="Lamp is dimmed", expected_version=1)
    assert last_seq(db) == cursor
    assert db.get(existing.id).text == "Lamp is off"
    assert [h.memory.text for h in db.recall("heater", namespace="home/**", k=10).hits] == [
        "Lamp is off"]


@pytest.mark.uses("remember_many", "changes")
def test_remember_many_is_all_or_nothing(db: Any) -> None:
    cursor = last_seq(db)
    with pytest.raises(engramdb.EngramError):
        db.remember_many([{"text": "Good item", "namespace": "batch/x"},
                          {"text": "Bad item", "namespace": "Batch/X"}])
    assert last_seq(db) == cursor
    made = db.remember_many([{"text": text, "namespace": "batch/x"}
                             for text in ("Apples are red", "Sky is blue", "Grass is green")])
    assert len({m.tx_from for m in made}) == 1
    # ``conflicts`` reports what the write itself detected; a later get has none.
    assert [db.get(m.id) for m in made] == [m.replace(conflicts=()) for m in made]
