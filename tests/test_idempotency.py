"""Idempotency keys: a retried write returns the original result and writes nothing.

A client that lost the answer to a write (a timeout, a dropped connection)
retries it with the same key. The retry must return exactly what the first
call returned, even if other writes happened in between, and the log must not
grow. The same key sent with a different request is a typed error, because
silently returning the first result would hide a client bug.
"""

from __future__ import annotations

from typing import Any

import pytest

import engramdb
from engramdb import IdempotencyKeyReused, VersionConflict
from engramdb.storage.schema import TABLES


def local_engine(db: Any) -> engramdb.Database | None:
    """The engine behind ``db``: itself, or the database a test HTTP server serves."""
    if hasattr(db, "storage"):
        return db
    return getattr(getattr(db, "server", None), "db", None)


def snapshot(db: Any) -> tuple[Any, ...]:
    """The whole log as the door shows it, plus the head and row counts behind it."""
    log = [(e.seq, e.hash) for e in db.changes(0)]
    engine = local_engine(db)
    if engine is None:
        return (log,)
    rows = {name: sum(1 for _ in engine.storage.scan(name)) for name in TABLES}
    return log, engine.storage.head(), engine.storage.counts(), rows


def test_retried_remember_returns_the_original(db: engramdb.Database) -> None:
    first = db.remember("Invoice 17 was paid", namespace="billing", idempotency_key="pay-17")
    before = snapshot(db)
    again = db.remember("Invoice 17 was paid", namespace="billing", idempotency_key="pay-17")
    assert again == first
    assert snapshot(db) == before
    assert len(db.recall("invoice paid", namespace="billing/**", k=10)) == 1


def test_retry_after_other_writes_still_returns_the_original(db: engramdb.Database) -> None:
    first = db.remember("Invoice 18 was paid", namespace="billing", idempotency_key="pay-18")
    db.update(first.id, text="Invoice 18 was paid late")
    db.remember("Invoice 19 was paid", namespace="billing")
    before = snapshot(db)
    again = db.remember("Invoice 18 was paid", namespace="billing", idempotency_key="pay-18")
    assert again == first  # the result the first call returned, not today's state
    assert snapshot(db) == before
    assert db.get(first.id).text == "Invoice 18 was paid late"


def test_retried_update_returns_the_original(db: engramdb.Database) -> None:
    m = db.remember("Stock level is 10", namespace="inventory")
    first = db.update(m.id, text="Stock level is 9", expected_version=1, idempotency_key="u1")
    before = snapshot(db)
    again = db.update(m.id, text="Stock level is 9", expected_version=1, idempotency_key="u1")
    assert again == first
    assert snapshot(db) == before
    # A later change does not alter what the retry answers, and the retry
    # does not raise VersionConflict even though version 1 is long gone.
    db.update(m.id, text="Stock level is 8")
    before = snapshot(db)
    assert db.update(m.id, text="Stock level is 9", expected_version=1,
                     idempotency_key="u1") == first
    assert snapshot(db) == before
    assert [h.version for h in db.history(m.id)] == [1, 2, 3]


def test_retried_retract_returns_the_original(db: engramdb.Database) -> None:
    m = db.remember("The door code is 1234", namespace="facility")
    first = db.retract(m.id, reason="code changed", idempotency_key="r1")
    before = snapshot(db)
    again = db.retract(m.id, reason="code changed", idempotency_key="r1")
    assert again == first
    assert again.status == "retracted"
    assert snapshot(db) == before


def test_same_key_different_request_is_refused(db: engramdb.Database) -> None:
    m = db.remember("Meeting at 10", namespace="calendar", idempotency_key="k")
    before = snapshot(db)
    with pytest.raises(IdempotencyKeyReused) as info:
        db.remember("Meeting at 11", namespace="calendar", idempotency_key="k")
    assert info.value.details["key"] == "k"
    with pytest.raises(IdempotencyKeyReused):
        db.remember("Meeting at 10", namespace="calendar/other", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        db.update(m.id, text="Meeting at 12", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        db.retract(m.id, idempotency_key="k")
    assert snapshot(db) == before
    assert db.get(m.id).text == "Meeting at 10"


def test_update_key_reused_with_other_text_is_refused(db: engramdb.Database) -> None:
    m = db.remember("Budget is 100", namespace="finance")
    db.update(m.id, text="Budget is 120", idempotency_key="budget")
    before = snapshot(db)
    with pytest.raises(IdempotencyKeyReused):
        db.update(m.id, text="Budget is 130", idempotency_key="budget")
    assert snapshot(db) == before
    assert db.get(m.id).text == "Budget is 120"


def test_failed_request_does_not_use_up_its_key(db: engramdb.Database) -> None:
    m = db.remember("Counter is 0", namespace="counters")
    db.update(m.id, text="Counter is 1")
    before = snapshot(db)
    for _ in range(2):  # a failure is not remembered as the key's result
        with pytest.raises(VersionConflict):
            db.update(m.id, text="Counter is 5", expected_version=1, idempotency_key="c")
    assert snapshot(db) == before
    done = db.update(m.id, text="Counter is 5", expected_version=2, idempotency_key="c")
    assert done.version == 3


def test_keys_belong_to_their_principal(db: engramdb.Database) -> None:
    for name in ("ann", "bob"):
        db.admin.create_agent(name)
        db.admin.grant(name, "shared/**", ["read", "write"])
    ann, bob = db.as_agent("ann"), db.as_agent("bob")
    a = ann.remember("Ann saw a fox", namespace="shared/notes", idempotency_key="obs-1")
    b = bob.remember("Bob saw an owl", namespace="shared/notes", idempotency_key="obs-1")
    assert a.id != b.id
    assert (a.author, b.author) == ("ann", "bob")
    assert ann.remember("Ann saw a fox", namespace="shared/notes", idempotency_key="obs-1") == a


def test_retry_inside_a_transaction(db: engramdb.Database) -> None:
    first = db.remember("Order 5 shipped", namespace="orders", idempotency_key="ship-5")
    before = snapshot(db)
    with db.transaction() as tx:
        pending = tx.remember("Order 5 shipped", namespace="orders", idempotency_key="ship-5")
    # A remote transaction hands back a PendingMemory that holds the Memory after commit.
    again = getattr(pending, "memory", pending)
    assert again == first
    assert snapshot(db) == before
