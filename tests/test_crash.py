"""Durability across a crash: SIGKILL a writer mid-stream, then look.

A child process (``tests/support/workers.py remember-stream``) writes single
memories and three-memory transactions as fast as it can and prints each one
only after the call that wrote it returned. We kill it with SIGKILL at a few
different moments. Afterwards every acknowledged write must be there, the
database must open and verify, and every transaction must be all or nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import engramdb

WORKER = Path(__file__).parent / "support" / "workers.py"
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _run_and_kill(path: Path, acks_before_kill: int, extra_delay_s: float,
                  mode: str = "remember-stream") -> list[str]:
    """Start the writer, SIGKILL it, return every complete line it printed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(WORKER), mode, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: list[str] = []
    enough = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if raw.endswith(b"\n"):  # a line cut by the kill was never acknowledged
                lines.append(raw.decode().rstrip("\n"))
            if len(lines) > acks_before_kill:
                enough.set()
        enough.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if not enough.wait(timeout=60):
        proc.kill()
        pytest.fail("the writer never started acknowledging writes")
    time.sleep(extra_delay_s)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert alive, f"the writer died before the kill:\n{stderr}"
    assert proc.returncode == -signal.SIGKILL
    return lines


@pytest.mark.parametrize(("acks_before_kill", "extra_delay_s"),
                         [(1, 0.0), (20, 0.01), (200, 0.05), (50, 0.3)])
def test_sigkill_mid_stream_keeps_every_acknowledged_write(
        tmp_path: Path, acks_before_kill: int, extra_delay_s: float) -> None:
    path = tmp_path / "engram.db"
    lines = _run_and_kill(path, acks_before_kill, extra_delay_s)
    assert lines[0] == "ready"
    acked: list[str] = []
    acked_groups: dict[int, list[str]] = {}
    for line in lines[1:]:
        kind, *rest = line.split()
        if kind == "one":
            acked.extend(rest)
        else:
            assert kind == "tx"
            acked_groups[int(rest[0])] = rest[1:]
            acked.extend(rest[1:])
    assert len(acked) >= acks_before_kill
    assert all(_ID.match(i) for i in acked)

    with engramdb.open(path, embedder=None) as db:
        report = db.verify()
        assert report.ok, report
        for mid in acked:
            m = db.get(mid)
            assert m.version == 1 and m.status == "active"
        for group, ids in acked_groups.items():
            assert {db.get(i).metadata["group"] for i in ids} == {group}

        # Everything in the log, acknowledged or not, is whole: a transaction
        # left either all three of its memories or none.
        stored: dict[str, int] = {}
        sizes: dict[int, int] = {}
        for event in db.changes(0):
            if event.kind != "memory.remembered":
                continue
            row = event.payload["effects"][0]["row"]  # type: ignore[index]
            stored[row["id"]] = row["metadata"]["group"]
            sizes[row["metadata"]["group"]] = row["metadata"]["size"]
        per_group = Counter(stored.values())
        assert all(per_group[g] == sizes[g] for g in per_group), per_group
        assert set(acked) <= set(stored)
        # At most the one write in flight at the kill is stored unacknowledged.
        unacked_groups = set(per_group) - {stored[i] for i in acked}
        assert len(unacked_groups) <= 1
        # And the database still takes writes after the crash.
        after = db.remember("written after the crash", namespace="crash/after")
        assert db.get(after.id).text == "written after the crash"
        assert db.verify().ok


@pytest.mark.parametrize(("acks_before_kill", "extra_delay_s"), [(5, 0.0), (300, 0.05)])
def test_sigkill_keeps_every_acknowledged_deferred_outcome(
        tmp_path: Path, acks_before_kill: int, extra_delay_s: float) -> None:
    # A deferred tool outcome returns before its flush; the process dying right
    # after must still lose none (only the machine crashing could).
    path = tmp_path / "engram.db"
    lines = _run_and_kill(path, acks_before_kill, extra_delay_s, mode="outcome-stream")
    assert lines[0] == "ready"
    outcomes = [int(line.split()[1]) for line in lines[1:] if line.startswith("outcome ")]
    remembered = [line.split()[1] for line in lines[1:] if line.startswith("one ")]
    assert len(outcomes) + len(remembered) >= acks_before_kill
    with engramdb.open(path, embedder=None) as db:
        assert db.verify().ok
        (fetch,) = db.tool_stats("fetch")
        # Every acknowledged outcome is counted, plus at most the one in flight.
        assert len(outcomes) <= fetch.calls <= len(outcomes) + 1
        acked_ok = sum(1 for n in outcomes if n % 3 != 0)
        assert acked_ok <= fetch.successes <= acked_ok + 1
        for mid in remembered:
            assert db.get(mid).text.startswith("stream note")
