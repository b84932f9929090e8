"""``serve(workers=N)`` / ``engram serve --workers N``: several server processes, one database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
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


@pytest.mark.postgres
def test_serve_combine_sends_the_workers_writes_through_one_leader(pg_url: str) -> None:
    """``engram serve --combine --workers 2`` on PostgreSQL: concurrent HTTP writes are
    applied through the write combiner (their tokens are in ``append_tokens``), each
    exactly once, and the log still verifies."""
    import psycopg

    with engramdb.open(pg_url, embedder=None) as db:
        key = db.admin.create_key("admin")
    server = ServerProcess(pg_url, workers=2, combine=True).wait()
    try:
        def write(n: int) -> list[str]:
            with engramdb.connect(server.url, key) as client:
                return [client.remember(f"writer {n} note {k}", namespace=f"w/{n}",
                                        layer="episodic").id for k in range(15)]

        with ThreadPoolExecutor(8) as pool:
            acked = [i for ids in pool.map(write, range(8)) for i in ids]
    finally:
        server.stop()
    assert len(set(acked)) == 8 * 15
    with psycopg.connect(pg_url) as conn:
        combined = conn.execute("SELECT count(*) FROM append_tokens").fetchone()[0]
    assert combined > 0  # some writes went through a leader's combined call
    with engramdb.open(pg_url, embedder=None) as db:
        remembered = [e for e in db.storage.events(0, limit=10_000)
                   if e.kind == "memory.remembered"]
        assert sorted(str(e.subject_ref) for e in remembered) == sorted(acked)
        assert db.verify().ok


def test_combine_is_refused_for_sqlite_before_anything_is_created(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"combine .*PostgreSQL"):
        serve(str(tmp_path / "never.db"), port=0, combine=True)
    assert not (tmp_path / "never.db").exists()
