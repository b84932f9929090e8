"""Security suite: what a hostile or revoked agent can do through the public doors.

Each test reproduces one finding of issue 17 from outside, through the
Python API and over real HTTP (a live uvicorn server), and asserts what a
user would notice: the attack is refused with a typed error, nothing is
written, every other reader keeps getting answers, and nothing leaks.

The short version runs in ``make test``; ``make security`` sets
``ENGRAM_SECURITY_LONG=1`` and runs the same tests with more attempts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import engramdb
from engramdb.errors import InvalidMetadata, NotFound
from tests.conftest import Cell, matrix

LONG = os.environ.get("ENGRAM_SECURITY_LONG") == "1"
# One SQLite database without an embedder, embedded and over HTTP (the matrix's cells).
CELLS = matrix(stores=("sqlite",), doors=("python", "http"), embed=False)
OVER_HTTP = matrix(stores=("sqlite",), doors=("http",), embed=False)


def nest(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ...}}`` with ``depth`` levels of objects."""
    root: dict[str, Any] = {}
    cur = root
    for _ in range(depth - 1):
        cur["a"] = {}
        cur = cur["a"]
    return root


class World:
    """One database of the matrix (``cell``); ``door(name)`` is that agent's handle on its door.

    ``db`` is the engine underneath (the oracle, and the admin's embedded handle).
    """

    def __init__(self, cell: Cell) -> None:
        self.db = cell.engine
        self.which = cell.door
        self.server = cell.db.server if cell.door == "http" else None
        self._clients: list[Any] = []

    def agent(self, name: str, grants: dict[str, list[str]]) -> Any:
        self.db.admin.create_agent(name)
        for pattern, actions in grants.items():
            self.db.admin.grant(name, pattern, actions)
        return self.door(name)

    def door(self, name: str) -> Any:
        if self.server is None:
            return self.db.as_agent(name)
        client = engramdb.connect(self.server.url, api_key=self.db.admin.create_key(name))
        self._clients.append(client)
        return client

    def raw(self, name: str) -> httpx.Client:
        """A plain HTTP client with ``name``'s key, to see status codes as sent."""
        assert self.server is not None, "raw HTTP needs the http door"
        client = httpx.Client(base_url=self.server.url, timeout=30,
                              headers={"Authorization": f"Bearer {self.db.admin.create_key(name)}"})
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close this world's clients (the cell closes its server and database)."""
        for client in self._clients:
            client.close()


@pytest.fixture
def world(cell) -> Iterator[World]:
    w = World(cell)
    try:
        yield w
    finally:
        w.close()


def head(world: World) -> Any:
    return world.db.storage.head()


# -- 1. JSON shape limits, and no stored value breaks a read -----------------------------


ALL_HOSTILE_JSON = {
    "deep": nest(256),
    "just too deep": nest(33),
    "wide object": {f"k{i}": i for i in range(1_001)},
    "wide list": {"l": list(range(1_001))},
    "many values": {f"k{i}": list(range(20)) for i in range(600)},
    "huge string": {"s": "x" * 64_001},
}
# The short run (make test) tries the deepest, the widest and the longest.
HOSTILE_JSON = ALL_HOSTILE_JSON if LONG else {
    k: ALL_HOSTILE_JSON[k] for k in ("deep", "wide object", "huge string")}


@pytest.mark.parametrize("shape", sorted(HOSTILE_JSON))
def test_hostile_json_is_refused_in_every_json_field(world, shape):
    """Deep, wide or huge JSON in metadata, value, update and outcome: 400, nothing written."""
    hostile = HOSTILE_JSON[shape]
    me = world.agent("mallory", {"team/**": ["read", "write"]})
    m = me.remember("base", namespace="team/a", subject="s", predicate="p", value=1)
    before = head(world)
    attempts = [
        lambda: me.remember("x", namespace="team/a", metadata=hostile),
        lambda: me.remember("x", namespace="team/a", subject="s", predicate="q", value=hostile),
        lambda: me.remember_many([{"text": "x", "namespace": "team/a", "metadata": hostile}]),
        lambda: me.update(m.id, metadata=hostile),
        lambda: me.update(m.id, value=[hostile]),
        lambda: me.decide("d", basis=[], outcome=hostile),
        lambda: me.recall("base", namespace="team/**", filters={"metadata": {"k": hostile}}),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidMetadata) as info:
            attempt()
        assert "{" not in str(info.value)  # the message names the limit, never the value
    assert head(world) == before
    assert me.get(m.id).version == 1


@pytest.mark.parametrize("cell", OVER_HTTP, indirect=True)
def test_shape_limits_refuse_over_raw_http_with_400_not_500(cell):
    w = World(cell)
    try:
        w.agent("mallory", {"team/**": ["read", "write"]})
        raw = w.raw("mallory")
        for shape, hostile in ALL_HOSTILE_JSON.items():
            r = raw.post("/v1/memories", json={"text": "x", "namespace": "team/a",
                                               "metadata": hostile})
            assert r.status_code == 400, (shape, r.text[:200])
            assert r.json()["error"]["code"] == "invalid_metadata"
    finally:
        w.close()


@pytest.mark.parametrize("cell", OVER_HTTP, indirect=True)
def test_a_legacy_deep_value_never_breaks_a_read(cell, monkeypatch):
    """A 256-deep value stored before the limits existed: every read path still answers."""
    w = World(cell)
    try:
        w.agent("writer", {"team/**": ["read", "write"]})
        w.agent("reader", {"team/**": ["read"]})
        # Store it the way a version without shape limits did.
        import engramdb.codec as codec

        monkeypatch.setattr(codec, "check_shape", lambda *a, **k: None)
        legacy = w.db.as_agent("writer").remember(
            "legacy deep memory", namespace="team/a", metadata=nest(256),
            subject="s", predicate="p", value=[nest(256)])
        monkeypatch.undo()
        retracted = w.db.as_agent("writer").retract(legacy.id)  # carries the metadata on
        for name in ("writer", "reader", w.db.principal.name):
            raw = w.raw(name)
            answers = [
                raw.get("/v1/changes", params={"since": 0}),
                raw.get(f"/v1/memories/{legacy.id}"),
                raw.get(f"/v1/memories/{legacy.id}/history"),
                raw.get("/v1/memories", params={"namespace": "team/**"}),
                raw.post("/v1/recall", json={"query": "legacy deep memory",
                                             "namespace": "team/**",
                                             "filters": {"statuses": ["retracted"]}}),
                raw.post("/v1/context", json={"task": "legacy deep memory",
                                              "namespace": "team/**"}),
            ]
            for r in answers:
                assert r.status_code == 200, (name, r.request.url, r.text[:200])
            versions = answers[2].json()["versions"]
            assert [v["version"] for v in versions] == [1, retracted.version]
            # The clipped part says so; the shallow part is intact.
            assert versions[0]["metadata"]["a"]["a"]["a"] is not None
            assert "nested too deep" in answers[2].text
            feed = answers[0].json()["events"]
            assert any(e["subject_ref"] == legacy.id for e in feed)
    finally:
        w.close()


# -- 2. Revocation covers history --------------------------------------------------------


def test_revoked_reader_loses_as_of_reads_on_every_path(world):
    world.agent("writer", {"team/**": ["read", "write"]})
    reader = world.agent("reader", {})
    grant = world.db.admin.grant("reader", "team/**", ["read"])
    m = world.db.as_agent("writer").remember("the vault code is 1234", namespace="team/a")
    t = m.tx_from
    # While granted, the as_of reads work (the test can fail).
    assert reader.get(m.id, as_of=t).text == "the vault code is 1234"
    assert [h.memory.id for h in reader.recall("vault code", namespace="team/**",
                                               as_of=t).hits] == [m.id]
    world.db.admin.revoke(grant.id)
    with pytest.raises(NotFound):
        reader.get(m.id, as_of=t)
    with pytest.raises(NotFound):
        reader.history(m.id, as_of=t)
    with pytest.raises(NotFound):
        reader.history(m.id)
    assert reader.recall("vault code", namespace="team/**", as_of=t).hits == ()
    ctx = reader.context("vault code", namespace="team/**", as_of=t)
    assert "1234" not in ctx.text and ctx.receipt.items == ()
    # An auditor's question about the past keeps the grants held then.
    past = world.db.knowledge("reader", at=t, query="vault code")
    assert [h.memory.id for h in past.hits] == [m.id]


# -- 3. Decisions do not leak what their reader may not read ---------------------------


def test_decision_basis_outside_the_readers_grants_is_counted_never_named(world):
    world.agent("planner", {"team/**": ["read", "write"], "board/**": ["read"],
                            "decisions/**": ["read", "write"]})
    world.agent("writer", {"team/**": ["read", "write"], "board/**": ["read", "write"]})
    observer = world.agent("observer", {"team/**": ["read"], "decisions/**": ["read"]})
    writer = world.door("writer")
    fact = writer.remember("Company X outlook is positive", namespace="team/a")
    secret = writer.remember("board: acquire Company X", namespace="board/x")
    planner = world.door("planner")
    d = planner.decide("buy X", basis=[fact, secret], namespace="decisions/x")
    assert {i.id for i in planner.decision(d.id).basis} == {fact.id, secret.id}

    seen = observer.decision(d.id)
    assert [i.id for i in seen.basis] == [fact.id] and seen.basis_hidden == 1
    # The hidden memory changes: the observer's view of the decision does not.
    writer.update(secret.id, text="board: do not acquire Company X")
    assert world.db.decision(d.id).stale  # it is stale for those who may see why
    assert not observer.decision(d.id).stale
    assert not observer.explain(d.id).stale
    assert [b.item.id for b in observer.explain(d.id).basis] == [fact.id]
    assert observer.stale_decisions() == []
    feed = list(observer.changes(0, namespace="decisions/**"))
    assert [e.kind for e in feed] == ["decision.recorded"]
    assert secret.id not in repr(feed)
    # A change it may see makes it stale, and the event names only what it may read.
    writer.update(fact.id, text="Company X outlook is negative")
    assert observer.decision(d.id).stale
    assert [x.id for x in observer.stale_decisions()] == [d.id]
    stale = [e for e in observer.changes(0, namespace="decisions/**")
             if e.kind == "decision.stale"]
    assert len(stale) == 1 and stale[0].payload["changed"] == [{"id": fact.id, "version": 1}]
    assert secret.id not in repr(list(observer.changes(0)))


# -- 5. Every read path that returns memory content is in the read audit ----------------


READ_PATHS = {
    "get": lambda r, m, d: r.get(m.id),
    "get as_of": lambda r, m, d: r.get(m.id, as_of=m.tx_from),
    "history": lambda r, m, d: r.history(m.id),
    "changes": lambda r, m, d: list(r.changes(0, namespace="team/**")),
    "recent": lambda r, m, d: r.recent(namespace="team/**"),
    "recall": lambda r, m, d: r.recall("heron migration", namespace="team/**"),
    "context": lambda r, m, d: r.context("heron migration", namespace="team/**"),
    "explain": lambda r, m, d: r.explain(d.id),
}


@pytest.mark.parametrize("path", sorted(READ_PATHS))
def test_who_read_names_the_reader_of_every_read_path(world, path):
    writer = world.agent("writer", {"team/**": ["read", "write"]})
    reader = world.agent("reader", {"team/**": ["read"]})
    m = writer.remember("the heron migration starts in March", namespace="team/a")
    d = writer.decide("watch herons", basis=[m], namespace="team/decisions")
    assert [r.principal for r in world.db.who_read(m.id)] == []  # writing is not reading
    READ_PATHS[path](reader, m, d)
    assert [(r.principal, r.version) for r in world.db.who_read(m.id)] == [("reader", 1)]


def test_who_read_names_the_admin_behind_knowledge(world):
    writer = world.agent("writer", {"team/**": ["read", "write"]})
    m = writer.remember("the heron migration starts in March", namespace="team/a")
    admin = world.door(world.db.principal.name) if world.which == "http" else world.db
    admin.knowledge("writer", at=m.tx_from)
    assert [r.principal for r in world.db.who_read(m.id)] == [world.db.principal.name]


# -- 4. Write access is not a read oracle -------------------------------------------------


def _probe(door: Any, value: str) -> tuple[str, tuple[Any, ...], type | None]:
    """What a write-only prober observes when writing ``value``: status, conflicts, error."""
    try:
        m = door.remember(f"Company X outlook is {value}", namespace="acme/x",
                          subject="company:x", predicate="outlook", value=value)
    except engramdb.EngramError as exc:
        return "", (), type(exc)
    return m.status, m.conflicts, None


@pytest.mark.parametrize("policy", ["reject", "authority", "supersede", "flag"] if LONG
                         else ["reject", "authority"])
def test_a_write_only_principal_cannot_probe_stored_values(world, policy):
    world.db.admin.declare_predicate("acme/**", "outlook", policy=policy)
    owner = world.agent("owner", {"acme/**": ["read", "write"]})
    world.db.admin.update_agent("owner", trust=0.9)
    prober = world.agent("prober", {"acme/**": ["write"]})
    world.db.admin.update_agent("prober", trust=0.1)
    stored = owner.remember("Company X outlook is positive", namespace="acme/x",
                            subject="company:x", predicate="outlook", value="positive")
    # Guessing the stored value and guessing a contradicting one look the same.
    same = _probe(prober, "positive")
    other = _probe(prober, "negative")
    assert same == other == ("active", (), None), (same, other)
    # The owner's memory is not disclosed, and its readers still see the contradiction.
    assert stored.id not in repr(other)
    if policy == "reject":  # held for an admin's review instead of refused
        held = world.db.admin.quarantined("acme/**")
        assert [m.value for m in held] == ["negative"]
    if policy in ("flag", "authority"):
        assert world.db.conflicts(namespace="acme/**", status=None) != []


def test_a_reader_writer_still_gets_the_contradiction_it_may_read(world):
    world.db.admin.declare_predicate("acme/**", "outlook", policy="reject")
    owner = world.agent("owner", {"acme/**": ["read", "write"]})
    owner.remember("Company X outlook is positive", namespace="acme/x",
                   subject="company:x", predicate="outlook", value="positive")
    with pytest.raises(engramdb.ContradictionError):
        owner.remember("Company X outlook is negative", namespace="acme/x",
                       subject="company:x", predicate="outlook", value="negative")


# -- 6. Names cannot spoof; provenance is the engine's -------------------------------------


SPOOFED_NAMES = ["admin\n", "admin\r", "ad\x1bmin", "admin ", " admin", "Admin", "adm\u0456n",
                 "a" * 65, "admin\u200b", "../admin", ""]


@pytest.mark.parametrize("cell", OVER_HTTP, indirect=True)
def test_principal_names_are_refused_outside_the_safe_set(cell):
    w = World(cell)
    try:
        assert w.server is not None
        admin = engramdb.connect(w.server.url, api_key=w.db.admin.create_key(
            w.db.principal.name))
        w._clients.append(admin)
        before = head(w)
        for name in SPOOFED_NAMES:
            for handle in (w.db, admin):
                with pytest.raises(engramdb.InvalidInput):
                    handle.admin.create_agent(name)
                with pytest.raises(engramdb.InvalidInput):
                    handle.admin.grant(name, "team/**", ["read"])
            if name and len(name) <= 64:  # a namespace segment may be longer
                with pytest.raises(engramdb.InvalidInput):
                    w.db.remember("x", namespace=f"team/{name}")
        assert head(w) == before
    finally:
        w.close()


def test_author_is_the_engines_and_caller_provenance_is_labelled_a_claim(world):
    mallory = world.agent("mallory", {"team/**": ["read", "write"]})
    with pytest.raises(engramdb.InvalidInput):
        mallory.remember("signed: the admin", namespace="team/a", author="admin")
    m = mallory.remember("signed: the admin", namespace="team/a", source="admin",
                         session="admin-console")
    got = world.db.get(m.id)
    assert got.author == "mallory"
    assert got.provenance() == {"author": "mallory", "recorded_at": got.recorded_at,
                                "tx": got.tx_from, "claimed_source": "admin",
                                "claimed_session": "admin-console"}
