"""PostgreSQL-specific behaviour: many processes, a killed server, setup, wake-ups.

The conformance suite already runs every ``db`` test on PostgreSQL (the
``postgres`` factory in ``conftest.py``). These tests cover what only a
server database has: sixteen real processes writing to one database at
once, the server dying under a writer, concurrent schema setup, LISTEN/NOTIFY
wake-ups, the background HNSW indexer and driver errors at the boundary.
Everything runs against a real PostgreSQL 18 + pgvector server.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

import engramdb
from engramdb import InvalidInput, StorageError, VersionConflict
from engramdb.model import RecallFilter
from tests.support.pg import PgServer
from tests.support.procs import gather

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 16
COUNTERS = 3
INCREMENTS = 12  # acknowledged compare-and-swap increments per worker
APPENDS = 6  # acknowledged new memories per worker
DIM = 384


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _embedder() -> Any:
    """The default embedder's identity; its model never loads, as no text is embedded.

    Every memory in these tests carries a precomputed embedding and updates
    change metadata only (the engine reuses the stored vector), so sixteen
    children can share a 384-dimension database without loading the model
    sixteen times on a two-core machine.
    """
    from engramdb.retrieval.embed import LocalEmbedder

    return LocalEmbedder()


# -- sixteen processes -------------------------------------------------------------------


def _cas_and_append(url: str, agent: str, ids: list[str], seed: int, barrier: Any,
                    results: Any) -> None:
    """One child: CAS increments of shared counters, then appends; report what was acked."""
    import random
    import traceback

    try:
        rng = random.Random(seed)
        vectors = _unit(np.random.default_rng(seed), APPENDS)
        acked = dict.fromkeys(ids, 0)
        appended: list[str] = []
        conflicts = 0
        with engramdb.open(url, embedder=_embedder()) as db:
            me = db.as_agent(agent)
            barrier.wait(timeout=300)
            for i in range(INCREMENTS + APPENDS):
                if i % 3 == 2 and len(appended) < APPENDS:
                    m = me.remember(f"{agent} observation {len(appended)}",
                                    namespace="shared/log", layer="episodic",
                                    metadata={"agent": agent, "n": len(appended)},
                                    embedding=vectors[len(appended)])
                    appended.append(m.id)
                    continue
                mid = rng.choice(ids)
                while True:
                    current = me.get(mid)
                    try:
                        me.update(mid, metadata={"n": current.metadata["n"] + 1},
                                  expected_version=current.version)
                    except VersionConflict as exc:
                        assert exc.current_version is not None
                        assert exc.current_version > current.version
                        conflicts += 1
                        continue
                    acked[mid] += 1
                    break
            while len(appended) < APPENDS:
                m = me.remember(f"{agent} observation {len(appended)}", namespace="shared/log",
                                layer="episodic", metadata={"agent": agent, "n": len(appended)},
                                embedding=vectors[len(appended)])
                appended.append(m.id)
        results.put({"agent": agent, "acked": acked, "appended": appended,
                     "conflicts": conflicts, "error": None})
    except BaseException:
        results.put({"agent": agent, "acked": {}, "appended": [], "conflicts": 0,
                     "error": traceback.format_exc()})


@pytest.mark.postgres
def test_sixteen_processes_cas_and_append_lose_nothing(pg_url: str) -> None:
    rng = np.random.default_rng(1)
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        counters = [db.remember(f"shared counter {i}", namespace="shared/counters",
                                layer="episodic", metadata={"n": 0},
                                embedding=_unit(rng, 1)[0]).id
                    for i in range(COUNTERS)]
        agents = [f"worker-{n}" for n in range(WORKERS)]
        for name in agents:
            db.admin.create_agent(name)
            db.admin.grant(name, "shared/**", ["read", "write"])

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_cas_and_append,
                         args=(pg_url, name, counters, 1000 + n, barrier, results))
             for n, name in enumerate(agents)]
    reports = gather(procs, results, timeout=600)
    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, errors[0]
    assert sum(r["conflicts"] for r in reports) > 0, "no race happened; the test proves nothing"

    acked = Counter()
    for r in reports:
        acked.update(r["acked"])
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        for mid in counters:
            history = db.history(mid)
            # No lost update and no duplicate or missing version: one version per
            # acknowledged increment, numbered 1..n, each exactly one more than before.
            assert [m.version for m in history] == list(range(1, acked[mid] + 2))
            assert [m.metadata["n"] for m in history] == list(range(acked[mid] + 1))
            assert db.get(mid).metadata["n"] == acked[mid]
        assert sum(acked.values()) == WORKERS * INCREMENTS

        appended = [i for r in reports for i in r["appended"]]
        assert len(appended) == len(set(appended)) == WORKERS * APPENDS
        for r in reports:
            for n, mid in enumerate(r["appended"]):
                m = db.get(mid)
                assert (m.author, m.metadata["n"], m.version) == (r["agent"], n, 1)

        report = db.verify()
        assert report.ok, report.problem
        assert report.events_checked == db.storage.head().seq
        # Every memory version has exactly one vector: written with the append, or
        # carried over (copy_vector) by each metadata-only update.
        versions = sum(acked[mid] + 1 for mid in counters) + len(appended)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM memory_vectors").fetchone()[0] == versions
            assert conn.execute(
                "SELECT count(*) FROM memories m LEFT JOIN memory_vectors v "
                "ON v.id = m.id AND v.version = m.version WHERE v.id IS NULL"
            ).fetchone()[0] == 0


# -- the server dies under a writer ---------------------------------------------------------

_WRITER = r"""
import sys, time
import engramdb
from engramdb import StorageError
url = sys.argv[1]
with engramdb.open(url, embedder=None) as db:
    print("ready", flush=True)
    group = 0
    while True:
        group += 1
        try:
            if group % 2:
                m = db.remember(f"stream note {group}", namespace="crash/one",
                                metadata={"group": group})
                print(f"one {group} {m.id}", flush=True)
            else:
                with db.transaction() as tx:
                    ids = [tx.remember(f"stream batch {group} part {i}", namespace="crash/tx",
                                       metadata={"group": group}).id for i in range(3)]
                print(f"tx {group} {' '.join(ids)}", flush=True)
        except StorageError as exc:
            # The promise under test: a failed write reports itself as retryable.
            assert exc.details.get("retryable") is True, exc
            print(f"error {group}", flush=True)
            time.sleep(0.05)
"""


def _read_lines(proc: subprocess.Popen[str], into: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.append(line.strip())


@pytest.mark.postgres
def test_server_killed_during_writes_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    if os.environ.get("ENGRAM_TEST_PG_URL"):
        pytest.skip("killing the server needs the embedded PostgreSQL, not ENGRAM_TEST_PG_URL")
    server = PgServer(use_env=False)
    url = server.start()
    try:
        engramdb.open(url, embedder=None).close()
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        lines: list[str] = []
        reader = threading.Thread(target=_read_lines, args=(proc, lines), daemon=True)
        reader.start()

        def acks() -> int:
            return sum(1 for line in lines if line.startswith(("one", "tx")))

        def wait_for(pred, what: str, timeout: float = 120) -> None:
            deadline = time.monotonic() + timeout
            while not pred():
                if proc.poll() is not None:
                    pytest.fail(f"writer died: {proc.stderr.read() if proc.stderr else ''}")
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {what}")
                time.sleep(0.02)

        wait_for(lambda: acks() >= 40, "40 acknowledged writes")
        server.kill()  # SIGKILL, mid-stream: the writer is inside a write right now
        killed_at = acks()
        wait_for(lambda: any(x.startswith("error") for x in lines), "the writer to see errors")
        server.restart()  # crash recovery
        wait_for(lambda: acks() >= killed_at + 20, "writes to resume after the restart")
        proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=10)

        singles = [line.split() for line in lines if line.startswith("one")]
        batches = [line.split() for line in lines if line.startswith("tx")]
        with engramdb.open(url, embedder=None) as db:
            for _, group, mid in singles:
                assert db.get(mid).metadata["group"] == int(group)
            for _, group, *ids in batches:
                assert [db.get(i).metadata["group"] for i in ids] == [int(group)] * 3
            # A transaction is all or nothing, also when the crash hit it mid-way.
            with psycopg.connect(url) as conn:
                sizes = conn.execute(
                    "SELECT text, count(*) FROM (SELECT split_part(text, ' part ', 1) AS text "
                    "FROM memories WHERE namespace = 'crash/tx') s GROUP BY text").fetchall()
            assert all(n == 3 for _, n in sizes), sizes
            report = db.verify()
            assert report.ok, report.problem
    finally:
        server.stop()


# -- setup ------------------------------------------------------------------------------------


def _open_and_report(url: str, barrier: Any, results: Any) -> None:
    import traceback

    try:
        barrier.wait(timeout=120)
        with engramdb.open(url, embedder=None) as db:
            results.put(("ok", db.storage.schema_version()))
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.postgres
def test_setup_is_idempotent_and_safe_from_many_processes_at_once(pg_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 6
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=_open_and_report, args=(pg_url, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [o[0] for o in outcomes] == ["ok"] * n, [o[1] for o in outcomes if o[0] != "ok"]
    with engramdb.open(pg_url, embedder=None) as db:
        db.storage.setup()
        db.storage.setup()
        with psycopg.connect(pg_url) as conn:
            applied = conn.execute(
                "SELECT version, count(*) FROM schema_migrations GROUP BY version "
                "ORDER BY version").fetchall()
        assert applied and all(c == 1 for _, c in applied)
        assert {o[1] for o in outcomes} == {applied[-1][0]}
        # The admin principal was created once, by exactly one of the six openers.
        assert len(db.storage.fetch("principals", {"name": "admin"})) == 1
        assert db.storage.head().seq == 1
        assert db.verify().ok


# -- change-feed wake-ups ----------------------------------------------------------------------


@pytest.mark.postgres
def test_wait_for_events_wakes_on_commit_and_not_on_rollback(pg_url: str) -> None:
    with engramdb.open(pg_url, embedder=None) as db, \
            engramdb.open(pg_url, embedder=None) as other:
        seq = db.storage.head().seq
        assert db.storage.wait_for_events(seq, timeout=0.3) is False

        # A write that rolls back announces nothing.
        with pytest.raises(InvalidInput), other.transaction() as tx:
            tx.remember("never committed", namespace="feed/a")
            raise InvalidInput("abort on purpose")
        assert db.storage.wait_for_events(seq, timeout=0.5) is False

        woke: list[float] = []

        def waiter() -> None:
            start = time.monotonic()
            if db.storage.wait_for_events(seq, timeout=30):
                woke.append(time.monotonic() - start)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)
        m = other.remember("the feed moves", namespace="feed/a")
        t.join(timeout=30)
        assert woke and woke[0] < 10
        # The wake-up is a hint: the reader re-reads the log by cursor and finds the write.
        events = [e for e in db.changes(since=seq) if e.kind == "memory.remembered"]
        assert [e.subject_ref for e in events] == [m.id]
        # Already past the cursor: answers at once, without waiting.
        start = time.monotonic()
        assert db.storage.wait_for_events(seq, timeout=30) is True
        assert time.monotonic() - start < 5


# -- vectors -------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_vector_search_sees_unindexed_writes_and_applies_filters_inside(pg_url: str) -> None:
    rng = np.random.default_rng(5)
    vecs = _unit(rng, 400)
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        db.remember_many([{"text": f"alpha note {i}", "namespace": f"vec/ns{i % 4}",
                           "layer": "episodic", "embedding": vecs[i],
                           "metadata": {"tag": None} if i % 8 == 1 else {}}
                          for i in range(300)])
        assert db.storage.wait_for_vector_index(timeout=120)
        assert db.storage.vector_backlog() == 0
        # Written after the index caught up; searchable before it is indexed.
        late = db.remember("late note", namespace="vec/ns1", layer="episodic",
                           embedding=vecs[399])
        head = db.storage.head()
        flt = RecallFilter(namespaces=("vec/ns1",), as_of=head.tx)
        hits = db.storage.search_vector(vecs[399], flt, 5)
        assert hits[0][0]["id"] == late.id
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert all(row["namespace"] == "vec/ns1" for row, _ in hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)

        # The exact answer, computed here, for a query against one namespace of four.
        q = _unit(rng, 1)[0]
        ns2 = [i for i in range(300) if i % 4 == 2]
        sims = {i: float(vecs[i] @ q) for i in ns2}
        want = sorted(ns2, key=lambda i: -sims[i])[:10]
        flt = RecallFilter(namespaces=("vec/ns2",), as_of=head.tx)
        got = db.storage.search_vector(q, flt, 10)
        assert len(got) == 10
        got_texts = [row["text"] for row, _ in got]
        overlap = len(set(got_texts) & {f"alpha note {i}" for i in want})
        assert overlap >= 9, (got_texts, want)  # HNSW is approximate; at this size ~exact
        assert got[0][1] == pytest.approx(sims[want[0]], abs=1e-4)

        # A filter that leaves fewer than k rows returns every one of them (here a
        # metadata filter too: a key holding null, not a missing key, equals None).
        flt = RecallFilter(namespaces=("vec/ns1",), as_of=head.tx,
                           metadata=(("tag", None),), layers=("episodic",))
        tagged = db.storage.search_vector(q, flt, 500)
        assert sorted(row["text"] for row, _ in tagged) == sorted(
            f"alpha note {i}" for i in range(300) if i % 8 == 1)
        nowhere = RecallFilter(namespaces=("vec/none",), as_of=head.tx)
        assert db.storage.search_vector(q, nowhere, 10) == []

        db.storage.wait_for_vector_index(timeout=120)
        assert db.storage.search_vector(vecs[399], RecallFilter(as_of=db.storage.head().tx),
                                        1)[0][0]["id"] == late.id


# -- errors at the boundary -----------------------------------------------------------------------


@pytest.mark.postgres
def test_unreachable_server_is_a_retryable_storage_error_without_driver_repr() -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StorageError) as err:
        engramdb.open(f"postgresql://postgres:secret@127.0.0.1:{port}/nope",
                      embedder=None, connect_timeout_s=2)
    assert err.value.details.get("retryable") is True
    assert "retry" in err.value.message
    assert "secret" not in err.value.message
    assert "psycopg" not in err.value.message and "Error(" not in err.value.message
    assert isinstance(err.value.__cause__, psycopg.Error)


@pytest.mark.postgres
def test_text_postgres_cannot_hold_is_invalid_input_and_writes_nothing(pg_url: str) -> None:
    with engramdb.open(pg_url, embedder=None) as db:
        before = db.storage.head()
        with pytest.raises(InvalidInput, match="NUL"):
            db.remember("before\x00after", namespace="bad/input")
        assert db.storage.head() == before
        assert db.verify().ok


@pytest.mark.postgres
def test_pool_recovers_after_a_server_restart() -> None:
    if os.environ.get("ENGRAM_TEST_PG_URL"):
        pytest.skip("restarting the server needs the embedded PostgreSQL")
    server = PgServer(use_env=False)
    url = server.start()
    try:
        with engramdb.open(url, embedder=None, pool_min_size=2) as db:
            db.remember("before the crash", namespace="ops/a")
            server.kill()
            with pytest.raises(StorageError) as err:
                db.remember("while it is down", namespace="ops/a")
            assert err.value.details.get("retryable") is True
            server.restart()
            # Dead pooled connections were dropped on the failure: the next call works.
            m = db.remember("after the restart", namespace="ops/a")
            assert db.get(m.id).text == "after the restart"
            assert [x.memory.text for x in db.recall("crash", namespace="ops/**").hits] == [
                "before the crash"]
            assert db.verify().ok
    finally:
        server.stop()


# -- moving a database from SQLite to PostgreSQL -----------------------------------------------


@pytest.mark.postgres
def test_engram_export_from_sqlite_import_into_postgres_same_database(
        tmp_path: Path, pg_url: str, embedder) -> None:
    src = tmp_path / "source.db"
    with engramdb.open(src, embedder=embedder) as db:
        db.admin.create_agent("researcher")
        db.admin.grant("researcher", "acme/**", ["read", "write"])
        me = db.as_agent("researcher")
        sky = me.remember("The sky over Lyon was blue all week", namespace="acme/research",
                          metadata={"n": 3, "flag": True})
        me.update(sky.id, text="The sky over Lyon turned grey on Friday", expected_version=1)
        office = me.remember("The office moves to Marseille in June", namespace="acme/ops",
                             subject="office:hq", predicate="city", value="Marseille",
                             idempotency_key="office-1")
        gone = me.remember("The printer on floor 2 is broken", namespace="acme/ops")
        me.retract(gone.id, reason="fixed")
        db.remember_many([{"text": f"Meeting note {i}: budget review for team {i % 3}",
                           "namespace": "acme/notes", "layer": "episodic"} for i in range(20)])
        ids = [r["id"] for r in db.storage.scan("memories")]
        queries = {"What colour was the sky in Lyon?": sky.id,
                   "where is the office moving": office.id}
        source_answers = {q: db.recall(q, namespace="acme/**", k=1).hits[0].memory.id
                          for q in queries}

    engram = [str(Path(sys.executable).parent / "engram")]
    dump = tmp_path / "export.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for args in (["--db", str(src), "export", str(dump)],
                 ["--db", pg_url, "import", str(dump)]):
        done = subprocess.run([*engram, *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr

    with engramdb.open(pg_url, embedder=embedder) as pg_db, \
            engramdb.open(src, embedder=embedder) as sqlite_db:
        # Same events, same hash chain (the source's recall audit included).
        assert pg_db.storage.head() == sqlite_db.storage.head()
        report = pg_db.verify()
        assert report.ok, report.problem
        for mid in set(ids):
            assert pg_db.history(mid) == sqlite_db.history(mid)
        for query, want in queries.items():
            assert source_answers[query] == want
            assert pg_db.recall(query, namespace="acme/**", k=1).hits[0].memory.id == want
        me = pg_db.as_agent("researcher")
        # Idempotency and permissions came along: a replayed key returns the original.
        again = me.remember("The office moves to Marseille in June", namespace="acme/ops",
                            subject="office:hq", predicate="city", value="Marseille",
                            idempotency_key="office-1")
        assert again.id == office.id
        with pytest.raises(engramdb.PermissionDenied):
            me.remember("elsewhere", namespace="other/place")


def test_sqlite_wait_for_events_polls_the_same_contract(tmp_path: Path) -> None:
    """The embedded backend offers the same wake-up call, by polling the chain head."""
    path = tmp_path / "feed.db"
    with engramdb.open(path, embedder=None) as db, engramdb.open(path, embedder=None) as other:
        seq = db.storage.head().seq
        assert db.storage.wait_for_events(seq, timeout=0.2) is False
        timer = threading.Timer(0.3, lambda: other.remember("moved", namespace="feed/a"))
        timer.start()
        start = time.monotonic()
        assert db.storage.wait_for_events(seq, timeout=30) is True
        assert time.monotonic() - start < 10
        timer.join()
        assert [e.kind for e in db.changes(since=seq)] == ["memory.remembered"]
