"""A prepared write whose answer is lost is reported, never written twice.

A prepared write on PostgreSQL (storage/postgres/prepared.py) is one ``CALL
engram_append`` that commits on the server. If the connection drops after the
server committed and before its answer arrived, the client cannot know the
outcome. The engine must then say so (a retryable ``StorageError``: retry with
the same ``idempotency_key``) and not run the write again under the lock, which
would store the same memory a second time.

The connection is cut by a real TCP proxy between the engine and the real
server: it forwards everything, and once armed it drops the connection that
carried the next ``CALL`` the moment the server starts answering it (the
answer is not forwarded), so the server has run and committed the call.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest

import engramdb
from engramdb import StorageError

# The Bind message of the prepared CALL: 'B', length, unnamed portal, statement name.
_BIND_CALL = re.compile(rb"B.{4}\x00engramdb_append_\d+\x00", re.DOTALL)


class _CuttingProxy:
    """Forwards TCP to ``target``; when armed, cuts the next CALL's connection before
    its answer (see the module's notes)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._socks += [client, server]
            doomed = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, doomed, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, doomed, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, doomed: threading.Event,
              upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream and self.armed.is_set() and _BIND_CALL.search(data):
                    self.armed.clear()
                    doomed.set()
                if not upstream and doomed.is_set():
                    self.cut.set()
                    break  # the server answered: drop the answer and the connection
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._listener.close()
        for s in self._socks:
            s.close()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{host}127.0.0.1:{port}"))


def _unit(seed: int) -> Any:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.postgres
def test_a_write_whose_answer_was_lost_is_reported_and_stored_once(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = _CuttingProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        from engramdb.retrieval.embed import LocalEmbedder

        with engramdb.open(_via(pg_url, proxy.port), embedder=LocalEmbedder()) as db:
            db.remember("warm", namespace="acme/notes", layer="episodic", embedding=_unit(0))
            assert db.storage.prepared_writes
            proxy.armed.set()
            with pytest.raises(StorageError) as caught:
                db.remember("the deploy window is Tuesday", namespace="acme/notes",
                            layer="episodic", embedding=_unit(1))
            assert proxy.cut.is_set()  # the server ran the CALL; its answer was dropped
            assert caught.value.details.get("retryable") is True
            assert "idempotency_key" in caught.value.message
            stored = [m.text for m in db.recent(namespace="acme/notes", k=10)]
            # It committed once; the engine did not write it again under the lock.
            assert stored.count("the deploy window is Tuesday") == 1
            assert db.verify().ok
    finally:
        proxy.close()
