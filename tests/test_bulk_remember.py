"""``remember_many`` commits runs of plain memories in bulk; the log must not tell.

A batch's plain memories (no idempotency key, no assertion, a layer not checked for
free-text rivals) are applied and logged together (``engine/_commit.commit_each``),
and the others are planned and committed one at a time between the runs. What a user
can notice is the log and the state: one event per new memory in the batch's order,
each carrying the row stored; the same events a series of single ``remember`` calls
logs; ``verify``, export and import, erasure, trust floors and idempotent retries as
before. Runs on SQLite and PostgreSQL with the real embedder and judge.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.codec import canonical, chain_hash
from engramdb.engine import import_database

PAST = "2026-01-05T10:00:00Z"


def _items(root: str) -> list[dict[str, Any]]:
    """Plain memories, then every kind of memory that is not, then plain ones again."""
    return [
        {"text": "Standup moved to the small room", "namespace": f"{root}/log",
         "layer": "episodic"},
        {"text": "Deploy of build 881 finished", "namespace": f"{root}/log", "layer": "episodic",
         "metadata": {"build": 881, "ok": True}, "session": "s-1", "importance": 0.9,
         "source": "ci"},
        {"text": "Invoice 117 was paid", "namespace": f"{root}/fin", "layer": "episodic",
         "idempotency_key": f"{root}-inv-117"},
        {"text": "The deployment window is Friday", "namespace": f"{root}/ops"},
        {"text": "Coffee machine fixed", "namespace": f"{root}/log", "layer": "working",
         "valid_from": PAST},
        {"text": "Bob is the CEO of Acme", "namespace": f"{root}/ops", "subject": "acme",
         "predicate": "ceo", "value": "Bob"},
        {"text": "Invoice 117 was paid", "namespace": f"{root}/fin", "layer": "episodic",
         "idempotency_key": f"{root}-inv-117"},
        {"text": "The deployment window is Monday", "namespace": f"{root}/ops"},
        {"text": "Release notes drafted", "namespace": f"{root}/log", "layer": "procedural"},
        {"text": "Lunch order placed", "namespace": f"{root}/log", "layer": "episodic",
         "expires_at": "2099-01-01T00:00:00Z"},
    ]


def _events_after(db: Any, seq: int) -> list[Any]:
    head = db.storage.head().seq
    return [db.event(s) for s in range(seq + 1, head + 1)]


# Differs between two equal writes: ids, times, the namespace root, the idempotency key
# (and the hash of the request, which holds the namespace).
_PER_WRITE = {"id", "tx_from", "tx_to", "recorded_at", "valid_from", "namespace", "key", "tx",
              "request_hash"}


def _shape(event: Any, ids: dict[str, int]) -> tuple[Any, ...]:
    """An event with what differs between two equal writes (ids, times, root) left out."""
    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("<per-write>" if k in _PER_WRITE else norm(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if isinstance(value, str) and value in ids:
            return f"<memory {ids[value]}>"
        return value
    return (event.kind, event.subject_ref in ids and ids[event.subject_ref],
            norm(dict(event.payload)))


def test_a_batch_logs_what_single_writes_log_in_the_same_order(engine_db: Any) -> None:
    db = engine_db
    start = db.storage.head().seq
    made = db.remember_many(_items("b"))
    batch_events = _events_after(db, start)
    middle = db.storage.head().seq
    singles = [db.remember(**item) for item in _items("s")]
    single_events = _events_after(db, middle)

    # One memory.remembered event per new memory, in the batch's order; the
    # retry (position 6) returns the first memory and logs nothing.
    assert (made[6].id, made[6].version) == (made[2].id, made[2].version)
    new = [m for i, m in enumerate(made) if i != 6]
    remembered = [e for e in batch_events if e.kind == "memory.remembered"]
    assert [e.subject_ref for e in remembered] == [m.id for m in new]
    for event, memory in zip(remembered, new, strict=True):
        (effect,) = [e for e in event.payload["effects"] if e["table"] == "memories"]
        assert effect["op"] == "insert"
        row = effect["row"]
        stored = db.get(memory.id)
        assert (row["id"], row["version"], row["text"], row["layer"], row["status"]) == (
            stored.id, stored.version, stored.text, stored.layer, stored.status)
        assert row["metadata"] == dict(stored.metadata)
        assert row["tx_from"] == event.tx == stored.tx_from
    assert made[1].metadata == {"build": 881, "ok": True} and made[1].session == "s-1"
    assert made[4].valid_from.isoformat() == "2026-01-05T10:00:00+00:00"
    # The two Monday/Friday memories contradict: the batch recorded the conflict.
    assert len(db.conflicts("b/**", status=None)) == 1

    # Event for event, the batch logged what one remember() at a time logs.
    batch_ids: dict[str, int] = {}
    single_ids: dict[str, int] = {}
    for ids, memories, root in ((batch_ids, made, "b"), (single_ids, singles, "s")):
        for i, m in enumerate(memories):
            ids.setdefault(m.id, i)
        ids.update({c.id: -1 for c in db.conflicts(f"{root}/**", status=None)})
    assert [_shape(e, batch_ids) for e in batch_events] == [
        _shape(e, single_ids) for e in single_events]
    assert db.verify().ok


def test_a_database_written_by_bulk_batches_reimports_erases_and_verifies(
        tmp_path: Path, embedder: Any) -> None:
    source = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        made = source.remember_many(
            [{"text": f"Sensor {i} read {i * 3} degrees", "namespace": f"iot/s{i % 3}",
              "layer": "episodic"} for i in range(300)] + _items("x"))
        buf = io.StringIO()
        source.export(buf)
        summary = import_database(tmp_path / "b.db", io.StringIO(buf.getvalue()),
                                  embedder=embedder)
        assert summary.head_hash == source.storage.head().hash
        receipt = source.forget(id=made[7].id, reason="test erasure of a bulk write")
        assert list(receipt.memories) == [made[7].id]
        assert receipt.counts["vectors"] == 1 and receipt.counts["event_payloads"] == 1
        assert source.verify().ok
        assert made[7].id not in {m.id for m in source.recent(namespace="iot/**", k=400)}
        hits = source.recall("Sensor 8 read 24 degrees", namespace="iot/**", k=3)
        assert hits.hits and hits.hits[0].memory.id == made[8].id
    finally:
        source.close()


def test_plain_memories_below_the_trust_floor_are_quarantined_in_a_batch(
        engine_db: Any) -> None:
    db = engine_db
    db.admin.create_agent("intern", trust=0.2)
    db.admin.grant("intern", "acme/**", ["read", "write"])
    db.admin.configure_namespace("acme/**", trust_floor=0.4)
    db.admin.grant("intern", "notes/**", ["read", "write"])
    intern = db.as_agent("intern")
    start = db.storage.head().seq
    made = intern.remember_many([
        {"text": "Visitor badge printed", "namespace": "acme/desk", "layer": "episodic"},
        {"text": "Printer out of toner", "namespace": "notes/desk", "layer": "episodic"},
    ])
    assert [m.status for m in made] == ["quarantined", "active"]
    rows = [e.payload["effects"][0]["row"] for e in _events_after(db, start)]
    assert [r["status"] for r in rows] == ["quarantined", "active"]
    assert [r["author"] for r in rows] == ["intern", "intern"]
    assert [m.id for m in db.admin.quarantined("acme/**")] == [made[0].id]


def test_a_batch_refused_part_way_writes_nothing(engine_db: Any) -> None:
    db = engine_db
    db.admin.create_agent("reader", trust=0.5)
    db.admin.grant("reader", "open/**", ["read", "write"])
    reader = db.as_agent("reader")
    start = db.storage.head()
    with pytest.raises(engramdb.errors.PermissionDenied):
        reader.remember_many([
            {"text": "Door code changed", "namespace": "open/a", "layer": "episodic"},
            {"text": "Alarm armed", "namespace": "closed/a", "layer": "episodic"},
        ])
    assert db.storage.head() == start
    assert db.recent(namespace="open/**", k=5) == []


# ---------------------------------------------------------------------------- encoding

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_canonical_bytes_are_those_every_existing_hash_was_computed_over(value: Any) -> None:
    """The encoder kept across calls writes exactly what a fresh json.dumps did."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    assert canonical(value) == expected


def test_canonical_refuses_what_json_cannot_carry() -> None:
    looped: list[Any] = []
    looped.append(looped)
    for bad in (looped, math.nan, {"x": math.inf}):
        with pytest.raises(ValueError):
            canonical(bad)
    with pytest.raises(TypeError):
        canonical({"x": {1, 2}})
    # A refusal leaves nothing behind: the same list encodes once the loop is gone.
    looped.clear()
    assert canonical([looped, looped]) == b"[[],[]]"


_NAME = st.text(min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(_NAME, _NAME, st.none() | _NAME, st.none() | _NAME,
       st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
def test_a_chain_hash_covers_the_canonical_envelope(
        kind: str, actor: str, namespace: str | None, ref: str | None, seq: int, tx: int,
        at: int) -> None:
    """Envelopes are written without the encoder; the hash is over the same bytes."""
    envelope = {"seq": seq, "tx": tx, "kind": kind, "namespace": namespace, "actor": actor,
                "recorded_at": at, "subject_ref": ref, "commitment": "ab" * 32}
    prev = "cd" * 32
    try:
        body = json.dumps(envelope, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: refused either way
        with pytest.raises(UnicodeEncodeError):
            chain_hash(prev, envelope)
        return
    assert chain_hash(prev, envelope) == hashlib.sha256(bytes.fromhex(prev) + body).hexdigest()


_SCALAR = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _SCALAR | _JSON, max_size=25), st.text(min_size=1))
def test_an_insert_payload_is_written_as_the_encoder_writes_it(row: dict[str, Any],
                                                                table: str) -> None:
    """A one-row insert (what each memory of a batch logs) is encoded without the
    encoder's per-key work; the bytes hashed and stored are the same."""
    from engramdb.codec import canonical_payload, insert_payload

    payload = {"effects": [{"op": "insert", "table": table, "row": row}]}
    try:
        expected = json.dumps(payload, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: refused either way
        with pytest.raises(UnicodeEncodeError):
            insert_payload(table, row)
        return
    assert insert_payload(table, row) == expected
    assert canonical_payload(payload) == expected
    # Any other payload goes to the encoder.
    assert canonical_payload({**payload, "reason": "x"}) == canonical({**payload, "reason": "x"})


def test_an_insert_payload_refuses_what_json_cannot_carry() -> None:
    from engramdb.codec import insert_payload

    for bad in ({"x": math.nan}, {"x": math.inf}, {"x": {1, 2}}, {"x": {"y": math.nan}}):
        with pytest.raises((TypeError, ValueError)):
            insert_payload("memories", bad)


_OPT_TEXT = st.none() | st.text()
_OPT_INT = st.none() | st.integers(0, 2**63 - 1)
_MEMORY_ROW = st.fixed_dictionaries({
    "id": st.text(), "version": st.integers(1, 2**63 - 1), "namespace": st.text(),
    "layer": st.text(), "text": st.text(), "subject": _OPT_TEXT, "predicate": _OPT_TEXT,
    "value": _JSON, "metadata": st.dictionaries(st.text(), _JSON, max_size=3),
    # An int where a float goes (or a NaN) is written by the encoder, or refused by it.
    "importance": st.floats(0, 1) | st.integers(0, 1), "confidence": st.floats(),
    "author": st.text(), "source": _OPT_TEXT, "session": _OPT_TEXT,
    "valid_from": st.integers(0, 2**63 - 1), "valid_to": _OPT_INT,
    "tx_from": st.integers(0, 2**63 - 1), "tx_to": _OPT_INT,
    "recorded_at": st.integers(0, 2**63 - 1), "status": st.text(), "expires_at": _OPT_INT,
})


@settings(max_examples=300, deadline=None)
@given(_MEMORY_ROW)
def test_a_memory_insert_payload_is_written_as_the_encoder_writes_it(row: dict[str, Any]
                                                                     ) -> None:
    """The payload every new memory logs, written in one expression: the same bytes as
    ``json.dumps`` of it (or the same refusal)."""
    from engramdb.codec import canonical_payload

    payload = {"effects": [{"op": "insert", "table": "memories", "row": row}]}
    try:
        expected = json.dumps(payload, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError) as exc:  # a lone surrogate, a NaN: refused
        with pytest.raises(type(exc)):
            canonical_payload(payload)
        return
    assert canonical_payload(payload) == expected


def test_a_batch_takes_its_ids_at_once_and_in_the_batchs_order(engine_db: Any) -> None:
    """A batch's ids are made together; they still sort in write order, as single
    writes' ids do, are UUIDv7s, and stay unique and increasing with the ids made next."""
    import uuid

    from engramdb.codec import new_id, new_ids

    made = [*new_ids(5000), new_id(), *new_ids(3)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {uuid.UUID(i).version for i in made} == {7}
    assert {uuid.UUID(i).variant for i in made} == {uuid.RFC_4122}
    # 62 random bits: the two under the variant's vary too (the digit after it is 8-b).
    assert {i[19] for i in made} == set("89ab")
    assert len({i[20:] for i in made}) == len(made)
    stored = engine_db.remember_many(
        [{"text": f"Reading {i}", "namespace": "ids/a", "layer": "episodic"} for i in range(40)]
        + [{"text": "A belief", "namespace": "ids/a"}]  # planned on its own between runs
        + [{"text": f"Reading {i}", "namespace": "ids/a", "layer": "episodic"}
           for i in range(40, 80)])
    ids = [m.id for m in stored]
    assert ids == sorted(ids) and len(set(ids)) == 81
