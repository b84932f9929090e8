"""Merged predicates converge: whatever order writes land in, the value is the same.

Three levels:

* the pure merge functions (:mod:`engramdb.policy.crdt`) under Hypothesis:
  any permutation of the same contributions gives the same state and value,
  and the value is what each kind promises (sum, max, min, latest, add-wins);
* the database under Hypothesis: the same contributions written in two
  shuffled orders into two databases read back the same merged value;
* real concurrency: writer processes (``multiprocessing`` spawn) and threads
  hammer one merged memory per kind; the result equals the value computed
  independently from what every writer sent, and the log verifies.

Databases here run without an embedder: merging does not read vectors, and
loading the model in every child process would cost seconds each.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import random
import tempfile
import threading
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.errors import ValueTypeError
from engramdb.policy import crdt
from tests.conftest import matrix

NS = "shared/merge"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
AUTHORS = ("ana", "bo", "cy")
ELEMENTS = ("red", "green", "blue", "teal")

# --------------------------------------------------------------------------- pure


def _contributions(kind: str, ops: list[Any], times: list[int], authors: list[str]
                   ) -> list[crdt.Contribution]:
    # Tags (tx, seq) are unique per contribution, as the database makes them.
    return [crdt.Contribution(crdt.check_op(kind, op), tx=10 + i, seq=1, time=t, author=a)
            for i, (op, t, a) in enumerate(zip(ops, times, authors, strict=True))]


def _fold(kind: str, contributions: list[crdt.Contribution]) -> dict[str, Any]:
    state = crdt.initial_state(kind)
    for c in contributions:
        state = crdt.apply(kind, state, c)
    return state


set_ops = st.one_of(
    st.sampled_from(ELEMENTS),
    st.lists(st.sampled_from(ELEMENTS), min_size=1, max_size=3),
    st.fixed_dictionaries({"remove": st.lists(st.sampled_from(ELEMENTS), min_size=1,
                                              max_size=2)},
                          optional={"observed": st.integers(0, 40)}),
)
op_strategies = {
    "counter": st.integers(-1000, 1000),
    "max": st.one_of(st.integers(-50, 50), st.floats(-50, 50, allow_nan=False)),
    "min": st.one_of(st.integers(-50, 50), st.floats(-50, 50, allow_nan=False)),
    "lww": st.one_of(st.integers(0, 3), st.sampled_from(ELEMENTS), st.none().map(lambda _: [1])),
    "set": set_ops,
}


@st.composite
def histories(draw: Any, kind: str) -> tuple[list[crdt.Contribution], list[int]]:
    n = draw(st.integers(1, 12))
    ops = [draw(op_strategies[kind]) for _ in range(n)]
    times = [draw(st.integers(0, 3)) for _ in range(n)]  # few times: many lww ties
    authors = [draw(st.sampled_from(AUTHORS)) for _ in range(n)]
    order = draw(st.permutations(range(n)))
    return _contributions(kind, ops, times, authors), list(order)


@pytest.mark.parametrize("kind", crdt.MERGE_KINDS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_order_of_the_same_contributions_gives_the_same_state(kind: str, data) -> None:
    contributions, order = data.draw(histories(kind))
    shuffled = [contributions[i] for i in order]
    a, b = _fold(kind, contributions), _fold(kind, shuffled)
    assert a == b
    assert crdt.value_of(kind, a) == crdt.value_of(kind, b)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_values_are_what_each_kind_promises(data) -> None:
    for kind in ("counter", "max", "min", "lww"):
        contributions, _ = data.draw(histories(kind))
        value = crdt.value_of(kind, _fold(kind, contributions))
        ops = [c.op for c in contributions]
        if kind == "counter":
            assert value == sum(ops)
        elif kind == "max":
            assert float(value) == max(map(float, ops))
        elif kind == "min":
            assert float(value) == min(map(float, ops))
        else:
            best = max(contributions, key=lambda c: (c.time, c.author,
                                                     json.dumps(c.op, sort_keys=True,
                                                                separators=(",", ":"))))
            assert value == best.op


def test_set_add_wins_over_a_remove_that_did_not_see_it() -> None:
    def c(op: Any, tx: int) -> crdt.Contribution:
        return crdt.Contribution(crdt.check_op("set", op), tx=tx, seq=1, time=0, author="a")

    seen = [c(["red", "blue"], 1), c({"remove": ["red"], "observed": 1}, 3)]
    assert crdt.value_of("set", _fold("set", seen)) == ["blue"]
    # The remover had seen only tx 1; a concurrent add of red (tx 2) survives it.
    raced = [*seen, c("red", 2)]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        assert crdt.value_of("set", _fold("set", [raced[i] for i in order])) == [
            "blue", "red"]
    # Without `observed`, a remove sees everything applied before it.
    assert crdt.value_of("set", _fold("set", [c("red", 1), c({"remove": ["red"]}, 2)])) == []


@pytest.mark.parametrize("kind, op", [
    ("counter", 1.5), ("counter", True), ("counter", None), ("max", "high"),
    ("min", float("inf")), ("set", {"drop": ["x"]}), ("set", {"remove": "x"}),
    ("set", []), ("set", {"add": [None]}), ("set", {"remove": ["x"], "observed": -1}),
])
def test_bad_contributions_are_value_type_errors(kind: str, op: Any) -> None:
    with pytest.raises(ValueTypeError):
        crdt.check_op(kind, op)


# --------------------------------------------------------------------------- database


def _open_with_agents(path: Path) -> engramdb.Database:
    db = engramdb.open(path, embedder=None)
    for name in AUTHORS:
        db.admin.create_agent(name)
        db.admin.grant(name, "shared/**", ["read", "write"])
    for kind in crdt.MERGE_KINDS:
        db.admin.declare_predicate("shared/**", kind, merge=kind)
    return db


def _write(db: engramdb.Database, author: str, kind: str, op: Any, when: datetime) -> Any:
    return db.as_agent(author).remember(f"{author} contributes to {kind}", namespace=NS,
                                        subject="board", predicate=kind, value=op,
                                        valid_from=when)


def _merged(db: engramdb.Database, kind: str) -> Any:
    hits = db.recall(f"contributes to {kind}", namespace=NS, k=50,
                     filters={"predicate": kind}).memories
    assert len(hits) == 1, f"one merged memory per predicate, found {len(hits)}"
    return hits[0].value


@st.composite
def db_histories(draw: Any) -> list[tuple[str, str, Any, int]]:
    ops = []
    for _ in range(draw(st.integers(2, 8))):
        kind = draw(st.sampled_from(crdt.MERGE_KINDS))
        op = draw(op_strategies[kind])
        if kind == "set" and isinstance(op, dict):
            op = {"remove": op["remove"], "observed": 0}  # all concurrent: nothing seen
        ops.append((draw(st.sampled_from(AUTHORS)), kind, op, draw(st.integers(0, 2))))
    return ops


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=db_histories(), seed=st.integers(0, 2**16))
def test_shuffled_writes_into_two_databases_read_back_the_same(ops, seed) -> None:
    shuffled = list(ops)
    random.Random(seed).shuffle(shuffled)
    values = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sequence in enumerate((ops, shuffled)):
            with _open_with_agents(Path(tmp) / f"{i}.db") as db:
                for author, kind, op, minutes in sequence:
                    _write(db, author, kind, op, T0 + timedelta(minutes=minutes))
                values.append({kind: _merged(db, kind) for kind in {k for _, k, _, _ in ops}})
                assert db.verify().ok
    assert values[0] == values[1]


# --------------------------------------------------------------------------- concurrency


def _plan(worker: int, n: int) -> list[tuple[str, Any, int]]:
    """What one writer sends: (kind, value, minutes after T0), reproducible per worker."""
    rng = random.Random(worker)
    out: list[tuple[str, Any, int]] = []
    for i in range(n):
        kind = crdt.MERGE_KINDS[i % len(crdt.MERGE_KINDS)]
        if kind == "counter":
            op: Any = rng.randint(-5, 20)
        elif kind in ("max", "min"):
            op = rng.randint(-1000, 1000)
        elif kind == "lww":
            op = f"w{worker}-{i}"
        elif i % 2:
            op = {"remove": [f"seed-{rng.randint(0, 5)}", f"w{(worker + 1) % 4}-item"],
                  "observed": "BASELINE"}
        else:
            op = [f"w{worker}-item", f"w{worker}-{i}"]
        out.append((kind, op, rng.randint(0, 3)))
    return out


def _expected(plans: dict[str, list[tuple[str, Any, int]]], seeds: list[str]) -> dict[str, Any]:
    """The merged values, computed from what was sent, without the merge code."""
    ops = [(author, kind, op, minutes) for author, plan in plans.items()
           for kind, op, minutes in plan]
    counter = sum(op for _, k, op, _ in ops if k == "counter")
    numbers = [op for _, k, op, _ in ops if k in ("max", "min")]
    maxima = [op for _, k, op, _ in ops if k == "max"]
    minima = [op for _, k, op, _ in ops if k == "min"]
    assert numbers
    lww = max(((m, a, json.dumps(op)), op) for a, k, op, m in ops if k == "lww")[1]
    added = {e for _, k, op, _ in ops if k == "set" and isinstance(op, list) for e in op}
    removed = {e for _, k, op, _ in ops if k == "set" and isinstance(op, dict)
               for e in op["remove"]}
    # Every remove saw only the seeds: removed seeds go, concurrent additions stay.
    present = (set(seeds) - removed) | added
    return {"counter": counter, "max": max(maxima), "min": min(minima), "lww": lww,
            "set": sorted(present, key=lambda e: json.dumps(e))}


def _send(db: engramdb.Database, author: str, plan: list[tuple[str, Any, int]],
          baseline: int) -> None:
    for kind, op, minutes in plan:
        if isinstance(op, dict):
            op = {**op, "observed": baseline}
        _write(db, author, kind, op, T0 + timedelta(minutes=minutes))


def merge_worker(path: str, author: str, plan: list[tuple[str, Any, int]], baseline: int,
                 barrier: Any, results: Any) -> None:
    """Child process: open the shared file as ``author`` and send every contribution."""
    try:
        with engramdb.open(path, embedder=None) as db:
            barrier.wait(timeout=120)
            _send(db, author, plan, baseline)
        results.put({"author": author, "error": None})
    except BaseException:
        results.put({"author": author, "error": traceback.format_exc()})


def _seed(db: engramdb.Database) -> tuple[list[str], int]:
    seeds = [f"seed-{i}" for i in range(6)]
    db.remember("initial set", namespace=NS, subject="board", predicate="set", value=seeds,
                valid_from=T0)
    return seeds, db.storage.head().tx


def _check(db: engramdb.Database, plans: dict[str, list[Any]], seeds: list[str]) -> None:
    expected = _expected(plans, seeds)
    got = {kind: _merged(db, kind) for kind in crdt.MERGE_KINDS}
    assert got == expected
    total = sum(len(p) for p in plans.values())
    contributions = 0
    for kind in crdt.MERGE_KINDS:
        (m,) = db.recall(f"contributes to {kind}", namespace=NS, k=5,
                         filters={"predicate": kind}).memories
        contributions += m.metadata["_crdt"]["contributions"]
        assert len(db.history(m.id)) == m.metadata["_crdt"]["contributions"]
    assert contributions == total + 1  # plus the seed
    assert db.verify().ok


def test_writer_processes_converge_on_the_independently_computed_values(tmp_path) -> None:
    path = str(tmp_path / "engram.db")
    workers = [f"w{i}" for i in range(4)]
    with _open_with_agents(Path(path)) as db:
        for name in workers:
            db.admin.create_agent(name)
            db.admin.grant(name, "shared/**", ["read", "write"])
        seeds, baseline = _seed(db)
    plans = {name: _plan(i, 30) for i, name in enumerate(workers)}
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(workers))
    results = ctx.Queue()
    procs = [ctx.Process(target=merge_worker,
                         args=(path, name, plans[name], baseline, barrier, results))
             for name in workers]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=240))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {len(workers)} writers reported in time")
    finally:
        for p in procs:
            p.join(timeout=60)
    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, errors[0]
    with engramdb.open(path, embedder=None) as db:
        _check(db, plans, seeds)


@pytest.mark.parametrize("cell", matrix(doors=("python",), embed=False), indirect=True)
def test_writer_threads_converge_on_every_backend(cell) -> None:
    db = cell.engine
    workers = [f"t{i}" for i in range(3)]
    for name in (*AUTHORS, *workers):
        db.admin.create_agent(name)
        db.admin.grant(name, "shared/**", ["read", "write"])
    for kind in crdt.MERGE_KINDS:
        db.admin.declare_predicate("shared/**", kind, merge=kind)
    seeds, baseline = _seed(db)
    plans = {name: _plan(i, 20) for i, name in enumerate(workers)}
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            barrier.wait(timeout=30)
            _send(db, name, plans[name], baseline)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    _check(db, plans, seeds)
