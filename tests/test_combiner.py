"""The PostgreSQL write combiner (storage/postgres/combiner.py, migration 0040).

Writer processes opened with ``combine=True`` send their prepared writes to a leader
process on the same host, which applies several in one ``CALL engram_append_many``.
What must hold, on the real server with real processes:

* the K-write procedure applies each write as its own transaction (its own number,
  placeholders and configuration check); one refused write fails no other; a write
  sent again with the same token is answered with the original results, once in
  the log;
* many writer processes through the combiner, with locked writes (idempotency keys,
  compare-and-swap) mixed in, lose and duplicate nothing, and the log verifies;
* a leader that never answers, or that applies a write and dies before answering,
  costs a writer a direct call with the same token: the write is in the log once;
* SIGKILL of leaders mid-stream: every acknowledged write is in the log exactly once,
  every unacknowledged one at most once, and the other writers go on.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb import VersionConflict
from engramdb.errors import InvalidInput
from engramdb.storage.base import Insert
from tests.support.procs import assert_log_whole, gather

DIM = 384


def _embedder() -> Any:
    from engramdb.retrieval.embed import LocalEmbedder

    return LocalEmbedder()


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _prepared_args(store: Any, text: str, *, memory_id: str | None = None) -> list[Any]:
    """The arguments of ``engram_append`` for one memory inserted by a prepared write."""
    from engramdb.storage.postgres.prepared import PreparedWriteTx

    if store.config_epoch is None:
        with store._get_pool().connection() as conn:
            store.config_epoch = conn.execute(
                "SELECT config_tx FROM chain_head WHERE id = 1").fetchone()[0]
    w = PreparedWriteTx(store, store.config_epoch)
    row = {"id": memory_id or f"m-{text}", "version": 1, "namespace": "acme/notes",
           "layer": "episodic", "text": text, "subject": None, "predicate": None,
           "value": None, "metadata": {}, "importance": 0.5, "confidence": 1.0,
           "author": "admin", "source": None, "session": None, "valid_from": w.recorded_at,
           "valid_to": None, "tx_from": w.tx, "tx_to": None, "recorded_at": w.recorded_at,
           "status": "active", "expires_at": None}
    w.apply([Insert("memories", row)])
    w.log("memory.remembered", actor="admin", namespace="acme/notes", subject_ref=row["id"],
          payload={"effects": [{"op": "insert", "table": "memories", "row": row}]})
    w.put_vectors([(row["id"], 1, _unit(sum(map(ord, text))))])
    return w.arguments()


def _remembered(db: Any, after: int) -> list[Any]:
    return [e for e in db.storage.events(after, limit=100_000) if e.kind == "memory.remembered"]


@pytest.mark.postgres
def test_k_writes_in_one_call_are_each_their_own_transaction(pg_url: str) -> None:
    from engramdb.storage.postgres.append_many import call_many, new_token

    with engramdb.open(pg_url, embedder=_embedder()) as db:
        db.remember("warm", namespace="acme/notes", layer="episodic", embedding=_unit(0))
        store = db.storage
        head = store.head()
        good = [_prepared_args(store, f"note {i}") for i in range(3)]
        stale = _prepared_args(store, "prepared under an older configuration")
        stale[0] = str(int(stale[0]) - 1).encode()
        clash = _prepared_args(store, "note 0")  # the same memory id as good[0]
        tokens = [new_token() for _ in range(5)]
        writes = [(tokens[0], good[0]), (tokens[1], stale), (tokens[2], good[1]),
                  (tokens[3], clash), (tokens[4], good[2])]
        with store._get_pool().connection() as conn:
            answers = call_many(conn, writes, store._vector_oid)
            assert [a.state for a in answers] == ["", "EG001", "", "23505", ""]
            assert answers[1].detail == str(head_config(store))
            applied = [answers[i] for i in (0, 2, 4)]
            # Each its own transaction, numbered and chained in order.
            assert [a.tx for a in applied] == [head.tx + 1, head.tx + 2, head.tx + 3]
            assert [a.seq for a in applied] == [head.seq + 1, head.seq + 2, head.seq + 3]
            # The same tokens again: answered with the first results, nothing written.
            again = call_many(conn, [(tokens[2], good[1]), (tokens[0], good[0])],
                              store._vector_oid)
        assert [a.state for a in again] == ["replayed", "replayed"]
        assert (again[0].seq, again[0].hash, again[0].tx) == (applied[1].seq, applied[1].hash,
                                                             applied[1].tx)
        events = _remembered(db, head.seq)
        assert [e.subject_ref for e in events] == ["m-note 0", "m-note 1", "m-note 2"]
        assert [e.hash for e in events] == [a.hash for a in applied]
        assert store.head().seq == head.seq + 3
        assert db.get("m-note 1").text == "note 1"
        # No constraint failing: one statement per table; a stale write still left out.
        more = [_prepared_args(store, f"more {i}") for i in range(3)]
        more.insert(1, stale)
        with store._get_pool().connection() as conn:
            answers = call_many(conn, [(new_token(), a) for a in more], store._vector_oid)
        assert [a.state for a in answers] == ["", "EG001", "", ""]
        assert [a.tx for a in answers if a.ok] == [head.tx + 4, head.tx + 5, head.tx + 6]
        events = _remembered(db, head.seq)
        assert [e.subject_ref for e in events][3:] == ["m-more 0", "m-more 1", "m-more 2"]
        assert [e.hash for e in events][3:] == [a.hash for a in answers if a.ok]
        assert db.get("m-more 2").text == "more 2"
        with store._get_pool().connection() as conn:  # each write's own vector
            for name in ("note 0", "note 2", "more 0", "more 1", "more 2"):
                vec = conn.execute("SELECT vec::real[] FROM memory_vectors WHERE id = %s",
                                   [f"m-{name}"]).fetchone()[0]
                assert np.allclose(np.asarray(vec, dtype=np.float32), _unit(sum(map(ord, name))))
        report = db.verify()
        assert report.ok, report


def head_config(store: Any) -> int:
    with store._get_pool().connection() as conn:
        return int(conn.execute("SELECT config_tx FROM chain_head WHERE id = 1").fetchone()[0])


@pytest.mark.parametrize("combine, says", [
    ({"leader": 2}, "unknown combine options ['leader']"),
    ({"wait_s": 0}, "wait_s must be a positive number of seconds"),
    ({"leaders": 1.5}, "leaders must be a positive whole number"),
    ({"max_writes": "16"}, "max_writes must be a positive whole number"),
    ("yes", "combine takes True or a dict"),
])
def test_bad_combiner_options_are_refused_before_anything_is_written(
        pg_url: str, combine: Any, says: str) -> None:
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        before = db.storage.head()
    with pytest.raises(InvalidInput) as caught:
        engramdb.open(pg_url, embedder=_embedder(), combine=combine)
    assert says in str(caught.value)
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        assert db.storage.head() == before


def test_the_socket_directory_is_private(tmp_path: Path, monkeypatch: Any) -> None:
    from engramdb.storage.postgres.combiner import private_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = private_dir()
    assert path is not None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    os.chmod(path, 0o755)  # reachable by others: refused, nothing is combined
    assert private_dir() is None


def _writer(url: str, n: int, writes: int, shared_id: str, barrier: Any, results: Any) -> None:
    import traceback

    try:
        with engramdb.open(url, embedder=_embedder(), release_before_flush=n % 2 == 0,
                           combine=True) as db:
            me = db.as_agent(f"w{n}")
            barrier.wait(timeout=300)
            acked = []
            conflicts = 0
            for k in range(writes):
                m = me.remember(f"w{n} note {k}", namespace=f"t{n % 4}/notes",
                                layer="episodic", metadata={"k": k},
                                embedding=_unit(1000 * n + k),
                                # every fifth write takes the locked path (a key is read)
                                idempotency_key=f"w{n}-{k}" if k % 5 == 0 else None)
                acked.append((m.id, m.tx_from))
                if k % 5 == 0:  # the key again: the first write's answer
                    again = me.remember(f"w{n} note {k}", namespace=f"t{n % 4}/notes",
                                        layer="episodic", metadata={"k": k},
                                        embedding=_unit(1000 * n + k),
                                        idempotency_key=f"w{n}-{k}")
                    assert (again.id, again.tx_from) == (m.id, m.tx_from)
                if k % 7 == 3:  # compare-and-swap on the shared memory
                    shared = me.get(shared_id)
                    try:
                        me.update(shared_id, text=f"w{n} {k}", expected_version=shared.version,
                                  embedding=_unit(5000 + n))
                    except VersionConflict:
                        conflicts += 1
            counts = dict(db.storage.combiner.counts)
        results.put({"n": n, "acked": acked, "conflicts": conflicts, "counts": counts,
                     "error": None})
    except BaseException:
        results.put({"n": n, "error": traceback.format_exc()})


@pytest.mark.postgres
def test_writers_through_the_combiner_lose_and_duplicate_nothing(pg_url: str) -> None:
    writers, writes = 8, 25
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        for n in range(writers):
            db.admin.create_agent(f"w{n}")
            db.admin.grant(f"w{n}", f"t{n % 4}/**", ["read", "write"])
            db.admin.grant(f"w{n}", "shared/**", ["read", "write"])
        shared_id = db.remember("shared", namespace="shared/x", layer="episodic",
                                embedding=_unit(7)).id
        start = db.storage.head()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(pg_url, n, writes, shared_id, barrier,
                                                  results))
             for n in range(writers)]
    out = gather(procs, results, timeout=600)
    errors = [r["error"] for r in out if r["error"]]
    assert not errors, errors[0]
    acked = [a for r in out for a in r["acked"]]
    assert len(acked) == writers * writes
    assert sum(r["counts"]["leader"] for r in out) > 0  # some went through a leader
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        events = db.storage.events(start.seq, limit=100_000)
        assert_log_whole(events, acked, start)
        # Compare-and-swap answered per write: each update either applied or conflicted.
        updates = [e for e in events if e.kind == "memory.updated"]
        attempts = writers * len([k for k in range(writes) if k % 7 == 3])
        assert len(updates) + sum(r["conflicts"] for r in out) == attempts
        assert db.get(shared_id).version == 1 + len(updates)
        report = db.verify()
        assert report.ok, report


class _FakeLeader:
    """Holds every leader slot of ``store``'s combiner and serves them as told: the
    writes it reads are kept (``frames``); ``apply`` sends each itself, ``answer=False``
    closes the connection without answering (a leader dying after its call)."""

    def __init__(self, store: Any, *, apply: bool, answer: bool) -> None:
        combiner = store.combiner
        self.store, self.apply, self.answer = store, apply, answer
        self.frames: list[Any] = []
        self.fds, self.socks = [], []
        for slot in range(combiner._slots):
            fd = os.open(combiner._path(slot, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.fds.append(fd)
            path = combiner._path(slot, "sock")
            Path(path).unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(path)
            sock.listen(8)
            self.socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, listener: socket.socket) -> None:
        from engramdb.storage.postgres.append_many import call_many
        from engramdb.storage.postgres.combiner import _recv_frame

        conn, _ = listener.accept()
        fields = _recv_frame(conn)
        self.frames.append(fields)
        if self.apply:
            with self.store._get_pool().connection() as pg:
                call_many(pg, [(fields[0].decode(), fields[1:])], self.store._vector_oid)
        if not self.answer:
            conn.close()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        for fd in self.fds:
            os.close(fd)


@pytest.mark.postgres
@pytest.mark.parametrize("apply", [False, True])
def test_a_leader_that_does_not_answer_costs_a_direct_call_not_a_write(pg_url: str,
                                                                       apply: bool) -> None:
    with engramdb.open(pg_url, embedder=_embedder(), combine=True) as db:
        db.storage.combiner._wait = 0.3
        start = db.storage.head()
        fake = _FakeLeader(db.storage, apply=apply, answer=True)  # reads, never answers
        try:
            m = db.remember("sent to a silent leader", namespace="acme/notes",
                            layer="episodic", embedding=_unit(1))
            counts = dict(db.storage.combiner.counts)
            assert counts["fallback"] == 1 and counts["direct"] == 1
            assert len(fake.frames) == 1
            if apply:  # it applied the write before the writer's own call: answered by it
                assert counts["replayed"] == 1
            else:  # now the slow leader sends it too: answered with the writer's results
                from engramdb.storage.postgres.append_many import call_many

                fields = fake.frames[0]
                with db.storage._get_pool().connection() as pg:
                    late = call_many(pg, [(fields[0].decode(), fields[1:])],
                                     db.storage._vector_oid)[0]
                assert late.state == "replayed" and late.tx == m.tx_from
        finally:
            fake.close()
        events = _remembered(db, start.seq)
        assert [e.subject_ref for e in events] == [m.id]
        assert events[0].tx == m.tx_from
        assert db.get(m.id).text == "sent to a silent leader"
        assert db.verify().ok


@pytest.mark.postgres
def test_a_leader_dying_after_its_call_loses_and_duplicates_nothing(pg_url: str) -> None:
    with engramdb.open(pg_url, embedder=_embedder(), combine=True) as db:
        start = db.storage.head()
        fake = _FakeLeader(db.storage, apply=True, answer=False)  # applies, then hangs up
        try:
            m = db.remember("applied by a leader that died", namespace="acme/notes",
                            layer="episodic", embedding=_unit(2))
        finally:
            fake.close()
        counts = dict(db.storage.combiner.counts)
        assert counts["fallback"] == 1 and counts["replayed"] == 1
        events = _remembered(db, start.seq)
        assert [e.subject_ref for e in events] == [m.id]  # once: the leader's
        assert events[0].tx == m.tx_from
        assert db.verify().ok


@pytest.mark.postgres
def test_a_failed_direct_call_after_a_silent_leader_is_an_unknown_outcome(pg_url: str) -> None:
    """The leader holds the write and has not answered; the writer's own call fails (the
    chain lock held elsewhere past lock_timeout). The writer must not be told "nothing
    was written": the leader may still apply it, and here it does, once."""
    import psycopg

    from engramdb import StorageError
    from engramdb.storage.postgres.append_many import call_many

    with engramdb.open(pg_url, embedder=_embedder()) as db:  # vectors typed, not combined
        db.remember("warm", namespace="acme/notes", layer="episodic", embedding=_unit(3))
    with engramdb.open(pg_url, embedder=_embedder(), combine={"wait_s": 0.3},
                       lock_timeout_s=0.5) as db:
        start = db.storage.head()
        fake = _FakeLeader(db.storage, apply=False, answer=True)
        try:
            with psycopg.connect(pg_url) as holder:
                holder.execute("SELECT pg_advisory_xact_lock(7308892986227388721)")
                with pytest.raises(StorageError, match="may or may not have been applied"):
                    db.remember("held by a silent leader", namespace="acme/notes",
                                layer="episodic", embedding=_unit(4))
            fields = fake.frames[0]  # the leader applies it late: once
            with db.storage._get_pool().connection() as pg:
                late = call_many(pg, [(fields[0].decode(), fields[1:])],
                                 db.storage._vector_oid)[0]
            assert late.state == ""
        finally:
            fake.close()
        events = _remembered(db, start.seq)
        assert len(events) == 1
        assert db.get(events[0].subject_ref).text == "held by a silent leader"
        assert db.verify().ok


def _streaming_writer(url: str, n: int, writes: int, folder: str, leaders: int,
                      barrier: Any, results: Any) -> None:
    """Writes ``writes`` memories through the combiner, appending "sent k" before each
    and "acked k" after it to its own file (O_APPEND: in the kernel once written, so a
    SIGKILL loses none); says in ``leader-<pid>`` when it leads a slot."""
    import traceback

    log = os.open(os.path.join(folder, f"w{n}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with engramdb.open(url, embedder=_embedder(), combine={"leaders": leaders},
                           release_before_flush=n % 2 == 0) as db:
            barrier.wait(timeout=300)
            told = False
            for k in range(writes):
                os.write(log, f"sent {k}\n".encode())
                db.remember(f"w{n} note {k}", namespace=f"t{n % 4}/notes", layer="episodic",
                            embedding=_unit(1000 * n + k))
                os.write(log, f"acked {k}\n".encode())
                if not told and db.storage.combiner._leader is not None:
                    Path(folder, f"leader-{os.getpid()}").write_text(str(n))
                    told = True
                time.sleep(0.002)
            counts = dict(db.storage.combiner.counts)
        results.put({"n": n, "counts": counts, "error": None})
    except BaseException:
        results.put({"n": n, "error": traceback.format_exc()})


@pytest.mark.postgres
@pytest.mark.parametrize("leaders", [1, 2])
def test_sigkill_of_leaders_mid_stream_loses_and_duplicates_nothing(pg_url: str, tmp_path: Path,
                                                                    leaders: int) -> None:
    writers, writes = 8, 80
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        start = db.storage.head()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_streaming_writer,
                         args=(pg_url, n, writes, str(tmp_path), leaders, barrier, results))
             for n in range(writers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)

    def acked() -> int:
        return sum(Path(tmp_path, f"w{n}").read_text().count("acked")
                   for n in range(writers) if Path(tmp_path, f"w{n}").exists())

    deadline = time.monotonic() + 300
    while acked() < writers * writes // 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    leaders = {int(f.name.split("-")[1]): int(f.read_text())
               for f in tmp_path.glob("leader-*")}
    assert leaders, "no writer led a slot"
    for pid in leaders:
        os.kill(pid, signal.SIGKILL)  # mid-stream: a call may be in flight
    killed = set(leaders.values())
    reports = []
    for _ in range(writers - len(killed)):
        reports.append(results.get(timeout=300))
    for p in procs:
        p.join(timeout=60)
    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, errors[0]
    assert {r["n"] for r in reports} == set(range(writers)) - killed
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        events = _remembered(db, start.seq)
        texts = [db.get(e.subject_ref).text for e in events]
        assert len(set(texts)) == len(texts)  # no write twice
        for n in range(writers):
            lines = Path(tmp_path, f"w{n}").read_text().split("\n")
            sent = {int(x.split()[1]) for x in lines if x.startswith("sent")}
            done = {int(x.split()[1]) for x in lines if x.startswith("acked")}
            mine = {int(t.rsplit(" ", 1)[1]) for t in texts if t.startswith(f"w{n} note ")}
            assert done <= mine, (n, sorted(done - mine))  # every acknowledged write is in
            assert mine <= sent  # nothing written that was not sent
            if n not in killed:
                assert done == mine == set(range(writes))
            else:  # killed: at most the one write it was sending is in, unacknowledged
                assert len(mine - done) <= 1
        assert [e.seq for e in db.storage.events(start.seq, limit=100_000)] == list(
            range(start.seq + 1, db.storage.head().seq + 1))
        report = db.verify()
        assert report.ok, report
    survivors = [r["counts"] for r in reports]
    assert sum(c["leader"] for c in survivors) > 0  # the survivors led on
    assert sum(c["fallback"] for c in survivors) > 0  # and saw their leaders die


@pytest.mark.parametrize("arrays", [
    [[b"a"], [], [None, b"bc"], [b""]],
    [[], []],
    [[None], [b"x", None, b"yz"]],
])
def test_joined_arrays_hold_every_element_in_order(arrays: list[list[Any]]) -> None:
    from engramdb.storage.postgres.pgarray import array_items, binary_array, joined_arrays

    data, counts = joined_arrays(25, [binary_array(25, a) for a in arrays])
    assert counts == [len(a) for a in arrays]
    assert array_items(data) == [x for a in arrays for x in a]
    assert data == binary_array(25, [x for a in arrays for x in a])
