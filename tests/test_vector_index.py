"""The SQLite vector index (a memory-mapped snapshot with HNSW graphs, plus rows
written since searched exactly) answers like an exact search where it must.

The thresholds that make a real database use the snapshot and its graphs from
20,000 memories up are lowered here so that a few hundred memories take the
same paths: the snapshot files, the HNSW graphs, the per-namespace slices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.model import RecallFilter
from engramdb.storage.sqlite.ann import VectorSearch

N = 400
NAMESPACES = [f"team/ns{i}" for i in range(8)]
LAYERS = ["episodic", "semantic"]


@pytest.fixture(autouse=True)
def small_thresholds(monkeypatch):
    monkeypatch.setattr(VectorSearch, "snapshot_min", 50)
    monkeypatch.setattr(VectorSearch, "exact_rows", 0)  # scoped queries use the graphs too
    monkeypatch.setattr(VectorSearch, "rebuild_min", 10_000)


def _vectors(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _load(db, n: int = N, seed: int = 3):
    vecs = _vectors(n, seed)
    mems = db.remember_many([
        {"text": f"note number {i} about topic {i % 13}", "namespace": NAMESPACES[i % 8],
         "layer": LAYERS[i % 2], "embedding": vecs[i].tolist()} for i in range(n)])
    return mems, vecs


def _index_dir(db) -> Path:
    return Path(str(db.storage.path) + "-vindex")


def _current(db) -> str:
    return (_index_dir(db) / "current").read_text().strip()


def _exact(db, q: np.ndarray, flt: RecallFilter, k: int) -> list[tuple[str, int]]:
    """Brute force over every stored version passing ``flt``, from the memories rows."""
    rows = db.storage.list_memories(flt)
    if not rows:
        return []
    vec = {(r[0], r[1]): np.frombuffer(r[2], dtype="<f4")
           for r in db.storage._plain_conn().execute(
               "SELECT id, version, vec FROM memory_vectors")}
    scored = sorted(((float(vec[(r["id"], r["version"])] @ q), r["id"], r["version"])
                     for r in rows if (r["id"], r["version"]) in vec), reverse=True)
    return [(i, v) for _, i, v in scored[:k]]


def _similarity(db, q: np.ndarray, key: tuple[str, int]) -> float:
    blob = db.storage._plain_conn().execute(
        "SELECT vec FROM memory_vectors WHERE id = ? AND version = ?", key).fetchone()[0]
    return float(np.frombuffer(blob, dtype="<f4") @ q)


def _found(db, q: np.ndarray, flt: RecallFilter, k: int) -> list[tuple[str, int]]:
    return [(r["id"], r["version"]) for r, _ in db.storage.search_vector(q, flt, k)]


@pytest.fixture
def loaded(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    mems, vecs = _load(db)
    db.storage.search_vector(vecs[0], RecallFilter(), 5)  # builds the snapshot
    assert (_index_dir(db) / "current").exists()
    yield db, mems, vecs
    db.close()


def test_updated_and_retracted_memories_never_appear(loaded):
    db, mems, vecs = loaded
    target, gone = mems[5], mems[6]
    db.update(target.id, importance=0.9, expected_version=target.version)  # vector copied
    db.retract(gone.id, reason="wrong")
    for q, mem in ((vecs[5], target), (vecs[6], gone)):
        result = db.recall("anything at all", k=10, query_embedding=q.tolist())
        seen = {(h.memory.id, h.memory.version) for h in result.hits}
        assert (mem.id, mem.version) not in seen
        hits = _found(db, q, RecallFilter(as_of=db.storage.head().tx), 10)
        assert (mem.id, mem.version) not in hits
    # the update's new version is found by its (copied) vector
    hits = _found(db, vecs[5], RecallFilter(as_of=db.storage.head().tx), 3)
    assert hits[0] == (target.id, target.version + 1)


def test_as_of_reads_are_exact(loaded):
    db, mems, vecs = loaded
    before = db.storage.head().tx
    for m in mems[:40:3]:
        db.retract(m.id, reason="later")
    db.remember_many([{"text": f"late {i}", "namespace": NAMESPACES[0],
                       "embedding": v.tolist()} for i, v in enumerate(_vectors(30, seed=9))])
    for i in range(0, 40, 3):
        flt = RecallFilter(as_of=before)
        assert _found(db, vecs[i], flt, 10) == _exact(db, vecs[i], flt, 10)
        assert _found(db, vecs[i], flt, 10)[0] == (mems[i].id, mems[i].version)


def test_scoped_query_returns_k_hits_from_its_namespace(loaded):
    db, _, vecs = loaded
    result = db.recall("zzz", namespace=NAMESPACES[3], k=10, query_embedding=vecs[0].tolist())
    assert len(result.hits) == 10
    assert {h.memory.namespace for h in result.hits} == {NAMESPACES[3]}
    flt = RecallFilter(namespaces=(NAMESPACES[3],), as_of=db.storage.head().tx)
    assert len(_found(db, vecs[0], flt, 50)) == 50  # all 50 memories of that namespace


def test_a_scoped_exact_scan_stays_exact_when_asked_again_after_writes(loaded, monkeypatch):
    # A namespace this small is scanned exactly, and what passes its filter is remembered
    # between searches: an update or a retraction must still show in the next search,
    # and a read as of before them must still see them undone.
    monkeypatch.setattr(VectorSearch, "exact_rows", 20_000)
    db, mems, vecs = loaded
    ns = NAMESPACES[2]
    mine = [i for i in range(N) if i % 8 == 2]

    def now() -> RecallFilter:
        return RecallFilter(namespaces=(ns,), as_of=db.storage.head().tx)

    for _ in range(2):
        for i in mine[:4]:
            assert _found(db, vecs[i], now(), 10) == _exact(db, vecs[i], now(), 10)
    before = RecallFilter(namespaces=(ns,), as_of=db.storage.head().tx)
    updated, retracted = mems[mine[0]], mems[mine[1]]
    db.update(updated.id, importance=0.9, expected_version=updated.version)
    db.retract(retracted.id, reason="wrong")
    for i in mine[:4]:
        assert _found(db, vecs[i], now(), 10) == _exact(db, vecs[i], now(), 10)
        assert _found(db, vecs[i], before, 10) == _exact(db, vecs[i], before, 10)
    assert _found(db, vecs[mine[0]], now(), 1) == [(updated.id, updated.version + 1)]
    assert (retracted.id, retracted.version) not in _found(db, vecs[mine[1]], now(), 10)
    assert _found(db, vecs[mine[1]], before, 1) == [(retracted.id, retracted.version)]


@pytest.mark.parametrize("lookup_rows", [0, 20_000])  # scan the scope, or look rows up
def test_sql_only_filters_on_the_snapshot_equal_brute_force(tmp_path, embedder, monkeypatch,
                                                              lookup_rows):
    monkeypatch.setattr(VectorSearch, "lookup_rows", lookup_rows)
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    vecs = _vectors(N)
    mems = db.remember_many([
        {"text": f"turn {i}", "namespace": NAMESPACES[i % 2], "session": f"s{i % 5}",
         "metadata": {"kind": i % 3}, "embedding": vecs[i].tolist()} for i in range(N)])
    db.storage.search_vector(vecs[0], RecallFilter(), 5)  # builds the snapshot
    before = db.storage.head().tx
    for m in mems[:60:4]:
        db.retract(m.id, reason="gone")
    for m in mems[1:60:6]:
        db.update(m.id, importance=0.5, expected_version=m.version)
    now = db.storage.head().tx
    for i in range(0, 60, 7):
        for flt in (RecallFilter(session="s1", as_of=now),
                    RecallFilter(namespaces=(NAMESPACES[0],), session="s2", as_of=now),
                    RecallFilter(namespaces=(NAMESPACES[1],), session="s1", as_of=before),
                    RecallFilter(metadata=(("kind", 2),), as_of=now)):
            got = _found(db, vecs[i], flt, 10)
            assert got == _exact(db, vecs[i], flt, 10), flt
            assert len(got) == 10
    db.close()


def test_a_period_filter_on_the_snapshot_equals_brute_force(tmp_path, embedder):
    # One memory a day for 400 days. A month (fewer than an eighth of the rows) is scored
    # exactly instead of through the graph; half a year goes through the graph: both must
    # read as brute force does, with updates and retractions after the snapshot.
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    vecs = _vectors(N)
    day0 = datetime(2023, 1, 1, tzinfo=UTC)
    mems = db.remember_many([
        {"text": f"day {i}", "namespace": NAMESPACES[i % 2], "valid_from": day0 + timedelta(i),
         "embedding": vecs[i].tolist()} for i in range(N)])
    db.storage.search_vector(vecs[0], RecallFilter(), 5)  # builds the snapshot
    before = db.storage.head().tx
    for m in mems[30:60:4]:
        db.retract(m.id, reason="gone")
    for m in mems[31:60:6]:
        db.update(m.id, text=f"changed {m.text}", expected_version=m.version)
    now = db.storage.head().tx
    month = {"valid_after": day0 + timedelta(30), "valid_before": day0 + timedelta(61)}
    half_year = {"valid_after": day0 + timedelta(30), "valid_before": day0 + timedelta(212)}
    for i in (0, 33, 45, 200):
        for flt in (RecallFilter(as_of=now, **month),
                    RecallFilter(as_of=before, **month),
                    RecallFilter(namespaces=(NAMESPACES[1],), as_of=now, **month),
                    RecallFilter(as_of=now, **half_year)):
            got = _found(db, vecs[i], flt, 10)
            assert got == _exact(db, vecs[i], flt, 10), flt
            assert len(got) == 10
    db.close()


def test_a_second_process_write_is_visible_to_the_next_recall(loaded):
    db, _, _ = loaded
    fresh = _vectors(1, seed=77)[0]
    script = textwrap.dedent(f"""
        import engramdb
        db = engramdb.open({str(db.storage.path)!r})
        m = db.remember("written by another process", namespace={NAMESPACES[2]!r},
                        embedding={fresh.tolist()!r})
        print(m.id)
        db.close()
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(engramdb.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    new_id = out.stdout.strip().splitlines()[-1]
    result = db.recall("another process", k=5, query_embedding=fresh.tolist())
    assert result.hits[0].memory.id == new_id


def test_index_is_rebuilt_when_deleted(loaded, embedder):
    db, _, vecs = loaded
    path = db.storage.path
    db.close()
    import shutil

    shutil.rmtree(path + "-vindex")
    db2 = engramdb.open(path, embedder=embedder)
    try:
        flt = RecallFilter(as_of=db2.storage.head().tx)
        assert _found(db2, vecs[7], flt, 10) == _exact(db2, vecs[7], flt, 10)
        assert (Path(path + "-vindex") / "current").exists()
    finally:
        db2.close()


def test_index_of_another_database_is_not_used(loaded, tmp_path, embedder):
    db, _, vecs = loaded
    path = Path(db.storage.path)
    old = _current(db)
    db.close()
    # A different database at the same path (e.g. restored from a backup): its
    # chain does not match the snapshot's, so the snapshot is rebuilt.
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    other = engramdb.open(path, embedder=embedder)
    try:
        mems, _ = _load(other, 120, seed=11)
        flt = RecallFilter(as_of=other.storage.head().tx)
        hits = _found(other, vecs[7], flt, 10)
        assert set(hits) <= {(m.id, m.version) for m in mems}
        assert hits == _exact(other, vecs[7], flt, 10)
        assert _current(other) != old
    finally:
        other.close()


def test_a_large_delta_is_folded_into_a_new_snapshot(loaded, monkeypatch):
    db, _, vecs = loaded
    monkeypatch.setattr(VectorSearch, "rebuild_min", 100)
    old = _current(db)
    db.remember_many([{"text": f"more {i}", "namespace": NAMESPACES[1],
                       "embedding": v.tolist()} for i, v in enumerate(_vectors(150, seed=5))])
    db.storage.search_vector(vecs[0], RecallFilter(), 5)  # sees the delta, starts a build
    builder = db.storage._vindex._builder
    assert builder is not None
    builder.join(timeout=120)
    assert _current(db) != old
    flt = RecallFilter(as_of=db.storage.head().tx)
    assert _found(db, vecs[9], flt, 10) == _exact(db, vecs[9], flt, 10)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    namespaces=st.none() | st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=3,
                                    unique=True),
    layers=st.none() | st.lists(st.sampled_from(LAYERS), min_size=1, max_size=1),
    historical=st.booleans(),
    k=st.integers(1, 30),
    q=st.integers(0, N - 1),
)
def test_graph_and_exact_paths_agree_on_filters(loaded_once, namespaces, layers, historical,
                                                k, q):
    db, vecs, tx_mid = loaded_once
    flt = RecallFilter(namespaces=None if namespaces is None else tuple(namespaces),
                       layers=None if layers is None else tuple(layers),
                       as_of=tx_mid if historical else db.storage.head().tx)
    got = _found(db, vecs[q], flt, k)
    want = _exact(db, vecs[q], flt, k)
    assert len(got) == len(want)
    allowed = {(r["id"], r["version"]) for r in db.storage.list_memories(flt)}
    assert set(got) <= allowed
    # Re-scored exactly: the nearest row is found, with its exact similarity.
    if want:
        best = db.storage.search_vector(vecs[q], flt, 1)[0]
        assert best[1] == pytest.approx(_similarity(db, vecs[q], want[0]), abs=1e-5)


@pytest.fixture(scope="module")
def loaded_once(tmp_path_factory, embedder):
    mp = pytest.MonkeyPatch()
    mp.setattr(VectorSearch, "snapshot_min", 50)
    mp.setattr(VectorSearch, "exact_rows", 0)
    db = engramdb.open(tmp_path_factory.mktemp("prop") / "engram.db", embedder=embedder)
    mems, vecs = _load(db)
    db.storage.search_vector(vecs[0], RecallFilter(), 5)
    tx_mid = db.storage.head().tx
    for m in mems[::7]:
        db.retract(m.id, reason="property test")
    for m in [m for i, m in enumerate(mems) if i % 11 == 1 and i % 7]:
        db.update(m.id, text=f"changed {m.text}", expected_version=m.version)
    yield db, vecs, tx_mid
    db.close()
    mp.undo()


def test_a_process_that_searches_the_index_first_can_then_embed(loaded):
    """A fresh process whose first act is a recall with a given vector (the index's
    graphs loaded) and whose next is embedding a text with the default embedder: a
    server answering a vector query, a bulk import followed by a ``remember``. Loading
    the graph library first used to kill such a process with a segmentation fault."""
    db, mems, vecs = loaded
    script = textwrap.dedent(f"""
        import engramdb
        from engramdb.storage.sqlite.ann import VectorSearch
        VectorSearch.snapshot_min, VectorSearch.exact_rows = 50, 0
        db = engramdb.open({str(db.storage.path)!r})
        hits = db.recall("x", k=3, query_embedding={vecs[4].tolist()!r}).hits
        import sys
        assert "usearch.index" in sys.modules, "the recall did not use the graph index"
        m = db.remember("a text the default embedder embeds", namespace="team/ns1")
        print(hits[0].memory.id, m.id)
        db.close()
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(engramdb.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    found, written = out.stdout.split()
    assert found == mems[4].id
    assert db.get(written).text == "a text the default embedder embeds"
