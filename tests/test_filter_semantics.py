"""One meaning of a filter: SQL (``memory_where``) and the in-process vector mask agree.

SQLite answers vector searches from a memory-mapped snapshot plus an in-process
index of newer rows, both filtering with NumPy masks, while full text (and
PostgreSQL) filter in SQL. For random filters over a database with several
namespaces, layers, authors, statuses, versions and valid times, both must
select exactly the same memory rows.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.model import STATUSES, RecallFilter
from engramdb.storage.sql import memory_where

NAMESPACES = ("acme/a", "acme/b", "beta/c")
LAYERS = ("semantic", "episodic", "working")
AUTHORS = ("admin", "ann", "bob")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


class HashEmbedder:
    """A deterministic 8-dimensional embedder: only filtering is under test here."""

    name = "test-hash-8"
    dimension = 8

    def embed(self, texts):
        out = []
        for t in texts:
            digest = hashlib.sha256(t.encode()).digest()
            v = np.frombuffer(digest[:32], dtype=np.uint8)[:8].astype(np.float32) + 1.0
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


@pytest.fixture(scope="module", params=["exact", "snapshot"])
def store(tmp_path_factory, request):
    """The database; with ``snapshot``, the first 20 memories are in the shared
    vector snapshot (memory-mapped files) and the rest, the updates and the
    retractions only in the exact in-process part that overrides it."""
    path: Path = tmp_path_factory.mktemp("filters") / "engram.db"
    db = engramdb.open(path, embedder=HashEmbedder())
    for name in AUTHORS[1:]:
        db.admin.create_agent(name)
        db.admin.grant(name, "**", ["read", "write"])
    agents = {"admin": db, **{n: db.as_agent(n) for n in AUTHORS[1:]}}
    made = []
    for i in range(36):
        who = agents[AUTHORS[i % 3]]
        m = who.remember(f"fact number {i}", namespace=NAMESPACES[i % 3],
                         layer=LAYERS[(i // 3) % 3],
                         valid_from=T0 + timedelta(days=i),
                         valid_to=None if i % 4 else T0 + timedelta(days=i + 10))
        made.append(m)
        if i == 19 and request.param == "snapshot":
            db.storage.rebuild_vector_index()
            assert (path.parent / "engram.db-vindex" / "current").exists()
    for m in made[::5]:
        db.update(m.id, text=m.text + " (revised)")
    for m in made[1::7]:
        db.retract(m.id, reason="wrong")
    head = db.storage.head()
    yield db, head.tx
    db.close()


def _times():
    return st.one_of(st.none(), st.integers(-5, 60).map(lambda d: T0 + timedelta(days=d)))


@st.composite
def filters(draw, max_tx: int) -> RecallFilter:
    def subset(values):
        return draw(st.one_of(st.none(), st.lists(st.sampled_from(values), unique=True)
                              .map(tuple)))

    return RecallFilter(
        namespaces=subset(NAMESPACES), layers=subset(LAYERS), authors=subset(AUTHORS),
        statuses=tuple(draw(st.lists(st.sampled_from(STATUSES), min_size=1, unique=True))),
        as_of=draw(st.one_of(st.none(), st.integers(0, max_tx + 2))),
        valid_at=draw(_times()), valid_after=draw(_times()), valid_before=draw(_times()),
        recorded_after=draw(st.one_of(st.none(), st.just(datetime(2020, 1, 1, tzinfo=UTC)),
                                      st.just(datetime(2100, 1, 1, tzinfo=UTC)))),
        include_superseded=draw(st.booleans()),
    )


def _both(db, flt: RecallFilter) -> tuple[set[int], set[int]]:
    storage = db.storage
    with storage._read_conn() as conn:
        index, allowed = storage._fresh_index(conn, HashEmbedder.dimension, flt)
        assert allowed is None  # only filters the mask handles are drawn
        in_process = index.selected_row_ids(conn, flt)
        cond, params = memory_where(flt, storage.dialect_impl)
        in_sql = {r[0] for r in conn.execute(
            f"SELECT m.row_id FROM memories m JOIN memory_vectors v ON v.id = m.id "
            f"AND v.version = m.version WHERE {cond}", params)}
    return in_sql, in_process


def test_some_filters_select_something(store):
    db, _ = store
    in_sql, in_process = _both(db, RecallFilter(namespaces=("acme/a",)))
    assert in_sql and in_sql == in_process


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_sql_filter_and_vector_mask_select_the_same_rows(store, data):
    db, max_tx = store
    flt = data.draw(filters(max_tx))
    in_sql, in_process = _both(db, flt)
    assert in_sql == in_process, flt
