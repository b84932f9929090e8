"""Stateful property test of the fact model (Hypothesis ``RuleBasedStateMachine``).

Random programs of remember / update (with a right, a stale or no
``expected_version``) / retract / transactions (some aborted by raising inside
the ``with`` block) / ``as_of`` reads run against a real SQLite database and
against a small in-memory model written here. After every step:

* every ``as_of`` read made so far returns exactly what it returned then;
* every memory has exactly one current version, versions run 1..n, and each
  superseded version ends (``tx_to``) where the next one starts (``tx_from``);
* history, texts and statuses agree with the model, and recall returns only
  current, active versions, at most one per memory.

An aborted transaction must leave no trace: log length and head unchanged.
At teardown the whole database verifies.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import engramdb
from engramdb import InvalidInput, Memory, NotFound, VersionConflict

WORDS = ("apple", "river", "castle", "orbit", "violet", "engine", "harbor", "meadow")
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
MAX_OBSERVED = 80  # as_of reads kept for re-checking; bounds the cost per step


class _Abort(Exception):
    """Raised inside a transaction to abandon it."""


@dataclass
class Version:
    text: str
    status: str  # as stored: "active" or "retracted"
    tx_from: int
    tx_to: int | None = None


@dataclass
class Model:
    memories: dict[str, list[Version]] = field(default_factory=dict)
    tx_time: dict[int, datetime] = field(default_factory=dict)  # tx -> recorded_at

    def current(self, mid: str) -> Version:
        return self.memories[mid][-1]

    def at(self, mid: str, tx: int) -> tuple[int, Version] | None:
        """The (version number, version) of ``mid`` current at transaction ``tx``."""
        for n, v in enumerate(self.memories[mid], start=1):
            if v.tx_from <= tx and (v.tx_to is None or v.tx_to > tx):
                return n, v
        return None

    def new_version(self, mid: str, tx: int, text: str | None = None,
                    status: str | None = None) -> None:
        cur = self.current(mid)
        cur.tx_to = tx
        self.memories[mid].append(Version(text if text is not None else cur.text,
                                          status or cur.status, tx))

    def copy(self) -> Model:
        return Model({k: [Version(v.text, v.status, v.tx_from, v.tx_to) for v in vs]
                      for k, vs in self.memories.items()}, dict(self.tx_time))


class FactModelMachine(RuleBasedStateMachine):
    """The database and the model must agree after every step."""

    embedder: Any = None  # a subclass sets the real embedder

    memories = Bundle("memories")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="engram-fact-")
        self.db = engramdb.open(Path(self.dir) / "engram.db", embedder=self.embedder)
        # Recall is read-audited. Written in the background, a read record could
        # move the log head between a rule's before and after; written before
        # recall returns, it cannot.
        audit = getattr(self.db, "read_audit", None)
        if audit is not None:
            audit.synchronous = True
        self.model = Model()
        self.observed: dict[tuple[str, int | datetime], Memory] = {}

    def teardown(self) -> None:
        try:
            if hasattr(self, "db"):
                report = self.db.verify()
                assert report.ok, report
                assert report.events_checked == self.db.storage.head().seq
        finally:
            if hasattr(self, "db"):
                self.db.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------

    def head_tx(self) -> int:
        return self.db.storage.head().tx

    def _written(self, m: Memory) -> None:
        self.model.tx_time[m.tx_from] = m.recorded_at

    def _check_new(self, m: Memory, mid: str | None = None) -> None:
        versions = self.model.memories[m.id]
        v = versions[-1]
        assert (m.version, m.text, m.status, m.tx_from, m.tx_to) == (
            len(versions), v.text, v.status, v.tx_from, None)
        if mid is not None:
            assert m.id == mid

    # -- rules --------------------------------------------------------------------

    @initialize(target=memories, text=texts)
    def first(self, text: str) -> str:
        return self.remember(text)

    @rule(target=memories, text=texts)
    def remember(self, text: str) -> str:
        before = self.head_tx()
        m = self.db.remember(text, namespace="facts/a")
        assert m.tx_from == before + 1 == self.head_tx()
        self.model.memories[m.id] = [Version(text, "active", m.tx_from)]
        self._written(m)
        self._check_new(m)
        return m.id

    @rule(mid=memories, text=texts, mode=st.sampled_from(["none", "current", "stale"]))
    def update(self, mid: str, text: str, mode: str) -> None:
        cur = self.model.current(mid)
        n = len(self.model.memories[mid])
        head = self.db.storage.head()
        expected = {"none": None, "current": n, "stale": n - 1 if n > 1 else n + 1}[mode]
        if cur.status == "retracted":
            try:
                self.db.update(mid, text=text, expected_version=expected)
            except InvalidInput as exc:
                assert "retracted" in str(exc)
            else:
                raise AssertionError("a retracted memory accepted an update")
            assert self.db.storage.head() == head
            return
        if mode == "stale":
            try:
                self.db.update(mid, text=text, expected_version=expected)
            except VersionConflict as exc:
                assert exc.current_version == n
            else:
                raise AssertionError("a stale expected_version was accepted")
            assert self.db.storage.head() == head
            return
        m = self.db.update(mid, text=text, expected_version=expected)
        assert m.tx_from == head.tx + 1
        self.model.new_version(mid, m.tx_from, text=text)
        self._written(m)
        self._check_new(m, mid)

    @rule(mid=memories)
    def retract(self, mid: str) -> None:
        head = self.db.storage.head()
        if self.model.current(mid).status == "retracted":
            with pytest.raises(InvalidInput):
                self.db.retract(mid)
            assert self.db.storage.head() == head
            return
        m = self.db.retract(mid, reason="no longer true")
        self.model.new_version(mid, m.tx_from, status="retracted")
        self._written(m)
        self._check_new(m, mid)

    @rule(target=memories,
          ops=st.lists(st.tuples(st.sampled_from(["remember", "update", "retract"]),
                                 st.integers(0, 10_000), texts, st.booleans()),
                       min_size=1, max_size=5),
          abort=st.booleans())
    def transaction(self, ops: list[tuple[str, int, str, bool]], abort: bool) -> Any:
        head = self.db.storage.head()
        counts = self.db.storage.counts()
        local = self.model.copy()
        tx_no = head.tx + 1
        created: list[str] = []
        try:
            with self.db.transaction() as tx:
                for op, pick, text, cas in ops:
                    live = sorted(k for k, vs in local.memories.items()
                                  if vs[-1].status == "active")
                    if op == "remember" or not live:
                        m = tx.remember(text, namespace="facts/tx")
                        local.memories[m.id] = [Version(text, "active", tx_no)]
                        created.append(m.id)
                    else:
                        mid = live[pick % len(live)]
                        version = len(local.memories[mid]) if cas else None
                        if op == "update":
                            m = tx.update(mid, text=text, expected_version=version)
                            local.new_version(mid, tx_no, text=text)
                        else:
                            m = tx.retract(mid, expected_version=version)
                            local.new_version(mid, tx_no, status="retracted")
                    assert m.tx_from == tx_no
                    assert m.version == len(local.memories[m.id])
                    local.tx_time[tx_no] = m.recorded_at
                if abort:
                    raise _Abort
        except _Abort:
            event("transaction aborted")
            # No trace: same log length, same head, same rows; nothing it made exists.
            assert self.db.storage.head() == head
            assert self.db.storage.counts() == counts
            for mid in created:
                with pytest.raises(NotFound):
                    self.db.get(mid)
            return multiple()
        event("transaction committed")
        self.model = local
        assert self.head_tx() == tx_no
        assert self.db.storage.head().seq == head.seq + len(ops)
        return multiple(*created)

    @rule(mid=memories, data=st.data())
    def read_as_of_tx(self, mid: str, data: st.DataObject) -> None:
        t = data.draw(st.integers(0, self.head_tx()), label="as_of")
        want = self.model.at(mid, t)
        if want is None:
            with pytest.raises(NotFound):
                self.db.get(mid, as_of=t)
            return
        m = self.db.get(mid, as_of=t)
        n, v = want
        assert (m.version, m.text, m.status, m.tx_from) == (n, v.text, v.status, v.tx_from)
        assert m.tx_to is None or m.tx_to > t
        self._observe((mid, t), m)

    @precondition(lambda self: len(self.model.tx_time) > 0)
    @rule(mid=memories, data=st.data())
    def read_as_of_time(self, mid: str, data: st.DataObject) -> None:
        tx = data.draw(st.sampled_from(sorted(self.model.tx_time)), label="tx")
        nudge = data.draw(st.sampled_from([-1, 0, 1]), label="microseconds")
        when = self.model.tx_time[tx] + timedelta(microseconds=nudge)
        # As of a time: the state after the last transaction recorded at or before it.
        known = [t for t, at in self.model.tx_time.items() if at <= when]
        t = max(known) if known else 1
        want = self.model.at(mid, t)
        if want is None:
            with pytest.raises(NotFound):
                self.db.get(mid, as_of=when)
            return
        m = self.db.get(mid, as_of=when)
        assert m == self.db.get(mid, as_of=t)
        assert (m.version, m.text) == (want[0], want[1].text)
        self._observe((mid, when), m)

    def _observe(self, key: tuple[str, int | datetime], m: Memory) -> None:
        if key in self.observed:
            assert self.observed[key] == m
        elif len(self.observed) < MAX_OBSERVED:
            self.observed[key] = m

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def as_of_reads_never_change(self) -> None:
        for (mid, at), m in self.observed.items():
            assert self.db.get(mid, as_of=at) == m, f"as_of read of {mid} at {at} changed"

    @invariant()
    def versions_chain_and_match_the_model(self) -> None:
        for mid, versions in self.model.memories.items():
            hist = self.db.history(mid)
            assert [m.version for m in hist] == list(range(1, len(versions) + 1))
            assert sum(1 for m in hist if m.tx_to is None) == 1
            assert hist[-1].tx_to is None
            for older, newer in itertools.pairwise(hist):
                assert older.tx_to == newer.tx_from
                assert older.status == "superseded"
            for m, v in zip(hist, versions, strict=True):
                assert (m.text, m.tx_from, m.tx_to) == (v.text, v.tx_from, v.tx_to)
            assert hist[-1].status == versions[-1].status
            assert self.db.get(mid) == hist[-1]

    @invariant()
    def recall_sees_one_current_active_version_per_memory(self) -> None:
        if not self.model.memories:
            return
        r = self.db.recall(" ".join(WORDS), k=1000)
        ids = [h.memory.id for h in r.hits]
        assert len(ids) == len(set(ids))
        active = {mid for mid, vs in self.model.memories.items() if vs[-1].status == "active"}
        assert set(ids) == active
        for h in r.hits:
            assert h.memory.version == len(self.model.memories[h.memory.id])
            assert h.memory.status == "active" and h.memory.tx_to is None


@pytest.mark.slow
def test_fact_model_full_text_only() -> None:
    run_state_machine_as_test(
        FactModelMachine,
        settings=settings(max_examples=80, stateful_step_count=30, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )


@pytest.mark.slow
def test_fact_model_with_real_embedder(embedder: Any) -> None:
    class WithEmbedder(FactModelMachine):
        pass

    WithEmbedder.embedder = embedder
    run_state_machine_as_test(
        WithEmbedder,
        settings=settings(max_examples=10, stateful_step_count=20, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )
