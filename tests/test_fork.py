"""The default embedder and a database handle in forked workers, threads and gunicorn.

Real processes throughout: ``multiprocessing`` with the fork start method
(Linux's default before Python 3.14, and what Celery prefork does), a real
gunicorn with ``--preload`` serving the HTTP app, and real threads. Before the
fix a child forked after its parent had embedded text hung forever in its
first embedding (the parent's runtime thread pool does not exist in the child).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.client import Client
from engramdb.retrieval.embed import default_embedder

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

CHILD_TEXTS = [
    "The child process writes its own memories after the fork.",
    "Forked workers must embed text without waiting on the parent's threads.",
]


def _child_embed(queue: Any) -> None:
    vectors = default_embedder().embed(CHILD_TEXTS)  # not in the inherited cache
    queue.put(vectors)


def _child_database(worker: int, queue: Any) -> None:
    try:
        inherited = _INHERITED_DB  # the handle the parent opened before forking
        texts = [f"worker {worker} noted the shipment number {worker}{i} arrived late"
                 for i in range(5)]
        inherited.remember_many([{"text": t, "namespace": f"w/{worker}"} for t in texts])
        hits = inherited.recall(f"shipment number {worker}3", namespace=f"w/{worker}", k=5)
        queue.put((worker, [h.memory.text for h in hits.hits]))
    except BaseException as exc:
        queue.put((worker, f"{type(exc).__name__}: {exc}"))


_INHERITED_DB: Any = None


def _wait(processes: list[multiprocessing.process.BaseProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    hung = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
    assert not hung, f"forked children {hung} hung instead of finishing"
    assert [p.exitcode for p in processes] == [0] * len(processes)


def test_a_child_forked_after_the_parent_embedded_does_not_hang() -> None:
    embedder = default_embedder()
    embedder.embed(["the parent embeds first, so the runtime's threads exist"])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child_embed, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    _wait(children, 60)
    expected = embedder.embed(CHILD_TEXTS)  # the parent computes them only now
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_forked_workers_write_and_recall_through_the_inherited_handle(tmp_path: Path) -> None:
    global _INHERITED_DB
    path = tmp_path / "forked.db"
    db = engramdb.open(path)
    db.remember("the parent wrote this before forking", namespace="parent")
    assert db.recall("what did the parent write", namespace="parent").hits
    _INHERITED_DB = db
    try:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        workers = [context.Process(target=_child_database, args=(w, queue))
                   for w in range(3)]
        for worker in workers:
            worker.start()
        answers = dict(queue.get(timeout=180) for _ in workers)
        _wait(workers, 60)
    finally:
        _INHERITED_DB = None
    for worker, hits in answers.items():
        assert isinstance(hits, list), hits  # an error string otherwise
        assert hits[0] == f"worker {worker} noted the shipment number {worker}3 arrived late"
    # The parent's handle still works and sees every child's writes.
    for worker in range(3):
        found = db.recall("shipment arrived late", namespace=f"w/{worker}", k=10)
        assert len(found.hits) == 5
    assert db.verify().ok
    db.close()


def test_threads_embed_and_write_concurrently(tmp_path: Path) -> None:
    db = engramdb.open(tmp_path / "threads.db")
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for round_ in range(3):
                db.remember_many([
                    {"text": f"thread {index} round {round_} item {i} about topic {index}",
                     "namespace": f"t/{index}"} for i in range(4)])
                hits = db.recall(f"topic {index}", namespace=f"t/{index}", k=20)
                assert all(h.memory.namespace == f"t/{index}" for h in hits.hits)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    for index in range(4):
        assert len(db.recall("item", namespace=f"t/{index}", k=50).hits) == 12
    db.close()


APP = """
import os
from pathlib import Path

import engramdb
from engramdb.server.app import create_app
from engramdb.server.serve import ensure_admin_key

db = engramdb.open(os.environ["ENGRAM_FORK_DB"])
db.remember("the master process embedded this before forking", namespace="boot")
key = ensure_admin_key(db)
if key:
    Path(os.environ["ENGRAM_FORK_KEY"]).write_text(key)
app = create_app(db)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.skipif(shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("gunicorn") is None, reason="needs gunicorn (dev extra)")
def test_gunicorn_preload_workers_embed_and_serve(tmp_path: Path) -> None:
    (tmp_path / "forkapp.py").write_text(textwrap.dedent(APP))
    port = _free_port()
    env = dict(os.environ, ENGRAM_FORK_DB=str(tmp_path / "served.db"),
               ENGRAM_FORK_KEY=str(tmp_path / "key"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
         "-k", "uvicorn.workers.UvicornWorker", "-b", f"127.0.0.1:{port}",
         "--timeout", "120", "forkapp:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not (tmp_path / "key").exists() or not _listening(port):
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        key = (tmp_path / "key").read_text()
        pids: set[int] = set()
        errors: list[BaseException] = []

        def call(index: int) -> None:
            try:
                with Client(url, key, timeout=120) as client:
                    client.remember(f"request {index} stored a note about invoices",
                                    namespace="served")
                    hits = client.recall(f"request {index} invoices", namespace="served", k=3)
                    assert hits.hits
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert not any(t.is_alive() for t in threads), "a request hung in a worker"
        assert not errors, errors
        with Client(url, key) as client:
            assert len(client.recall("invoices", namespace="served", k=20).hits) == 8
        pids = _worker_pids(server.pid)
        assert len(pids) == 2
    finally:
        server.terminate()
        try:
            output = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0]
    assert "Traceback" not in output, output


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _worker_pids(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    if not children.exists():
        return {0, 1}  # no /proc: the request test above already proved the workers
    return {int(pid) for pid in children.read_text().split()}


def _child_ids(queue: Any) -> None:
    from engramdb.codec import new_ids, random_bytes
    queue.put((random_bytes(16).hex(), [i[19:] for i in new_ids(3)]))


def test_forked_children_make_ids_and_salts_of_their_own() -> None:
    """Random bytes are read from the OS in chunks: a child forked while its parent
    still holds unused bytes must not hand out the same ones (the same memory ids'
    random bits, the same salts and placeholders in two processes)."""
    from engramdb.codec import new_ids, random_bytes
    new_ids(1)  # the parent now holds unused random bytes
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_child_ids, args=(queue,)) for _ in range(3)]
    for child in children:
        child.start()
    got = [queue.get(timeout=60) for _ in children]
    _wait(children, 60)
    got.append((random_bytes(16).hex(), [i[19:] for i in new_ids(3)]))
    salts = [salt for salt, _ in got]
    tails = [tail for _, ids in got for tail in ids]
    assert len(set(salts)) == len(salts)
    assert len(set(tails)) == len(tails)
