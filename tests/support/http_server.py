"""A live EngramDB HTTP server for tests: real uvicorn on a loopback socket, in a thread.

``LiveServer(db)`` serves an open database exactly as ``engram serve`` does
(the same ``create_app``), on a port the OS picks, so requests go through real
sockets, HTTP parsing, the door middleware and JSON. ``served_client(db)``
returns an admin :class:`engramdb.client.Client` connected to such a server
whose ``close()`` also stops the server and closes the database: it stands in
for ``db`` in the conformance suite (the ``http`` backend).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import uvicorn

from engramdb.client import Client
from engramdb.server import ServerSettings, create_app

__all__ = ["TEST_SETTINGS", "LiveServer", "ServedClient", "ServerProcess", "served_client"]

# Tests run many requests quickly from one key and probe bad keys from one address:
# rate limiting, failed-authentication throttling and back-pressure are tested on
# their own (tests/test_http.py, tests/test_security_http.py).
TEST_SETTINGS = ServerSettings(rate_limit_per_s=None, auth_failures_per_s=None,
                               max_in_flight=None)


class LiveServer:
    """Serve ``db`` on ``127.0.0.1:<free port>`` until :meth:`stop`.

    Args:
        db: An open database (not closed by the server).
        settings: Server limits; :data:`TEST_SETTINGS` by default.
    """

    def __init__(self, db: Any, settings: ServerSettings | None = None) -> None:
        self.db = db
        self.settings = settings or TEST_SETTINGS
        self.app = create_app(db, settings=self.settings)
        # Port 0: the OS picks a free port at bind time; read back once started.
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off", timeout_graceful_shutdown=1, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name="engram-http-test-server")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test HTTP server did not start")
            time.sleep(0.01)
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def admin_key(self) -> str:
        """A fresh key of the built-in admin principal."""
        return str(self.db.admin.create_key(self.db.principal.name))

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServedClient(Client):
    """An admin client that owns its live server and database."""

    def __init__(self, server: LiveServer) -> None:
        super().__init__(server.url, server.admin_key())
        self.server = server

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()
            self.server.db.close()


def served_client(db: Any, settings: ServerSettings | None = None) -> ServedClient:
    """Serve ``db`` over real HTTP and return an admin client standing in for it."""
    return ServedClient(LiveServer(db, settings).start())


_SERVE = """
import sys
from engramdb.server import ServerSettings, serve
serve(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), embedder=None, admin_key="none",
      settings=ServerSettings(rate_limit_per_s=None), log_level="warning",
      announce=lambda line: None, workers=int(sys.argv[3]), combine=sys.argv[4] == "1")
"""


class ServerProcess:
    """``engramdb.server.serve`` in its own process (no embedder), as ``engram serve`` runs.

    Args:
        target: The database path or ``postgresql://`` URL to serve.
        workers: uvicorn worker processes (``serve(workers=...)``).
        combine: ``serve(combine=True)``: PostgreSQL writes through the write combiner.
    """

    def __init__(self, target: str, workers: int = 1, combine: bool = False) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE, target, str(self.port),
                                      str(workers), "1" if combine else "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def wait(self, timeout: float = 60.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server process exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server process did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
