"""PostgreSQL recall asks its full-text and vector searches in one round trip, exactly.

A recall given its query embedding needs both candidate searches, and neither
depends on the other: ``search_text_and_vector`` sends both statements in one
pipeline. These tests check that it returns exactly what the two searches
return one after the other (rows, versions, order, scores) under every kind of
filter, inside a recall's snapshot and outside one (brief rows, as recall asks:
the same rows, each with its stored words for the ranking), that it costs one round
trip where the two cost two, and that a search whose namespace list names
every namespace (an admin's unscoped recall), which then checks no namespace
per row, still finds exactly the same rows, while a list missing one
namespace still keeps that namespace out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import psycopg
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.words import WORDS_KEY, stored_words
from tests.test_pg_vector_scope import _embedder, _unit

pytestmark = pytest.mark.postgres

_WORDS = ["backup", "deploy", "rotation", "midnight", "cluster", "invoice", "ledger", "audit"]


@pytest.fixture
def loaded(pg_url: str) -> Iterator[tuple[engramdb.Database, np.ndarray, list[Any]]]:
    rng = np.random.default_rng(41)
    vecs = _unit(rng, 240)
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        mems = db.remember_many([
            {"text": f"the {_WORDS[i % 8]} note {i} mentions {_WORDS[(i * 3) % 8]}",
             "namespace": f"team/ns{max(0, i % 8 - 4)}",
             "layer": "semantic" if i % 5 == 0 else "episodic",
             "embedding": vecs[i].tolist()} for i in range(200)])
        db.storage.wait_for_vector_index(timeout=120)
        # Newer versions and rows past the projection's watermark (searched exactly);
        # no two vectors alike (a tie at the limit may be cut either way).
        for j, i in enumerate(range(0, 200, 7)):
            db.update(mems[i].id, text=f"the revised {_WORDS[i % 8]} note {i}",
                      embedding=vecs[200 + j].tolist())
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE")  # the planner's statistics, as autovacuum leaves them
        yield db, vecs, mems


def _key(hits: list[Any]) -> list[tuple[str, int, float]]:
    return [(str(r["id"]), int(r["version"]), float(s)) for r, s in hits]


def _filters(db: engramdb.Database) -> list[RecallFilter]:
    head = db.storage.head()
    every = tuple(db.storage.namespaces())
    assert len(every) == 4
    base = RecallFilter(as_of=head.tx)
    return [
        base,
        replace(base, namespaces=every),  # an admin's unscoped recall lists them all
        replace(base, namespaces=every[:3]),  # all but one
        replace(base, namespaces=("team/ns2",)),
        replace(base, namespaces=every, layers=("semantic",)),
        replace(base, as_of=head.tx - 10),  # before the last updates
        RecallFilter(),  # current rows, not pinned
    ]


def test_both_searches_together_return_what_each_returns_alone(loaded: Any) -> None:
    db, vecs, _ = loaded
    storage = db.storage
    for query, q in (("backup midnight", vecs[3]), ("ledger audit rotation", vecs[205]),
                     ("nothing matches zyzzyva", vecs[60])):
        for flt in _filters(db):
            for limit in (5, 40):
                for snapshot in (False, True):
                    if snapshot:
                        with storage.snapshot():
                            both = storage.search_text_and_vector(query, q, flt, limit)
                            alone = (storage.search_text(query, flt, limit),
                                     storage.search_vector(q, flt, limit))
                    else:
                        both = storage.search_text_and_vector(query, q, flt, limit)
                        alone = (storage.search_text(query, flt, limit),
                                 storage.search_vector(q, flt, limit))
                    assert _key(both[0]) == _key(alone[0])
                    assert _key(both[1]) == _key(alone[1])
                    # Brief (what recall asks): the same rows, each with its stored words.
                    brief = storage.search_text_and_vector(query, q, flt, limit, brief=True)
                    for rows, whole in zip(brief, both, strict=True):
                        assert [{**r, WORDS_KEY: None} for r, _ in rows] == [
                            {**r, WORDS_KEY: None} for r, _ in whole]
                        assert [r[WORDS_KEY] for r, _ in rows] == [
                            stored_words(r["text"]) for r, _ in whole]
                        assert [s for _, s in rows] == [s for _, s in whole]
                    # A filter never hides a match: as many as pass it, up to the limit.
                    assert len(both[1]) == min(limit, len(storage.search_vector(q, flt, 500)))
                    allowed = flt.namespaces
                    if allowed is not None:
                        assert {r["namespace"] for r, _ in both[0] + both[1]} <= set(allowed)


def test_a_namespace_list_naming_every_namespace_finds_the_same_rows_and_one_missing_keeps_it_out(
        loaded: Any) -> None:
    db, vecs, _ = loaded
    storage = db.storage
    every = tuple(storage.namespaces())
    with storage.snapshot():
        head = storage.head()
        unscoped = storage.search_text_and_vector(
            "note backup", vecs[9], RecallFilter(as_of=head.tx), 200)
        listed = storage.search_text_and_vector(
            "note backup", vecs[9], RecallFilter(as_of=head.tx, namespaces=every), 200)
        missing = storage.search_text_and_vector(
            "note backup", vecs[9], RecallFilter(as_of=head.tx, namespaces=every[1:]), 200)
    assert _key(listed[0]) == _key(unscoped[0]) and _key(listed[1]) == _key(unscoped[1])
    assert {r["namespace"] for r, _ in unscoped[0]} == set(every)
    for found in missing:
        assert found and every[0] not in {r["namespace"] for r, _ in found}
    # Through recall: each namespace alone, and all of them.
    for namespace in every:
        one = db.recall("note backup", namespace=namespace, k=30,
                        query_embedding=vecs[9].tolist())
        assert one.hits and {h.memory.namespace for h in one.hits} == {namespace}
    whole = db.recall("note backup", k=30, query_embedding=vecs[9].tolist())
    assert len(whole.hits) == 30


def test_a_recall_asks_both_searches_in_one_round_trip(
        pg_url: str, loaded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, vecs, _ = loaded
    trips = [0]
    me = threading.current_thread()  # not the background indexer's statements
    execute, leave = psycopg.Connection.execute, psycopg.Pipeline.__exit__

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._pipeline is None and threading.current_thread() is me:
            trips[0] += 1
        return execute(self, *args, **kwargs)

    def counted_exit(self: Any, *args: Any) -> Any:
        if self.level == 1 and threading.current_thread() is me:  # waited for here
            trips[0] += 1
        return leave(self, *args)

    monkeypatch.setattr(psycopg.Connection, "execute", counted_execute)
    monkeypatch.setattr(psycopg.Pipeline, "__exit__", counted_exit)
    # A handle opened on the analysed database (as a new process would): the
    # planner's statistics plan its searches, no count query.
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        for namespace in ("**", "team/ns0"):  # ns0: more rows than a search's limit
            db.recall("backup deploy", namespace=namespace, k=5,
                      query_embedding=vecs[1].tolist())  # words stemmed, statistics read
            trips[0] = 0
            found = db.recall("backup deploy", namespace=namespace, k=5,
                              query_embedding=vecs[1].tolist())
            assert len(found.hits) == 5
            # The snapshot's first round trip with both searches sent ahead (the
            # head, namespaces and configuration predicted from the recall before,
            # unchanged since), then ROLLBACK.
            assert trips[0] == 2, namespace
