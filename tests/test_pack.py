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
