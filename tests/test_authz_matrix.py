"""Authorisation matrix: 20 agents x 50 namespaces x every operation, random grants.

Every agent gets random grants (to itself and through random roles) on
namespace globs of several shapes. Each of the 50 namespaces holds a canary
memory with a unique secret token and an open conflict. Then every agent
tries every operation on every namespace: ``remember``, ``get``, ``update``,
``retract``, ``history``, ``recall``, ``changes``, ``conflicts`` and
``resolve``. An independent oracle (explicit coverage rules per glob shape,
not the engine's matcher) says whether each attempt should succeed.

Counted: attempts, unauthorised successes (must be 0), wrongful denials
(must be 0), and canary leaks: a secret token of a namespace the agent may
not read showing up in any recall hit (searched for directly, by token, over
``**``) or change-feed payload. A refused read must look exactly like an
unknown id. The figures are printed (``pytest -s``) and, with
``ENGRAM_RESULTS_DIR`` set, written to ``authz_matrix.json`` there, one entry
per door.

The matrix runs through every door that takes API keys, with one test body:
the world is set up through the engine, and the agents' sessions come from a
door factory (:func:`open_door`): ``db.as_agent(name)`` embedded, and
``engramdb.connect(url, key)`` against a live HTTP server over the same
database. The HTTP door runs the full grid too: about 15,000 requests, some
two minutes against 25 s embedded (the MCP door has its own, smaller matrix
in ``test_mcp.py``).

Bad input at the admin surface is checked last: each case is a typed error
and leaves the log head unchanged.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb import NotFound, PermissionDenied, Unauthenticated
from engramdb.errors import InvalidInput, InvalidNamespace, InvalidPolicy, ValueTypeError

AGENTS = 20
NAMESPACES = [f"org{o}/team{t}/p{p}" for o in range(5) for t in range(5) for p in range(2)]
ROLES = [f"role{i}" for i in range(5)]
OPERATIONS = ("remember", "get", "update", "retract", "history", "recall", "changes",
              "conflicts", "resolve")
SEED = 20260301


@dataclass(frozen=True)
class Rule:
    """A grant with an independent statement of what its glob covers."""

    pattern: str
    covers: Callable[[str], bool]
    actions: frozenset[str]


def _random_rule(rng: random.Random) -> Rule:
    o, t, p = rng.randrange(5), rng.randrange(5), rng.randrange(2)
    shape = rng.randrange(6)
    if shape == 0:
        ns = f"org{o}/team{t}/p{p}"
        pattern, covers = ns, (lambda x, ns=ns: x == ns)
    elif shape == 1:
        pattern, covers = f"org{o}/**", (lambda x, o=o: x.split("/")[0] == f"org{o}")
    elif shape == 2:
        pattern = f"org{o}/team{t}/*"
        covers = lambda x, o=o, t=t: x.split("/")[:2] == [f"org{o}", f"team{t}"]  # noqa: E731
    elif shape == 3:
        pattern = f"*/team{t}/p{p}"
        covers = lambda x, t=t, p=p: x.split("/")[1:] == [f"team{t}", f"p{p}"]  # noqa: E731
    elif shape == 4:
        pattern, covers = f"**/p{p}", (lambda x, p=p: x.split("/")[-1] == f"p{p}")
    else:
        pattern = f"org{o}/*/p{p}"
        covers = lambda x, o=o, p=p: (x.split("/")[0], x.split("/")[2]) == (  # noqa: E731
            f"org{o}", f"p{p}")
    actions = frozenset(a for a in ("read", "write", "admin") if rng.random() < 0.5) or \
        frozenset({rng.choice(["read", "write", "admin"])})
    return Rule(pattern, covers, actions)


@dataclass
class World:
    db: engramdb.Database
    agents: dict[str, list[Rule]]  # agent -> every rule that applies to it (own + roles)
    canary: dict[str, tuple[str, str]]  # namespace -> (memory id, secret token)
    private: dict[str, tuple[str, str]]  # agent -> (memory id, token) in agents/<name>
    conflict: dict[str, str]  # namespace -> conflict id
    keys: dict[str, str] = field(default_factory=dict)  # agent -> its API key

    def may(self, agent: str, action: str, ns: str) -> bool:
        return any(action in r.actions and r.covers(ns) for r in self.agents[agent])


@dataclass
class Tally:
    attempts: int = 0
    unauthorised: int = 0
    wrongly_denied: int = 0
    canary_searches: int = 0
    canary_leaks: int = 0
    per_operation: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    failures: list[str] = field(default_factory=list)

    def record(self, op: str, agent: str, ns: str, expected: bool, ok: bool,
               note: str = "") -> None:
        self.attempts += 1
        self.per_operation[op] += 1
        if ok and not expected:
            self.unauthorised += 1
            self.failures.append(f"UNAUTHORISED {op} by {agent} on {ns} {note}")
        if expected and not ok:
            self.wrongly_denied += 1
            self.failures.append(f"DENIED {op} by {agent} on {ns} {note}")


def _build(tmp_path: Path, embedder) -> World:
    rng = random.Random(SEED)
    db = engramdb.open(tmp_path / "matrix.db", embedder=embedder)
    role_rules = {r: [_random_rule(rng) for _ in range(2)] for r in ROLES}
    agents: dict[str, list[Rule]] = {}
    keys: dict[str, str] = {}
    for i in range(AGENTS):
        name = f"agent-{i:02d}"
        roles = rng.sample(ROLES, rng.randrange(0, 3))
        keys[name] = db.admin.create_agent(name, roles=roles, trust=round(rng.random(), 2))
        own = [_random_rule(rng) for _ in range(rng.randrange(0, 4))]
        for rule in own:
            db.admin.grant(name, rule.pattern, sorted(rule.actions))
        agents[name] = own + [rule for r in roles for rule in role_rules[r]]
    for role, rules in role_rules.items():
        for rule in rules:
            db.admin.grant(f"role:{role}", rule.pattern, sorted(rule.actions))
    canary, conflict = {}, {}
    tokens = {ns: f"zq{secrets.token_hex(5)}" for ns in NAMESPACES}
    drafts = [d for ns, token in tokens.items() for d in (
        {"text": f"Canary {token} guards {ns}", "namespace": ns, "layer": "episodic"},
        {"text": f"Service {ns} status is green", "namespace": ns,
         "subject": f"svc:{ns}", "predicate": "status", "value": "green"},
        {"text": f"Service {ns} status is red", "namespace": ns,
         "subject": f"svc:{ns}", "predicate": "status", "value": "red"})]
    # One embedding batch for the whole set-up (the model is the slow part here).
    vectors = embed(db, [d["text"] for d in drafts])
    for d, v in zip(drafts, vectors, strict=True):
        d["embedding"] = v
    for i, ns in enumerate(NAMESPACES):
        token = tokens[ns]
        ms = db.remember_many(drafts[3 * i: 3 * i + 3])
        canary[ns] = (ms[0].id, token)
        (c,) = db.conflicts(ns)
        conflict[ns] = c.id
    private = {}
    for name in agents:
        token = f"zq{secrets.token_hex(5)}"
        text = f"Private canary {token} of {name}"
        m = db.as_agent(name).remember(text, layer="episodic", embedding=embed(db, [text])[0])
        private[name] = (m.id, token)
    return World(db, agents, canary, private, conflict, keys)


DOORS = ("embedded", "http")


@contextmanager
def open_door(door: str, world: World) -> Iterator[Callable[[str], Any]]:
    """A factory of agent sessions through ``door``: agent name -> its session."""
    if door == "embedded":
        yield world.db.as_agent
        return
    from tests.support.http_server import LiveServer

    clients: list[Any] = []

    def connect(agent: str) -> Any:
        clients.append(engramdb.connect(server.url, world.keys[agent]))
        return clients[-1]

    with LiveServer(world.db) as server:
        try:
            yield connect
        finally:
            for client in clients:
                client.close()


def _write_report(door: str, report: dict[str, Any]) -> None:
    """Print the figures; with ``ENGRAM_RESULTS_DIR``, keep them per door in the JSON file."""
    print(f"\nauthorisation matrix ({door}):", json.dumps(report, indent=1))
    if not os.environ.get("ENGRAM_RESULTS_DIR"):
        return
    out = Path(os.environ["ENGRAM_RESULTS_DIR"]) / "authz_matrix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        doors = json.loads(out.read_text())
    except (OSError, ValueError):
        doors = {}
    if not isinstance(doors, dict) or not set(doors) <= set(DOORS):
        doors = {}  # an older single-door file
    doors[door] = report
    out.write_text(json.dumps(dict(sorted(doors.items())), indent=1) + "\n")


def embed(db: engramdb.Database, texts: list[str]) -> list[list[float]]:
    return [list(map(float, v)) for v in db.embedder.embed(texts)]


def _denied_like_unknown(session: Any, op: str, memory_id: str) -> bool:
    """A refused read must say exactly what an unknown id says."""
    unknown = "00000000-0000-7000-8000-000000000000"
    call = getattr(session, op)
    errors = []
    for mid in (memory_id, unknown):
        try:
            call(mid)
        except NotFound as exc:
            errors.append((type(exc), exc.message.replace(mid, "<id>"), exc.details.keys()))
        else:
            return False
    return errors[0] == errors[1]


def _attempt(denials: tuple[type[Exception], ...], call: Callable[..., Any], *args: Any,
             **kwargs: Any) -> bool:
    """Whether ``call`` succeeded; a denial must be one of ``denials``, nothing else."""
    try:
        call(*args, **kwargs)
    except denials:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("door", DOORS)
def test_authorisation_matrix(tmp_path, embedder, door) -> None:
    world = _build(tmp_path, embedder)
    db = world.db
    tally = Tally()
    all_tokens = {ns: tok for ns, (_, tok) in world.canary.items()}
    private_tokens = {a: tok for a, (_, tok) in world.private.items()}
    # Recall embeds its query; the tokens are embedded once, in one batch, and
    # passed in, so the vector index is searched without re-running the model.
    queries = [*all_tokens.values(), *private_tokens.values()]
    qvec = dict(zip(queries, embed(db, queries), strict=True))
    note_vec, target_vec = embed(db, ["note by an agent", "retract target"])
    doors = ExitStack()
    started = time.monotonic()
    try:
        session_for = doors.enter_context(open_door(door, world))
        for agent in world.agents:
            me = session_for(agent)
            for ns in NAMESPACES:
                can_read = world.may(agent, "read", ns)
                can_write = world.may(agent, "write", ns)
                can_admin = world.may(agent, "admin", ns)
                cid, token = world.canary[ns]

                ok = _attempt((PermissionDenied,), me.remember, f"note by {agent}",
                              namespace=ns, layer="episodic", embedding=note_vec)
                tally.record("remember", agent, ns, can_write, ok)

                ok = _attempt((NotFound,), me.get, cid)
                tally.record("get", agent, ns, can_read, ok)
                if not ok and not _denied_like_unknown(me, "get", cid):
                    tally.failures.append(f"get denial distinguishable for {agent} on {ns}")

                ok = _attempt((NotFound, PermissionDenied), me.update, cid,
                              metadata={"touched_by": agent})
                tally.record("update", agent, ns, can_read and can_write, ok)

                # An authorised retraction gets its own target, so canaries survive.
                target = db.remember(f"retract target for {agent}", namespace=ns,
                                     layer="episodic", embedding=target_vec).id \
                    if can_read and can_write else cid
                ok = _attempt((NotFound, PermissionDenied), me.retract, target, reason="matrix")
                tally.record("retract", agent, ns, can_read and can_write, ok)

                ok = _attempt((NotFound,), me.history, cid)
                tally.record("history", agent, ns, can_read, ok)
                if not ok and not _denied_like_unknown(me, "history", cid):
                    tally.failures.append(f"history denial distinguishable for {agent} on {ns}")

                hits = me.recall(token, namespace=ns, k=5, query_embedding=qvec[token]).hits
                found = any(token in h.memory.text for h in hits)
                tally.record("recall", agent, ns, can_read, found,
                             "" if can_read or not hits else f"({len(hits)} hits)")
                if not can_read and hits:
                    tally.failures.append(f"recall of {ns} by {agent} returned hits")

                events = list(me.changes(since=0, namespace=ns))
                seen = any(token in json.dumps(e.payload) for e in events)
                tally.record("changes", agent, ns, can_read, seen)
                if not can_read and events:
                    tally.failures.append(f"changes of {ns} for {agent} returned events")

                inbox = me.conflicts(ns, status=None)
                listed = world.conflict[ns] in {c.id for c in inbox}
                tally.record("conflicts", agent, ns, can_read, listed)
                if not can_read and inbox:
                    tally.failures.append(f"conflicts of {ns} for {agent} not empty")

                ok = _attempt((NotFound, PermissionDenied), me.resolve, world.conflict[ns],
                              reason="matrix")
                tally.record("resolve", agent, ns, can_read and can_admin, ok)

            # Canary search: every secret token, directly, over everything.
            for ns, token in all_tokens.items():
                tally.canary_searches += 1
                texts = [h.memory.text for h in me.recall(
                    token, namespace="**", k=10, query_embedding=qvec[token]).hits]
                leaked = any(token in t for t in texts)
                if leaked and not world.may(agent, "read", ns):
                    tally.canary_leaks += 1
                    tally.failures.append(f"canary of {ns} leaked to {agent}")
                if not leaked and world.may(agent, "read", ns):
                    tally.failures.append(f"canary of {ns} not found by {agent}")
            for owner, token in private_tokens.items():
                tally.canary_searches += 1
                texts = [h.memory.text for h in me.recall(
                    token, namespace="**", k=10, query_embedding=qvec[token]).hits]
                if any(token in t for t in texts) != (owner == agent):
                    tally.canary_leaks += owner != agent
                    tally.failures.append(f"private canary of {owner} wrong for {agent}")
            feed = json.dumps([e.payload for e in me.changes(since=0)])
            for ns, token in all_tokens.items():
                if token in feed and not world.may(agent, "read", ns):
                    tally.canary_leaks += 1
                    tally.failures.append(f"canary of {ns} in {agent}'s change feed")
        report = {
            "door": door, "agents": AGENTS, "namespaces": len(NAMESPACES),
            "operations": list(OPERATIONS), "seconds": round(time.monotonic() - started, 1),
            "attempts": tally.attempts, "unauthorised_successes": tally.unauthorised,
            "wrongful_denials": tally.wrongly_denied, "canary_searches": tally.canary_searches,
            "canary_leaks": tally.canary_leaks, "per_operation": tally.per_operation,
            "allowed_fraction": {
                a: round(sum(world.may(ag, a, ns) for ag in world.agents for ns in NAMESPACES)
                         / (AGENTS * len(NAMESPACES)), 3) for a in ("read", "write", "admin")},
        }
        _write_report(door, report)
        assert tally.attempts >= AGENTS * len(NAMESPACES) * len(OPERATIONS)
        assert tally.failures == []
        assert tally.unauthorised == 0 and tally.canary_leaks == 0
        assert tally.wrongly_denied == 0
        # The random grants must exercise both sides of every check.
        for action, share in report["allowed_fraction"].items():
            assert 0.05 < share < 0.95, (action, share)
        assert db.verify().ok
    finally:
        doors.close()
        db.close()


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def small(tmp_path) -> Any:
    db = engramdb.open(tmp_path / "bad.db", embedder=None)
    key = db.admin.create_agent("ana")
    db.admin.grant("ana", "acme/**", ["read", "write"])
    yield db, key
    db.close()


def _unchanged(db: engramdb.Database, fn: Callable[[], Any], error: type[Exception]) -> None:
    head = db.storage.head()
    with pytest.raises(error) as info:
        fn()
    assert db.storage.head() == head, f"{error.__name__} still wrote something"
    assert isinstance(info.value, engramdb.EngramError)
    assert info.value.message  # says what to do


def test_grant_to_unknown_principal(small) -> None:
    db, _ = small
    _unchanged(db, lambda: db.admin.grant("nobody", "acme/**", ["read"]), NotFound)


@pytest.mark.parametrize("glob", ["acme/***", "Acme/**", "/acme", "acme//x", "", "acme/**/"])
def test_grant_on_malformed_glob(small, glob) -> None:
    db, _ = small
    _unchanged(db, lambda: db.admin.grant("ana", glob, ["read"]), InvalidNamespace)


def test_grant_of_unknown_action(small) -> None:
    db, _ = small
    _unchanged(db, lambda: db.admin.grant("ana", "acme/**", ["delete"]), InvalidInput)


def test_revoked_and_wrong_keys(small) -> None:
    db, key = small
    assert db.session_for_key(key).principal.name == "ana"
    key_id = key.split("_")[1]
    for bad in (f"ek_{key_id}_wrongsecret", "ek_000000000000_x", "not-a-key", ""):
        _unchanged(db, lambda bad=bad: db.session_for_key(bad), Unauthenticated)
    db.admin.revoke_key(key)
    _unchanged(db, lambda: db.session_for_key(key), Unauthenticated)


@pytest.mark.parametrize("call", [
    lambda db: db.admin.declare_predicate("acme/**", "outlook", policy="democracy"),
    lambda db: db.admin.declare_predicate("acme/**", "outlook", merge="median"),
    lambda db: db.admin.configure_namespace("acme/**", default_policy="coin-flip"),
    lambda db: db.admin.retire_agent("ana", policy="vanish"),
])
def test_unknown_policy_names(small, call) -> None:
    db, _ = small
    _unchanged(db, lambda: call(db), InvalidPolicy)


@pytest.mark.parametrize("value_type, bad", [
    ("integer", "twelve"), ("integer", 1.5), ("number", "1"), ("boolean", "yes"),
    ("string", 3), ("datetime", "next tuesday"), ("array", {"a": 1}), ("object", [1]),
])
def test_value_of_the_wrong_type_for_a_declared_predicate(small, value_type, bad) -> None:
    db, _ = small
    db.admin.declare_predicate("acme/**", "reading", value_type=value_type)
    ana = db.as_agent("ana")
    _unchanged(db, lambda: ana.remember("a reading", namespace="acme/x", subject="s",
                                        predicate="reading", value=bad), ValueTypeError)
    _unchanged(db, lambda: ana.remember_many([
        {"text": "fine", "namespace": "acme/x"},
        {"text": "a reading", "namespace": "acme/x", "subject": "s", "predicate": "reading",
         "value": bad}]), ValueTypeError)


# --------------------------------------------------------------------------- memory layers

LAYER_OPERATIONS = ("pin", "blocks", "episode", "episodes", "tool_outcome", "tool_outcomes",
                    "tool_stats",
                    "procedure", "procedures", "procedure_outcome")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("door", [pytest.param(d, marks=pytest.mark.slow) if d == "http" else d
                                  for d in DOORS])
def test_layer_authorisation_matrix(tmp_path, door) -> None:
    """Blocks, episodes, tool outcomes and procedures under random grants, through each door.

    8 agents x 12 namespaces, the same independent oracle as the main matrix.
    Each namespace holds a block, an episode, a tool outcome and a procedure
    carrying its secret token; an agent must see the token exactly where it
    may read, and write exactly where it may write. Every agent's private
    namespace holds the same four things, visible to nobody else.
    """
    rng = random.Random(SEED + 11)
    spaces = sorted(rng.sample(NAMESPACES, 12))
    db = engramdb.open(tmp_path / "layers.db", embedder=None)
    agents: dict[str, list[Rule]] = {}
    keys: dict[str, str] = {}
    for i in range(8):
        name = f"agent-{i:02d}"
        keys[name] = db.admin.create_agent(name)
        agents[name] = [_random_rule(rng) for _ in range(rng.randrange(1, 5))]
        for rule in agents[name]:
            db.admin.grant(name, rule.pattern, sorted(rule.actions))
    world = World(db, agents, {}, {}, {}, keys)
    token = {ns: f"zq{secrets.token_hex(5)}" for ns in [*spaces, *(f"agents/{a}" for a in agents)]}
    for ns, tok in token.items():
        writer = db if ns in spaces else db.as_agent(ns.split("/")[1])
        target = ns if ns in spaces else None
        writer.pin("canary", f"Block {tok}", namespace=target)
        writer.episode("canary", "user", f"Episode {tok}", namespace=target)
        writer.tool_outcome("canary-tool", False, error=tok, namespace=target)
        writer.procedure("canary-proc", f"Procedure {tok}", namespace=target)
    tally = Tally(per_operation=dict.fromkeys(LAYER_OPERATIONS, 0))
    try:
        with open_door(door, world) as session_for:
            for agent in agents:
                me = session_for(agent)
                for ns in spaces:
                    tok = token[ns]
                    can_read = world.may(agent, "read", ns)
                    can_write = world.may(agent, "write", ns)
                    denied = (PermissionDenied,)
                    tally.record("pin", agent, ns, can_write,
                                 _attempt(denied, me.pin, f"by-{agent}", "note", namespace=ns))
                    tally.record("episode", agent, ns, can_write, _attempt(
                        denied, me.episode, "s", "user", "note", namespace=ns))
                    tally.record("tool_outcome", agent, ns, can_write, _attempt(
                        denied, me.tool_outcome, "t", True, namespace=ns))
                    tally.record("tool_outcomes", agent, ns, can_write, _attempt(
                        denied, me.tool_outcomes, [{"tool": "t", "ok": False, "namespace": ns}]))
                    tally.record("procedure", agent, ns, can_write, _attempt(
                        denied, me.procedure, f"by-{agent}", "steps", namespace=ns))
                    # reporting a use needs to see the procedure, and write in one's own space
                    tally.record("procedure_outcome", agent, ns, can_read, _attempt(
                        (NotFound,), me.procedure_outcome, "canary-proc", 1, True,
                        namespace=ns))
                    seen = {
                        "blocks": [m.text for m in me.blocks(namespace=ns)],
                        "episodes": [m.text for m in me.episodes("canary", namespace=ns)],
                        "tool_stats": [e for s in me.tool_stats(namespace=ns)
                                       for e, _ in s.errors],
                        "procedures": [p.text for p in me.procedures(ns)],
                    }
                    for op, texts in seen.items():
                        found = any(tok in t for t in texts)
                        tally.record(op, agent, ns, can_read, found)
                        if not can_read and texts:
                            tally.canary_leaks += 1
                            tally.failures.append(f"{op} of {ns} shown to {agent}")
                # Other agents' private blocks, episodes and tool outcomes stay private.
                everything = json.dumps([
                    [m.text for m in me.blocks(namespace="agents/**")],
                    [m.text for m in me.episodes(namespace="**", limit=10_000)],
                    [s.to_dict() for s in me.tool_stats()],
                    [p.text for p in me.procedures()]])
                for owner in agents:
                    tally.canary_searches += 1
                    if (token[f"agents/{owner}"] in everything) != (owner == agent):
                        tally.canary_leaks += owner != agent
                        tally.failures.append(f"private layers of {owner} wrong for {agent}")
        print(f"\nlayer authorisation matrix ({door}):", tally.attempts, "attempts,",
              tally.per_operation)
        assert tally.attempts == 8 * 12 * len(LAYER_OPERATIONS)
        assert tally.failures == []
        assert tally.unauthorised == 0 and tally.wrongly_denied == 0 and tally.canary_leaks == 0
        assert 0 < sum(world.may(a, "read", ns) for a in agents for ns in spaces) < 8 * 12
        assert db.verify().ok
    finally:
        db.close()
