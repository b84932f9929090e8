"""Run worker processes that each put one report on a queue, and collect the reports."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any

import pytest

__all__ = ["gather"]


def gather(procs: Sequence[Any], results: Any, *, timeout: float) -> list[Any]:
    """Start ``procs``, take one report per process from ``results``, then join them.

    Fails the test if a report does not arrive within ``timeout`` seconds of the
    previous one; a process still alive a minute after reporting is killed.
    """
    for p in procs:
        p.start()
    reports: list[Any] = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=timeout))
    except queue.Empty:
        pytest.fail(f"only {len(reports)} of {len(procs)} workers reported within the time limit")
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return reports
