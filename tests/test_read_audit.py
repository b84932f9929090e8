"""The read audit: who read which memory version and when, batched into the log.

Real SQLite files. Crash behaviour is tested with a real child process that
dies with ``os._exit`` (no cleanup, no atexit), which is what a crash looks
like to the database.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import engramdb
from engramdb.engine import import_database
from engramdb.engine.read_audit import read_rows
from engramdb.errors import InvalidInput, InvalidNamespace, NotFound, PermissionDenied
from tests.conftest import matrix
from tests.support.audit import settled


@pytest.fixture
def team(tmp_path: Path) -> Iterator[engramdb.Database]:
    db = _team(engramdb.open(tmp_path / "engram.db", embedder=None))
    try:
        yield db
    finally:
        db.close()


def _reads_events(db: engramdb.Database) -> int:
    # Straight from storage: reading the change feed is itself an audited read.
    return sum(1 for e in db.storage.events(after=0, limit=100_000) if e.kind == "reads.recorded")


def _team(db: Any) -> Any:
    for name in ("planner", "risk", "auditor"):
        db.admin.create_agent(name)
        db.admin.grant(name, "acme/**", ["read"])
    db.admin.grant("auditor", "acme/**", ["admin"])
    return db


@pytest.mark.parametrize("cell", matrix(embed=False), indirect=True)
@pytest.mark.uses("who_read", "verify")
def test_recall_and_context_are_recorded_and_who_read_answers(cell):
    db = _team(cell.db)
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    other = db.remember("Company Y is private", namespace="acme/research")
    start = datetime.now(UTC)
    db.as_agent("planner").recall("Company X outlook", namespace="acme/**")
    db.as_agent("risk").context("Company X outlook", budget_tokens=100)
    db.update(m.id, text="Company X outlook is uncertain")
    db.as_agent("planner").recall("outlook uncertain")
    end = datetime.now(UTC)

    records = db.who_read(m.id)
    assert [(r.principal, r.version) for r in records] == [
        ("planner", 1), ("risk", 1), ("planner", 2)]
    assert all(start <= r.time <= end for r in records)
    principal, when, version = records[0]  # a plain (principal, time, version) tuple
    assert (principal, version) == ("planner", 1) and when == records[0].time
    assert [r.principal for r in db.who_read(other.id)] == ["planner", "risk"]
    assert db.as_agent("auditor").who_read(m.id) == records

    # The stored rows, read from the engine underneath whichever door was used.
    rows = {r["principal"] + str(len(r["items"])): r
            for r in read_rows(cell.engine.storage, cell.engine.storage)}
    assert rows["planner2"]["query_digest"] == hashlib.sha256(b"Company X outlook").hexdigest()
    assert rows["planner2"]["namespaces"] == ["acme/research"]
    assert db.verify().ok


def test_reads_events_are_visible_to_admins_only(team):
    db = team
    db.remember("Company X outlook is positive", namespace="acme/research")
    db.as_agent("planner").recall("Company X")
    db.flush_reads()
    assert _reads_events(db) == 1
    for agent in ("planner", "auditor"):
        assert [e for e in db.as_agent(agent).changes() if e.kind == "reads.recorded"] == []


def test_who_read_needs_admin_on_the_namespace(team):
    db = team
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    hidden = db.remember("board minutes", namespace="board")
    with pytest.raises(PermissionDenied):
        db.as_agent("planner").who_read(m.id)
    with pytest.raises(NotFound):
        db.as_agent("auditor").who_read(hidden.id)  # cannot read it: looks unknown
    with pytest.raises(NotFound):
        db.who_read("no-such-memory")


def test_reads_are_written_in_batches_and_on_close(tmp_path):
    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=None)
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    db.read_audit.batch_size = 10
    db.read_audit.interval_s = 3600
    head = db.storage.head().seq
    for _ in range(25):
        db.recall("Company X")
    # The flusher thread writes the two full batches of 10 (not the reads that filled
    # them); the open batch's 5 stay buffered.
    assert settled(db, 5) == 5
    assert db.storage.head().seq == head + 2
    db.close()
    with engramdb.open(path, embedder=None) as again:
        assert again.storage.head().seq == head + 3
        assert len(again.who_read(m.id)) == 25
        assert again.verify().ok


def test_reads_are_flushed_by_age_and_before_verify_and_export(team, tmp_path):
    db = team
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    db.read_audit.interval_s = 0.05
    db.recall("Company X")
    assert db.read_audit.pending == 1
    time.sleep(0.1)
    db.recall("Company X")  # the oldest buffered read is over the interval: written now
    assert settled(db, 0) == 0 and _reads_events(db) == 1

    db.read_audit.interval_s = 3600
    db.recall("Company X")
    head = db.storage.head().seq
    assert db.verify().ok and db.storage.head().seq == head + 1  # verify flushed first
    db.recall("Company X")
    out = io.StringIO()
    db.export(out)
    import_database(tmp_path / "copy.db", io.StringIO(out.getvalue()), embedder=None)
    with engramdb.open(tmp_path / "copy.db", embedder=None) as copy:
        assert len(copy.who_read(m.id)) == 4 == len(db.who_read(m.id))


def test_readers_in_several_threads_are_all_named_after_the_flusher_writes(tmp_path):
    # The batches are written by the audit's flusher thread, not by the read that fills
    # one: readers in four threads fill several batches while it writes; who_read names
    # every read of every reader, exactly once, in the handle and after reopening.
    path = tmp_path / "engram.db"
    db = _team(engramdb.open(path, embedder=None))
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    db.read_audit.batch_size = 7
    db.read_audit.interval_s = 3600
    head = db.storage.head().seq
    readers = {"planner": 23, "risk": 17, "auditor": 11, "admin": 9}

    def read(name: str, times: int) -> None:
        who = db if name == "admin" else db.as_agent(name)
        for i in range(times):
            assert who.recall(f"Company X outlook {i}", namespace="acme/**").hits

    threads = [threading.Thread(target=read, args=item) for item in readers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert settled(db, 60 % 7) == 60 % 7  # the full batches written, the open one kept
    assert db.storage.head().seq == head + 60 // 7
    named = Counter(r.principal for r in db.who_read(m.id))  # flushes the open batch
    assert named == Counter(readers)
    assert db.read_audit.pending == 0 and db.verify().ok
    db.close()
    with engramdb.open(path, embedder=None) as again:
        assert Counter(r.principal for r in again.who_read(m.id)) == named


def test_background_flusher_writes_an_idle_buffer(team):
    db = team
    db.remember("Company X outlook is positive", namespace="acme/research")
    db.read_audit.interval_s = 0.05
    db.read_audit.start_background()
    db.recall("Company X")
    deadline = time.monotonic() + 5
    while db.read_audit.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert db.read_audit.pending == 0 and _reads_events(db) == 1


def test_audit_modes_per_namespace(team):
    db = team
    db.remember("public note on X", namespace="acme/pub")
    db.remember("secret note on X", namespace="acme/secret/deals")
    db.remember("plain note on X", namespace="plain")
    db.set_read_audit("acme/**", "sampled", rate=0.25)
    db.set_read_audit("acme/secret/**", "off")
    assert db.read_audit_mode("acme/pub") == ("sampled", 0.25)
    assert db.read_audit_mode("acme/secret/deals") == ("off", 1.0)
    assert db.read_audit_mode("plain") == ("all", 1.0)
    db.read_audit.seed(7)
    for ns in ("acme/pub", "acme/secret/**", "plain"):
        for _ in range(400):
            db.recall("note", namespace=ns)
    db.flush_reads()
    per_ns: dict[str, int] = {}
    for row in read_rows(db.storage, db.storage):
        for ns in row["namespaces"]:
            per_ns[ns] = per_ns.get(ns, 0) + 1
    assert "acme/secret/deals" not in per_ns
    assert per_ns["plain"] == 400
    assert 60 <= per_ns["acme/pub"] <= 140  # binomial(400, 0.25): mean 100, sd 8.7
    # Changing a setting is a logged event; the merge keeps other keys of the row.
    db.admin.configure_namespace("acme/**", trust_floor=0.3)
    db.set_read_audit("acme/**", "all")
    row = db.storage.fetch("namespace_settings", {"pattern": "acme/**"})[0]
    assert row["settings"] == {"read_audit": "all", "trust_floor": 0.3}
    assert db.verify().ok


def test_bad_audit_settings_write_nothing(team):
    db = team
    head = db.storage.head()
    for args, kwargs, error in [
        (("acme/**", "most"), {}, InvalidInput),
        (("acme/**", "sampled"), {}, InvalidInput),
        (("acme/**", "sampled"), {"rate": 1.5}, InvalidInput),
        (("acme/**", "all"), {"rate": 0.5}, InvalidInput),
        (("Acme//x", "off"), {}, InvalidNamespace),
    ]:
        with pytest.raises(error):
            db.set_read_audit(*args, **kwargs)
    assert db.storage.head() == head


_CHILD = textwrap.dedent("""
    import os, sys, time
    import engramdb
    db = engramdb.open(sys.argv[1], embedder=None)
    db.read_audit.batch_size = 10
    db.read_audit.interval_s = 3600
    db.read_audit.synchronous = sys.argv[2] == "sync"
    for _ in range(25):
        db.recall("Company X")
    # Until the flusher thread has written the full batches (20 reads): the open
    # batch's 5 are what a crash now loses.
    while db.read_audit.pending > 5:
        time.sleep(0.01)
    os._exit(0)  # a crash: no close, no atexit
""")


@pytest.mark.parametrize("mode", ["batched", "sync"])
def test_a_crash_loses_only_the_unflushed_buffer(tmp_path, mode):
    path = tmp_path / "engram.db"
    with engramdb.open(path, embedder=None) as db:
        m = db.remember("Company X outlook is positive", namespace="acme/research")
    subprocess.run([sys.executable, "-c", _CHILD, str(path), mode], check=True, timeout=120)
    with engramdb.open(path, embedder=None) as db:
        assert len(db.who_read(m.id)) == (20 if mode == "batched" else 25)
        assert db.verify().ok


def test_reads_inside_a_transaction_are_recorded_whether_it_commits_or_not(team):
    db = team
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    with db.as_agent("planner").transaction() as tx:
        assert tx.get(m.id).text == "Company X outlook is positive"
    with pytest.raises(RuntimeError):
        with db.as_agent("risk").transaction() as tx:
            tx.get(m.id)
            raise RuntimeError("the agent gave up; nothing is written")
    assert [(r.principal, r.version) for r in db.who_read(m.id)] == [
        ("planner", 1), ("risk", 1)]
    assert db.verify().ok


def test_the_quarantine_queue_is_a_recorded_read(team):
    db = team
    db.admin.configure_namespace("acme/**", trust_floor=0.6)
    db.admin.create_agent("intern", trust=0.2)
    db.admin.grant("intern", "acme/**", ["read", "write"])
    m = db.as_agent("intern").remember("the merger closes Friday", namespace="acme/research")
    assert m.status == "quarantined" and db.who_read(m.id) == []
    assert [q.id for q in db.admin.quarantined("acme/**")] == [m.id]
    assert [r.principal for r in db.who_read(m.id)] == [db.principal.name]
