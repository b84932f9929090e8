"""The read audit's stored form since schema 21: a batch per flush, an integer index.

Real SQLite files and the real PostgreSQL. What a user notices: a recall costs
a couple of hundred bytes of audit on disk, not kilobytes; ``who_read`` finds
a memory's reads through an index (only the batches naming it); ``forget``
counts the reads it erases, ``verify`` checks the index like any state, and
export/import carries it; reads stored in the older form keep answering.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sqlite3
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.audit.read_batches import Batch, index_effects, index_rows, memory_key, pack
from engramdb.codec import canonical
from engramdb.engine import import_database
from engramdb.engine._commit import commit
from engramdb.engine.read_audit import read_rows
from engramdb.storage.base import Insert
from tests.conftest import _postgres


def _disk(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


def _recalls(path: Path, audit: bool) -> tuple[int, engramdb.Database]:
    db = engramdb.open(path, embedder=None)
    db.read_audit.interval_s = 3600  # one batch of 256, whatever the machine's load
    if not audit:
        db.set_read_audit("**", "off")
    for i in range(120):
        db.remember(f"topic{i % 12} fact number {i}", namespace=f"acme/t{i % 4}")
    db.flush_reads()
    before = _disk(path)
    for n in range(256):  # every recall its own query: a digest each
        assert len(db.recall(f"topic{n % 12} fact query{n}", k=10).hits) == 10
    db.flush_reads()
    return _disk(path) - before, db


def test_a_k10_recall_costs_at_most_200_bytes_on_disk_indexes_included(tmp_path):
    off, quiet = _recalls(tmp_path / "off.db", audit=False)
    quiet.close()
    on, db = _recalls(tmp_path / "on.db", audit=True)
    try:
        assert (on - off) / 256 <= 200, (on - off) / 256
        # Nothing was lost for the size: every read of every memory answers.
        reads = read_rows(db.storage, db.storage)
        assert len(reads) == 256 and all(len(r["items"]) == 10 for r in reads)
        assert len({r["query_digest"] for r in reads}) == 256
        ids = {i["id"] for r in reads for i in r["items"]}
        assert sum(len(db.who_read(m)) for m in ids) == 2560
        assert db.verify().ok
    finally:
        db.close()


def test_who_read_looks_its_memory_up_in_the_index(tmp_path):
    with engramdb.open(tmp_path / "engram.db", embedder=None) as db:
        db.admin.create_agent("planner")
        db.admin.grant("planner", "acme/**", ["read"])
        alpha = db.remember("alpha launch plan", namespace="acme/a")
        beta = db.remember("beta pricing memo", namespace="acme/b")
        planner = db.as_agent("planner")
        seqs = []
        for query in ("alpha launch", "beta pricing", "alpha plan"):  # one batch each
            planner.recall(query, k=1)
            db.flush_reads()
            seqs.append(db.storage.head().seq)
        index = {int(r["seq"]) for r in db.storage.fetch(
            "read_index", {"memory_key": memory_key(alpha.id)})}
        assert index == {seqs[0], seqs[2]}  # not the batch that only read beta
        assert [r.principal for r in db.who_read(alpha.id)] == ["planner", "planner"]
        assert [r.principal for r in db.who_read(beta.id)] == ["planner"]

        # The index is state: an edit behind the engine's back fails verify.
        conn = sqlite3.connect(tmp_path / "engram.db")
        with conn:
            conn.execute("DELETE FROM read_index WHERE memory_key = ? AND seq = ?",
                         (memory_key(alpha.id), seqs[2]))
        conn.close()
        report = db.verify()
        assert not report.ok and "read_index" in (report.problem or "")


def test_forget_counts_reads_and_export_import_keeps_them_older_form_included(tmp_path):
    # A database from before schema 21 holds a reads row and read_items rows per
    # read; who_read, forget's count, verify and export/import keep both forms.
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    try:
        db.admin.create_agent("planner")
        db.admin.grant("planner", "acme/**", ["read"])
        m = db.remember("Company X outlook is positive", namespace="acme/research")
        old = {"id": "old-read", "principal": "risk", "tx": 2,
               "recorded_at": 1_700_000_000_000_000,
               "query_digest": hashlib.sha256(b"old query").hexdigest(),
               "items": [{"id": m.id, "version": 1}], "namespaces": ["acme/research"]}
        with db.storage.write("admin") as w:
            commit(w, "reads.recorded", "admin", None, None, [
                Insert("reads", old),
                Insert("read_items", {"read_id": "old-read", "memory_id": m.id, "version": 1})])
        db.as_agent("planner").recall("Company X outlook")
        records = db.who_read(m.id)
        assert [(r.principal, r.version) for r in records] == [("risk", 1), ("planner", 1)]
        assert records[0].time == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
        assert old in read_rows(db.storage, db.storage)
        assert db.verify().ok
        out = io.StringIO()
        db.export(out)
        import_database(tmp_path / "copy.db", io.StringIO(out.getvalue()), embedder=None)
        with engramdb.open(tmp_path / "copy.db", embedder=None) as copy:
            assert copy.who_read(m.id) == records
            assert copy.storage.head().hash == db.storage.head().hash
            assert copy.verify().ok
        receipt = db.forget(id=m.id, reason="test")
        assert receipt.counts["read_records"] == 2
        assert db.verify().ok
    finally:
        db.close()


def test_the_index_rows_a_flush_writes_are_those_derived_from_its_batch():
    # The write path builds a batch's read_index rows from the reads it holds; verify,
    # replay and import derive them from the stored batch: they must agree exactly.
    reads = [{"id": f"r{n}", "principal": f"agent{n % 3}", "tx": 10 + n,
              "recorded_at": 1_700_000_000_000_000 + n, "query_digest": f"{n % 7:064x}",
              "items": [{"id": f"mem-{(n * 7 + j) % 23}", "version": 1 + j % 2,
                         "namespace": f"acme/t{(n + j) % 4}"} for j in range(n % 11)],
              "namespaces": []} for n in range(60)]
    _, batch = pack(reads)
    written = index_rows(41, (i["id"] for r in reads for i in r["items"]))
    assert written == index_effects(41, batch)
    assert len(written) == 23  # one per distinct memory, however often it was read


_READS = st.lists(st.tuples(
    st.sampled_from(["planner", "ops", "é-agent"]), st.integers(1, 10**9),
    st.integers(1_600_000_000_000_000, 1_900_000_000_000_000),
    st.one_of(st.none(), st.integers(0, 40).map(lambda n: f"{n:064x}")),
    st.lists(st.tuples(st.integers(0, 300).map(lambda n: f"mem-{n}"), st.integers(1, 4),
                       st.sampled_from(["acme/a", "acme/b", "zoë/c"])), max_size=12)),
    min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(_READS)
def test_a_batch_coded_read_by_read_is_the_batch_coded_at_once(reads):
    # The flush writes what Batch.finish returns; the stored form is the canonical
    # JSON of the dictionary-coded body, compressed at level 9 in one call. Coding
    # read by read must give those very bytes and index keys.
    batch = Batch()
    for principal, tx, at, digest, items in reads:
        batch.add(principal, tx, at, digest, items)
    principals: dict[str, int] = {}
    namespaces: dict[str, int] = {}
    digests: dict[str | None, int] = {}
    memories: dict[tuple[str, int], int] = {}
    base = min(r[2] for r in reads)
    coded = []
    for principal, tx, at, digest, items in reads:
        entry = [principals.setdefault(principal, len(principals)), tx, at - base,
                 digests.setdefault(digest, len(digests))]
        for mid, version, ns in items:
            key = (mid, namespaces.setdefault(ns, len(namespaces)))
            entry += [memories.setdefault(key, len(memories)), version]
        coded.append(entry)
    body = {"p": list(principals), "n": list(namespaces), "q": list(digests),
            "m": [list(k) for k in memories], "r": coded}
    expected = base64.b64encode(zlib.compress(canonical(body), 9)).decode("ascii")
    keys = sorted({memory_key(mid) for *_, items in reads for mid, _, _ in items})
    assert batch.finish() == (base, expected, keys)
    assert batch.finish() == (base, expected, keys)  # finishing again changes nothing
    dicts = [{"principal": p, "tx": t, "recorded_at": a, "query_digest": d,
              "items": [{"id": i, "version": v, "namespace": n} for i, v, n in items]}
             for p, t, a, d, items in reads]
    assert pack(dicts) == (base, expected)


@pytest.mark.postgres
def test_batches_and_their_index_on_postgres(tmp_path, request):
    db = _postgres(tmp_path, None, request)
    try:
        db.admin.create_agent("planner")
        db.admin.grant("planner", "acme/**", ["read"])
        memories = [db.remember(f"note {i} on pricing", namespace="acme/a") for i in range(12)]
        planner = db.as_agent("planner")
        for n in range(30):
            assert len(planner.recall(f"pricing note {n % 12}", k=10).hits) == 10
        db.flush_reads()
        assert sum(len(db.who_read(m.id)) for m in memories) == 300
        assert db.storage.fetch("read_items", {}) == []  # the new form only
        assert db.verify().ok
        read = max(memories, key=lambda m: len(db.who_read(m.id)))
        times = len(db.who_read(read.id))
        assert times >= 25  # 300 reads of 12 memories
        receipt = db.forget(id=read.id, reason="test")
        assert receipt.counts["read_records"] == times
        assert db.verify().ok
    finally:
        db.close()
