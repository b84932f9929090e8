"""Security suite, HTTP door: exposure of operational routes, back-pressure,
failed-authentication throttling, error messages that never echo input, and
bounded transactions (issue 17, findings 8 and 9). Real uvicorn servers on
loopback sockets; concurrency is real concurrent requests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import engramdb
from engramdb import EngineConfig
from engramdb.errors import PayloadTooLarge
from engramdb.server import ServerSettings
from tests.support.http_server import LiveServer

OPEN: dict[str, Any] = {"rate_limit_per_s": None, "auth_failures_per_s": None,
                        "max_in_flight": None}


@pytest.fixture
def serve(tmp_path) -> Iterator[Any]:
    started: list[LiveServer] = []

    def make(settings: ServerSettings, *, config: EngineConfig | None = None,
             embedder: Any = None) -> LiveServer:
        db = engramdb.open(tmp_path / f"e{len(started)}.db", embedder=embedder, config=config)
        server = LiveServer(db, settings).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
        server.db.close()


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, **{"timeout": 60, **kwargs})  # a busy machine is slow, not wrong


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, **{"timeout": 60, **kwargs})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- 9. /metrics and /docs exposure ------------------------------------------------------


def test_metrics_need_an_admin_key_by_default(serve):
    server = serve(ServerSettings(**OPEN))
    server.db.admin.create_agent("agent")
    agent_key = server.db.admin.create_key("agent")
    assert get(server.url + "/metrics").status_code == 401
    assert get(server.url + "/metrics", headers=bearer(agent_key)).status_code == 403
    ok = get(server.url + "/metrics", headers=bearer(server.admin_key()))
    assert ok.status_code == 200 and "engram_memories" in ok.text
    # The interactive docs are off by default; the spec stays.
    assert get(server.url + "/docs").status_code == 404
    assert get(server.url + "/openapi.json").status_code == 200


@pytest.mark.parametrize("mode", ["off", "key", "public"])
def test_metrics_and_docs_exposure_is_configurable(serve, mode):
    server = serve(ServerSettings(**OPEN, metrics=mode, docs=mode))
    admin = bearer(server.admin_key())
    no_key_metrics = get(server.url + "/metrics").status_code
    no_key_docs = get(server.url + "/docs").status_code
    with_key_metrics = get(server.url + "/metrics", headers=admin).status_code
    with_key_docs = get(server.url + "/docs", headers=admin).status_code
    expected = {"off": (404, 404, 404, 404), "key": (401, 401, 200, 200),
                "public": (200, 200, 200, 200)}[mode]
    assert (no_key_metrics, no_key_docs, with_key_metrics, with_key_docs) == expected


# -- 9. Back-pressure -----------------------------------------------------------------------


def test_beyond_max_in_flight_requests_get_503_with_retry_after(serve):
    server = serve(ServerSettings(**{**OPEN, "max_in_flight": 2}))
    key = server.admin_key()
    streams = [httpx.Client(base_url=server.url, headers=bearer(key), timeout=30)
               for _ in range(2)]
    opened = []
    try:
        # Two change streams stay open: the server is at its limit.
        for c in streams:
            cm = c.stream("GET", "/v1/changes/stream")
            r = cm.__enter__()
            assert r.status_code == 200
            opened.append(cm)
        busy = get(server.url + "/v1/me", headers=bearer(key))
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "overloaded"
        assert busy.headers["Retry-After"] == "1"
        assert get(server.url + "/healthz").status_code == 200  # liveness still answers
    finally:
        for cm in opened:
            cm.__exit__(None, None, None)
        for c in streams:
            c.close()
    # Capacity comes back once they end.
    for _ in range(50):
        if get(server.url + "/v1/me", headers=bearer(key)).status_code == 200:
            break
    else:
        pytest.fail("the server did not recover after the streams closed")


def test_a_burst_of_concurrent_requests_is_served_or_refused_with_503_never_queued_forever(
        serve):
    server = serve(ServerSettings(**{**OPEN, "max_in_flight": 4}))
    key = server.admin_key()
    server.db.remember("the heron migration starts in March", namespace="team/a")

    def one(_: int) -> httpx.Response:
        return post(server.url + "/v1/recall", headers=bearer(key), timeout=60,
                          json={"query": "heron", "namespace": "team/**"})

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(one, range(96)))
    statuses = {r.status_code for r in answers}
    assert statuses <= {200, 503}, statuses
    assert any(r.status_code == 200 for r in answers)
    assert all(r.headers.get("Retry-After") == "1" for r in answers if r.status_code == 503)


# -- 9. Failed authentications are throttled per client address --------------------------


def test_failed_authentications_are_throttled_per_address(serve):
    server = serve(ServerSettings(rate_limit_per_s=None, max_in_flight=None,
                                  auth_failures_per_s=0.01, auth_failure_burst=3))
    good = server.admin_key()
    bad = bearer("ek_0123456789ab_not-the-secret")
    statuses = [get(server.url + "/v1/me", headers=bad).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    refused = get(server.url + "/v1/me", headers=bearer(good))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # Another client address is not affected.
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60)
    try:
        assert other.get(server.url + "/v1/me", headers=bearer(good)).status_code == 200
    finally:
        other.close()


# -- 9. Error messages never echo input values --------------------------------------------


def test_error_messages_do_not_echo_input(serve):
    server = serve(ServerSettings(**OPEN))
    raw = httpx.Client(base_url=server.url, headers=bearer(server.admin_key()), timeout=60)
    marker = "zqx7marker"
    try:
        answers = [
            raw.post("/v1/memories", json={"text": "x", "namespace": f"{marker}/A\nadmin"}),
            raw.post("/v1/memories", json={"text": "x", "namespace": "ok",
                                           "layer": f"{marker}\n"}),
            raw.post("/v1/memories", json={"text": "x", f"{marker}_field": 1}),
            raw.get(f"/v1/{marker}/nowhere"),
            raw.delete(f"/v1/memories/{marker}"),
            raw.post("/v1/recall", json={"query": "x", "namespace": f"{marker}/[**"}),
        ]
    finally:
        raw.close()
    for r in answers:
        assert 400 <= r.status_code < 500, r.text
        assert marker not in r.text, r.text


# -- 8. One transaction cannot hold the write lock without bound --------------------------


def test_a_transaction_over_the_ops_limit_is_refused_and_writes_nothing(serve):
    server = serve(ServerSettings(**OPEN), config=EngineConfig(max_tx_ops=5))
    db = server.db
    before = db.storage.head()
    with pytest.raises(PayloadTooLarge):
        with db.transaction() as tx:
            for i in range(6):
                tx.remember(f"note {i}", namespace="team/a")
    assert db.storage.head() == before
    r = post(server.url + "/v1/transactions", headers=bearer(server.admin_key()),
                   json={"ops": [{"op": "remember", "text": f"n {i}", "namespace": "team/a"}
                                 for i in range(6)]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert [e.kind for e in db.changes(before.seq)] == ["key.created"]


class LockWatchingEmbedder:
    """The real embedder, noting whether the SQLite write lock was held while it ran."""

    def __init__(self, inner: Any, path: Path) -> None:
        self._inner = inner
        self._path = path
        self.embedded_under_lock = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed(self, texts: Any) -> Any:
        probe = sqlite3.connect(self._path, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            locked = False
        except sqlite3.OperationalError:
            locked = True
        finally:
            probe.close()
        with self._lock:
            self.calls += 1
            self.embedded_under_lock += locked
        return self._inner.embed(texts)


def test_transaction_texts_are_embedded_before_the_write_lock(serve, embedder, tmp_path):
    first = serve(ServerSettings(**OPEN))  # only to reserve e0.db's name
    del first
    watch = LockWatchingEmbedder(embedder, tmp_path / "e1.db")
    server = serve(ServerSettings(**OPEN), embedder=watch)
    key = server.admin_key()
    made = [server.db.remember(f"draft {i}", namespace="team/a") for i in range(10)]
    watch.calls = watch.embedded_under_lock = 0
    ops = [{"op": "update", "id": m.id, "text": f"rewritten note number {i}"}
           for i, m in enumerate(made)]
    ops.append({"op": "remember", "text": "a new note", "namespace": "team/a"})
    r = post(server.url + "/v1/transactions", headers=bearer(key), json={"ops": ops},
                   timeout=120)
    assert r.status_code == 200, r.text
    assert watch.calls >= 1 and watch.embedded_under_lock == 0
    # Embedded: the rewritten text is what recall finds by meaning.
    hit = server.db.recall("rewritten note number 7", namespace="team/**", k=1).hits[0]
    assert hit.memory.id == made[7].id and hit.memory.version == 2
