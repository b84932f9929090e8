"""Erasure reaches every text-bearing table of the layers, not only assertion memories.

Each test plants a canary subject identifier in one kind of row (a tool
outcome's error and metadata, a working block, an episode and its summary, a
procedure, a decision's description and outcome, a recall's query, a conflict
on the subject), next to a second canary that must survive, then calls
``forget(subject=canary)`` and scans every byte the engine wrote: the SQLite
main file, WAL and shm (or, on PostgreSQL, every relation file of the
database after the documented purge), and a fresh export. The erased canary
must be nowhere, the survivor still there, and ``verify`` must pass.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import engramdb
from engramdb.engine._commit import commit
from engramdb.storage.base import Insert
from tests.support.clock import WallClock

_names = itertools.count()


def canary(tag: str) -> str:
    return f"user:QZV{tag}CANARY"


GONE, KEPT = canary("gone"), canary("kept")
ERASED_LABEL = re.compile(r"\[erased [0-9a-f]{12}\]")


def plant_tool_outcome(db: engramdb.Database, who: str, keep: bool) -> None:
    db.tool_outcome("crm_lookup", ok=False, latency_ms=120.0,
                    error=f"no CRM record for {who} (HTTP 404)",
                    metadata={"customer": who, "note": f"asked about {who}"})
    with db.transaction() as tx:  # a batch: one event carries several outcomes
        tx.tool_outcome("crm_lookup", ok=True, latency_ms=80.0, metadata={"for": who})
        tx.tool_outcome("crm_lookup", ok=True, latency_ms=70.0, error=None)


def plant_block(db: engramdb.Database, who: str, keep: bool) -> None:
    name = "customer-kept" if keep else "customer"
    b = db.pin(name, f"Talking to {who} about the renewal")
    db.pin(name, f"Talking to {who}; renewal agreed", expected_version=b.version)


def plant_episode(db: engramdb.Database, who: str, keep: bool) -> None:
    session = "s-kept" if keep else "s-gone"
    db.episode(session, "user", f"Hello, I am {who} and I need a flight to Oslo")
    db.episode(session, "assistant", "Booked the 9:40 flight to Oslo")
    db.summarize(session, method="extractive")


def plant_procedure(db: engramdb.Database, who: str, keep: bool) -> None:
    name = "vip-kept" if keep else "vip"
    db.procedure(name, f"For {who}: call before shipping, never email")


def plant_decision(db: engramdb.Database, who: str, keep: bool) -> None:
    ns = "crm/terms-kept" if keep else "crm/terms-gone"
    m = db.remember("Renewal terms are 12 months", namespace=ns)
    r = db.recall("renewal terms", namespace=ns, k=1)
    assert r.hits and r.hits[0].memory.id == m.id
    db.decide(f"offer the renewal to {who}", basis=r.receipt, outcome={"customer": who},
              metadata={"ticket": f"T-1 {who}"})


def plant_read(db: engramdb.Database, who: str, keep: bool) -> None:
    db.remember(f"{who} prefers phone calls", namespace="crm/prefs")
    db.recall(f"how does {who} like to be contacted", namespace="crm/**", k=3)
    db.flush_reads()


def plant_conflict(db: engramdb.Database, who: str, keep: bool) -> None:
    db.remember("plan is gold", namespace="crm/plans", subject=who, predicate="plan",
                value="gold")
    db.remember("plan is silver", namespace="crm/plans", subject=who, predicate="plan",
                value="silver")
    assert db.conflicts(namespace="crm/**")


PLANTERS: dict[str, Callable[[engramdb.Database, str, bool], None]] = {
    "tool_outcomes": plant_tool_outcome, "working_blocks": plant_block,
    "episodes_and_summaries": plant_episode, "procedures": plant_procedure,
    "decisions": plant_decision, "read_audit": plant_read, "conflicts": plant_conflict,
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def opened(request, tmp_path, embedder
           ) -> Iterator[tuple[engramdb.Database, Callable[[], list[Path]]]]:
    """A database and a function returning every file that holds its bytes."""
    if request.param == "sqlite":
        db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
        try:
            yield db, lambda: [p for p in tmp_path.rglob("*") if p.is_file()]
        finally:
            db.close()
        return

    server = request.getfixturevalue("pg")
    url = server.fresh_database(f"erase_layers_{next(_names)}")
    db = engramdb.open(url, embedder=embedder)

    try:
        yield db, lambda: _relation_files(url)
    finally:
        db.close()


def _relation_files(url: str) -> list[Path]:
    """Every file of the PostgreSQL database's relations, after a checkpoint."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        root = Path(conn.execute("SHOW data_directory").fetchone()[0])
        conn.execute("CHECKPOINT")
        rels = [r[0] for r in conn.execute(
            "SELECT pg_relation_filepath(oid) FROM pg_class "
            "WHERE pg_relation_filepath(oid) IS NOT NULL").fetchall()]
    files = []
    for rel in rels:
        files += [p for p in (root / rel).parent.glob(Path(rel).name + "*") if p.is_file()]
    return files


def _found(files: list[Path], needle: str) -> list[str]:
    data = needle.encode()
    return [p.name for p in files if data in p.read_bytes()]


def _export(db: engramdb.Database) -> str:
    buf = io.StringIO()
    db.export(buf)
    return buf.getvalue()


@pytest.mark.parametrize("table", sorted(PLANTERS))
def test_forget_subject_leaves_no_byte_of_it_in_the_layer_tables(table, opened):
    db, files = opened
    PLANTERS[table](db, KEPT, True)
    PLANTERS[table](db, GONE, False)
    assert GONE in _export(db)

    receipt = db.forget(subject=GONE, reason="GDPR Art. 17 request")

    assert db.verify().ok
    dump = _export(db)
    assert GONE not in dump
    assert KEPT in dump or table == "read_audit"  # a read keeps only a query digest
    where = files()
    assert _found(where, GONE) == []
    if table != "read_audit":
        assert _found(where, KEPT), "the scan must see the surviving canary"
    # the logged selector is a keyed hash, not the subject
    logged = [r["selector"] for r in db.storage.scan("erasures")]
    assert logged and all(GONE not in str(s) for s in logged)
    assert receipt.selector == {"subject": GONE}  # the caller's own receipt says it


def test_erased_tool_outcomes_keep_their_counts_and_others_keep_their_text(opened):
    db, _ = opened
    plant_tool_outcome(db, KEPT, True)
    plant_tool_outcome(db, GONE, False)
    before = db.tool_stats(tool="crm_lookup")

    receipt = db.forget(subject=GONE, reason="GDPR request")

    assert receipt.counts["tool_outcomes_redacted"] == 2
    (after,) = db.tool_stats(tool="crm_lookup")
    # the outcomes happened: their counts and latencies stay, their text is gone
    assert (after.calls, after.successes, after.latency_p50_ms) == (
        before[0].calls, before[0].successes, before[0].latency_p50_ms) == (6, 4, 80.0)
    assert ("[erased]", 1) in after.errors and all(GONE not in e for e, _ in after.errors)
    rows = list(db.storage.scan("tool_outcomes"))
    # an erased error is an opaque label, the key its tool_stats row was renamed to
    assert sum(1 for r in rows if ERASED_LABEL.fullmatch(str(r["error"]))) == 1
    assert sum(1 for r in rows if KEPT in str(r["error"]) + str(r["metadata"])) == 2
    assert db.forget(subject=GONE, reason="again").counts["tool_outcomes_redacted"] == 0


def test_a_subject_is_a_whole_token_not_a_prefix(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    try:
        db.tool_outcome("crm", ok=False, error="no record for user:42")
        db.tool_outcome("crm", ok=False, error="no record for user:420")
        m = db.episode("s", "user", "I am user:4200")
        receipt = db.forget(subject="user:42", reason="request")
        assert receipt.counts["tool_outcomes_redacted"] == 1
        assert receipt.memories == ()
        assert db.get(m.id).text == "I am user:4200"
        errors = sorted(str(r["error"]) for r in db.storage.scan("tool_outcomes"))
        assert ERASED_LABEL.fullmatch(errors[0]) and errors[1] == "no record for user:420"
    finally:
        db.close()


def test_the_logged_subject_is_a_keyed_hash_the_key_holder_can_confirm(opened):
    db, _ = opened
    db.remember(f"{GONE} asked for a refund", namespace="crm")
    receipt = db.forget(subject=GONE, reason="GDPR request")
    key = bytes.fromhex(str(db.storage.meta("erasure_key")))
    (row,) = [r for r in db.storage.scan("erasures") if r["id"] == receipt.erasure_id]
    expected = hmac.new(key, GONE.encode(), hashlib.sha256).hexdigest()
    assert row["selector"] == {"subject": f"hmac-sha256:{expected}"}
    (event,) = [e for e in db.changes(since=0, limit=10_000) if e.seq == receipt.seq]
    assert event.payload["selector"] == row["selector"]
    other = hmac.new(key, KEPT.encode(), hashlib.sha256).hexdigest()
    assert other not in str(row["selector"])  # it names this subject, no other


def test_maintain_finishes_a_purge_a_reader_blocked(tmp_path, embedder):
    import sqlite3

    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=embedder)
    try:
        db.remember(f"{GONE} asked for a refund", namespace="crm")
        db.remember(f"{KEPT} asked for a refund", namespace="crm")
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM memories").fetchall()  # an old snapshot
        started = time.monotonic()
        receipt = db.forget(subject=GONE, reason="GDPR request")
        assert receipt.files["wal_busy"] is True
        # Left to maintain, not waited out: the writers' 60 s busy timeout would
        # hold every other writer off for that long (the checkpoint blocks them).
        assert time.monotonic() - started < 30
        reader.close()

        report = db.maintain()

        assert report.files["wal_busy"] is False and report.changed == 0
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert _found(files, GONE) == [] and _found(files, KEPT)
        assert db.maintain().files == {}  # nothing pending any more
    finally:
        db.close()


@pytest.mark.postgres
def test_a_postgres_purge_waits_out_an_older_snapshot_or_leaves_it_to_maintain(
        pg, embedder):
    """``VACUUM FULL`` copies a deleted row that an open snapshot may still see: a
    purge that ran past such a reader would say done and leave the bytes on disk."""
    import psycopg

    url = pg.fresh_database(f"erase_reader_{next(_names)}")
    db = engramdb.open(url, embedder=embedder)
    reader = psycopg.connect(url)
    try:
        db.remember(f"{GONE} asked for a refund", namespace="crm")
        db.remember(f"{KEPT} asked for a refund", namespace="crm")
        db.remember(f"{canary('first')} asked for a refund", namespace="crm")
        # The engine's own connections hold no old snapshot between calls.
        alone = db.forget(subject=canary("first"), reason="GDPR request")
        assert alone.files["readers_busy"] is False
        # A snapshot taken before the erasure, on no table the purge locks.
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT 1").fetchall()

        receipt = db.forget(subject=GONE, reason="GDPR request")

        assert receipt.files["readers_busy"] is True
        assert db.storage.meta("purge_pending") == "1"
        reader.rollback()
        report = db.maintain()
        assert report.files["readers_busy"] is False
        files = _relation_files(url)
        assert _found(files, GONE) == [] and _found(files, KEPT)
        assert db.maintain().files == {}  # nothing pending any more
    finally:
        reader.close()
        db.close()


def test_a_backup_made_after_the_erasure_restores_without_it(opened, tmp_path):
    from engramdb.engine import import_database

    db, _ = opened
    for plant in (plant_tool_outcome, plant_decision, plant_conflict, plant_episode):
        plant(db, KEPT, True)
        plant(db, GONE, False)
    db.forget(subject=GONE, reason="GDPR request")
    backup = _export(db)
    target = tmp_path / "restored" / "engram.db"
    target.parent.mkdir()

    import_database(target, io.StringIO(backup), embedder=None)

    restored = engramdb.open(target, embedder=None)
    try:
        assert restored.storage.head() == db.storage.head()
        report = restored.verify()
        assert report.ok, report.problem
        for table in ("tool_outcomes", "decisions", "conflicts"):
            assert list(restored.storage.scan(table)) == list(db.storage.scan(table))
    finally:
        restored.close()
    files = [p for p in target.parent.rglob("*") if p.is_file()]
    assert _found(files, GONE) == [] and _found(files, KEPT)


def _stat_labels(db: engramdb.Database) -> list[str]:
    return sorted(str(r["label"]) for r in db.storage.scan("tool_stats") if r["kind"] == "error")


def test_an_erased_error_leaves_the_aggregate_counting_under_an_opaque_label(tmp_path):
    # The aggregate keys error rows by an error's first 200 characters: a subject there
    # renames the row, and every outcome it counts (the ones that do not name the subject
    # too: they share the label) keeps counting under the new name.
    long_tail = "x" * 210
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    try:
        db.tool_outcome("crm", ok=False, error=f"timeout for {GONE}")
        db.tool_outcome("crm", ok=False, error=f"timeout for {GONE}")
        db.tool_outcome("crm", ok=False, error=f"{long_tail} then {GONE}")  # past the label
        db.tool_outcome("crm", ok=False, error=f"{long_tail} and nobody else")
        db.tool_outcome("crm", ok=False, error=f"timeout for {KEPT}")
        before = db.tool_stats("crm")[0]

        db.forget(subject=GONE, reason="GDPR request")

        after = db.tool_stats("crm")[0]
        assert (after.calls, after.successes) == (before.calls, before.successes) == (5, 0)
        assert dict(after.errors) == {"[erased]": 2, long_tail[:200]: 2,
                                      f"timeout for {KEPT}": 1}
        labels = _stat_labels(db)
        assert not any(GONE in label for label in labels)
        assert sum(1 for label in labels if ERASED_LABEL.fullmatch(label)) == 1
        errors = [str(r["error"]) for r in db.storage.scan("tool_outcomes")]
        assert not any(GONE in e for e in errors)
        assert f"{long_tail[:200]} [erased]" in errors  # what precedes the subject stays
        assert f"{long_tail} and nobody else" in errors
        assert db.verify().ok
        db.tool_outcome("crm", ok=False, error=f"timeout for {GONE}")  # it happens again
        assert dict(db.tool_stats("crm")[0].errors)[f"timeout for {GONE}"] == 1
        assert db.verify().ok
    finally:
        db.close()


def test_erasure_restates_the_aggregate_counted_for_outcomes_older_than_it(tmp_path):
    # Outcomes written before the aggregate existed are counted by one tool.stats event
    # on open; erasing their text must restate that event too, or verify fails.
    path = tmp_path / "old.db"
    with engramdb.open(path, embedder=None) as db:
        for err in (f"timeout for {GONE}", f"timeout for {KEPT}"):
            with db.storage.write("admin") as w:
                commit(w, "tool.outcome", "admin", "crm", None, [Insert("tool_outcomes", {
                    "id": f"o{w.tx}", "principal": "admin", "namespace": "crm",
                    "tool": "crm", "ok": 0, "latency_ms": 5.0, "error": err,
                    "metadata": {}, "tx": w.tx, "recorded_at": w.recorded_at})])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM meta WHERE key IN "
                     "('tool_stats_filled', 'tool_stats_hourly_filled')")
    with engramdb.open(path, embedder=None) as db:
        assert [e.kind for e in db.changes(0)].count("tool.stats") == 1
        db.forget(subject=GONE, reason="GDPR request")
        assert dict(db.tool_stats("crm")[0].errors) == {"[erased]": 1,
                                                         f"timeout for {KEPT}": 1}
        assert db.verify().ok
        dump = _export(db)
        assert GONE not in dump and KEPT in dump


def test_an_erased_error_is_renamed_in_every_hour_of_the_hourly_aggregate(tmp_path,
                                                                          monkeypatch):
    # tool_stats(since=) reads tool_stats_hourly, keyed by the same labels per hour:
    # the erased label is renamed in each hour, to the one opaque label, and a window
    # over both hours counts what it counted before.
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    try:
        clock = WallClock(monkeypatch, WallClock.next_hour())
        h = clock.now
        for minutes in (10, 70, 75):  # two hours
            clock.at(h + timedelta(minutes=minutes))
            db.tool_outcome("crm", ok=False, error=f"timeout for {GONE}")
            db.tool_outcome("crm", ok=False, error=f"timeout for {KEPT}")
        clock.at(h + timedelta(minutes=80))
        before = db.tool_stats("crm", since=h)[0]
        assert dict(before.errors) == {f"timeout for {GONE}": 3, f"timeout for {KEPT}": 3}

        db.forget(subject=GONE, reason="GDPR request")

        whole = db.tool_stats("crm", since=h)[0]
        edge = db.tool_stats("crm", since=h + timedelta(minutes=71))[0]  # one of hour 2
        assert dict(whole.errors) == {"[erased]": 3, f"timeout for {KEPT}": 3}
        assert dict(edge.errors) == {"[erased]": 1, f"timeout for {KEPT}": 1}
        hourly = [r for r in db.storage.scan("tool_stats_hourly") if r["kind"] == "error"]
        assert len(hourly) == 4  # two labels in each of two hours
        erased = {str(r["label"]) for r in hourly if KEPT not in str(r["label"])}
        assert len(erased) == 1 and ERASED_LABEL.fullmatch(erased.pop())
        assert set(_stat_labels(db)) == {str(r["label"]) for r in hourly}
        assert db.verify().ok
    finally:
        db.close()
