"""Run worker processes that each put one report on a queue, and collect the reports."""

from __future__ import annotations

import queue
from collections.abc import Sequence
from typing import Any

import pytest

__all__ = ["assert_log_whole", "gather"]


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


def assert_log_whole(events: Sequence[Any], acked: Sequence[tuple[str, int]],
                     start: Any) -> None:
    """Concurrent writers' log after ``start`` (the head before them): every acknowledged
    memory remembered once and none unacknowledged, seq and tx without gaps, and each
    write's returned tx the log's."""
    remembered = [e.subject_ref for e in events if e.kind == "memory.remembered"]
    assert sorted(remembered) == sorted(i for i, _ in acked)  # each once, none lost
    assert [e.seq for e in events] == list(range(start.seq + 1, start.seq + 1 + len(events)))
    txs = [e.tx for e in events]
    assert txs == sorted(txs) and set(txs) == set(range(start.tx + 1, txs[-1] + 1))
    by_id = dict(acked)
    for e in events:
        if e.kind == "memory.remembered":
            assert by_id[e.subject_ref] == e.tx  # what remember returned is the log's
