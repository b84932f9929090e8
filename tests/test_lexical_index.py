"""The in-process full-text index (storage/sqlite/lexical.py) ranks exactly as FTS5 does.

Every comparison runs the same search twice on the same database and snapshot: once
through the index, once with the index switched off (FTS5's bm25 in SQL, the path the
index replaces), and asks for the same rows in the same order with the same scores,
bit for bit. Writes come between the searches (new versions, retractions, erasures),
from this process and from another one, so the index's refresh, its overriding of
changed rows and its rebuild after an erasure are all on the path compared.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.model import RecallFilter
from tests.support.lexical import OFF, search

WORDS = ("river rivers running runs run stone ledger max_len use_ssl café naïve a0 "
         "x2 harbor copper lantern meadow the of signal orchard").split()
NAMESPACES = ("team/a", "team/b", "team/c")


def _open(path):
    db = engramdb.open(path, embedder=None)
    db.storage._lexical.min_rows = 0  # the index answers every search here
    return db


_search = search


def _filters(db, old_tx):
    head = db.storage.head().tx
    return [RecallFilter(as_of=head), RecallFilter(namespaces=NAMESPACES[:1], as_of=head),
            RecallFilter(namespaces=NAMESPACES[1:], as_of=head),
            RecallFilter(as_of=old_tx), RecallFilter(statuses=(), as_of=head),
            RecallFilter(as_of=head, include_superseded=True)]


def _same(db, queries, old_tx, limit=7):
    for query in queries:
        for flt in _filters(db, old_tx):
            want = _search(db, query, flt, limit, index=False)
            got = _search(db, query, flt, limit, index=True)
            assert got == want, (query, flt)


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=9).map(" ".join)
ops = st.lists(st.tuples(st.sampled_from(("remember", "remember", "update", "retract",
                                          "forget")),
                         texts, st.integers(0, 50), st.sampled_from(NAMESPACES)),
               min_size=4, max_size=30)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.lists(st.tuples(texts, st.sampled_from(NAMESPACES)), min_size=3, max_size=25),
       then=ops, queries=st.lists(texts, min_size=1, max_size=4))
def test_the_index_ranks_as_fts5_through_writes_updates_and_erasures(tmp_path_factory, first,
                                                                     then, queries):
    db = _open(tmp_path_factory.mktemp("lex") / "engram.db")
    try:
        ids = [m.id for m in db.remember_many([{"text": t, "namespace": ns} for t, ns in first])]
        old_tx = db.storage.head().tx
        _same(db, queries, old_tx)  # the base is built here; what follows is read as rows since
        for op, text, pick, ns in then:
            live = [i for i in ids if i is not None]
            target = live[pick % len(live)] if live else None
            if op == "remember" or target is None:
                ids.append(db.remember(text, namespace=ns).id)
            elif op == "update":
                db.update(target, text=text)
            elif op == "retract":
                db.retract(target)
                ids[ids.index(target)] = None
            else:
                db.forget(id=target, reason="test")
                ids[ids.index(target)] = None
        _same(db, queries + [text for text, _ in first[:2]], old_tx)
    finally:
        db.close()


def test_a_phrase_word_counts_each_occurrence(tmp_path):
    """``max_len`` is the phrase "max len" to FTS5: its count per row is read back from
    FTS5's own score, so a row saying it three times outranks one saying it once."""
    db = _open(tmp_path / "engram.db")
    try:
        db.remember_many([{"text": "max_len max_len max_len and more words here"},
                          {"text": "max_len once in a longer text with other words here"},
                          {"text": "max and len apart: no phrase"}])
        flt = RecallFilter(as_of=db.storage.head().tx)
        got = _search(db, "max_len", flt, 10, index=True)
        assert got == _search(db, "max_len", flt, 10, index=False)
        assert len(got) == 2 and got[0][2] > got[1][2]
    finally:
        db.close()


_WRITER = textwrap.dedent("""
    import sys
    import engramdb
    db = engramdb.open(sys.argv[1], embedder=None)
    if sys.argv[2] == "write":
        new = db.remember("copper lantern written by another process", namespace="team/b")
        db.update(sys.argv[3], text="the harbor ledger, corrected elsewhere")
        db.retract(sys.argv[4])
        print(new.id)
    else:
        db.forget(id=sys.argv[3], reason="another process erases it")
    db.close()
""")


def _other_process(*args: str) -> str:
    out = subprocess.run([sys.executable, "-c", _WRITER, *args], capture_output=True,
                         text=True, timeout=120, check=True)
    return out.stdout.strip()


def test_another_process_writing_is_seen_by_the_next_search(tmp_path):
    path = tmp_path / "engram.db"
    db = _open(path)
    query = "harbor copper lantern"
    try:
        mems = db.remember_many([{"text": f"harbor ledger copper note {i}",
                                  "namespace": NAMESPACES[i % 3]} for i in range(60)])
        before = db.storage.head().tx
        assert len(_search(db, "harbor copper", RecallFilter(as_of=before), 100,
                           index=True)) == 60
        builds = db.storage._lexical.builds
        updated, retracted, erased = mems[1].id, mems[2].id, mems[3].id
        new_id = _other_process(str(path), "write", updated, retracted)
        head = db.storage.head().tx
        now = _search(db, query, RecallFilter(as_of=head), 100, index=True)
        assert now == _search(db, query, RecallFilter(as_of=head), 100, index=False)
        found = {(i, v) for i, v, _ in now}
        assert (new_id, 1) in found
        assert (updated, 2) in found and (updated, 1) not in found
        assert retracted not in {i for i, _ in found}
        assert db.storage._lexical.builds == builds  # read as rows since, not rebuilt
        # A read as of before the other process's writes sees the old version, not the new.
        then = _search(db, query, RecallFilter(as_of=before), 100, index=True)
        assert then == _search(db, query, RecallFilter(as_of=before), 100, index=False)
        assert (updated, 1) in {(i, v) for i, v, _ in then}
        assert new_id not in {i for i, _, _ in then}
        _other_process(str(path), "forget", erased)
        head = db.storage.head().tx
        for as_of in (head, before):
            now = _search(db, query, RecallFilter(as_of=as_of), 100, index=True)
            assert now == _search(db, query, RecallFilter(as_of=as_of), 100, index=False)
            assert erased not in {i for i, _, _ in now}
        assert db.storage._lexical.builds == builds + 1  # the erasure dropped the old index
    finally:
        db.close()


@pytest.mark.parametrize("query", ["harbor", "copper ledger note", "note 7"])
def test_recall_through_the_index_returns_what_fts5_returns(tmp_path, query):
    db = _open(tmp_path / "engram.db")
    try:
        db.remember_many([{"text": f"harbor ledger copper note {i}", "namespace": NAMESPACES[i % 3]}
                          for i in range(40)])
        with_index = db.recall(query, k=10)
        db.storage._lexical.min_rows = OFF
        without = db.recall(query, k=10)
        assert [(h.memory.id, h.score) for h in with_index.hits] == \
            [(h.memory.id, h.score) for h in without.hits]
    finally:
        db.close()


def test_a_bulk_load_after_the_index_is_answered_at_once_and_then_by_a_new_base(tmp_path):
    """Rows beyond ``rebuild_min`` written since the base are not tokenised in the
    search: FTS5 answers it (the same rows) while a new base is read in the background."""
    db = _open(tmp_path / "engram.db")
    lexical = db.storage._lexical
    lexical.rebuild_min = 50
    try:
        db.remember_many([{"text": f"harbor note {i}"} for i in range(20)])
        flt = RecallFilter(as_of=db.storage.head().tx)
        assert len(_search(db, "harbor", flt, 100, index=True)) == 20
        builds = lexical.builds
        db.remember_many([{"text": f"harbor ledger {i}"} for i in range(200)])
        flt = RecallFilter(as_of=db.storage.head().tx)
        want = _search(db, "harbor ledger", flt, 300, index=False)
        assert _search(db, "harbor ledger", flt, 300, index=True) == want
        lexical._builder.join(timeout=60)
        assert lexical.builds == builds + 1
        assert _search(db, "harbor ledger", flt, 300, index=True) == want
        assert len(want) == 220
    finally:
        db.close()


def test_threads_searching_while_another_writes_agree_with_fts5_in_their_snapshot(tmp_path):
    """Searching threads share one index: each search, inside its own snapshot, ranks as
    FTS5 does in that snapshot, whether the index is behind it (refreshed there), at it,
    or already ahead of it (refreshed by another thread: FTS5 answers)."""
    import threading

    db = _open(tmp_path / "engram.db")
    storage = db.storage
    db.remember_many([{"text": f"harbor ledger copper note {i}", "namespace": NAMESPACES[i % 3]}
                      for i in range(50)])
    stop = threading.Event()
    failures: list[object] = []

    def write() -> None:
        i = 0
        while not stop.is_set() and i < 150:
            db.remember(f"harbor lantern written now {i}", namespace=NAMESPACES[i % 3])
            i += 1

    def search(seed: int) -> None:
        try:
            for j in range(100):
                query = ("harbor copper", "lantern ledger", "note written")[(seed + j) % 3]
                with storage.snapshot():
                    conn = storage._conn("reader")
                    flt = RecallFilter(namespaces=None if j % 2 else NAMESPACES[:1],
                                       as_of=storage.head().tx)
                    mine = storage._search_text(conn, query, flt, 15, lexical=True)
                    theirs = storage._search_text(conn, query, flt, 15)
                if [(r["id"], s) for r, s in mine] != [(r["id"], s) for r, s in theirs]:
                    failures.append((query, flt))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=search, args=(k,)) for k in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join(timeout=120)
        stop.set()
        threads[0].join(timeout=120)
        assert failures == []
        assert storage._lexical.builds >= 1
    finally:
        db.close()
