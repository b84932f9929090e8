"""``remember_many`` runs with the cyclic garbage collector paused (engine/collector.py).

What a user would notice if it went wrong: the collector left off after a batch (memory
held by their own cycles would grow without bound), turned on against their wish (a
program that runs with ``gc.disable()``), turned on while another thread's batch still
runs, or a batch that leaves cycles only a collection frees (then pausing it would keep
them). Each is checked here, the last on an episodic and a semantic batch.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.engine.collector import collector_paused


def _engine_cycles() -> list[Any]:
    """The engine's objects a collection finds only in cycles (other threads' garbage,
    which the suite's background threads may leave, is not counted)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [o for o in gc.garbage if type(o).__module__.startswith("engramdb")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()  # what was kept for the look is freed now
    return found


@pytest.fixture
def collector_on() -> Any:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_a_batch_turns_the_collector_back_on_and_leaves_no_cycle(
        tmp_path: Path, embedder: Any, collector_on: None) -> None:
    db = engramdb.open(tmp_path / "c.db", embedder=embedder)
    rng = np.random.default_rng(3)
    seen: list[bool] = []
    plain = db.storage.write

    def write(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return plain(*args, **kwargs)

    db.storage.write = write  # type: ignore[method-assign]
    try:
        gc.collect()
        for layer in ("episodic", "semantic"):
            vecs = rng.standard_normal((800, embedder.dimension)).astype(np.float32)
            made = db.remember_many([
                {"text": f"Pump {i} pressure reading {i * 3} kPa in hall {i % 7}",
                 "namespace": "plant/a", "layer": layer, "embedding": vecs[i]}
                for i in range(800)])
            assert len(made) == 800
            assert gc.isenabled()
            assert _engine_cycles() == []  # nothing the batch left needed the collector
        assert seen == [False, False]  # each batch's write ran with it paused
    finally:
        db.close()


def test_a_collector_the_program_turned_off_stays_off(tmp_path: Path) -> None:
    db = engramdb.open(tmp_path / "off.db", embedder=None)
    was = gc.isenabled()
    gc.disable()
    try:
        db.remember_many([{"text": f"Note {i}", "layer": "episodic"} for i in range(50)])
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
        db.close()


@contextmanager
def _batch_in_another_thread() -> Iterator[None]:
    """Another thread inside a batch (the collector paused) for the block's length."""
    inside, release = threading.Event(), threading.Event()

    def batch() -> None:
        with collector_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=batch)
    thread.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)


def test_the_collector_resumes_only_when_the_last_batch_of_any_thread_ends(
        collector_on: None) -> None:
    with _batch_in_another_thread():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other thread's batch still runs
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_during_another_threads_batch_gets_the_collector_back(
        collector_on: None) -> None:
    # Another thread is inside a batch (collector paused) when this thread forks: in
    # the child that batch never ends, so the child must not inherit its pause.
    with _batch_in_another_thread():
        assert not gc.isenabled()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then run a batch of its own and report again
            try:
                first = gc.isenabled()
                with collector_paused():
                    pass
                os.write(write, bytes([first, gc.isenabled()]))
            finally:
                os._exit(0)
        os.close(write)
        got = os.read(read, 2)
        os.close(read)
        os.waitpid(pid, 0)
    assert got == bytes([True, True])
    assert gc.isenabled()  # the parent's batch ended: on again here too
