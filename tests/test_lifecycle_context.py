"""Decay matters where agents read: ``context`` packs by decayed relevance, as recall ranks.

Two memories answer the task; the one the task matches best has gone idle
under a half-life policy, the other was used recently. With room for one, the
context shows the one still in use; the idle one's relevance is in its
``why``; and what a context shows is reinforced like a recall hit.
"""

from __future__ import annotations

import pytest

import engramdb
from engramdb.codec import to_micros

DAY = 24 * 3600 * 1_000_000
TASK = "what is the office wifi password"


@pytest.fixture
def ldb(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    yield db
    db.close()


def _two(db: engramdb.Database) -> tuple[engramdb.Memory, engramdb.Memory]:
    idle = db.remember("The office wifi password is tulip-42", namespace="kb/it")
    used = db.remember("Guest wifi password: ask reception", namespace="kb/it")
    return idle, used


def _budget_for_one(db: engramdb.Database) -> int:
    full = db.context(TASK, 2000, namespace="kb/**")
    return max(p.tokens for p in full.parts) + 2


def test_without_a_half_life_the_best_match_wins_the_budget(ldb):
    idle, _used = _two(ldb)
    ctx = ldb.context(TASK, _budget_for_one(ldb), namespace="kb/**")
    assert [h.memory.id for h in ctx.items] == [idle.id]
    assert "decay" not in ctx.items[0].why


def test_an_idle_memory_loses_the_budget_to_one_in_use(ldb):
    idle, used = _two(ldb)
    ldb.admin.set_lifecycle("kb/**", half_life="1d")
    born = max(to_micros(idle.recorded_at), to_micros(used.recorded_at))
    ldb.lifecycle.clock = lambda: born + 3 * DAY
    ldb.recall("guest wifi reception", namespace="kb/**", k=1)  # a use of `used`, day 3
    ldb.lifecycle.flush_usage()
    ldb.lifecycle.clock = lambda: born + 4 * DAY  # idle: 4 half-lives; used: 1
    budget = _budget_for_one(ldb)

    ctx = ldb.context(TASK, budget, namespace="kb/**")

    assert [h.memory.id for h in ctx.items] == [used.id]
    full = ldb.context(TASK, 2000, namespace="kb/**")
    decay = {h.memory.id: h.why["decay"] for h in full.items}
    assert decay[idle.id] == pytest.approx(0.5 ** 4, rel=1e-3)
    assert decay[used.id] == pytest.approx(0.5, rel=1e-3)


def test_what_a_context_shows_is_reinforced(ldb):
    idle, used = _two(ldb)
    ldb.admin.set_lifecycle("kb/**", half_life="1d", archive_below=0.2)  # due 2.32 days idle
    born = max(to_micros(idle.recorded_at), to_micros(used.recorded_at))
    ldb.lifecycle.clock = lambda: born + 2 * DAY
    shown = ldb.context("office wifi password tulip", 2000, namespace="kb/**")
    assert {h.memory.id for h in shown.items} == {idle.id, used.id}
    ldb.lifecycle.clock = lambda: born + 3 * DAY
    assert ldb.maintain().archived == ()  # both were read at day 2: not idle long enough
    ldb.lifecycle.clock = lambda: born + 5 * DAY
    assert set(ldb.maintain().archived) == {idle.id, used.id}
