"""A process may exit while its vector snapshot's HNSW graphs are being built.

usearch builds graphs in C++; a Python process that exited while one of its
threads was inside that build aborted ("terminate called without an active
exception", exit code 134): a script whose first recall on a large database
started the background graph build, or a server stopped during a worker's first
recall. Builds now run in a child process: the script exits cleanly, the child
finishes and publishes, and the next process opens the graphs instead of
building them again. Real processes, a real file, the real usearch build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import engramdb
from engramdb.model import RecallFilter

from .test_vector_index import _exact

ROWS = 25_000  # above VectorSearch.snapshot_min (20,000): the first search builds a snapshot

# Exits while the graphs are being built: a second after a build's staging directory
# holds the vectors (written just before the graphs), without closing or waiting.
SCRIPT = """
import sys, threading, time
from pathlib import Path
import numpy as np
import engramdb
from engramdb.storage.sqlite.ann import VectorSearch

path, how = sys.argv[1], sys.argv[2]
if how == "background":
    VectorSearch.sync_build_max = 1_000  # this database counts as large: graphs in the background
db = engramdb.open(path)
q = np.random.default_rng(1).standard_normal(384).astype(np.float32)
q = (q / np.linalg.norm(q)).tolist()
recall = lambda: db.recall("note about topic 5", k=5, query_embedding=q)
if how == "background":
    recall()  # the rows published, searched exactly; the graphs start in the background
else:  # the first recall (its whole build) on a daemon thread, as a server worker runs it
    threading.Thread(target=recall, daemon=True).start()
index = Path(path + "-vindex")
deadline = time.monotonic() + 120
while not any((tmp / "vecs.npy").exists() for tmp in index.glob("tmp-*")):
    assert time.monotonic() < deadline, "no graph build seen"
    time.sleep(0.005)
time.sleep(1.0)  # into the graph's construction (milliseconds away; 25,000 vectors take seconds)
print("exiting during the build", flush=True)
"""


def _seed(path: Path) -> np.ndarray:
    db = engramdb.open(path)
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((ROWS, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for start in range(0, ROWS, 5_000):
        db.remember_many([{"text": f"note {i} about topic {i % 97}",
                           "namespace": f"team/ns{i % 8}", "layer": "episodic",
                           "embedding": vecs[i].tolist()} for i in range(start, start + 5_000)])
    db.close()
    return vecs


def _meta(index: Path) -> dict | None:
    try:
        name = (index / "current").read_text().strip()
        return json.loads((index / name / "meta.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


@pytest.mark.parametrize("how", ["background", "daemon-thread"])
def test_exit_during_a_graph_build_is_clean_and_the_graphs_are_published(tmp_path, how):
    path = tmp_path / "engram.db"
    vecs = _seed(path)
    src = str(Path(engramdb.__file__).resolve().parents[1])  # the engramdb under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), how], env=env,
                          capture_output=True, text=True, timeout=300)
    assert "exiting during the build" in done.stdout, done.stderr
    assert "terminate called" not in done.stderr
    assert done.returncode == 0, done.stderr
    # The build outlives the script: its graphs get published.
    index = Path(str(path) + "-vindex")
    deadline = time.monotonic() + 300
    while not ((meta := _meta(index)) and meta["graphs"] and not meta["graphs_pending"]):
        assert time.monotonic() < deadline, "the graphs were never published"
        time.sleep(0.2)
    db = engramdb.open(path)
    try:
        flt = RecallFilter(as_of=db.storage.head().tx)
        for i in (3, 4_000, 24_999):
            got = [(r["id"], r["version"]) for r, _ in db.storage.search_vector(vecs[i], flt, 10)]
            exact = _exact(db, vecs[i], flt, 10)
            assert got[0] == exact[0]
        search = db.storage._vindex
        assert search._snap is not None and search._snap.n == ROWS
        assert search._snap.graphs and not search._snap.graphs_pending  # searched by graph
        assert search.builds == 0 and len(search._delta) == 0  # opened, not built again
    finally:
        db.close()


def _remember_400(db, seed):
    """400 episodic notes with random unit vectors (a snapshot at snapshot_min 50)."""
    vecs = np.random.default_rng(seed).standard_normal((400, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    db.remember_many([{"text": f"note {i}", "namespace": "team", "layer": "episodic",
                       "embedding": vecs[i].tolist()} for i in range(400)])
    return vecs


def test_a_build_that_fails_in_the_child_is_logged_and_search_stays_exact(
        tmp_path, monkeypatch, caplog, embedder):
    from engramdb.storage.sqlite.ann import VectorSearch

    monkeypatch.setattr(VectorSearch, "snapshot_min", 50)  # 400 rows get a snapshot
    path = tmp_path / "engram.db"
    Path(str(path) + "-vindex").write_text("not a directory")  # nowhere to publish
    db = engramdb.open(path, embedder=embedder)
    try:
        vecs = _remember_400(db, seed=5)
        flt = RecallFilter(as_of=db.storage.head().tx)
        with caplog.at_level("WARNING", logger="engramdb.index"):
            got = [(r["id"], r["version"]) for r, _ in db.storage.search_vector(vecs[7], flt, 10)]
        assert got == _exact(db, vecs[7], flt, 10)
        assert db.storage._vindex._snap is None and db.storage._vindex.builds == 0
        warned = [r.getMessage() for r in caplog.records if "not built" in r.getMessage()]
        assert warned and "File exists" in warned[0], warned
    finally:
        db.close()


@pytest.mark.parametrize("name", ["uwsgi", "python3"])
def test_an_interpreter_that_is_not_python_builds_in_this_process(
        tmp_path, monkeypatch, embedder, name):
    # An embedding server runs Python with its own binary as sys.executable; started
    # with our child's command line it may exit 0 having built nothing. Whether it is
    # refused by name ("uwsgi") or answers without our child's marker (a "python3"
    # that is not one), the snapshot is still built, in this process.
    import multiprocessing.spawn

    from engramdb.storage.sqlite.ann import VectorSearch

    impostor = tmp_path / "bin" / name
    impostor.parent.mkdir()
    impostor.symlink_to("/bin/true")
    monkeypatch.setattr(VectorSearch, "snapshot_min", 50)  # 400 rows get a snapshot
    monkeypatch.setattr(sys, "executable", str(impostor))
    monkeypatch.setattr(multiprocessing.spawn, "_python_exe", str(impostor))
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    try:
        vecs = _remember_400(db, seed=6)
        flt = RecallFilter(as_of=db.storage.head().tx)
        got = [(r["id"], r["version"]) for r, _ in db.storage.search_vector(vecs[9], flt, 10)]
        assert got == _exact(db, vecs[9], flt, 10)
        search = db.storage._vindex
        assert search._snap is not None and search._snap.n == 400  # built, not given up
    finally:
        db.close()
