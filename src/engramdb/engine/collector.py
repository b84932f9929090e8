"""A batch write with the cyclic garbage collector paused (``remember_many``).

A batch of 2,000 memories allocates tens of thousands of container objects
(drafts, row dicts, effects, log rows, the returned memories) and frees almost
all of them before it returns; none of them form a reference cycle (checked:
a collection right after an episodic or a semantic batch finds nothing to
free). CPython's collector still scans them as they pile up: ~200 young-
generation passes and one or two full passes over the whole heap (the caller's
own objects included) per 10,000 memories, 3-6 us of every episodic memory's
~55 (BENCHMARKS.md, ``sqlb9``). Paused for the call, the collector resumes
after it and scans once what is still alive then; what a batch frees is freed
by reference counting as before, so memory use does not grow.

The collector is process-wide: it is paused while any batch runs (a count
shared by threads) and turned back on when the last one ends, unless it was
off before the first began (then it is left off). A process forked while
another thread's batch runs starts with no batch running: the collector is
turned back on in the child if it was on before that batch.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]

_lock = threading.Lock()
_running = 0  # batches running with the collector paused
_resume = False  # whether the collector was on when the first of them began


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (see the module)."""
    global _running, _resume
    with _lock:
        if _running == 0:
            _resume = gc.isenabled()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _resume:
                gc.enable()


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: another thread's batch never ends
    # here, so its count would keep the collector off for the child's whole life. A
    # lock that thread held at the fork is replaced too.
    global _lock, _running
    _lock = threading.Lock()
    if _running:
        _running = 0
        if _resume:
            gc.enable()


os.register_at_fork(after_in_child=_after_fork_in_child)
