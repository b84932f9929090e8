"""A fleet of writer processes on one PostgreSQL, and a server crash under them.

Writers release the audit-chain lock before their WAL flush and are
acknowledged only after it (early lock release, docs/scaling.md). These tests
check what that must not cost, with real processes on the real server:

* 32 writer processes across 4 tenants (namespace roots), appends and
  compare-and-swap increments mixed: no acknowledged write lost, none
  duplicated, one gap-free log whose order verifies, and a change feed read
  by cursor that returns every event exactly once in that order.
* the server SIGKILLed under 4 writers and a change-feed reader: every
  acknowledged write survives, and every event the reader was shown is still
  in the log with the same hash (a crash never takes back what a cursor saw).
  The commits in flight at the kill are the design's only pending work: each
  is either in the log (complete, verified) or reported to its writer as an
  error whose outcome is unknown and retryable, never acknowledged and lost.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

import engramdb
from engramdb import StorageError, VersionConflict
from tests.support.pg import PgServer
from tests.support.procs import gather

pytestmark = pytest.mark.postgres

WRITERS = 32
TENANTS = 4
APPENDS = 4  # acknowledged new memories per writer
INCREMENTS = 2  # acknowledged compare-and-swap increments per writer
DIM = 384


def _embedder() -> Any:
    """The default embedder's identity; its model never loads (embeddings are given)."""
    from engramdb.retrieval.embed import LocalEmbedder

    return LocalEmbedder()


def _unit(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# -- 32 writers, 4 tenants --------------------------------------------------------------


def _fleet_writer(url: str, n: int, counter: str, barrier: Any, results: Any) -> None:
    import traceback

    tenant = f"tenant{n % TENANTS}"
    agent = f"writer-{n}"
    try:
        vectors = _unit(n, APPENDS)
        appended: list[str] = []
        increments = conflicts = 0
        with engramdb.open(url, embedder=_embedder(), release_before_flush=True) as db:
            me = db.as_agent(agent)
            barrier.wait(timeout=300)
            for i in range(APPENDS + INCREMENTS):
                if i % 3 == 1 and increments < INCREMENTS:
                    while True:
                        cur = me.get(counter)
                        try:
                            me.update(counter, metadata={"n": cur.metadata["n"] + 1},
                                      expected_version=cur.version)
                            break
                        except VersionConflict:
                            conflicts += 1
                    increments += 1
                    continue
                k = len(appended)
                m = me.remember(f"{agent} note {k}", namespace=f"{tenant}/notes",
                                layer="episodic", metadata={"agent": agent, "k": k},
                                embedding=vectors[k], idempotency_key=f"{agent}-{k}")
                appended.append(m.id)
        results.put({"agent": agent, "tenant": tenant, "appended": appended,
                     "increments": increments, "conflicts": conflicts, "error": None})
    except BaseException:
        results.put({"agent": agent, "error": traceback.format_exc()})


def test_thirty_two_writers_across_four_tenants_lose_and_duplicate_nothing(pg_url) -> None:
    counters: dict[str, str] = {}
    with engramdb.open(pg_url, embedder=_embedder(), release_before_flush=True) as db:
        assert db.storage.release_before_flush, "the server commits synchronously"
        for t in range(TENANTS):
            counters[f"tenant{t}"] = db.remember(
                f"tenant{t} counter", namespace=f"tenant{t}/counters", layer="episodic",
                metadata={"n": 0}, embedding=_unit(100 + t, 1)[0]).id
        for n in range(WRITERS):
            db.admin.create_agent(f"writer-{n}")
            db.admin.grant(f"writer-{n}", f"tenant{n % TENANTS}/**", ["read", "write"])
        start_seq = db.storage.head().seq

    # fork: the children start from this already-imported interpreter (32 fresh
    # interpreters would cost a two-core machine a minute); each opens its own pool.
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_fleet_writer,
                         args=(pg_url, n, counters[f"tenant{n % TENANTS}"], barrier, results))
             for n in range(WRITERS)]
    reports = gather(procs, results, timeout=300)
    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, errors[0]
    assert sum(r["conflicts"] for r in reports) > 0, "no race happened; the test proves nothing"

    with engramdb.open(pg_url, embedder=_embedder(), release_before_flush=True) as db:
        # Every acknowledged append is there once, in its tenant, as written.
        appended = [(r["agent"], r["tenant"], k, mid)
                    for r in reports for k, mid in enumerate(r["appended"])]
        assert len(appended) == len({a[3] for a in appended}) == WRITERS * APPENDS
        for agent, tenant, k, mid in appended:
            m = db.get(mid)
            assert (m.author, m.namespace, m.metadata["k"], m.version) == (
                agent, f"{tenant}/notes", k, 1)
        # Each tenant's counter: one version per acknowledged increment, no lost update.
        done = Counter()
        for r in reports:
            done[r["tenant"]] += r["increments"]
        for tenant, mid in counters.items():
            history = db.history(mid)
            assert [m.metadata["n"] for m in history] == list(range(done[tenant] + 1))
            assert [m.version for m in history] == list(range(1, done[tenant] + 2))

        # One log: gap-free, hash-chained, and it replays to the current state.
        report = db.verify()
        assert report.ok, report.problem
        head = db.storage.head()
        assert report.events_checked == head.seq

        # The feed, read by cursor in small pages, returns each event once, in order,
        # and one memory.remembered per acknowledged append (none twice).
        seqs: list[int] = []
        remembered = Counter()
        cursor = start_seq
        while True:
            page = list(db.changes(since=cursor, limit=37))
            if not page:
                break
            for e in page:
                seqs.append(e.seq)
                if e.kind == "memory.remembered":
                    remembered[e.subject_ref] += 1
            cursor = page[-1].seq
        assert seqs == sorted(set(seqs))
        assert {mid for *_, mid in appended} <= set(remembered)
        assert all(remembered[mid] == 1 for *_, mid in appended)
        txs = [e.tx for e in db.storage.events(start_seq, limit=100_000)]
        assert txs == sorted(txs), "transaction numbers follow the log order"


# -- the server dies under writers and a feed reader ---------------------------------------


def _crash_writer(url: str, n: int, acks: Any, stop: Any) -> None:
    with engramdb.open(url, embedder=None, release_before_flush=True) as db:
        i = 0
        while not stop.is_set():
            i += 1
            while not stop.is_set():
                try:
                    m = db.remember(f"writer {n} note {i}", namespace=f"crash/w{n}",
                                    metadata={"n": n, "i": i}, idempotency_key=f"w{n}-{i}")
                    acks.put(("ack", n, i, m.id))
                    break
                except StorageError as exc:
                    # Pending at the crash: reported as retryable, never acknowledged;
                    # retried with the same key it lands once, committed or not before.
                    acks.put(("error", n, i, bool(exc.details.get("retryable"))))
                    time.sleep(0.05)


def _feed_reader(url: str, seen: Any, stop: Any) -> None:
    with engramdb.open(url, embedder=None, release_before_flush=True) as db:
        cursor = 0
        while not stop.is_set():
            try:
                page = list(db.changes(since=cursor, limit=200))
            except StorageError:
                time.sleep(0.05)
                continue
            for e in page:
                seen.put((e.seq, e.hash))
            if page:
                cursor = page[-1].seq


def _drain(q: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.get(timeout=0.5))
        except queue.Empty:
            return out


def test_server_killed_under_writers_and_a_feed_loses_nothing_acknowledged_or_seen(
        tmp_path: Path) -> None:
    if os.environ.get("ENGRAM_TEST_PG_URL"):
        pytest.skip("killing the server needs the embedded PostgreSQL, not ENGRAM_TEST_PG_URL")
    server = PgServer(use_env=False)
    url = server.start()
    ctx = multiprocessing.get_context("fork")
    acks, seen, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs: list[Any] = []
    try:
        engramdb.open(url, embedder=None, release_before_flush=True).close()
        procs = [ctx.Process(target=_crash_writer, args=(url, n, acks, stop))
                 for n in range(4)]
        procs.append(ctx.Process(target=_feed_reader, args=(url, seen, stop)))
        for p in procs:
            p.start()
        got: list[Any] = []
        deadline = time.monotonic() + 120
        while sum(1 for a in got if a[0] == "ack") < 80:
            assert time.monotonic() < deadline, "the writers did not get going"
            got.append(acks.get(timeout=120))
        server.kill()  # SIGKILL, mid-stream: commits are in flight right now
        while not any(a[0] == "error" for a in got):
            got.append(acks.get(timeout=120))
        server.restart()  # crash recovery
        resumed = len(got)

        def settled() -> bool:
            failed = {(a[1], a[2]) for a in got if a[0] == "error"}
            landed = {(a[1], a[2]) for a in got if a[0] == "ack"}
            return failed <= landed and sum(1 for a in got[resumed:] if a[0] == "ack") >= 20

        while not settled():  # every write that failed at the crash retried until acked
            got.append(acks.get(timeout=120))
        stop.set()
        for p in procs:
            p.join(timeout=60)
        got += _drain(acks)
        shown = _drain(seen)
        for p in procs:
            if p.is_alive():
                p.kill()

        assert all(retryable for kind, *_, retryable in got if kind == "error")
        acked = [(n, i, mid) for kind, n, i, mid in got if kind == "ack"]
        with engramdb.open(url, embedder=None, release_before_flush=True) as db:
            for n, i, mid in acked:
                m = db.get(mid)
                assert (m.namespace, m.metadata) == (f"crash/w{n}", {"n": n, "i": i})
            report = db.verify()
            assert report.ok, report.problem
            log = {e.seq: e.hash for e in db.storage.events(0, limit=1_000_000)}
            assert shown, "the feed reader saw nothing; the test proves nothing"
            # Nothing a cursor was shown was taken back by the crash.
            assert [(s, h) for s, h in shown if log.get(s) != h] == []
            # Every write is in the log once: the ones in flight at the kill were
            # retried with their key and landed once, committed before or not.
            with psycopg.connect(url) as conn:
                twice = conn.execute(
                    "SELECT text FROM memories WHERE namespace LIKE 'crash/%' "
                    "GROUP BY text HAVING count(*) > 1").fetchall()
            assert twice == []
            failed = {(n, i) for kind, n, i, _ in got if kind == "error"}
            assert failed, "no write was in flight at the kill; the test proves nothing"
            assert failed <= {(n, i) for n, i, _ in acked}
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
        server.stop()


def test_a_session_that_commits_asynchronously_writes_as_the_server_says(pg_url) -> None:
    # synchronous_commit=off means no flush to wait for: no early release, no barrier,
    # and the log is shown as committed (the setting's own promise, not ours).
    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options=-c%20synchronous_commit%3Doff"
    with engramdb.open(url, embedder=None, release_before_flush=True) as db:
        assert not db.storage.release_before_flush
        m = db.remember("async note", namespace="a/b")
        assert db.get(m.id).text == "async note"
        assert db.verify().ok
    with engramdb.open(pg_url, embedder=None, release_before_flush=True) as db:
        assert db.storage.release_before_flush
        assert db.get(m.id).text == "async note"
