"""Clocks around named stages of a recall, for the recall benchmarks.

``clock(owner, "search_text", "full text", wall=W, cpu=C)`` replaces the method
(or module function) ``owner.search_text`` by a wrapper that adds each call's
wall time (``time.perf_counter``) to ``W["full text"]`` and its thread CPU time
(``time.thread_time``) to ``C["full text"]``; either may be left out. Stages are
found by name, so a script runs unchanged against an older checkout: with
``optional=True`` a name the checkout does not have is skipped.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

__all__ = ["clock"]


def clock(owner: Any, name: str, label: str, *,
          wall: MutableMapping[str, float] | None = None,
          cpu: MutableMapping[str, float] | None = None,
          optional: bool = False) -> None:
    """Time every call of ``owner.name`` under ``label`` (see the module)."""
    fn = getattr(owner, name, None)
    if fn is None:
        if optional:
            return
        raise AttributeError(f"{owner!r} has no stage {name!r}")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            if wall is not None:
                wall[label] = wall.get(label, 0.0) + time.perf_counter() - w
            if cpu is not None:
                cpu[label] = cpu.get(label, 0.0) + time.thread_time() - c

    setattr(owner, name, wrapper)
