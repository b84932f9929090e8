"""Bad input is refused with the specific typed error, and nothing is written.

Every case runs against a database that already holds an active and a
retracted memory, an agent and a grant. The case must raise exactly the
``EngramError`` subclass named (not a parent, not a builtin), with a message
that says what to do, and afterwards the log head and every table's row
count must be what they were before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb import EngineConfig, EngramError, MemoryDraft
from engramdb.errors import (
    EmbeddingDimensionMismatch,
    InvalidInput,
    InvalidLayer,
    InvalidMetadata,
    InvalidNamespace,
    NotFound,
    PermissionDenied,
    TextTooLong,
)
from engramdb.storage.schema import TABLES

UNKNOWN_ID = "01900000-0000-7000-8000-00000000dead"


@dataclass
class Ctx:
    db: engramdb.Database
    active: str
    retracted: str


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


@pytest.fixture
def ctx(db: engramdb.Database) -> Ctx:
    db.admin.create_agent("reader")
    db.admin.grant("reader", "kb/**", ["read"])
    active = db.remember("The office opens at nine", namespace="kb/office")
    gone = db.remember("The office opens at eight", namespace="kb/office")
    db.retract(gone.id, reason="superseded by the nine o'clock rule")
    # The snapshot reads the whole log, and reading the change feed is an audited
    # read: its records would land in the log at a flush between two snapshots.
    db.set_read_audit("**", "off")
    return Ctx(db, active.id, gone.id)


def _deep(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


def remember(**kw: Any) -> Callable[[Ctx], Any]:
    fields = {"text": "a perfectly good memory", "namespace": "kb/office", **kw}
    return lambda c: c.db.remember(**fields)


def update(mid: str = "active", **kw: Any) -> Callable[[Ctx], Any]:
    return lambda c: c.db.update(getattr(c, mid, mid), **kw)


def recall(query: str = "office hours", **kw: Any) -> Callable[[Ctx], Any]:
    return lambda c: c.db.recall(query, **kw)


def get(**kw: Any) -> Callable[[Ctx], Any]:
    return lambda c: c.db.get(c.active, **kw)


CASES: list[tuple[str, Callable[[Ctx], Any], type[EngramError]]] = [
    # text
    ("empty text", remember(text=""), InvalidInput),
    ("whitespace text", remember(text=" \n\t "), InvalidInput),
    ("text not a string", remember(text=42), InvalidInput),
    ("empty text on update", update(text="   "), InvalidInput),
    # layer
    ("unknown layer", remember(layer="longterm"), InvalidLayer),
    ("layer in the wrong case", remember(layer="Semantic"), InvalidLayer),
    ("unknown layer on update", update(layer="dream"), InvalidLayer),
    ("unknown layer in recall", recall(layers=["semantic", "nope"]), InvalidLayer),
    # namespace
    ("empty namespace", remember(namespace=""), InvalidNamespace),
    ("upper-case namespace", remember(namespace="KB/Office"), InvalidNamespace),
    ("double slash namespace", remember(namespace="kb//office"), InvalidNamespace),
    ("leading slash namespace", remember(namespace="/kb"), InvalidNamespace),
    ("trailing slash namespace", remember(namespace="kb/"), InvalidNamespace),
    ("space in namespace", remember(namespace="kb/front office"), InvalidNamespace),
    ("glob as a namespace", remember(namespace="kb/*"), InvalidNamespace),
    ("namespace too deep", remember(namespace="/".join(["x"] * 17)), InvalidNamespace),
    ("namespace not a string", remember(namespace=7), InvalidNamespace),
    ("malformed recall glob", recall(namespace="kb/***"), InvalidNamespace),
    ("malformed changes glob", lambda c: list(c.db.changes(0, namespace="KB/**")),
     InvalidNamespace),
    # embeddings
    ("embedding of the wrong dimension", remember(embedding=[0.1] * 5),
     EmbeddingDimensionMismatch),
    ("embedding one too long", remember(embedding=[0.1] * 385), EmbeddingDimensionMismatch),
    ("embedding holds NaN", remember(embedding=[math.nan] + [0.1] * 383), InvalidInput),
    ("embedding all zeros", remember(embedding=[0.0] * 384), InvalidInput),
    # float32 arrays (the embedder's own form) take a shorter check: it must refuse alike
    ("float32 embedding holds NaN",
     remember(embedding=np.array([np.nan] + [0.1] * 383, dtype=np.float32)), InvalidInput),
    ("float32 embedding holds infinity",
     remember(embedding=np.array([np.inf] + [0.1] * 383, dtype=np.float32)), InvalidInput),
    ("float32 embedding all zeros", remember(embedding=np.zeros(384, dtype=np.float32)),
     InvalidInput),
    ("float32 embedding of the wrong dimension",
     remember(embedding=np.ones(383, dtype=np.float32)), EmbeddingDimensionMismatch),
    # metadata
    ("metadata is a set", remember(metadata={"a", "b"}), InvalidMetadata),
    ("metadata is a list", remember(metadata=["a", "b"]), InvalidMetadata),
    ("metadata is an empty list", remember(metadata=[]), InvalidMetadata),
    ("metadata is a string", remember(metadata="{}"), InvalidMetadata),
    ("metadata holds NaN", remember(metadata={"score": math.nan}), InvalidMetadata),
    ("metadata holds infinity", remember(metadata={"score": math.inf}), InvalidMetadata),
    ("metadata holds a set", remember(metadata={"tags": {"x"}}), InvalidMetadata),
    ("metadata holds bytes", remember(metadata={"blob": b"\x00"}), InvalidMetadata),
    ("metadata holds a datetime", remember(metadata={"at": datetime(2026, 1, 1)}),
     InvalidMetadata),
    ("metadata with an int key", remember(metadata={1: "one"}), InvalidMetadata),
    ("metadata with a nested int key", remember(metadata={"a": {2: "two"}}), InvalidMetadata),
    ("metadata with a None key", remember(metadata={None: "x"}), InvalidMetadata),
    ("metadata with mixed keys", remember(metadata={1: "one", "b": 2}), InvalidMetadata),
    ("metadata nested too deep", remember(metadata=_deep(100_000)), InvalidMetadata),
    ("metadata not JSON on update", update(metadata={"n": math.nan}), InvalidMetadata),
    ("assertion value holds NaN",
     remember(subject="office", predicate="opens_at", value=math.nan), InvalidMetadata),
    # other fields
    ("importance above one", remember(importance=1.5), InvalidInput),
    ("confidence is NaN", remember(confidence=math.nan), InvalidInput),
    ("valid_to before valid_from",
     remember(valid_from=datetime(2026, 2, 1, tzinfo=UTC),
              valid_to=datetime(2026, 1, 1, tzinfo=UTC)),
     InvalidInput),
    ("valid_from not a time", remember(valid_from="next tuesday"), InvalidInput),
    ("predicate without subject", remember(predicate="opens_at"), InvalidInput),
    ("value without assertion", remember(value="9am"), InvalidInput),
    ("empty idempotency key", remember(idempotency_key=""), InvalidInput),
    ("update with nothing to change", update(), InvalidInput),
    ("update of a fixed field", update(namespace="kb/other"), InvalidInput),
    ("update of a retracted memory", update("retracted", text="back again"), InvalidInput),
    ("retract twice", lambda c: c.db.retract(c.retracted), InvalidInput),
    ("batch with one bad item",
     lambda c: c.db.remember_many([{"text": "fine", "namespace": "kb/a"},
                                   {"text": "", "namespace": "kb/a"}]), InvalidInput),
    ("batch with a bad namespace",
     lambda c: c.db.remember_many([MemoryDraft("fine", "kb/a"), MemoryDraft("bad", "Kb")]),
     InvalidNamespace),
    # unknown ids
    ("get unknown id", lambda c: c.db.get(UNKNOWN_ID), NotFound),
    ("history unknown id", lambda c: c.db.history(UNKNOWN_ID), NotFound),
    ("update unknown id", update(UNKNOWN_ID, text="x"), NotFound),
    ("update unknown id with expected_version", update(UNKNOWN_ID, text="x", expected_version=1),
     NotFound),
    ("retract unknown id", lambda c: c.db.retract(UNKNOWN_ID), NotFound),
    ("get empty id", lambda c: c.db.get(""), InvalidInput),
    ("get id not a string", lambda c: c.db.get(12), InvalidInput),
    ("get before the memory existed", get(as_of=1), NotFound),
    # as_of
    ("as_of not a time", get(as_of="yesterday"), InvalidInput),
    ("as_of negative", get(as_of=-1), InvalidInput),
    ("as_of a boolean", get(as_of=True), InvalidInput),
    ("as_of a list", get(as_of=[3]), InvalidInput),
    ("recall as_of not a time", recall(as_of="soon"), InvalidInput),
    ("valid_at not a time", get(valid_at="later"), InvalidInput),
    # recall arguments
    ("k zero", recall(k=0), InvalidInput),
    ("k negative", recall(k=-3), InvalidInput),
    ("k over the maximum", recall(k=1001), InvalidInput),
    ("k a string", recall(k="5"), InvalidInput),
    ("k a boolean", recall(k=True), InvalidInput),
    ("empty query", recall(query="  "), InvalidInput),
    ("unknown filter", recall(filters={"colour": "red"}), InvalidInput),
    ("metadata filter not a dict", recall(filters={"metadata": ["a"]}), InvalidInput),
    ("time filter not a time", recall(filters={"recorded_after": "last week"}), InvalidInput),
    # times that leave years 1..9999 once converted to UTC (OverflowError before)
    ("valid_from before year 1 in UTC", remember(valid_from="0001-01-01T00:00:00+05:00"),
     InvalidInput),
    ("valid_to after year 9999 in UTC", remember(valid_to="9999-12-31T23:00:00-05:00"),
     InvalidInput),
    ("expires_at before year 1 in UTC on update", update(expires_at="0001-01-01T03:00+09:00"),
     InvalidInput),
    ("as_of before year 1 in UTC", get(as_of="0001-01-01T00:00:00+05:00"), InvalidInput),
    ("recall valid_at before year 1 in UTC", recall(valid_at="0001-01-01T00:00:00+01:00"),
     InvalidInput),
    ("time filter after year 9999 in UTC",
     recall(filters={"recorded_before": "9999-12-31T23:59:00-00:30"}), InvalidInput),
    # integers past 64 bits (an SQLite OverflowError before)
    ("decision basis version past 64 bits",
     lambda c: c.db.decide("ship it", basis=[(c.active, 2**70)]), InvalidInput),
    ("decision receipt version past 64 bits",
     lambda c: c.db.decide("ship it", basis={"items": [{"id": c.active, "version": 2**64}],
                                             "as_of": 1}), InvalidInput),
    ("as_of past 64 bits", get(as_of=2**70), InvalidInput),
    ("changes cursor past 64 bits", lambda c: list(c.db.changes(2**70)), InvalidInput),
    # recall filters and layers
    ("empty statuses filter", recall(filters={"statuses": []}), InvalidInput),
    ("unknown status in filter", recall(filters={"statuses": ["active", "gone"]}),
     InvalidInput),
    ("metadata filter False", recall(filters={"metadata": False}), InvalidInput),
    ("metadata filter empty string", recall(filters={"metadata": ""}), InvalidInput),
    ("metadata filter zero", recall(filters={"metadata": 0}), InvalidInput),
    ("layers a dict", recall(layers={"semantic": 1}), InvalidInput),
    ("layers a number", recall(layers=3), InvalidInput),
    ("layers a generator",
     lambda c: c.db.recall("office hours", layers=(x for x in ["semantic"])), InvalidInput),
    # update and retract check what remember checks
    ("source too long on update", update(source="s" * 501), InvalidInput),
    ("empty source on update", update(source=""), InvalidInput),
    ("empty idempotency key on update", update(text="x", idempotency_key=""), InvalidInput),
    ("idempotency key too long on update", update(text="x", idempotency_key="k" * 201),
     InvalidInput),
    ("idempotency key not a string on update", update(text="x", idempotency_key=7),
     InvalidInput),
    ("idempotency key too long on retract",
     lambda c: c.db.retract(c.active, idempotency_key="k" * 201), InvalidInput),
    ("empty idempotency key on retract", lambda c: c.db.retract(c.active, idempotency_key=""),
     InvalidInput),
    ("expected_version not a number", update(text="x", expected_version="1"), InvalidInput),
    # strings no backend can store: NUL (PostgreSQL cannot) and lone surrogates (not Unicode)
    ("text with NUL", remember(text="nine\x00ten"), InvalidInput),
    ("text with NUL on update", update(text="nine\x00ten"), InvalidInput),
    ("text with NUL in a transaction",
     lambda c: _in_transaction(c, "fine", "nine\x00ten"), InvalidInput),
    ("metadata value with NUL", remember(metadata={"k": "a\x00b"}), InvalidMetadata),
    ("source with NUL", remember(source="web\x00"), InvalidInput),
    ("text with a lone surrogate", remember(text="nine\ud800ten"), InvalidInput),
    ("text with a lone surrogate on update", update(text="\udc00"), InvalidInput),
    ("metadata value with a lone surrogate", remember(metadata={"k": "\ud83d"}),
     InvalidMetadata),
    ("metadata key with a lone surrogate", remember(metadata={"\udfff": 1}), InvalidMetadata),
    ("nested metadata with a lone surrogate", remember(metadata={"a": [{"b": "\ud800"}]}),
     InvalidMetadata),
    ("assertion value with a lone surrogate",
     remember(subject="office", predicate="opens_at", value="\ud800"), InvalidMetadata),
    ("subject with a lone surrogate", remember(subject="\ud800", predicate="p"), InvalidInput),
    ("session with a lone surrogate", remember(session="s\ud800"), InvalidInput),
    ("idempotency key with a lone surrogate", remember(idempotency_key="\ud800"),
     InvalidInput),
    ("namespace with a lone surrogate", remember(namespace="kb/\ud800"), InvalidNamespace),
    ("query with a lone surrogate", recall(query="office\ud800"), InvalidInput),
    ("author filter with a lone surrogate", recall(filters={"author": "\ud800"}),
     InvalidInput),
    ("metadata filter with a lone surrogate", recall(filters={"metadata": {"k": "\ud800"}}),
     InvalidMetadata),
    ("retract reason with a lone surrogate",
     lambda c: c.db.retract(c.active, reason="\ud800"), InvalidInput),
    ("memory id with a lone surrogate", lambda c: c.db.get("\ud800"), InvalidInput),
    ("context task with a lone surrogate", lambda c: c.db.context("hours \ud800"),
     InvalidInput),
    ("decision description with a lone surrogate",
     lambda c: c.db.decide("open \ud800", basis=[(c.active, 1)]), InvalidInput),
    ("decision outcome with a lone surrogate",
     lambda c: c.db.decide("open", basis=[(c.active, 1)], outcome={"why": "\ud800"}),
     InvalidMetadata),
]


def _in_transaction(c: Ctx, *texts: str) -> None:
    with c.db.transaction() as tx:
        for text in texts:
            tx.remember(text, namespace="kb/office")


def _problem(ctx: Ctx, call: Callable[[Ctx], Any], error: type[EngramError]) -> str | None:
    """What is wrong with how the database handled one bad call, or None."""
    before = snapshot(ctx.db)
    try:
        call(ctx)
    except EngramError as exc:
        if type(exc) is not error:
            return f"raised {type(exc).__name__} ({exc}), not {error.__name__}"
        if exc.code != error.code:
            return f"code {exc.code!r}, not {error.code!r}"
        if len(exc.message) <= 20:  # says what is wrong and what to do, not just "bad"
            return f"message too terse: {exc.message!r}"
    except Exception as exc:  # a non-EngramError escaping is itself the finding
        return f"raised {type(exc).__name__} ({exc}), which is not an EngramError"
    else:
        return "did not raise"
    if snapshot(ctx.db) != before:
        return "wrote something although it failed"
    return None


def test_bad_input_raises_typed_error_and_writes_nothing(ctx: Ctx) -> None:
    # One database for every case (cheap on every backend and door); each case
    # still checks its own error and its own "nothing written", and every
    # failing case is reported, not just the first.
    failures = [f"{name}: {problem}" for name, call, error in CASES
                if (problem := _problem(ctx, call, error)) is not None]
    assert not failures, f"{len(failures)} of {len(CASES)} cases:\n" + "\n".join(failures)


def test_case_names_are_unique() -> None:
    assert len({name for name, _, _ in CASES}) == len(CASES)


def test_statuses_filter_of_none_means_not_given(ctx: Ctx) -> None:
    # JSON's null for "not given" (it raised TypeError before): active memories only.
    plain = ctx.db.recall("office opens", namespace="kb/**")
    with_none = ctx.db.recall("office opens", namespace="kb/**", filters={"statuses": None})
    assert [h.memory.id for h in with_none.hits] == [h.memory.id for h in plain.hits] == [
        ctx.active]


def test_namespace_filtered_feed_leaves_out_admin_events(ctx: Ctx) -> None:
    # The admin sees namespace-less events (principals, grants) only in the whole feed.
    everything = [e.kind for e in ctx.db.changes(0)]
    assert {"principal.created", "grant.created"} <= set(everything)
    filtered = list(ctx.db.changes(0, namespace="kb/**"))
    assert [e.kind for e in filtered] == ["memory.remembered", "memory.remembered",
                                          "memory.retracted"]
    assert all(e.namespace == "kb/office" for e in filtered)
    assert list(ctx.db.changes(0, namespace="elsewhere/**")) == []


def test_agent_bad_input_and_denied_writes_leave_no_trace(ctx: Ctx) -> None:
    reader = ctx.db.as_agent("reader")
    before = snapshot(ctx.db)
    with pytest.raises(PermissionDenied):
        reader.remember("I may only read here", namespace="kb/office")
    with pytest.raises(PermissionDenied):
        reader.update(ctx.active, text="changed by a reader")
    with pytest.raises(InvalidNamespace):
        reader.remember("bad place", namespace="Agents/reader")
    assert snapshot(ctx.db) == before


def test_text_over_the_configured_maximum(tmp_path: Path) -> None:
    config = EngineConfig(max_text_chars=40)
    with engramdb.open(tmp_path / "limits.db", embedder=None, config=config) as db:
        ok = db.remember("x" * 40, namespace="kb/limits")  # exactly at the limit is fine
        before = snapshot(db)
        with pytest.raises(TextTooLong) as info:
            db.remember("x" * 41, namespace="kb/limits")
        assert "40" in info.value.message and "41" in info.value.message
        assert info.value.details == {"length": 41, "limit": 40}
        with pytest.raises(TextTooLong):
            db.update(ok.id, text="y" * 41)
        with pytest.raises(TextTooLong):
            with db.transaction() as tx:
                tx.remember("fits", namespace="kb/limits")
                tx.remember("z" * 1000, namespace="kb/limits")
        assert snapshot(db) == before


def test_embedding_on_a_database_without_embedder(tmp_path: Path) -> None:
    with engramdb.open(tmp_path / "fts.db", embedder=None) as db:
        before = snapshot(db)
        with pytest.raises(EmbeddingDimensionMismatch) as info:
            db.remember("has a vector", namespace="kb/a", embedding=[0.5] * 384)
        assert "omit" in info.value.message
        assert snapshot(db) == before


def test_errors_survive_the_wire_form(ctx: Ctx) -> None:
    """What a remote door sends rebuilds into the same class with the same details."""
    from engramdb.errors import error_from_wire

    with pytest.raises(EngramError) as info:
        ctx.db.remember("x", namespace="kb/a", embedding=[1.0, 2.0])
    rebuilt = error_from_wire(info.value.to_wire())
    assert type(rebuilt) is EmbeddingDimensionMismatch
    assert rebuilt.details == info.value.details == {"expected": 384, "got": 2}
