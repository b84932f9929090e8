"""Context packing: best first, provenance on every line, never over the budget."""

from __future__ import annotations

from datetime import UTC, datetime

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from engramdb.errors import InvalidInput
from engramdb.retrieval.pack import ELLIPSIS, Entry, entry, pack
from engramdb.retrieval.tokens import count_tokens

WHEN = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def test_entry_carries_provenance_and_folds_whitespace():
    e = entry(2, "Company X\n  outlook\tis positive", namespace="acme/research",
              author="research", recorded_at=WHEN, flags=("contested",))
    assert e.prefix == "[2] acme/research | research | 2026-03-01 12:00Z [contested]: "
    assert e.body == "Company X outlook is positive"


def test_packs_best_first_and_cuts_the_last_item():
    entries = [Entry(f"[{i}] ns | a | t: ", f"item {i} " + "word " * 30) for i in range(1, 6)]
    whole = count_tokens(entries[0].prefix + entries[0].body)
    packed = pack(entries, whole * 2 + 30)
    lines = packed.text.split("\n")
    assert lines[:2] == [entries[0].prefix + entries[0].body, entries[1].prefix + entries[1].body]
    assert len(lines) == 3 and packed.count == 3 and packed.truncated
    assert lines[2].startswith(entries[2].prefix) and lines[2].endswith(ELLIPSIS)
    assert packed.tokens == count_tokens(packed.text) <= whole * 2 + 30


def test_a_remainder_too_small_to_say_anything_is_dropped():
    entries = [Entry("[1] a: ", "alpha " * 20), Entry("[2] b: ", "beta " * 20)]
    first = count_tokens("[1] a: " + "alpha " * 20)
    packed = pack(entries, first + 5)
    assert packed.count == 1 and not packed.truncated
    assert pack([], 10).text == "" and pack(entries, 1).count == 0


@pytest.mark.parametrize("budget", [0, -1, 1_000_001, 2.5, True, "100"])
def test_budget_must_be_a_sensible_integer(budget):
    with pytest.raises(InvalidInput):
        pack([Entry("[1] ", "x")], budget)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(st.text(min_size=1, max_size=300), max_size=12),
       budget=st.integers(1, 400))
def test_never_over_budget_and_always_prefixes_in_order(bodies, budget):
    entries = [entry(i, b, namespace="ns/x", author="a", recorded_at=WHEN)
               for i, b in enumerate(bodies, start=1)]
    entries = [e for e in entries if e.body]
    packed = pack(entries, budget)
    assert packed.tokens == count_tokens(packed.text) <= budget
    lines = packed.text.split("\n") if packed.text else []
    assert len(lines) == packed.count
    for i, line in enumerate(lines):
        full = entries[i].prefix + entries[i].body
        if i < len(lines) - 1 or not packed.truncated:
            assert line == full
        else:
            assert line.endswith(ELLIPSIS) and full.startswith(line[: -len(ELLIPSIS)])


def test_context_on_a_database(tmp_path, embedder):
    import engramdb

    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    db.admin.create_agent("research")
    db.admin.create_agent("planner")
    db.admin.grant("research", "acme/**", ["read", "write"])
    db.admin.grant("planner", "acme/**", ["read"])
    research = db.as_agent("research")
    first = research.remember("Company X earnings outlook is positive", namespace="acme/research")
    research.remember_many([{"text": f"Company X filing {i}: " + "details of the quarter " * 8,
                             "namespace": "acme/filings"} for i in range(30)])
    db.remember("Company X is under investigation", namespace="board")  # planner cannot read
    t = db.storage.head().tx
    research.update(first.id, text="Company X earnings outlook is negative")
    planner = db.as_agent("planner")

    ctx = planner.context("Company X earnings outlook", budget_tokens=120)
    assert ctx.tokens == count_tokens(ctx.text) <= 120 and ctx.budget == 120
    lines = ctx.text.split("\n")
    assert len(lines) == len(ctx.items) == len(ctx.receipt.items) >= 2
    assert [(h.memory.id, h.memory.version) for h in ctx.items] == [
        (i.id, i.version) for i in ctx.receipt.items]
    assert lines[0] == ("[1] acme/research | research | "
                        f"{ctx.items[0].memory.recorded_at:%Y-%m-%d %H:%M}Z: "
                        "Company X earnings outlook is negative")
    assert "investigation" not in ctx.text
    assert [h.score for h in ctx.items] == sorted((h.score for h in ctx.items), reverse=True)
    assert ctx.receipt.principal == "planner"

    then = planner.context("Company X earnings outlook", budget_tokens=60, as_of=t)
    assert "positive" in then.text.split("\n")[0] and then.receipt.as_of == t
    assert [r.principal for r in db.who_read(first.id)] == ["planner", "planner"]
    with pytest.raises(InvalidInput):
        planner.context("", budget_tokens=100)
    with pytest.raises(InvalidInput):
        planner.context("Company X", budget_tokens=0)
    db.close()
