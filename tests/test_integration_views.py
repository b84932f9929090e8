"""An adapter's view of its items stays the log's, whoever writes.

The LangGraph and CrewAI adapters answer key lookups from a view of their own
items, kept current from the change feed. On an embedded database a store skips
reading the feed when the log's head shows no transaction but its own since it
last read it (integrations/_feed.py). Any sequence of writes by several stores,
agents and conflict policies must leave every store seeing exactly what a store
opened afresh (which reads the whole feed) sees.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph.store.memory",
                    reason="LangGraph is not installed: pip install 'engramdb[langgraph]'")

import engramdb
from engramdb.integrations.langgraph import EngramStore

# Texts the heuristic judge calls contradictions of each other (the CEO, the price),
# and unrelated ones.
TEXTS = ["The CEO of Acme is Alice Smith", "The CEO of Acme is Bob Jones",
         "The price of the basic plan is 10 dollars", "The price of the basic plan is 12 dollars",
         "zebra crossing near the station", "apple pie recipe"]

_OP = st.tuples(st.sampled_from(["put", "put", "put", "delete"]),
                st.integers(0, 2),  # which store writes
                st.sampled_from([("f",), ("f", "x"), ("g",)]),
                st.sampled_from(["k1", "k2", "k3"]),
                st.integers(0, len(TEXTS) - 1))


def observed(store: EngramStore) -> list[Any]:
    """Everything a graph can see of a store: each item, its version and contest mark."""
    return sorted((h.namespace, h.key, h.value["text"], h.version, h.contested)
                  for h in store.search((), limit=1000))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(_OP, min_size=1, max_size=14),
       policy=st.sampled_from(["flag", "supersede"]))
def test_every_store_sees_what_a_fresh_store_reads_from_the_log(
        tmp_path_factory: Any, ops: list[Any], policy: str) -> None:
    db = engramdb.open(tmp_path_factory.mktemp("views") / "v.db", embedder=None)
    try:
        db.admin.configure_namespace("langgraph/**", default_policy=policy)
        for name in ("ana", "ben"):
            db.admin.create_agent(name)
            db.admin.grant(name, "langgraph/**", ["read", "write"])
        base = EngramStore(db)
        stores = [base, base.as_agent("ana"), EngramStore(db, agent="ben")]
        for kind, who, ns, key, text in ops:
            store = stores[who]
            if kind == "put":
                store.put(ns, key, {"text": TEXTS[text]})
            else:
                store.delete(ns, key)
            truth = observed(EngramStore(db))
            for s in stores:
                assert observed(s) == truth
    finally:
        db.close()


def test_a_store_reads_the_feed_when_another_writer_came_between(tmp_path: Any) -> None:
    """Its own write right after another's: the other's item still reaches the view."""
    db = engramdb.open(tmp_path / "v.db", embedder=None)
    try:
        one, two = EngramStore(db), EngramStore(db)
        one.put(("n",), "a", {"text": "apple pie recipe"})
        two.put(("n",), "b", {"text": "zebra crossing"})  # between one's writes
        one.put(("n",), "c", {"text": "green pear"})
        assert one.get(("n",), "b").value == {"text": "zebra crossing"}
        db.remember("a memory outside the store's namespaces", namespace="elsewhere")
        two.delete(("n",), "a")
        one.put(("n",), "d", {"text": "red apple"})
        assert one.get(("n",), "a") is None
        assert sorted(i.key for i in one.search(("n",))) == ["b", "c", "d"]
    finally:
        db.close()


def test_stores_writing_at_once_from_threads_each_end_with_every_item(tmp_path: Any) -> None:
    """Another thread's write can land between a store's feed read and its own write:
    the store must still read it (its own write then does not follow its view)."""
    import threading

    db = engramdb.open(tmp_path / "v.db", embedder=None)
    try:
        db.admin.configure_namespace("langgraph/**", detect_free_text=False)
        stores = [EngramStore(db), EngramStore(db)]
        start = threading.Barrier(len(stores))

        def write(i: int) -> None:
            start.wait()
            for n in range(150):
                stores[i].put(("t",), f"{i}-{n}", {"text": f"item {n} of writer {i}"})

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        want = {f"{i}-{n}" for i in range(len(stores)) for n in range(150)}
        for s in stores:
            assert {i.key for i in s.search(("t",), limit=1000)} == want
    finally:
        db.close()
