"""The full-text index's shared snapshot (storage/sqlite/lexsnap.py): written once, opened by
other processes without a rebuild, replaced when stale, foreign or damaged, and never left
holding an erased memory's words on disk.

Rankings are compared as in test_lexical_index.py: the same search through the index and
with it switched off (FTS5's bm25 in SQL), same rows, same order, same scores.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.sqlite.lexical import LexicalSearch
from tests.support.lexical import search

NAMESPACES = ("team/a", "team/b", "team/c")
QUERIES = ("harbor copper", "ledger lantern note", "meadow", "orchard signal 7")


def _open(path):
    db = engramdb.open(path, embedder=None)
    db.storage._lexical.min_rows = 0  # the index answers every search here
    return db


def _search(db, query, flt, limit=20, *, index=True):
    return search(db, query, flt, limit, index=index)


def _filters(db):
    head = db.storage.head().tx
    return [RecallFilter(as_of=head), RecallFilter(namespaces=NAMESPACES[:1], as_of=head),
            RecallFilter(as_of=head, include_superseded=True)]


def _all_same(db):
    for query in QUERIES:
        for flt in _filters(db):
            want = _search(db, query, flt, index=False)
            assert want, query
            assert _search(db, query, flt) == want, (query, flt)


def _fill(db, n=120, start=0):
    words = "harbor copper ledger lantern note meadow orchard signal".split()
    return db.remember_many([
        {"text": f"{words[i % 8]} {words[(i * 3) % 8]} note {i} {words[(i * 5) % 7]}",
         "namespace": NAMESPACES[i % 3]} for i in range(start, start + n)])


def _vindex(path) -> Path:
    return Path(str(path) + "-vindex")


def _published(path) -> Path:
    return _vindex(path) / (_vindex(path) / "lex-current").read_text().strip()


_READER = textwrap.dedent("""
    import json, sys
    import engramdb
    from engramdb.model import RecallFilter
    db = engramdb.open(sys.argv[1], embedder=None)
    lexical = db.storage._lexical
    out = {}
    for query in json.loads(sys.argv[2]):
        lexical.min_rows = 0
        got = [(r["id"], r["version"], s) for r, s in db.storage.search_text(
            query, RecallFilter(), 20)]
        lexical.min_rows = 10**12
        want = [(r["id"], r["version"], s) for r, s in db.storage.search_text(
            query, RecallFilter(), 20)]
        out[query] = [got, want]
    out["builds"] = lexical.builds
    out["base"] = str(lexical._index.base.path)
    print(json.dumps(out))
    db.close()
""")


def test_a_second_process_opens_the_published_snapshot_and_ranks_as_fts5(tmp_path):
    path = tmp_path / "engram.db"
    db = _open(path)
    try:
        mems = _fill(db)
        _all_same(db)  # builds and publishes the snapshot
        assert db.storage._lexical.builds == 1
        published = _published(path)
        assert json.loads((published / "meta.json").read_text())["n"] == 120
        db.update(mems[0].id, text="harbor copper rewritten after the snapshot")
        db.retract(mems[1].id)
        out = json.loads(subprocess.run(
            [sys.executable, "-c", _READER, str(path), json.dumps(QUERIES)],
            capture_output=True, text=True, timeout=120, check=True).stdout)
        assert out.pop("builds") == 0  # opened, not built again
        assert out.pop("base") == str(published)
        for query, (got, want) in out.items():
            assert got == want and got, query
            assert [tuple(h) for h in got] == _search(db, query, RecallFilter())
        assert mems[1].id not in {h[0] for got, _ in out.values() for h in got}
    finally:
        db.close()


def test_the_snapshot_is_private_to_its_owner(tmp_path):
    path = tmp_path / "engram.db"
    db = _open(path)
    try:
        _fill(db, 30)
        _all_same(db)
        snap = _published(path)
        assert snap.stat().st_mode & 0o777 == 0o700
        files = list(snap.iterdir())
        assert len(files) > 10
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
        assert (_vindex(path) / "lex-current").stat().st_mode & 0o777 == 0o600
    finally:
        db.close()


# Porter keeps the digits: "zqx00007canary" is indexed as "zqx00007canari".
_CANARY = re.compile(rb"zqx(\d{5})canar")


def _canaries_on_disk(path) -> set[int]:
    found: set[int] = set()
    for f in _vindex(path).rglob("*"):
        if f.is_file():
            found |= {int(m.group(1)) for m in _CANARY.finditer(f.read_bytes())}
    return found


def test_the_snapshot_files_never_hold_an_erased_memorys_words(tmp_path):
    path = tmp_path / "engram.db"
    db = _open(path)
    try:
        _fill(db, 60)
        mems = db.remember_many([{"text": f"secret note zqx{i:05d}canary harbor",
                                  "namespace": NAMESPACES[i % 3]} for i in range(20)])
        _all_same(db)
        assert _canaries_on_disk(path) == set(range(20))  # the scan sees the stems
        stale = tmp_path / "stale"
        shutil.copytree(_published(path), stale)  # what a builder that read earlier holds
        pointer = (_vindex(path) / "lex-current").read_text()
        erased = {0, 7, 13}
        for i in sorted(erased):
            db.forget(id=mems[i].id, reason="test")
        assert not _canaries_on_disk(path) & erased
        _all_same(db)  # rebuilt without them
        assert _canaries_on_disk(path) == set(range(20)) - erased
        assert all(not _search(db, f"zqx{i:05d}canary", RecallFilter()) for i in erased)
        # A snapshot read before the erasure and published after its purge (a builder in
        # another process): the next search neither uses nor keeps it.
        shutil.copytree(stale, _vindex(path) / pointer)
        (_vindex(path) / "lex-current").write_text(pointer)
        assert _canaries_on_disk(path) & erased
        other = _open(path)
        lexical = other.storage._lexical
        try:
            # As in a large database, whose new snapshot is built in the background: found
            # stale, it is deleted at once, not when the new one replaces it.
            lexical.sync_build_max = 0
            lexical._start_builder = lambda: None  # the background build has not run yet
            _all_same(other)  # FTS5 answers meanwhile
            assert not _canaries_on_disk(path) & erased
            del lexical._start_builder
            lexical.sync_build_max = LexicalSearch.sync_build_max
            _all_same(other)
            assert _canaries_on_disk(path) == set(range(20)) - erased
            assert lexical.builds == 1
        finally:
            other.close()
    finally:
        db.close()


def test_a_foreign_or_damaged_snapshot_is_not_used_but_rebuilt(tmp_path):
    a, b = tmp_path / "a" / "engram.db", tmp_path / "b" / "engram.db"
    a.parent.mkdir()
    b.parent.mkdir()
    dba, dbb = _open(a), _open(b)
    try:
        _fill(dba, 90)
        _fill(dbb, 60, start=500)
        _all_same(dbb)
        _all_same(dba)
        # b's snapshot published as a's: another database's chain at its tx
        foreign = _published(b)
        shutil.copytree(foreign, _vindex(a) / foreign.name)
        (_vindex(a) / "lex-current").write_text(foreign.name)
        fresh = _open(a)
        try:
            _all_same(fresh)
            assert fresh.storage._lexical.builds == 1
            assert fresh.storage._lexical._index.base.n == 90
        finally:
            fresh.close()
        (_published(a) / "post.npy").write_bytes(b"not an array")
        fresh = _open(a)
        try:
            _all_same(fresh)
            assert fresh.storage._lexical.builds == 1
        finally:
            fresh.close()
    finally:
        dba.close()
        dbb.close()


def test_a_grown_delta_is_folded_into_a_new_snapshot_that_other_handles_follow(tmp_path,
                                                                                monkeypatch):
    monkeypatch.setattr(LexicalSearch, "rebuild_min", 40)
    path = tmp_path / "engram.db"
    db, other = _open(path), _open(path)
    try:
        _fill(db, 100)
        _all_same(db)
        _all_same(other)  # opens what db published
        first = _published(path)
        assert other.storage._lexical.builds == 0
        for i in range(45):  # one at a time: read as rows since, then folded
            db.remember(f"harbor lantern written later {i}", namespace=NAMESPACES[i % 3])
        _all_same(db)
        builder = db.storage._lexical._builder
        assert builder is not None
        builder.join(timeout=60)
        assert _published(path) != first and not first.exists()
        _all_same(other)
        assert other.storage._lexical._index.base.path == _published(path)
        assert other.storage._lexical._index.base.n == 145
        assert other.storage._lexical.builds == 0
    finally:
        db.close()
        other.close()


def test_a_snapshot_read_before_an_erasure_that_committed_meanwhile_is_not_published(tmp_path):
    """The builder reads the erasures again after publishing: an erasure that committed
    while it read (its purge may have run before the rename) deletes the new snapshot."""
    import sqlite3

    from engramdb.storage.sqlite.lexsnap import build_base

    path = tmp_path / "engram.db"
    db = _open(path)
    try:
        _fill(db, 30)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            erased = db.storage.head().tx + 1
            try:
                build_base(conn, _vindex(path), erased_tx=lambda: erased)
            except ValueError:
                pass
            else:
                raise AssertionError("published a snapshot older than an erasure")
            assert not [p for p in _vindex(path).iterdir() if p.name.startswith("lex")
                        and p.is_dir()]
            base = build_base(conn, _vindex(path), erased_tx=lambda: erased - 1)
            assert base.path == _published(path) and base.n == 30
        finally:
            conn.close()
    finally:
        db.close()
