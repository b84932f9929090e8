"""EngramStore against LangGraph's reference InMemoryStore, side by side.

The behaviours of LangGraph's own store suites (libs/checkpoint/tests/test_store.py,
libs/checkpoint-sqlite/tests/test_store.py), written afresh: every scenario runs
the same calls on an EngramStore (embedded, and over a real HTTP server) and on
LangGraph's InMemoryStore, and the observable results must be equal. Then what
EngramDB adds: versions, agents, grants, receipts, conflicts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("langgraph.store.memory",
                    reason="LangGraph is not installed: pip install 'engramdb[langgraph]'")

from langgraph.store.base import InvalidNamespaceError, Item, SearchItem
from langgraph.store.memory import InMemoryStore

import engramdb
from engramdb.integrations.langgraph import EngramStore
from tests.conftest import matrix, open_cell

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def letter_embed(texts: list[str]) -> list[list[float]]:
    """The caller's embedding function: letter counts (deterministic, meaning-free)."""
    return [[float(t.lower().count(c)) for c in LETTERS] + [0.5] for t in texts]


async def aletter_embed(texts: list[str]) -> list[list[float]]:
    return letter_embed(texts)


def view(result: Any) -> Any:
    """What a graph can observe of a result, minus the clock."""
    if isinstance(result, list):
        return [view(r) for r in result]
    if isinstance(result, SearchItem):
        score = None if result.score is None else round(result.score, 9)
        return (result.namespace, result.key, result.value, score)
    if isinstance(result, Item):
        return (result.namespace, result.key, result.value)
    return result


class Pair:
    """An EngramStore and an InMemoryStore built with the same config."""

    def __init__(self, db: Any, **config: Any) -> None:
        self.engram = EngramStore(db, **config)
        config.pop("root", None)
        config.pop("ttl", None)
        self.memory = InMemoryStore(**config)

    def both(self, call: Callable[[Any], Any]) -> Any:
        mine, ref = call(self.engram), call(self.memory)
        assert view(mine) == view(ref)
        return mine


@pytest.fixture(params=[*matrix(("sqlite",), ("python", "http"), embed=False),
                        *matrix(("postgres",), ("python",), embed=False)])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """The store's database: SQLite embedded and over HTTP, PostgreSQL embedded (full text
    only: no embedding model on the write path)."""
    store, door, _ = request.param
    cell = open_cell(store, door, tmp_path, None, request)
    yield cell.db
    cell.close()


@pytest.fixture
def pair(db: Any) -> Callable[..., Pair]:
    return lambda **config: Pair(db, **config)


def _fill(p: Pair) -> None:
    for ns, key, value in [
        (("docs", "a"), "d1", {"text": "apple pie recipe", "n": 1, "tag": "food"}),
        (("docs", "a"), "d2", {"text": "zebra crossing", "n": 2, "tag": "road"}),
        (("docs", "b"), "d3", {"text": "banana bread", "n": 3, "tag": "food",
                               "meta": {"lang": "en"}}),
        (("users",), "u1", {"text": "profile", "n": 4, "tags": ["x", "y"]}),
    ]:
        p.both(lambda s, ns=ns, key=key, value=value: s.put(ns, key, value))


# -- the reference behaviours ----------------------------------------------------------

def test_put_get_overwrite_delete(pair: Callable[..., Pair]) -> None:
    p = pair()
    p.both(lambda s: s.put(("a", "b"), "k", {"x": 1}))
    first = p.both(lambda s: s.get(("a", "b"), "k"))
    p.both(lambda s: s.put(("a", "b"), "k", {"x": 2}))
    second = p.both(lambda s: s.get(("a", "b"), "k"))
    assert second.value == {"x": 2}
    assert second.created_at == first.created_at  # an overwrite keeps the creation time
    assert second.updated_at > first.updated_at
    assert second.created_at.tzinfo is not None
    p.both(lambda s: s.delete(("a", "b"), "k"))
    assert p.both(lambda s: s.get(("a", "b"), "k")) is None
    assert p.both(lambda s: s.get(("a",), "k")) is None  # a prefix is not the namespace
    p.both(lambda s: s.delete(("a", "b"), "never-written"))  # deleting nothing is fine


def test_search_prefix_filters_and_paging(pair: Callable[..., Pair]) -> None:
    p = pair()
    _fill(p)
    assert len(p.both(lambda s: s.search(("docs",)))) == 3
    assert len(p.both(lambda s: s.search(()))) == 4
    p.both(lambda s: s.search(("docs", "a")))
    p.both(lambda s: s.search(("docs",), filter={"tag": "food"}))
    p.both(lambda s: s.search(("docs",), filter={"meta": {"lang": "en"}}))
    p.both(lambda s: s.search((), filter={"tags": ["x", "y"]}))
    p.both(lambda s: s.search((), filter={"tags": ["y", "x"]}))
    for op, arg, expect in [("$eq", 2, {2}), ("$ne", 2, {1, 3, 4}), ("$gt", 2, {3, 4}),
                            ("$gte", 2, {2, 3, 4}), ("$lt", 3, {1, 2}), ("$lte", 3, {1, 2, 3})]:
        got = p.both(lambda s, op=op, arg=arg: s.search((), filter={"n": {op: arg}}))
        assert {r.value["n"] for r in got} == expect, op
    p.both(lambda s: s.search((), filter={"n": {"$gt": 1, "$lt": 4}, "tag": "food"}))
    pages = [p.both(lambda s, o=o: s.search((), limit=2, offset=o)) for o in (0, 2, 4)]
    assert [len(x) for x in pages] == [2, 2, 0]
    assert len({r.key for page in pages for r in page}) == 4
    assert p.both(lambda s: s.search(("nothing",))) == []


def test_namespace_segments_never_leak(pair: Callable[..., Pair]) -> None:
    p = pair()
    for ns in [("acme",), ("acme-corp",), ("acme_x",), ("a%c",), ("abc",), ("a_c",),
               ("*",), ("star", "*"), ("Upper Case", "ünï/cøde")]:
        p.both(lambda s, ns=ns: s.put(ns, "k", {"ns": list(ns)}))
    assert [r.namespace for r in p.both(lambda s: s.search(("acme",)))] == [("acme",)]
    assert [r.namespace for r in p.both(lambda s: s.search(("a%c",)))] == [("a%c",)]
    assert [r.namespace for r in p.both(lambda s: s.search(("a_c",)))] == [("a_c",)]
    assert [r.namespace for r in p.both(lambda s: s.search(("*",)))] == [("*",)]
    assert p.both(lambda s: s.get(("Upper Case", "ünï/cøde"), "k")).value == {
        "ns": ["Upper Case", "ünï/cøde"]}
    p.both(lambda s: s.list_namespaces())
    p.both(lambda s: s.list_namespaces(prefix=("acme",)))


def test_bad_namespaces_are_refused(pair: Callable[..., Pair]) -> None:
    p = pair()
    for bad in [(), ("a.b",), ("",), ("langgraph", "x")]:
        for store in (p.engram, p.memory):
            with pytest.raises(InvalidNamespaceError):
                store.put(bad, "k", {"v": 1})
    assert p.both(lambda s: s.search(())) == []
    # "langgraph" is reserved as the root label only
    p.both(lambda s: s.put(("foo", "langgraph", "foo"), "k", {"v": 1}))
    assert p.both(lambda s: s.get(("foo", "langgraph", "foo"), "k")).value == {"v": 1}


def test_concurrent_async_calls_settle_like_the_reference(pair: Callable[..., Pair]) -> None:
    p = pair(index={"dims": 27, "embed": letter_embed, "fields": ["text"]})
    docs = [(f"doc{i}", {"text": f"{c} {w}", "i": i}) for i, (c, w) in enumerate(
        [("red", "apple"), ("blue", "car"), ("green", "house")] * 4)]

    async def run(s: Any) -> Any:
        await asyncio.gather(*[s.aput(("t",), k, v) for k, v in docs])
        await asyncio.gather(*[s.adelete(("t",), k) for k, _ in docs[::2]])
        await asyncio.gather(*[s.aput(("t",), k, {**v, "again": True}) for k, v in docs[::3]])
        return sorted((r.key, r.value["i"], r.value.get("again", False))
                      for r in await s.asearch(("t",), limit=100))

    p.both(lambda s: asyncio.run(run(s)))


def test_list_namespaces(pair: Callable[..., Pair]) -> None:
    p = pair()
    for ns in [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"),
               ("a", "c", "f"), ("b", "a", "f"), ("users", "123"), ("users", "456", "settings"),
               ("admin", "users", "789")]:
        p.both(lambda s, ns=ns: s.put(ns, "k", {"v": 1}))
    assert len(p.both(lambda s: s.list_namespaces())) == 9
    p.both(lambda s: s.list_namespaces(prefix=("a", "b")))
    p.both(lambda s: s.list_namespaces(suffix=("f",)))
    p.both(lambda s: s.list_namespaces(prefix=("a",), suffix=("f",)))
    p.both(lambda s: s.list_namespaces(prefix=("a", "*", "f")))
    p.both(lambda s: s.list_namespaces(suffix=("*", "f")))
    assert p.both(lambda s: s.list_namespaces(max_depth=2))[:2] == [("a", "b"), ("a", "c")]
    p.both(lambda s: s.list_namespaces(prefix=("a", "b"), max_depth=3))
    p.both(lambda s: s.list_namespaces(limit=3, offset=2))
    p.both(lambda s: s.list_namespaces(prefix=("nope",)))
    p.both(lambda s: s.delete(("users", "123"), "k"))
    # InMemoryStore keeps listing a namespace whose last item is gone; LangGraph's
    # SQL stores (and EngramStore) list only namespaces that hold items.
    assert p.engram.list_namespaces(prefix=("users",)) == [("users", "456", "settings")]


def test_batch_mixes_ops_and_reads_see_the_state_before_its_writes(
        pair: Callable[..., Pair]) -> None:
    from langgraph.store.base import GetOp, ListNamespacesOp, PutOp, SearchOp

    p = pair()
    p.both(lambda s: s.put(("t",), "old", {"v": 0}))
    ops = [PutOp(("t",), "k1", {"v": 1}), GetOp(("t",), "k1"), GetOp(("t",), "old"),
           SearchOp(("t",), None, 10, 0), ListNamespacesOp(None, None, 10, 0),
           PutOp(("t",), "k1", {"v": 2}), PutOp(("t",), "old", None)]
    p.both(lambda s: s.batch(ops))
    p.both(lambda s: s.search(("t",)))
    assert p.both(lambda s: s.get(("t",), "k1")).value == {"v": 2}


def test_vector_search_with_the_callers_embeddings(pair: Callable[..., Pair]) -> None:
    p = pair(index={"dims": 27, "embed": letter_embed, "fields": ["text"]})
    _fill(p)
    hits = p.both(lambda s: s.search(("docs",), query="banana bread"))
    assert hits[0].key == "d3" and hits[0].score is not None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    p.both(lambda s: s.search((), query="zebra", limit=2))
    p.both(lambda s: s.search((), query="zebra", limit=2, offset=1))
    p.both(lambda s: s.search((), query="apple", filter={"tag": "food"}))
    p.both(lambda s: s.search((), query="", limit=3))  # an empty query is no query
    # index=False: stored and readable, but unscored (after the scored ones)
    p.both(lambda s: s.put(("docs", "a"), "hidden", {"text": "banana banana"}, index=False))
    hits = p.both(lambda s: s.search(("docs",), query="banana", limit=10))
    assert hits[-1].key == "hidden" and hits[-1].score is None
    # a per-put field list overrides the config
    p.both(lambda s: s.put(("docs", "c"), "t", {"text": "x", "title": "banana"},
                           index=["title"]))
    p.both(lambda s: s.search(("docs",), query="banana", limit=10))
    # an overwrite is re-embedded
    p.both(lambda s: s.put(("docs", "a"), "d2", {"text": "banana split"}))
    p.both(lambda s: s.search(("docs",), query="banana", limit=10))


def test_vector_search_over_nested_and_array_fields(pair: Callable[..., Pair]) -> None:
    p = pair(index={"dims": 27, "embed": letter_embed,
                    "fields": ["meta.title", "chunks[*].text"]})
    p.both(lambda s: s.put(("n",), "1", {"meta": {"title": "quiz"},
                                         "chunks": [{"text": "aaa"}, {"text": "zzz"}]}))
    p.both(lambda s: s.put(("n",), "2", {"meta": {"title": "mmm"}, "chunks": []}))
    p.both(lambda s: s.put(("n",), "3", {"other": "no indexed field"}))
    hits = p.both(lambda s: s.search(("n",), query="zzz"))
    assert hits[0].key == "1" and hits[-1].score is None  # item 3 has nothing to embed


def test_async_twins(pair: Callable[..., Pair]) -> None:
    p = pair(index={"dims": 27, "embed": aletter_embed, "fields": ["text"]})

    async def run(s: Any) -> Any:
        await s.aput(("x",), "a", {"text": "alpha"})
        await s.aput(("x", "y"), "b", {"text": "beta"})
        got = await s.aget(("x",), "a")
        hits = await s.asearch(("x",), query="beta")
        spaces = await s.alist_namespaces()
        await s.adelete(("x",), "a")
        gone = await s.aget(("x",), "a")
        return [got, hits, spaces, gone]

    p.both(lambda s: asyncio.run(run(s)))


def test_ttl_expiry_and_refresh(db: Any) -> None:
    store = EngramStore(db, ttl={"default_ttl": 60, "refresh_on_read": True})
    store.put(("t",), "short", {"v": 1})
    store.put(("t",), "forever", {"v": 2}, ttl=None)
    before = store.get(("t",), "short", refresh_ttl=False)
    expires = store.history(("t",), "short")[-1].expires_at
    assert expires is not None
    assert timedelta(minutes=59) < expires - before.updated_at <= timedelta(minutes=61)
    assert store.history(("t",), "forever")[-1].expires_at is None
    store.get(("t",), "short")  # refreshing read: pushes the expiry back
    later = store.history(("t",), "short")[-1]
    assert later.expires_at > expires
    assert store.get(("t",), "short", refresh_ttl=False).updated_at == before.updated_at
    store.put(("t",), "gone", {"v": 3}, ttl=0.0001)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    # Wait without refreshing: with refresh_on_read, a read every few ms keeps pushing a
    # 6 ms expiry back (as LangGraph's TTL promises), so a refreshing poll can outrun it.
    while store.get(("t",), "gone", refresh_ttl=False) is not None and (
            datetime.now(UTC) < deadline):
        pass
    assert store.get(("t",), "gone") is None
    assert [r.key for r in store.search(("t",))] == ["short", "forever"]
    assert store.sweep_ttl() == 1
    assert [r.key for r in EngramStore(db).search(("t",))] == ["short", "forever"]


# -- what EngramDB adds ----------------------------------------------------------------

def test_overwrite_is_a_new_version_and_history_is_kept(db: Any) -> None:
    store = EngramStore(db)
    store.put(("h",), "k", {"v": 1})
    store.put(("h",), "k", {"v": 2})
    store.delete(("h",), "k")
    store.put(("h",), "k", {"v": 3})
    item = store.get(("h",), "k")
    assert item.version == 1  # the delete ended the first memory; this is a new one
    versions = db.history(db.recall("v", namespace="langgraph/**", k=10,
                                    filters={"statuses": ["retracted"]}).hits[0].memory.id)
    assert [v.metadata["langgraph"]["value"] for v in versions] == [{"v": 1}, {"v": 2},
                                                                     {"v": 2}]
    assert versions[-1].status == "retracted"


def test_other_store_instances_and_processes_see_the_writes(db: Any) -> None:
    one, two = EngramStore(db), EngramStore(db)
    one.put(("shared",), "k", {"v": 1})
    assert two.get(("shared",), "k").value == {"v": 1}
    two.put(("shared",), "k", {"v": 2})  # two now writes over one's version
    one.put(("shared",), "k", {"v": 3})  # one's view is stale: caught up, last write wins
    assert two.get(("shared",), "k").value == {"v": 3}
    assert len(two.history(("shared",), "k")) == 3
    one.delete(("shared",), "k")
    assert two.get(("shared",), "k") is None
    assert two.list_namespaces() == []


def test_each_node_is_its_own_agent_with_its_own_grants(db: Any) -> None:
    store = EngramStore(db)
    for name in ("writer", "outsider"):
        db.admin.create_agent(name)
    db.admin.grant("writer", store.namespace_of(("team",)) + "/**", ["read", "write"])
    writer, outsider = store.as_agent("writer"), store.as_agent("outsider")
    writer.put(("team",), "plan", {"text": "ship friday"})
    assert store.get(("team",), "plan").author == "writer"
    assert outsider.get(("team",), "plan") is None  # no grant: nothing to see
    assert outsider.search(("team",)) == []
    with pytest.raises(engramdb.PermissionDenied):
        outsider.put(("team",), "plan", {"text": "sabotage"})
    assert store.get(("team",), "plan").value == {"text": "ship friday"}


def test_search_hits_carry_a_receipt_for_decisions(db: Any) -> None:
    store = EngramStore(db, index={"dims": 27, "embed": letter_embed})
    store.put(("kb",), "k1", {"text": "rates are rising"})
    store.put(("kb",), "k2", {"text": "rates are falling"})
    hits = store.search(("kb",), query="rising", limit=1)
    receipt = hits[0].receipt
    assert [(i.id, i.version) for i in receipt.items] == [(hits[0].memory_id, 1)]
    decision = store.session.decide("hedge", basis=receipt)
    store.put(("kb",), "k1", {"text": "rates are flat"})
    assert [d.id for d in store.session.stale_decisions()] == [decision.id]


def test_engramdb_recall_as_the_index(tmp_path: Any, embedder: Any) -> None:
    db = engramdb.open(tmp_path / "recall.db", embedder=embedder)
    try:
        store = EngramStore(db, index={"embed": "engramdb", "fields": ["text"]})
        store.put(("kb",), "cat", {"text": "The cat sleeps on the warm windowsill"})
        store.put(("kb",), "tax", {"text": "Quarterly tax filing is due in April"})
        store.put(("kb",), "raw", {"text": "a kitten naps"}, index=False)
        store.put(("kb2",), "dog", {"text": "A dog naps in the sun"})
        hits = store.search(("kb",), query="a kitten napping in the sunshine")
        assert hits[0].key == "cat" and hits[0].score is not None
        assert [h.key for h in hits][-1] == "raw" and hits[-1].score is None
        assert "dog" not in {h.key for h in hits}
        assert {i.id for i in hits[0].receipt.items} >= {hits[0].memory_id}
    finally:
        db.close()


def test_contradicting_agents_show_in_the_inbox_and_as_contested(db: Any) -> None:
    store = EngramStore(db)
    for name in ("analyst-a", "analyst-b", "reviewer"):
        db.admin.create_agent(name)
        db.admin.grant(name, "langgraph/**", ["read", "write"])
    store.as_agent("analyst-a").put(("facts",), "a", {"text": "The CEO of Acme is Alice Smith"})
    store.as_agent("analyst-b").put(("facts",), "b", {"text": "The CEO of Acme is Bob Jones"})
    inbox = db.conflicts("langgraph/**")
    assert len(inbox) == 1 and inbox[0].status == "open"
    hits = store.as_agent("reviewer").search(("facts",))
    assert [(h.key, h.contested) for h in hits] == [("a", True), ("b", True)]
    assert hits[0].rivals == (hits[1].memory_id,)


def test_values_must_be_dicts_and_bad_input_writes_nothing(db: Any) -> None:
    store = EngramStore(db)
    with pytest.raises(engramdb.InvalidInput):
        store.put(("deep",) * 16, "k", {"v": 1})
    with pytest.raises(engramdb.InvalidInput):
        store.put(("x" * 70 + "!",), "k", {"v": 1})
    with pytest.raises(engramdb.EngramError):
        store.put(("big",), "k", {"blob": "x" * 70_000})
    assert store.list_namespaces() == []


def test_two_analyst_nodes_contradict_and_the_reviewer_node_sees_it(db: Any) -> None:
    """examples/langgraph_team.py: a real LangGraph graph, parallel nodes, three agents."""
    import runpy
    from pathlib import Path

    example = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples"
                                 / "langgraph_team.py"))
    out = example["build"](db).invoke({"company": "acme"})
    claims = sorted(out["report"][:2])
    assert claims == ["analyst-a: The CEO of Acme is Alice Smith [contested]",
                      "analyst-b: The CEO of Acme is Bob Jones [contested]"]
    assert out["report"][2].endswith("rests on 2 memory versions")
    inbox = db.conflicts("langgraph/**")
    assert [(c.kind, c.status) for c in inbox] == [("contradiction", "open")]
    assert {m.id for m in inbox[0].memories} == {
        h.memory_id for h in EngramStore(db).search(("facts", "acme"))}


# -- any sequence of operations: the same observable results as InMemoryStore -------------

_LABELS = st.sampled_from(["a", "b", "acme", "acme-corp", "a%c", "a_c", "*", "Ünï"])
_NS = st.lists(_LABELS, min_size=1, max_size=3).map(tuple)
_VALUE = st.fixed_dictionaries({"n": st.integers(0, 5), "text": st.sampled_from(
    ["red apple", "green pear", "apple pie", "zebra"])})
_OP = st.one_of(
    st.tuples(st.just("put"), _NS, st.sampled_from(["k1", "k2", "k3"]), _VALUE),
    st.tuples(st.just("delete"), _NS, st.sampled_from(["k1", "k2", "k3"])),
    st.tuples(st.just("get"), _NS, st.sampled_from(["k1", "k2", "k3"])),
    st.tuples(st.just("search"), st.lists(_LABELS, max_size=2).map(tuple),
              st.sampled_from([None, {"n": {"$gte": 2}}, {"text": "zebra"}]),
              st.sampled_from([None, "apple"]), st.integers(1, 4), st.integers(0, 3)),
    st.tuples(st.just("list"), st.sampled_from([None, ("a",), ("acme",)]),
              st.sampled_from([None, 1, 2])),
)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(_OP, min_size=1, max_size=12))
def test_any_sequence_matches_the_reference(tmp_path_factory: Any, ops: list[Any]) -> None:
    db = engramdb.open(tmp_path_factory.mktemp("prop") / "p.db", embedder=None)
    try:
        p = Pair(db, index={"dims": 27, "embed": letter_embed, "fields": ["text"]})
        for op in ops:
            kind, args = op[0], op[1:]
            if kind == "put":
                p.both(lambda s, a=args: s.put(*a))
            elif kind == "delete":
                p.both(lambda s, a=args: s.delete(*a))
            elif kind == "get":
                p.both(lambda s, a=args: s.get(*a))
            elif kind == "search":
                p.both(lambda s, a=args: s.search(a[0], filter=a[1], query=a[2], limit=a[3],
                                                  offset=a[4]))
            else:
                # listing only namespaces that hold items (InMemoryStore also lists emptied
                # ones, see test_list_namespaces): compare on namespaces with live items
                prefix, depth = args
                live = {r.namespace for r in p.memory.search((), limit=10_000)}
                want = sorted({ns[:depth] if depth else ns for ns in live
                               if prefix is None or ns[:len(prefix)] == prefix})
                assert p.engram.list_namespaces(prefix=prefix, max_depth=depth,
                                                limit=1000) == want
    finally:
        db.close()


def test_contest_marks_follow_conflicts_opened_and_closed(db: Any) -> None:
    store = EngramStore(db)
    store.put(("f",), "a", {"text": "The CEO of Acme is Alice Smith"})
    assert [h.contested for h in store.search(("f",))] == [False]
    other = EngramStore(db)  # another writer: this store learns of it from the change feed
    other.put(("f",), "b", {"text": "The CEO of Acme is Bob Jones"})
    assert [h.contested for h in store.search(("f",))] == [True, True]
    store.delete(("f",), "b")  # a retraction closes the conflict
    assert [h.contested for h in store.search(("f",))] == [False]
    assert [h.contested for h in other.search(("f",))] == [False]


def test_key_value_namespaces_can_skip_the_contradiction_check(db: Any) -> None:
    """Items are judged against each other by default; a namespace configured without
    free-text detection (docs/integrations.md: state, caches) keeps every other guarantee:
    each put a new version in history, nothing flagged."""
    db.admin.configure_namespace("langgraph/cache/**", detect_free_text=False)
    store = EngramStore(db)
    for ns in (("cache",), ("facts",)):
        store.put(ns, "a", {"text": "The CEO of Acme is Alice Smith"})
        store.put(ns, "b", {"text": "The CEO of Acme is Bob Jones"})
    store.put(("cache",), "a", {"text": "The CEO of Acme is Carol White"})
    assert [c.namespace for c in db.conflicts("langgraph/**")] == ["langgraph/facts"]
    assert [h.contested for h in store.search(("cache",))] == [False, False]
    assert [m.text for m in store.history(("cache",), "a")] == [
        "The CEO of Acme is Alice Smith", "The CEO of Acme is Carol White"]
