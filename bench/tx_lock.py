"""How long one large remote transaction makes every other writer wait (issue 17, finding 8).

Serves a fresh SQLite database (real embedder) over a live HTTP server, then
posts one ``/v1/transactions`` of N text updates while a second writer
remembers a short memory every 50 ms, and reports the transaction's time and
the second writer's worst latency during it. Run it against two checkouts to
compare (``PYTHONPATH=<checkout>/src python bench/tx_lock.py``); figures on a
shared machine are noisy, so report them as a ratio measured in one run.

Usage: python bench/tx_lock.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

import engramdb
from engramdb.server import ServerSettings, create_app


class _Server:
    """uvicorn on a free loopback port, in a thread (works with any checkout's engramdb)."""

    def __init__(self, db: engramdb.Database) -> None:
        app = create_app(db, settings=ServerSettings(rate_limit_per_s=None))
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main(n: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        db = engramdb.open(Path(tmp) / "engram.db")
        made = db.remember_many([{"text": f"draft note {i}", "namespace": "bench/a"}
                                 for i in range(n)])
        server = _Server(db)
        key = str(db.admin.create_key(db.principal.name))
        headers = {"Authorization": f"Bearer {key}"}
        latencies: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=600) as c:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    c.post("/v1/memories", json={"text": "probe", "namespace": "bench/p"})
                    latencies.append(time.perf_counter() - t0)
                    time.sleep(0.05)

        ops = [{"op": "update", "id": m.id, "text": f"rewritten note number {i} about herons"}
               for i, m in enumerate(made)]
        thread = threading.Thread(target=probe)
        thread.start()
        time.sleep(0.5)
        baseline = max(latencies) if latencies else 0.0
        latencies.clear()
        t0 = time.perf_counter()
        r = httpx.post(server.url + "/v1/transactions", json={"ops": ops}, headers=headers,
                       timeout=600)
        took = time.perf_counter() - t0
        stop.set()
        thread.join()
        server.stop()
        db.close()
        print(f"ops={n} status={r.status_code} transaction_s={took:.2f} "
              f"other_writer_worst_s={max(latencies, default=0.0):.2f} "
              f"idle_worst_s={baseline:.3f} load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
