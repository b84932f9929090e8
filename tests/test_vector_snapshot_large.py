"""A large database's first vector snapshot: rows and vectors published at once, the
HNSW graphs added in the background, and no process copying every vector meanwhile.

Above ``VectorSearch.sync_build_max`` rows (300k; lowered here so that a few hundred
memories take the same path) the first search writes the snapshot's rows and vectors
and publishes them without graphs, searches them exactly from the mapped file, and
builds the graphs in a background thread that publishes them as a new snapshot (the
arrays hard links to the first one's files). Before, such a process read every vector
into its own memory (1M memories: 2.5 GB private, 27 s for the first recall).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.sqlite.ann import VectorSearch

from .test_vector_index import _exact

N = 400
NAMESPACES = [f"team/ns{i}" for i in range(8)]


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch):
    monkeypatch.setattr(VectorSearch, "snapshot_min", 50)
    monkeypatch.setattr(VectorSearch, "exact_rows", 0)
    monkeypatch.setattr(VectorSearch, "rebuild_min", 10_000)
    monkeypatch.setattr(VectorSearch, "sync_build_max", 100)  # 400 rows count as large


def _vectors(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _index_dir(db) -> Path:
    return Path(str(db.storage.path) + "-vindex")


def _meta(db) -> dict:
    name = (_index_dir(db) / "current").read_text().strip()
    return json.loads((_index_dir(db) / name / "meta.json").read_text())


def _found(db, q: np.ndarray, flt: RecallFilter, k: int) -> list[tuple[str, int]]:
    return [(r["id"], r["version"]) for r, _ in db.storage.search_vector(q, flt, k)]


def _load(db, n: int = N):
    vecs = _vectors(n)
    mems = db.remember_many([
        {"text": f"note number {i} about topic {i % 13}", "namespace": NAMESPACES[i % 8],
         "embedding": vecs[i].tolist()} for i in range(n)])
    return mems, vecs


def _built(path: Path, embedder) -> tuple[engramdb.Database, np.ndarray]:
    """A database of N loaded rows whose first search built its snapshot (graphs done)."""
    db = engramdb.open(path, embedder=embedder)
    _, vecs = _load(db)
    db.storage.search_vector(vecs[0], RecallFilter(), 5)
    db.storage._vindex._builder.join(timeout=120)
    return db, vecs


def test_first_search_publishes_rows_then_graphs_without_a_private_copy(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    try:
        mems, vecs = _load(db)
        flt = RecallFilter(as_of=db.storage.head().tx)
        first = _found(db, vecs[3], flt, 10)
        assert first == _exact(db, vecs[3], flt, 10)
        assert first[0] == (mems[3].id, mems[3].version)
        search = db.storage._vindex
        assert search._snap is not None and search._snap.n == N
        assert len(search._delta) == 0  # no vector copied into this process
        # The graphs come in the background, published as a newer snapshot.
        builder = search._builder
        assert builder is not None
        builder.join(timeout=120)
        meta = _meta(db)
        assert meta["graphs"] and not meta["graphs_pending"]
        assert len([p for p in _index_dir(db).iterdir() if p.name.startswith("snap-")]) == 1
        db.update(mems[5].id, text="changed after the snapshot",
                  expected_version=mems[5].version)
        db.retract(mems[6].id, reason="wrong")
        flt = RecallFilter(as_of=db.storage.head().tx)
        for i in (3, 5, 6, 7):
            got = _found(db, vecs[i], flt, 10)
            assert got == _exact(db, vecs[i], flt, 10)
        assert db.storage._vindex._snap.graphs  # searched through the graphs now
        assert (mems[6].id, mems[6].version) not in _found(db, vecs[6], flt, 10)
        scoped = RecallFilter(namespaces=(NAMESPACES[2],), as_of=flt.as_of)
        assert len(_found(db, vecs[0], scoped, 10)) == 10
    finally:
        db.close()


def test_another_process_opens_the_graphless_snapshot_and_finishes_it(tmp_path, embedder):
    path = tmp_path / "engram.db"
    # The builder died before the graphs (the process was killed): wait out our build,
    # then put back a graph-less snapshot as the published one.
    db, vecs = _built(path, embedder)
    conn = db.storage._plain_conn()
    from engramdb.storage.sqlite.snapshot import build_lock, build_snapshot

    with build_lock(_index_dir(db), wait=True):
        build_snapshot(conn, _index_dir(db), 384, graphs=False)
    conn.close()
    assert _meta(db)["graphs_pending"]
    db.close()
    other = engramdb.open(path, embedder=embedder)
    try:
        flt = RecallFilter(as_of=other.storage.head().tx)
        assert _found(other, vecs[9], flt, 10) == _exact(other, vecs[9], flt, 10)
        search = other.storage._vindex
        assert search.builds == 0 and len(search._delta) == 0  # opened, not rebuilt
        search._builder.join(timeout=120)
        assert _meta(other)["graphs"] and search.builds == 1
        assert _found(other, vecs[9], flt, 10) == _exact(other, vecs[9], flt, 10)
    finally:
        other.close()


def test_graphs_of_a_snapshot_older_than_an_erasure_are_not_published(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    try:
        mems, vecs = _load(db)
        conn = db.storage._plain_conn()
        from engramdb.storage.sqlite.snapshot import (
            add_graphs,
            build_lock,
            build_snapshot,
            open_current,
        )

        with build_lock(_index_dir(db), wait=True):
            build_snapshot(conn, _index_dir(db), 384, graphs=False)
        snap = open_current(_index_dir(db))
        assert snap is not None and snap.graphs_pending
        # An erasure commits while the graphs are built; its purge deletes the directory,
        # put back here as a builder that read before the erasure would leave it: the
        # graphs step must not publish the old rows again.
        import shutil

        saved = tmp_path / "saved"
        shutil.copytree(_index_dir(db), saved)
        db.forget(id=mems[4].id, reason="GDPR Art. 17 request")
        assert not _index_dir(db).exists()
        shutil.copytree(saved, _index_dir(db))

        def no_erasure_since() -> bool:
            return conn.execute("SELECT COALESCE(MAX(tx), 0) FROM erasures"
                                ).fetchone()[0] <= snap.tx

        with build_lock(_index_dir(db), wait=True):
            assert add_graphs(snap, _index_dir(db), still_wanted=no_erasure_since) is None
        assert (_index_dir(db) / "current").read_text().strip() == snap.path.name
        assert not [p for p in _index_dir(db).iterdir() if p.name.startswith("tmp-")]
        conn.close()
        # The next search finds that pre-erasure snapshot published: deleted, not used.
        flt = RecallFilter(as_of=db.storage.head().tx)
        assert _found(db, vecs[4], flt, 10) == _exact(db, vecs[4], flt, 10)
        assert mems[4].id not in {i for i, _ in _found(db, vecs[4], flt, 10)}
        assert not snap.path.exists()
        assert db.storage._vindex._snap.tx >= snap.tx
        assert db.storage._vindex._snap.path != snap.path
    finally:
        db.close()


def test_a_damaged_graph_answers_exactly_and_the_snapshot_is_replaced(tmp_path, embedder):
    path = tmp_path / "engram.db"
    db, vecs = _built(path, embedder)
    meta = _meta(db)
    assert meta["graphs"]
    damaged = _index_dir(db) / (_index_dir(db) / "current").read_text().strip()
    db.close()
    for graph in damaged.glob("hnsw*.usearch"):  # torn by a disk fault, not by EngramDB
        graph.write_bytes(b"\0" * 64)
    other = engramdb.open(path, embedder=embedder)
    try:
        flt = RecallFilter(as_of=other.storage.head().tx)
        scoped = RecallFilter(namespaces=(NAMESPACES[1],), as_of=flt.as_of)
        for q, f in ((vecs[4], flt), (vecs[9], scoped)):
            assert _found(other, q, f, 10) == _exact(other, q, f, 10)
        search = other.storage._vindex
        search._builder.join(timeout=120)
        assert search.builds == 1  # replaced in the background, as a missing one would be
        fresh = (_index_dir(other) / "current").read_text().strip()
        assert fresh != damaged.name and not damaged.exists()
        assert _found(other, vecs[4], flt, 10) == _exact(other, vecs[4], flt, 10)
        assert not other.storage._vindex._snap.graphs.damaged
    finally:
        other.close()


def test_the_vector_snapshot_is_private_to_the_database_owner(tmp_path, embedder):
    db, _ = _built(tmp_path / "engram.db", embedder)
    try:
        snaps = [p for p in _index_dir(db).iterdir() if p.name.startswith("snap-")]
        assert snaps
        for snap in snaps:  # others cannot list or read the vectors inside
            assert snap.stat().st_mode & 0o777 == 0o700
    finally:
        db.close()
