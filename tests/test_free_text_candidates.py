"""A semantic write's free-text contradiction check, made cheaper, finds what it found.

Two shortcuts (issue 15, the LangGraph store's ``put``):

* On SQLite the candidate search reads through the write transaction's own
  connection, so the rows it read are judged as they are, instead of each being
  fetched again by id. The reference is :meth:`Storage.search_text_current`'s
  default (search, then ``w.fetch`` each id: what the check did before, and what
  PostgreSQL still does).
* The heuristic judge decides "unrelated" from the two texts' topic words, kept
  for many more texts than whole parsed frames, so a candidate's text is parsed
  only when it shares enough words to be judged further.

Both are checked against their reference on random data, on real SQLite files.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.engine.database import Database
from engramdb.model import RecallFilter
from engramdb.policy import heuristic_judge
from engramdb.policy.heuristic_judge import HeuristicJudge
from engramdb.policy.judgment import Statement
from engramdb.storage.base import Storage, Update
from engramdb.storage.sqlite import SQLiteStorage

# Statements built from a few subjects and values, so that random picks often share
# words, often contradict (a value, a negation, an antonym, a number, a day) and
# sometimes repeat.
_SUBJECTS = ["The deployment window", "The office", "The loan application", "Ticket INC-7",
             "The north region revenue", "The cafeteria", "Acme's CEO"]
_PREDICATES = ["is Friday", "is Monday", "opens at 9am", "opens at 10am", "is approved",
               "is not approved", "is open", "is closed", "grew 5%", "grew 12%", "is Carol",
               "is Bob", "closes early", "closes late"]
_TEXTS = st.builds(lambda s, p, tail: f"{s} {p}{tail}", st.sampled_from(_SUBJECTS),
                   st.sampled_from(_PREDICATES),
                   st.sampled_from(["", " this week", " according to the memo", " again"]))
_SPACES = ["ops/a", "ops/b", "ops/c"]
_AGENTS = ["alice", "bob"]

# One step of a history: remember (text, namespace, agent), or update / retract the
# memory written at a given earlier step.
_STEP = st.one_of(
    st.tuples(st.just("remember"), _TEXTS, st.sampled_from(_SPACES), st.sampled_from(_AGENTS)),
    st.tuples(st.just("update"), st.integers(0, 40), _TEXTS),
    st.tuples(st.just("retract"), st.integers(0, 40)),
)


class _ReferenceStorage(SQLiteStorage):
    """SQLite whose check takes the reference path: search, then fetch each id again."""

    def search_text_current(self, w: Any, query: str, flt: RecallFilter, limit: int,
                            *, other_than: str) -> list[tuple[str, dict[str, Any] | None]]:
        return Storage.search_text_current(self, w, query, flt, limit, other_than=other_than)


def _open_reference(path: Path) -> Database:
    storage = _ReferenceStorage(str(path))
    storage.setup()
    db = Database(storage, embedder=None)
    db._bootstrap()
    return db


def _play(db: Any, steps: list[tuple[Any, ...]]) -> list[str]:
    """Apply ``steps``; returns what each write became (status, or the refusal)."""
    ids: list[str] = []
    outcome: list[str] = []
    for step in steps:
        try:
            if step[0] == "remember":
                _, text, ns, agent = step
                m = db.as_agent(agent).remember(text, namespace=ns)
                ids.append(m.id)
                outcome.append(m.status)
            elif ids:
                target = db.get(ids[step[1] % len(ids)])
                if step[0] == "update":
                    m = db.update(target.id, text=step[2], expected_version=target.version)
                else:
                    m = db.retract(target.id, reason="test", expected_version=target.version)
                outcome.append(m.status)
        except engramdb.EngramError as exc:
            outcome.append(type(exc).__name__)
    return outcome


def _conflicts(db: Any) -> list[tuple[str, frozenset[tuple[str, int]], str, str]]:
    """Every conflict, as (namespace, its memory versions' texts, reason, status)."""
    out = []
    for c in db.conflicts("**", status=None, limit=1000):
        texts = frozenset((db.get(m.id).text, m.version) for m in c.memories)
        out.append((c.namespace, texts, c.reason, c.status))
    return sorted(out, key=repr)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=4, max_size=30))
def test_reusing_the_searched_rows_flags_what_fetching_them_again_flags(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Any, ...]]) -> None:
    where = tmp_path_factory.mktemp("candidates")
    fast = engramdb.open(where / "fast.db", embedder=None)
    ref = _open_reference(where / "reference.db")
    try:
        assert type(fast.storage).search_text_current is not \
            type(ref.storage).search_text_current
        assert _play(fast, steps) == _play(ref, steps)
        assert _conflicts(fast) == _conflicts(ref)
    finally:
        fast.close()
        ref.close()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(texts=st.lists(st.tuples(_TEXTS, st.sampled_from(_SPACES)), min_size=1, max_size=25),
       query=_TEXTS, space=st.sampled_from(_SPACES), closed=st.integers(0, 30),
       limit=st.integers(1, 5))
def test_search_in_a_write_reads_the_rows_the_write_sees(
        tmp_path_factory: pytest.TempPathFactory, texts: list[tuple[str, str]], query: str,
        space: str, closed: int, limit: int) -> None:
    """Inside a write that has already closed a memory's version, the fast search and
    the reference agree, row for row (metadata parsed alike), and neither offers the
    closed version."""
    db = engramdb.open(tmp_path_factory.mktemp("rows") / "e.db", embedder=None)
    try:
        made = [db.remember(t, namespace=ns, metadata={"i": i, "tags": [t[:3], {"n": None}]}
                            if i % 2 else None) for i, (t, ns) in enumerate(texts)]
        gone = made[closed % len(made)]
        flt = RecallFilter(namespaces=(space,), layers=("semantic",), statuses=("active",))
        storage = db.storage

        class Rollback(Exception):
            pass

        with pytest.raises(Rollback), storage.write("test") as w:
            w.apply([Update("memories", {"id": gone.id, "version": gone.version},
                            {"tx_to": w.tx}, expect={"tx_to": None})])
            other = made[0].id
            got = storage.search_text_current(w, query, flt, limit, other_than=other)
            want = Storage.search_text_current(storage, w, query, flt, limit, other_than=other)
            assert got == want
            assert gone.id not in {i for i, _ in got}
            assert all(row is not None and row["id"] == i for i, row in got)
            assert [dict(row or {}) for _, row in got] == [row for _, row in want]
            raise Rollback  # nothing was logged: leave nothing written
    finally:
        db.close()


@settings(max_examples=200, deadline=None)
@given(a=_TEXTS, b=_TEXTS)
def test_the_judge_says_the_same_with_or_without_parsed_frames_at_hand(a: str, b: str) -> None:
    judge = HeuristicJudge()
    heuristic_judge._parse.cache_clear()
    heuristic_judge._TOPICS.clear()
    cold = judge.judge(Statement(a), Statement(b))
    # Topics known, frames evicted: the candidate's text is parsed only if related.
    heuristic_judge._parse.cache_clear()
    warm = judge.judge(Statement(a), Statement(b))
    assert warm == cold
    assert set(heuristic_judge._topic(a)) == heuristic_judge._parse(a).topic


def test_the_judge_still_tells_contradictions_from_unrelated_statements() -> None:
    judge = HeuristicJudge()
    pairs = {("The deployment window is Friday", "The deployment window is Monday"):
             "contradiction",
             ("The loan application is approved", "The loan application is not approved"):
             "contradiction",
             ("The deployment window is Friday", "Penguins live in the south"): "unrelated"}
    for (a, b), verdict in pairs.items():
        for x, y in itertools.permutations((a, b)):
            assert judge.judge(Statement(x), Statement(y)).verdict == verdict


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(texts=st.lists(_TEXTS, min_size=1, max_size=20),
       terms=st.lists(st.sampled_from(["deploy", "window", "friday", "offic", "approv", "acm",
                                       "absent", "inc", "7", "12", "cafeteria", "nowhere"]),
                      max_size=12))
def test_document_counts_asked_at_once_are_each_terms_own(
        tmp_path_factory: pytest.TempPathFactory, texts: list[str], terms: list[str]) -> None:
    """The full-text query's word pruning reads every unknown term's row count in one
    statement: the same count as asking for the term alone (0 for a term in no row)."""
    from engramdb.storage.sqlite.fulltext import FullText

    db = engramdb.open(tmp_path_factory.mktemp("df") / "e.db", embedder=None)
    try:
        for t in texts:
            db.remember(t, namespace="ops/a")
        conn = db.storage._conn("reader")
        got = FullText().doc_counts(conn, terms)
        for term in terms:
            row = conn.execute("SELECT doc FROM temp.memories_fts_vocab WHERE term = ?",
                               [term]).fetchone()
            assert got[term] == (row[0] if row else 0)
        assert set(got) == set(terms)
    finally:
        db.close()


def _normalised_in_full(text: str) -> str:
    """The judge's text rewrites, every one run on every text (the reference)."""
    import re

    text = text.replace("\u2019", "'").replace("\u2018", "'")
    for pattern, repl, flags in (
            (r"\b(?:can't|cannot)\b", "can not", re.I), (r"\bwon't\b", "will not", re.I),
            (r"(\w)n't\b", r"\1 not", re.I), (r"(\w)'s\b", r"\1", 0),
            (r"(\w)s'(?=\s)", r"\1s", 0), (r"(\d)\s*(?:percent|per cent)\b", r"\1%", re.I),
            (r"\bout of stock\b", "out_of_stock", re.I), (r"\bin stock\b", "in_stock", re.I)):
        text = re.sub(pattern, repl, text, flags=flags)
    return text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["can", "CAN'T", "cannot", "won't", "don\u2019t", "it's", "users'",
                                 "5", " ", "percent", "per", "cent", "out", "of", "stock",
                                 "In", "Stock", "\u212a", "\u017ftock", "\u0130n", "x", "'s",
                                 "n't", "%", "."]), max_size=12).map("".join))
def test_the_judge_rewrites_a_text_as_running_every_rewrite_would(text: str) -> None:
    """The judge skips a rewrite whose words an ASCII text lacks: same text out."""
    assert heuristic_judge._normalise(text) == _normalised_in_full(text)


_MONTHISH = st.lists(st.sampled_from(
    ["March", "MARCH", "march", "May", "may", "Mayor", "14", "2025", "1,", "the", "launch",
     "is", "on", "\u212a", "\u0130", "\u017fept", "S\u0130ept", "June", "JUNE", "jUnE", "12:30",
     "Dec", "december", "Octobers", "ticket", "7"]), max_size=12).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(text=_MONTHISH)
def test_a_text_without_a_month_name_parses_as_if_its_dates_were_merged(text: str) -> None:
    """The date merge is skipped where the lower-cased text holds no month name: the
    frame is the one the merge would have left (it folds only tokens naming a month)."""
    fast = heuristic_judge._parse.__wrapped__(text)
    names = heuristic_judge._MONTH_NAMES
    heuristic_judge._MONTH_NAMES = ("",)  # "" is in every text: always merge
    try:
        assert heuristic_judge._parse.__wrapped__(text) == fast
    finally:
        heuristic_judge._MONTH_NAMES = names
