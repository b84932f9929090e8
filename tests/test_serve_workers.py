"""``serve(workers=N)`` / ``engram serve --workers N``: several server processes, one database."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

import engramdb
from engramdb import InvalidInput
from engramdb.server import serve
from tests.support.http_server import ServerProcess


def test_two_worker_processes_serve_one_database_and_see_each_others_writes(
        tmp_path: Path) -> None:
    path = str(tmp_path / "workers.db")
    with engramdb.open(path, embedder=None) as db:
        key = db.admin.create_key("admin")
    server = ServerProcess(path, workers=2).wait()
    try:
        workers = [p for p in psutil.Process(server.proc.pid).children(recursive=True)
                   if "multiprocessing.spawn" in " ".join(p.cmdline())
                   and "resource_tracker" not in " ".join(p.cmdline())]
        assert len(workers) == 2
        client = engramdb.connect(server.url, key)
        written = set()
        for i in range(8):
            written.add(client.remember(f"fact {i} about the launch", namespace="w/a").id)
            # Whichever process answers, it sees every write so far.
            for _ in range(3):
                found = client.recall("launch", k=20)
                assert {h.memory.id for h in found.hits} == written
        client.close()
    finally:
        server.stop()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)


@pytest.mark.parametrize("workers", [0, -1, 65, True, 2.0])
def test_a_bad_worker_count_is_invalid_input_before_anything_starts(tmp_path: Path,
                                                                   workers: object) -> None:
    with pytest.raises(InvalidInput, match="workers"):
        serve(str(tmp_path / "never.db"), port=1, workers=workers)  # type: ignore[arg-type]
    assert not (tmp_path / "never.db").exists()


def test_workers_need_an_embedder_spec_not_an_object(tmp_path: Path) -> None:
    from engramdb.retrieval.embed import LocalEmbedder

    with pytest.raises(InvalidInput, match="spec string"):
        serve(str(tmp_path / "never.db"), port=1, workers=2, embedder=LocalEmbedder())
    assert not (tmp_path / "never.db").exists()
