"""Prepared writes (storage/postgres/prepared.py) and the configuration kept in memory.

A single ``remember`` on PostgreSQL is built before the chain lock and applied by
one ``CALL engram_append(...)``, which numbers it, hashes it and commits under
the lock. These tests check, on the real server, what that must not cost:

* the log it writes is the log a locked write would have written: every hash
  recomputes (``verify``), an export imports into SQLite with the same head,
  and what ``remember`` returned is what is stored;
* a write prepared under a configuration (grants, settings) that changed before
  it was applied is never applied under the old one;
* transaction time never goes backwards, even when a write prepared later
  commits first;
* many writer processes with prepared and locked writes mixed, and an admin
  changing grants meanwhile, lose and duplicate nothing.

And on both backends: a configuration change made through one handle is in
force for the very next write of another (the rows a writer keeps in memory
are tagged with the transaction of the last configuration change).
"""

from __future__ import annotations

import io
import json
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb import PermissionDenied
from engramdb.engine import import_database
from engramdb.engine.writes import write_prepared
from engramdb.model import RecallFilter
from engramdb.storage.base import Insert, Unprepared
from tests.support.procs import assert_log_whole, gather

DIM = 384


def _embedder() -> Any:
    """The default embedder's identity; its model never loads (embeddings are given)."""
    from engramdb.retrieval.embed import LocalEmbedder

    return LocalEmbedder()


def _unit(seed: int, n: int = 1) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


TRICKY = [
    ("plain words", {}),
    ('quotes " and \\ backslash, tab\t and newline\n', {"n": 1, "f": 0.1}),
    ("unicode: élan, 東京, emoji \U0001f600, line sep \u2028, bell \x07",
     {"big": 9007199254740993, "neg": -5, "list": [1, 2.5, "x"], "nested": {"a": None}}),
    ("digits 123456789012345678 and 100000000000000000", {"tx": 100000000000000000}),
]


@pytest.mark.postgres
@pytest.mark.parametrize("release", [False, True])
def test_a_prepared_write_stores_and_hashes_what_a_locked_write_would(pg_url: str,
                                                                      tmp_path: Path,
                                                                      release: bool) -> None:
    with engramdb.open(pg_url, embedder=_embedder(), release_before_flush=release) as db:
        head = db.storage.head()
        written = [db.remember(text, namespace="acme/notes", layer="episodic", metadata=meta,
                               embedding=_unit(i)[0])
                   for i, (text, meta) in enumerate(TRICKY)]
        # Numbered by the server, in order, one transaction each.
        assert [m.tx_from for m in written] == list(range(head.tx + 1, head.tx + 1 + len(TRICKY)))
        for m in written:
            assert db.get(m.id) == m
        events = db.storage.events(head.seq)
        assert [e.tx for e in events] == [m.tx_from for m in written]
        assert [e.subject_ref for e in events] == [m.id for m in written]
        report = db.verify()
        assert report.ok, report
        for i, m in enumerate(written):  # each vector stored with its version, intact
            (row, similarity), *_ = db.storage.search_vector(
                _unit(i)[0], RecallFilter(namespaces=("acme/notes",)), 1)
            assert row["id"] == m.id and similarity == pytest.approx(1.0, abs=1e-5)
        copy = _exported_to_sqlite(db, tmp_path)
    try:
        assert copy.get(written[2].id) == written[2]
    finally:
        copy.close()


def _exported_to_sqlite(db: Any, tmp_path: Path) -> Any:
    """``db`` exported and imported into a new SQLite database, opened; checked to end
    on the same head hash and to verify (the caller closes it)."""
    out = io.StringIO()
    db.export(out)
    pg_head = db.storage.head()
    import_database(tmp_path / "copy.db", io.StringIO(out.getvalue()), embedder=_embedder())
    copy = engramdb.open(tmp_path / "copy.db", embedder=_embedder())
    assert copy.storage.head().hash == pg_head.hash
    assert copy.verify().ok
    return copy


def _writing_agent(admin: Any, db: Any, name: str) -> Any:
    """``name``, created and granted acme/** through ``admin``, as a session of ``db``
    that has written once (so its grants are kept in memory)."""
    admin.admin.create_agent(name)
    admin.admin.grant(name, "acme/**", ["read", "write"])
    me = db.as_agent(name)
    me.remember("warm", namespace="acme/notes", layer="episodic", embedding=_unit(1)[0])
    return me


def _one_insert(w: Any, text: str) -> None:
    row = {"id": f"m-{text}", "version": 1, "namespace": "acme/notes", "layer": "episodic",
           "text": text, "subject": None, "predicate": None, "value": None, "metadata": {},
           "importance": 0.5, "confidence": 1.0, "author": "admin", "source": None,
           "session": None, "valid_from": w.recorded_at, "valid_to": None, "tx_from": w.tx,
           "tx_to": None, "recorded_at": w.recorded_at, "status": "active",
           "expires_at": None}
    w.apply([Insert("memories", row)])
    w.log("memory.remembered", actor="admin", namespace="acme/notes", subject_ref=row["id"],
          payload={"effects": [{"op": "insert", "table": "memories", "row": row}]})


@pytest.mark.postgres
def test_a_configuration_change_while_prepared_refuses_the_write(pg_url: str) -> None:
    with engramdb.open(pg_url, embedder=_embedder()) as db, \
            engramdb.open(pg_url, embedder=_embedder()) as other:
        bob = _writing_agent(db, db, "bob")
        head = db.storage.head()

        # Seam: a grant given while a write is prepared makes the write refuse itself.
        with pytest.raises(Unprepared) as refused:
            with db.storage.prepare("admin") as w:
                _one_insert(w, "prepared before the grant")
                other.admin.grant("bob", "other/**", ["read"])
        assert refused.value.again
        assert db.storage.head().seq == head.seq + 1  # only the grant's event
        assert db.storage.fetch("memories", {"id": "m-prepared before the grant"}) == []

        # Engine: bob's grant is revoked after his write was prepared under it; the
        # write is prepared again under the new configuration, which refuses it.
        attempts = []

        def work(w: Any) -> Any:
            attempts.append(w)
            if len(attempts) == 1:
                grant = next(g for g in other.admin.grants("bob") if g.pattern == "acme/**")
                other.admin.revoke(grant.id)
            from engramdb.engine.writes import Writer

            draft = bob._draft(text="after the revoke", namespace="acme/notes",
                               layer="episodic")
            return Writer(bob._caller, bob._svc.trust, w).remember(draft, _unit(2)[0])

        before = db.storage.head().seq
        with pytest.raises(PermissionDenied):
            write_prepared(db.storage, "bob", work)
        assert len(attempts) > 1  # the first, prepared under the old grant, was not applied
        assert db.storage.head().seq == before + 1  # the revoke, nothing of bob's
        assert db.verify().ok


@pytest.mark.postgres
def test_transaction_time_never_goes_backwards(pg_url: str) -> None:
    with engramdb.open(pg_url, embedder=_embedder()) as db, \
            engramdb.open(pg_url, embedder=_embedder()) as other:
        db.remember("first", namespace="acme/notes", layer="episodic", embedding=_unit(1)[0])
        with db.storage.prepare("admin") as w:
            _one_insert(w, "prepared first")
            later = other.remember("committed first", namespace="acme/notes",
                                   layer="episodic", embedding=_unit(2)[0])
        assert w.stamped is not None and w.stamped.tx == later.tx_from + 1
        mine = db.get("m-prepared first")
        assert mine.recorded_at >= later.recorded_at and mine.tx_from == later.tx_from + 1
        assert mine.valid_from == mine.recorded_at  # the default: when it was recorded
        times = [e.recorded_at for e in db.storage.events(0)]
        assert times == sorted(times)
        assert db.verify().ok


def _writer(url: str, n: int, barrier: Any, results: Any) -> None:
    import traceback

    try:
        with engramdb.open(url, embedder=_embedder(), release_before_flush=n % 2 == 0) as db:
            me = db.as_agent(f"w{n}")
            barrier.wait(timeout=300)
            ids = []
            for k in range(WRITES):
                m = me.remember(f"w{n} note {k}", namespace=f"t{n % 4}/notes",
                                layer="episodic", metadata={"k": k},
                                embedding=_unit(1000 * n + k)[0],
                                # every third write takes the locked path (a key is read)
                                idempotency_key=f"w{n}-{k}" if k % 3 == 0 else None)
                ids.append((m.id, m.tx_from))
        results.put({"n": n, "ids": ids, "error": None})
    except BaseException:
        results.put({"n": n, "error": traceback.format_exc()})


def _admin(url: str, barrier: Any, results: Any) -> None:
    with engramdb.open(url, embedder=_embedder()) as db:
        barrier.wait(timeout=300)
        for i in range(6):  # configuration changes while the writers run
            db.admin.grant(f"w{i}", f"spare{i}/**", ["read"])
    results.put({"n": "admin", "error": None})


WRITERS = 16
WRITES = 6


@pytest.mark.postgres
def test_many_writers_prepared_and_locked_with_grants_changing_lose_nothing(pg_url) -> None:
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        for n in range(WRITERS):
            db.admin.create_agent(f"w{n}")
            db.admin.grant(f"w{n}", f"t{n % 4}/**", ["read", "write"])
        start = db.storage.head()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WRITERS + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(pg_url, n, barrier, results))
             for n in range(WRITERS)]
    procs.append(ctx.Process(target=_admin, args=(pg_url, barrier, results)))
    out = gather(procs, results, timeout=600)
    errors = [r["error"] for r in out if r["error"]]
    assert not errors, errors[0]
    acked = [i for r in out if r["n"] != "admin" for i in r["ids"]]
    assert len(acked) == WRITERS * WRITES
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        events = db.storage.events(start.seq, limit=10_000)
        assert_log_whole(events, acked, start)
        remembered = [e.subject_ref for e in events if e.kind == "memory.remembered"]
        assert len(set(remembered)) == len(remembered)
        times = [e.recorded_at for e in events]
        assert times == sorted(times)
        report = db.verify()
        assert report.ok, report


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_a_configuration_change_through_another_handle_holds_for_the_next_write(
        backend: str, tmp_path: Path, request: Any) -> None:
    url = (str(tmp_path / "engram.db") if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    with engramdb.open(url, embedder=_embedder()) as db, \
            engramdb.open(url, embedder=_embedder()) as other:
        carol = _writing_agent(other, db, "carol")
        grant = next(g for g in other.admin.grants("carol") if g.pattern == "acme/**")
        other.admin.revoke(grant.id)
        with pytest.raises(PermissionDenied):
            carol.remember("refused", namespace="acme/notes", layer="episodic",
                           embedding=_unit(2)[0])
        other.admin.grant("carol", "acme/**", ["read", "write"])
        other.admin.set_lifecycle("acme/**", layer="episodic", ttl="30d")
        m = carol.remember("expires", namespace="acme/notes", layer="episodic",
                           embedding=_unit(3)[0])
        assert m.expires_at is not None
        assert db.verify().ok


@pytest.mark.postgres
def test_a_value_holding_a_placeholders_digits_is_written_intact(pg_url: str,
                                                                  monkeypatch) -> None:
    # The placeholders are random; here they are made known (drawn in sequence), and a
    # caller's text or metadata holds the digits of the next write's transaction hole.
    # The server replaces the digits it finds, so such a write must take the locked
    # path and store exactly what was given; an ordinary write is still applied
    # prepared, in one call.
    from engramdb.storage.postgres import prepared

    drawn: list[int] = []

    def in_sequence(n: int, entropy: object) -> int:
        drawn.append(len(drawn) + 1)
        return drawn[-1]

    monkeypatch.setattr(prepared, "_below", in_sequence)
    sent: list[int] = []
    real_send = prepared._send
    monkeypatch.setattr(prepared, "_send", lambda s, w: (sent.append(w.tx), real_send(s, w)))

    def next_tx_hole() -> int:  # what _hole draws next for a transaction number
        return 3 * 10**17 + len(drawn) + 1

    with engramdb.open(pg_url, embedder=_embedder()) as db:
        plain = db.remember("an ordinary note", namespace="acme/notes", layer="episodic",
                            embedding=_unit(0)[0])
        assert sent == [3 * 10**17 + 1]  # prepared, applied by one CALL
        cases = [
            lambda h: {"text": f"ticket {h} is open"},
            lambda h: {"text": "a note", "metadata": {"ref": f"#{h}"}},
            lambda h: {"text": "a note", "metadata": {"n": h * 10}},  # a longer number
        ]
        for i, case in enumerate(cases):
            kw = case(next_tx_hole())
            m = db.remember(namespace="acme/notes", layer="episodic",
                            embedding=_unit(i + 1)[0], **kw)
            got = db.get(m.id)
            assert got.text == kw["text"]
            assert got.metadata == kw.get("metadata", {})
            assert got == m
        assert len(sent) == 1  # none of them was sent prepared
        assert db.get(plain.id) == plain
        assert db.verify().ok


def _derived(w: Any, text: str) -> None:
    """A prepared write of a shape the procedure has no static insert for: a memories
    row and a derivations row (what a derived memory writes)."""
    row = {"derived_id": f"m-{text}", "derived_version": 1, "source_id": "m-source",
           "source_version": 1, "kind": "summary", "tx": w.tx}
    w.apply([Insert("derivations", row)])
    w.log("memory.derived", actor="admin", namespace="acme/notes", subject_ref=row["derived_id"],
          payload={"effects": [{"op": "insert", "table": "derivations", "row": row}]})


@pytest.mark.postgres
def test_a_connection_that_lost_its_prepared_statements_prepares_them_again(
        pg_url: str) -> None:
    """A prepared write uses two kinds of session-level prepared statements: the
    ``CALL engram_append`` itself (storage/postgres/append_call.py) and, inside the
    procedure, one INSERT per table shape it has no static statement for (migration
    0032; 0036 inserts a single write's memories row statically). psycopg deallocates
    every prepared statement of a connection after a ROLLBACK it sees. The next write
    on that connection prepares what is missing again: nothing fails, nothing is lost."""
    with engramdb.open(pg_url, embedder=_embedder(), pool_min_size=1,
                       pool_max_size=1) as db:
        pool = db.storage._get_pool()

        def prepared_statements() -> list[str]:
            with pool.connection() as conn:
                return [r[0] for r in conn.execute(
                    "SELECT name FROM pg_prepared_statements "
                    "WHERE name LIKE 'engram%' ORDER BY name").fetchall()]

        first = db.remember("before", namespace="acme/notes", layer="episodic",
                            embedding=_unit(1)[0])
        assert prepared_statements() == ["engramdb_append_0032"]  # memories: static
        with db.storage.prepare("admin") as w:
            _derived(w, "one")
        names = prepared_statements()
        assert len(names) == 2 and names[0].startswith("engram_ins_")  # derivations
        for i in range(3):  # planned once: later writes of the same shapes reuse them
            db.remember(f"again {i}", namespace="acme/notes", layer="episodic",
                        embedding=_unit(2 + i)[0])
        with db.storage.prepare("admin") as w:
            _derived(w, "two")
        assert prepared_statements() == names
        with pool.connection() as conn:
            conn.execute("DEALLOCATE ALL")
        assert prepared_statements() == []
        second = db.remember("after", namespace="acme/notes", layer="episodic",
                             embedding=_unit(9)[0])
        with db.storage.prepare("admin") as w:
            _derived(w, "three")
        assert prepared_statements() == names
        assert second.tx_from == first.tx_from + 6
        assert db.get(first.id) == first and db.get(second.id) == second
        with pool.connection() as conn:
            derived = conn.execute("SELECT derived_id FROM derivations ORDER BY derived_id")
            assert [r[0] for r in derived.fetchall()] == ["m-one", "m-three", "m-two"]
        assert db.verify().ok


def test_both_durability_barriers_are_the_static_statements_the_procedure_knows() -> None:
    """engram_append (migration 0032) runs the barrier as a planned statement only when
    its text is one of durability.py's two forms; any other text still works, through
    EXECUTE, re-planned on every write. A change on one side only would cost every
    early-released write that planning without failing anything: caught here."""
    import re

    from engramdb.storage.postgres import durability

    for version in ("0032_append_planned.sql", "0036_append_leaner.sql",  # each replaces it
                    "0038_write_indexes.sql"):
        sql = (Path(durability.__file__).parent / "migrations" / version).read_text()
        joined = re.sub(r"'\s*\n\s*'", "", sql)  # adjacent string constants: one constant
        for barrier in (durability._TRANSACTIONAL, durability._FLUSHING):
            assert "p_barrier = '" + barrier.replace("'", "''") + "'" in joined, barrier


@pytest.mark.postgres
def test_a_prepared_call_holding_nul_is_refused_and_writes_nothing(pg_url: str) -> None:
    """The call's parameters go to libpq already encoded (storage/postgres/append_call.py),
    where a NUL would cut a text parameter short. A value holding one is refused with a
    typed error by the client's check before anything is sent, and the log does not move.
    The message names the NUL, which only the client's check can say: the server would
    see a cut literal and report a malformed array."""
    from engramdb.errors import EngramError

    with engramdb.open(pg_url, embedder=_embedder()) as db:
        db.remember("warm", namespace="acme/notes", layer="episodic", embedding=_unit(1)[0])
        head = db.storage.head()
        with pytest.raises(EngramError, match=r"NUL.*remove them"), \
                db.storage.prepare("admin") as w:
            _one_insert(w, "a kind that holds a NUL")
            w.log("memory.remembered\x00tail", actor="admin", namespace="acme/notes",
                  subject_ref=None, payload={"effects": []})
        assert db.storage.head() == head
        assert db.verify().ok


@pytest.mark.postgres
def test_a_prepared_call_of_several_rows_and_events_reads_back_exactly(pg_url: str,
                                                                        tmp_path: Path) -> None:
    """The call's arrays go to the server in PostgreSQL's binary array form (several
    elements, NULL elements, texts holding what an array literal would have to quote:
    quotes, backslashes, braces, commas, spaces, non-ASCII). What the server stored and
    hashed is what was sent: the events read back field for field, ``verify`` passes,
    and an export imported into SQLite ends on the same head hash."""
    kinds = ['note "quoted", {braced}', "back\\slash, NULL"]
    actors = ["admin", 'a "b" {c}, \\ é']
    with engramdb.open(pg_url, embedder=_embedder()) as db:
        head = db.storage.head()
        with db.storage.prepare("admin") as w:
            _one_insert(w, 'text with "quotes", {braces} and \\ back')
            _derived(w, "derived, {x}")
            w.log(kinds[0], actor=actors[0], namespace=None, subject_ref=None,
                  payload={"effects": [], "why": '{"a", \\N}'})
            w.log(kinds[1], actor=actors[1], namespace="acme/東京", subject_ref='s "1"',
                  payload={"effects": []})
        events = db.storage.events(head.seq)
        assert [(e.kind, e.actor, e.namespace, e.subject_ref) for e in events] == [
            ("memory.remembered", "admin", "acme/notes", 'm-text with "quotes", {braces} '
             'and \\ back'),
            ("memory.derived", "admin", "acme/notes", "m-derived, {x}"),
            (kinds[0], actors[0], None, None),
            (kinds[1], actors[1], "acme/東京", 's "1"')]
        assert json.loads(events[2].payload) == {"effects": [], "why": '{"a", \\N}'}
        assert len({e.tx for e in events}) == 1
        assert db.verify().ok
        _exported_to_sqlite(db, tmp_path).close()
