"""Recalls over HTTP on the server's bounded recall threads (``ServerSettings.recall_threads``).

On SQLite a server process runs its recalls one at a time (its API-key checks on a bound of
their own), by default in arrival order. What a caller must never notice: a lost, mixed
up or refused answer when many recalls arrive at once, or a recall held up by
a change stream that waits for events.
"""

from __future__ import annotations

import threading

import httpx
import pytest

import engramdb
from engramdb.errors import ConfigurationError
from engramdb.server import ServerSettings
from engramdb.server.app import recall_threads
from tests.support.http_server import TEST_SETTINGS, LiveServer

TOPICS = ["billing invoices", "search index shards", "mobile app crashes", "payment refunds",
          "data pipeline backfill", "customer support tickets", "API gateway timeouts",
          "pricing experiments"]


def _seeded(tmp_path, embedder) -> engramdb.Database:
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    db.remember_many([{"text": f"Note {i}: {topic} need attention this week",
                       "namespace": "team", "layer": "episodic"}
                      for i, topic in enumerate(TOPICS * 4)])
    return db


@pytest.mark.parametrize("threads", ["auto", 2, None])
def test_sixteen_concurrent_recalls_each_get_the_embedded_answer(tmp_path, embedder, threads):
    db = _seeded(tmp_path, embedder)
    queries = [f"what about {topic}" for topic in TOPICS] * 2
    expected = {q: {h.memory.id for h in db.recall(q, k=4).hits} for q in set(queries)}
    settings = ServerSettings(rate_limit_per_s=None, auth_failures_per_s=None,
                              max_in_flight=None, recall_threads=threads)
    answers: list[tuple[str, int, set[str]]] = []
    with LiveServer(db, settings) as server:
        key = server.admin_key()
        start = threading.Barrier(len(queries))

        def ask(query: str) -> None:
            with httpx.Client(base_url=server.url, timeout=60,
                              headers={"Authorization": f"Bearer {key}"}) as http:
                start.wait()
                for _ in range(3):
                    r = http.post("/v1/recall", json={"query": query, "k": 4})
                    hits = r.json().get("hits", []) if r.status_code == 200 else []
                    answers.append((query, r.status_code, {h["memory"]["id"] for h in hits}))

        askers = [threading.Thread(target=ask, args=(q,)) for q in queries]
        for t in askers:
            t.start()
        for t in askers:
            t.join(timeout=120)
    db.close()
    assert len(answers) == 3 * len(queries)
    assert [(q, status) for q, status, _ in answers if status != 200] == []
    assert all(ids == expected[q] for q, _, ids in answers)


def test_a_recall_is_answered_while_a_change_stream_waits(tmp_path, embedder):
    db = _seeded(tmp_path, embedder)
    settings = ServerSettings(rate_limit_per_s=None, auth_failures_per_s=None,
                              max_in_flight=None, sse_poll_s=5.0)
    with LiveServer(db, settings) as server:
        key = server.admin_key()
        headers = {"Authorization": f"Bearer {key}"}
        # Two streams on a namespace with no events: each waits in the server for one.
        with httpx.stream("GET", server.url + "/v1/changes/stream",
                          params={"namespace": "quiet"}, timeout=10,
                          headers={**headers, "Accept": "text/event-stream"}) as one, \
                httpx.stream("GET", server.url + "/v1/changes/stream",
                             params={"namespace": "quiet"}, timeout=10,
                             headers={**headers, "Accept": "text/event-stream"}) as two:
            assert (one.status_code, two.status_code) == (200, 200)
            r = httpx.post(server.url + "/v1/recall", json={"query": "billing", "k": 3},
                           headers=headers, timeout=3)
            assert r.status_code == 200
            assert len(r.json()["hits"]) == 3
    db.close()


def test_recall_threads_setting(tmp_path):
    for bad in (0, -1, True, 1.5, "many"):
        with pytest.raises(ConfigurationError) as caught:
            ServerSettings(recall_threads=bad)
        assert caught.value.details["setting"] == "recall_threads"
    db = engramdb.open(tmp_path / "engram.db", embedder=None)
    assert recall_threads(TEST_SETTINGS, db) == 1  # auto, on SQLite
    assert recall_threads(ServerSettings(recall_threads=3), db) == 3
    assert recall_threads(ServerSettings(recall_threads=None), db) is None
    db.close()
