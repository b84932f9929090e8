"""A long recall does not hold the server's other requests (SQLite, one recall thread).

On SQLite a server process runs one recall at a time (``recall_threads="auto"``).
The first recall after opening a database of 20,000 memories or more with no
vector snapshot builds it (rows, vectors and HNSW graphs): seconds here, tens of
seconds at 1M. Every request starts with an API-key check; when those checks
waited for the recall thread, a write or a read sent meanwhile waited for the
whole build. What a caller must notice: nothing, beyond the slow recall itself.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np

import engramdb
from tests.support.http_server import TEST_SETTINGS, LiveServer

ROWS = 30_000  # above VectorSearch.snapshot_min (20,000): the first recall builds the snapshot
PROMPT_S = 1.0


def _seed(path: Path, embedder) -> None:
    db = engramdb.open(path, embedder=embedder)
    rng = np.random.default_rng(11)
    for start in range(0, ROWS, 5_000):
        vecs = rng.standard_normal((5_000, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        db.remember_many([{"text": f"note {start + i} about topic {(start + i) % 97}",
                           "namespace": f"team/ns{(start + i) % 8}", "layer": "episodic",
                           "embedding": vecs[i].tolist()} for i in range(5_000)])
    db.close()


def test_writes_and_reads_answer_while_the_first_recall_builds_the_vector_index(
        tmp_path, embedder):
    _seed(tmp_path / "engram.db", embedder)
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)  # as a server opens it
    index_dir = tmp_path / "engram.db-vindex"
    assert not index_dir.exists()  # no snapshot yet: the first recall builds it
    with LiveServer(db, TEST_SETTINGS) as server:
        headers = {"Authorization": f"Bearer {server.admin_key()}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            # Each route's first request builds its pydantic schemas (up to ~1.5 s here):
            # served once before, as a running server's routes have been.
            first = http.post("/v1/memories", json={"text": "before", "namespace": "team/ns1",
                                                    "layer": "episodic"})
            assert http.get(f"/v1/memories/{first.json()['id']}").status_code == 200
        recalled: list[httpx.Response] = []

        def recall() -> None:
            recalled.append(httpx.post(server.url + "/v1/recall", headers=headers, timeout=300,
                                       json={"query": "note about topic 5", "k": 5}))

        slow = threading.Thread(target=recall)
        started = time.monotonic()
        slow.start()
        # The build is under way once its staging directory exists.
        while not (index_dir.exists() and any(p.name.startswith("tmp-")
                                              for p in index_dir.iterdir())):
            assert slow.is_alive(), "the recall ended before any index build was seen"
            time.sleep(0.02)
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            t = time.monotonic()
            wrote = http.post("/v1/memories", json={"text": "written during a long recall",
                                                    "namespace": "team/ns1",
                                                    "layer": "episodic"})
            write_s = time.monotonic() - t
            t = time.monotonic()
            got = http.get(f"/v1/memories/{wrote.json()['id']}")
            get_s = time.monotonic() - t
            bad = http.get("/v1/memories", headers={"Authorization": "Bearer ek_no_such_key"})
        answered_during = slow.is_alive()
        slow.join(timeout=300)
        recall_s = time.monotonic() - started
    db.close()
    assert wrote.status_code == 201, wrote.text
    assert got.status_code == 200 and got.json()["text"] == "written during a long recall"
    assert bad.status_code == 401
    assert answered_during, f"the recall ({recall_s:.1f} s) ended before the write was answered"
    assert write_s < PROMPT_S and get_s < PROMPT_S, (write_s, get_s, recall_s)
    assert len(recalled) == 1 and recalled[0].status_code == 200
    assert len(recalled[0].json()["hits"]) == 5
