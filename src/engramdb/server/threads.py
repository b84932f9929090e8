"""Recalls, and the door's key checks, each on a bounded number of threads per process.

One server process runs Python on one thread at a time (the GIL). When 16
concurrent recalls each get a thread of the pool (up to 40), they take turns
at that lock every few milliseconds, and every turn costs wake-ups, context
switches and cold caches: on 2 cores, 16 clients, the server spent 10-16 ms of
CPU per recall this way against 8-8.6 ms with one such thread per process in
the same rounds (raw-socket clients, BENCHMARKS.md ``http16``). The calls
bounded here wait their turn in arrival order instead (anyio's
:class:`~anyio.CapacityLimiter` is first in, first out), which also keeps a
request's latency close to its own work rather than shared out across all.

Only short engine calls come here (a recall, an API-key check); anything that
may block for long (the change stream's wait, a batch) keeps the pool's own
bound, so it can never hold a turn the others need.

The door's API-key checks have a bound of their own (an :class:`EngineThreads`
of the same size beside the recalls'), never a turn on the recall threads: a
recall can take long (the first one after opening a large database without a
vector snapshot builds it: tens of seconds at 1M memories), and every request
of the process, writes and reads included, starts with a key check, so with
one shared thread they all waited for that recall to end. A key check costs
~0.03 ms; its thread is idle nearly always.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

__all__ = ["EngineThreads"]

T = TypeVar("T")


class EngineThreads:
    """Runs engine calls on at most ``most`` threads at once (``None``: the pool's bound).

    A limiter belongs to one event loop; each loop that serves the app (a test
    client starts its own) gets its own.
    """

    def __init__(self, most: int | None) -> None:
        self.most = most
        self._limiters: weakref.WeakKeyDictionary[Any, anyio.CapacityLimiter] = \
            weakref.WeakKeyDictionary()

    def _limiter(self) -> anyio.CapacityLimiter | None:
        if self.most is None:
            return None
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self.most)
        return limiter

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on a worker thread, when a turn is free."""
        return await anyio.to_thread.run_sync(call, *args, limiter=self._limiter())
