"""``knowledge(agent, at=T)``: what an agent could have recalled at transaction time T.

A scenario where grants, facts and validity all change over time, then a
Hypothesis state machine: random histories of writes, updates, retractions,
grants (to the agent and to its role) and revocations, checked against a
plain in-memory model at every transaction time. Real SQLite files; the
model's glob matches are written out by hand, not computed by the engine.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import engramdb
from engramdb.errors import InvalidInput, NotFound
from tests.conftest import matrix


def _t(year: int, month: int = 1) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


@pytest.mark.parametrize("cell", matrix(embed=False), indirect=True)
@pytest.mark.uses("knowledge")
def test_knowledge_follows_grants_facts_and_validity_over_time(cell) -> None:
    db = cell.db
    db.admin.create_agent("analyst", roles=["analysts"])
    db.admin.create_agent("intern")
    t_created = cell.head_tx()
    old = db.remember("Company X revenue was 10M", namespace="acme/finance",
                      valid_from=_t(2020), valid_to=_t(2021))
    cur = db.remember("Company X revenue is 12M", namespace="acme/finance",
                      valid_from=_t(2021))
    legal = db.remember("Company X faces a lawsuit", namespace="acme/legal")
    t_facts = cell.head_tx()
    role_grant = db.admin.grant("role:analysts", "acme/**", ["read"])
    t_granted = role_grant.tx_from
    own = db.as_agent("analyst").remember("my notes on X")
    fixed = db.update(cur.id, text="Company X revenue is 13M")
    t_fixed = fixed.tx_from
    db.admin.revoke(role_grant.id)
    t_revoked = cell.head_tx()
    intern_grant = db.admin.grant("intern", "acme/finance", ["read"])
    db.admin.update_agent("intern", roles=["analysts"])  # a role that grants nothing now
    t_now = cell.head_tx()

    def ids(agent: str, at: int, **kw) -> set[tuple[str, int]]:
        return {(m.id, m.version) for m in db.knowledge(agent, at=at, **kw)}

    assert ids("analyst", t_created) == set()
    assert ids("analyst", t_facts) == set()                      # facts exist, no grant yet
    assert ids("analyst", t_granted) == {(old.id, 1), (cur.id, 1), (legal.id, 1)}
    assert ids("analyst", t_fixed) == {(old.id, 1), (cur.id, 2), (legal.id, 1), (own.id, 1)}
    assert ids("analyst", t_fixed, valid_at=_t(2020, 6)) == {(old.id, 1)}
    assert ids("analyst", t_fixed, valid_at=_t(2022)) == {(cur.id, 2)}  # own note: from 2026
    assert ids("analyst", t_fixed, namespace="acme/legal") == {(legal.id, 1)}
    assert ids("analyst", t_revoked) == {(own.id, 1)}           # revoked: only its own notes
    assert ids("intern", t_revoked) == set()
    assert ids("intern", t_now) == {(old.id, 1), (cur.id, 2)}   # its own grant, not the role's
    assert ids("analyst", t_fixed, k=1) == {(cur.id, 2)}        # newest first: the fix

    # With a query: the recall the agent would have got then, not today.
    then = db.knowledge("analyst", at=t_granted, query="revenue")
    assert {(h.memory.id, h.memory.version) for h in then.hits} == {(old.id, 1), (cur.id, 1)}
    assert then.receipt.as_of == t_granted and then.receipt.principal == "analyst"
    assert [h.memory.text for h in then.hits if h.memory.id == cur.id] == [
        "Company X revenue is 12M"]
    assert db.as_agent("analyst").recall("revenue").hits == ()  # today: revoked
    by_time = db.knowledge("analyst", at=fixed.recorded_at, query="revenue")
    assert (cur.id, 2) in {(h.memory.id, h.memory.version) for h in by_time.hits}

    with pytest.raises(NotFound):
        db.knowledge("nobody", at=t_now)
    with pytest.raises(InvalidInput):
        db.knowledge("analyst", at=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        db.knowledge("analyst", at=t_now, k=0)
    assert intern_grant.tx_from < t_now


# Both backends; the HTTP door's knowledge call is covered by the scenario above.
@pytest.mark.parametrize("cell", matrix(doors=("python",), embed=False), indirect=True)
def test_knowledge_honours_roles_as_they_were(cell) -> None:
    db = cell.db
    db.admin.create_agent("analyst", roles=["analysts"])
    db.admin.grant("role:analysts", "acme/**", ["read"])
    fact = db.remember("Company X revenue is 12M", namespace="acme/finance")
    t_member = cell.head_tx()
    db.admin.update_agent("analyst", roles=[])
    t_left = cell.head_tx()
    db.admin.retire_agent("analyst", "freeze")
    t_frozen = cell.head_tx()
    assert [m.id for m in db.knowledge("analyst", at=t_member)] == [fact.id]
    assert db.knowledge("analyst", at=t_left) == []
    assert db.knowledge("analyst", at=t_frozen) == []


# ----------------------------------------------------------------- the model

AGENTS = ("a", "b")
ROLES = {"a": ("r",), "b": ()}
NAMESPACES = ("p", "p/x", "p/x/y", "q/z", "r")
PATTERNS = ("p/**", "p/x", "q/*", "**")
# Which namespace each pattern covers, written out by hand.
COVERS = {
    "p/**": {"p", "p/x", "p/x/y"},
    "p/x": {"p/x"},
    "q/*": {"q/z"},
    "**": set(NAMESPACES) | {"agents/a", "agents/b"},
}
VALIDITY = ((None, None), (_t(2020), _t(2040)), (_t(2040), None), (_t(2010), _t(2020)))
VALID_AT = (None, _t(2015), _t(2025, 6), _t(2035), _t(2045))


@dataclass
class Version:
    id: str
    version: int
    namespace: str
    status: str
    valid_from: datetime
    valid_to: datetime | None
    tx_from: int
    tx_to: int | None = None


@dataclass
class GrantRow:
    id: str
    grantee: str
    pattern: str
    tx_from: int
    tx_to: int | None = None


@dataclass
class Model:
    versions: dict[str, list[Version]] = field(default_factory=dict)
    grants: list[GrantRow] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    token: dict[str, str] = field(default_factory=dict)

    def visible(self, agent: str, t: int, valid_at: datetime | None) -> set[tuple[str, int]]:
        if t < self.created[agent]:
            return set()
        grantees = {agent, *(f"role:{r}" for r in ROLES[agent])}
        readable = {f"agents/{agent}"}
        for g in self.grants:
            if g.grantee in grantees and g.tx_from <= t and (g.tx_to is None or g.tx_to > t):
                readable |= COVERS[g.pattern]
        out = set()
        for versions in self.versions.values():
            for v in versions:
                live = v.tx_from <= t and (v.tx_to is None or v.tx_to > t)
                valid = valid_at is None or (
                    v.valid_from <= valid_at and (v.valid_to is None or v.valid_to > valid_at))
                if live and valid and v.status == "active" and v.namespace in readable:
                    out.add((v.id, v.version))
        return out


class KnowledgeMachine(RuleBasedStateMachine):
    memories = Bundle("memories")
    grants = Bundle("grants")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="engram-knowledge-"))
        self.db = engramdb.open(self.dir / "engram.db", embedder=None)
        self.model = Model()
        self.n = 0

    def teardown(self) -> None:
        try:
            head = self.db.storage.head().tx
            for t in range(head + 1):
                for agent in AGENTS:
                    for v in (None, _t(2035)):
                        self._check(agent, t, v)
            assert self.db.verify().ok
        finally:
            self.db.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _head(self) -> int:
        return self.db.storage.head().tx

    def _check(self, agent: str, t: int, valid_at: datetime | None) -> None:
        got = {(m.id, m.version) for m in self.db.knowledge(agent, at=t, valid_at=valid_at)}
        assert got == self.model.visible(agent, t, valid_at), (agent, t, valid_at)

    def _record(self, m: engramdb.Memory) -> None:
        self.model.versions.setdefault(m.id, []).append(Version(
            m.id, m.version, m.namespace, m.status, m.valid_from, m.valid_to, m.tx_from))

    @initialize()
    def agents(self) -> None:
        for agent in AGENTS:
            self.db.admin.create_agent(agent, roles=ROLES[agent])
            self.model.created[agent] = self._head()

    @rule(target=memories, ns=st.sampled_from(NAMESPACES), validity=st.sampled_from(VALIDITY))
    def remember(self, ns: str, validity: tuple[datetime | None, datetime | None]) -> str:
        self.n += 1
        token = f"tok{self.n}"
        m = self.db.remember(f"fact {token} about things", namespace=ns,
                             valid_from=validity[0], valid_to=validity[1])
        self._record(m)
        self.model.token[m.id] = token
        return m.id

    @rule(target=memories, agent=st.sampled_from(AGENTS))
    def agent_notes(self, agent: str) -> str:
        self.n += 1
        token = f"tok{self.n}"
        m = self.db.as_agent(agent).remember(f"note {token} of {agent}")
        self._record(m)
        self.model.token[m.id] = token
        return m.id

    @rule(mid=memories, retract=st.booleans())
    def change(self, mid: str, retract: bool) -> None:
        current = self.model.versions[mid][-1]
        if current.status != "active":
            return
        if retract:
            m = self.db.retract(mid, reason="test")
        else:
            m = self.db.update(mid, text=f"fact {self.model.token[mid]} revised v{current.version}")
        current.tx_to = m.tx_from
        self._record(m)

    @rule(target=grants, grantee=st.sampled_from(("a", "b", "role:r")),
          pattern=st.sampled_from(PATTERNS))
    def grant(self, grantee: str, pattern: str) -> str:
        g = self.db.admin.grant(grantee, pattern, ["read"])
        self.model.grants.append(GrantRow(g.id, grantee, pattern, g.tx_from))
        return g.id

    @rule(gid=grants)
    def revoke(self, gid: str) -> None:
        row = next(g for g in self.model.grants if g.id == gid)
        if row.tx_to is not None:
            return
        self.db.admin.revoke(gid)
        row.tx_to = self._head()

    @rule(data=st.data(), agent=st.sampled_from(AGENTS), valid_at=st.sampled_from(VALID_AT))
    def knowledge_at_some_time(self, data: st.DataObject, agent: str,
                               valid_at: datetime | None) -> None:
        t = data.draw(st.integers(0, self._head()), label="at")
        self._check(agent, t, valid_at)

    @precondition(lambda self: bool(self.model.token))
    @rule(data=st.data(), agent=st.sampled_from(AGENTS))
    def knowledge_with_a_query(self, data: st.DataObject, agent: str) -> None:
        mid = data.draw(st.sampled_from(sorted(self.model.token)), label="memory")
        t = data.draw(st.integers(0, self._head()), label="at")
        result = self.db.knowledge(agent, at=t, query=self.model.token[mid], k=50)
        got = {(h.memory.id, h.memory.version) for h in result.hits}
        expected = {x for x in self.model.visible(agent, t, None) if x[0] == mid}
        assert got == expected, (agent, t, mid)

    @invariant()
    def knowledge_now_matches_recall_visibility(self) -> None:
        t = self._head()
        for agent in AGENTS:
            self._check(agent, t, None)


def test_knowledge_matches_a_model_at_every_time() -> None:
    run_state_machine_as_test(
        KnowledgeMachine,
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )
