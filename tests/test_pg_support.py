"""Tests of ``tests.support.pg.PgServer``: the real PostgreSQL + pgvector server.

Everything the PostgreSQL storage tests and benchmarks rely on is checked here
against the real server: it starts and takes psycopg connections, pgvector's
HNSW index answers cosine queries in the right order, iterative index scans
can be switched on, a SIGKILL crash keeps committed data, fresh databases are
isolated, ``ENGRAM_TEST_PG_URL`` is honoured, and no server process outlives
its owner, whether the owner stops it, fails, or dies outright.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import psycopg
import pytest
from pgvector.psycopg import register_vector

from tests.support.pg import ENV_URL, PgServer, PgServerError

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent

needs_embedded = pytest.mark.skipif(
    bool(os.environ.get(ENV_URL)), reason=f"{ENV_URL} is set: the embedded server is not used"
)


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    srv = PgServer()
    with srv:
        yield srv


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _server_pids(srv: PgServer) -> list[int]:
    assert srv.pid is not None
    postmaster = psutil.Process(srv.pid)
    return [postmaster.pid, *(child.pid for child in postmaster.children(recursive=True))]


def _wait_gone(pids: list[int], path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) or path.exists():
        assert time.monotonic() < deadline, (
            f"still alive: {[p for p in pids if _alive(p)]}, dir exists: {path.exists()}"
        )
        time.sleep(0.1)


def test_server_starts_and_accepts_psycopg_connections(server: PgServer) -> None:
    assert server.url.startswith("postgresql://")
    with psycopg.connect(server.url) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        vector_version = ext.fetchone()
    assert version is not None and vector_version is not None
    assert tuple(int(x) for x in vector_version[0].split(".")[:2]) >= (0, 8)
    if not server.external:
        assert int(version[0]) // 10000 == 18
        assert server.host == "127.0.0.1" and server.port is not None
        assert f"127.0.0.1:{server.port}/" in server.url


@needs_embedded
def test_embedded_server_settings_suit_crash_and_multiprocess_tests(server: PgServer) -> None:
    with psycopg.connect(server.url) as conn:
        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            return str(row[0])

        assert show("fsync") == "on"
        assert show("synchronous_commit") == "on"
        assert show("full_page_writes") == "on"
        assert int(show("max_connections")) >= 100
        assert show("listen_addresses") == "127.0.0.1"
        assert show("TimeZone") == "UTC"
        # 40 simultaneous connections, as a 16-process test with small pools would open.
        conns = [psycopg.connect(server.url) for _ in range(40)]
        try:
            assert all(c.execute("SELECT 1").fetchone() == (1,) for c in conns)
        finally:
            for c in conns:
                c.close()


def test_pgvector_hnsw_cosine_query_returns_nearest_first(server: PgServer) -> None:
    url = server.fresh_database("engram_probe_hnsw")
    rows = {
        1: [1.0, 0.0, 0.0],   # cosine distance to [1,0,0]: 0
        2: [0.9, 0.1, 0.0],   # 0.006
        3: [0.5, 0.5, 0.0],   # 0.293
        4: [0.1, 0.0, 1.0],   # 0.900
        5: [0.0, 1.0, 0.0],   # 1
        6: [-1.0, 0.0, 0.0],  # 2
    }
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3) NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s)",
                [(i, np.array(v, dtype=np.float32)) for i, v in rows.items()],
            )
        conn.execute(
            "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64)"
        )
        conn.execute("SET enable_seqscan = off")
        query = "SELECT id, embedding <=> %s AS d FROM items ORDER BY embedding <=> %s LIMIT 6"
        q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, (q, q)))
        result = conn.execute(query, (q, q)).fetchall()
        back = conn.execute("SELECT embedding FROM items WHERE id = 2").fetchone()
    assert "items_hnsw" in plan
    assert [r[0] for r in result] == [1, 2, 3, 4, 5, 6]
    assert result[0][1] == pytest.approx(0.0, abs=1e-6)
    assert result[-1][1] == pytest.approx(2.0, abs=1e-6)
    assert back is not None  # pgvector >= 0.4 returns a Vector, not an ndarray
    assert back[0].to_list() == pytest.approx([0.9, 0.1, 0.0])


def test_hnsw_iterative_scan_relaxed_order_is_accepted_and_works(server: PgServer) -> None:
    url = server.fresh_database("engram_probe_iterative")
    rng = np.random.default_rng(7)
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, cat int, embedding vector(3))")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO docs VALUES (%s, %s, %s)",
                [(i, i % 50, rng.normal(size=3).astype(np.float32)) for i in range(1000)],
            )
        conn.execute("CREATE INDEX ON docs USING hnsw (embedding vector_cosine_ops)")
        # The library is loaded now, so hnsw.* are real settings, not placeholders.
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        shown = conn.execute("SHOW hnsw.iterative_scan").fetchone()
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET hnsw.iterative_scan = sideways")
        conn.execute("SET hnsw.ef_search = 10")
        conn.execute("SET enable_seqscan = off")
        # 20 rows per category: a plain scan of 10 candidates rarely holds 5 of category 7,
        # an iterative scan keeps going until it has them.
        found = conn.execute(
            "SELECT cat FROM docs WHERE cat = 7 ORDER BY embedding <=> %s LIMIT 5",
            (np.array([1.0, 0.0, 0.0], dtype=np.float32),),
        ).fetchall()
    assert shown == ("relaxed_order",)
    assert found == [(7,)] * 5


def test_fresh_database_isolates_and_recreates(server: PgServer) -> None:
    url_a = server.fresh_database("engram_iso_a")
    url_b = server.fresh_database("engram_iso_b")
    assert url_a != url_b and url_a.endswith("/engram_iso_a")
    with psycopg.connect(url_a, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_in_a (v vector(2))")
        conn.execute("INSERT INTO only_in_a VALUES ('[1,2]')")
    with psycopg.connect(url_b) as conn:
        assert conn.execute("SELECT to_regclass('only_in_a')").fetchone() == (None,)
        ext = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
        assert ext.fetchone() == (1,)
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT to_regclass('only_in_a')").fetchone() == (None,)
    # Asking again gives an empty database, even with a session still open on the old one.
    lingering = psycopg.connect(url_a)
    try:
        assert server.fresh_database("engram_iso_a") == url_a
    finally:
        lingering.close()
    with psycopg.connect(url_a) as conn:
        assert conn.execute("SELECT to_regclass('only_in_a')").fetchone() == (None,)
    with pytest.raises(ValueError):
        server.fresh_database(server.url.rsplit("/", 1)[-1])


def test_env_url_adopts_an_existing_server(
    server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_URL, server.url)
    adopted = PgServer()
    assert adopted.external
    with adopted as url:
        assert url == server.url
        assert adopted.pid is None and adopted.workdir is None
        fresh = adopted.fresh_database("engram_adopted_fresh")
        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT '[1,2]'::vector <-> '[1,2]'").fetchone() == (0.0,)
        with pytest.raises(PgServerError):
            adopted.kill()
        with pytest.raises(PgServerError):
            adopted.restart()
    # The adopted server keeps running; databases made through it are dropped.
    with psycopg.connect(server.url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = 'engram_adopted_fresh'"
        ).fetchone()
    assert left == (0,)


def test_bundled_psql_runs_against_the_server(server: PgServer) -> None:
    out = subprocess.run(
        [*server.psql_argv(), "-tAc", "SELECT extname FROM pg_extension WHERE extname = 'vector'"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert out.stdout.strip() == "vector"


@needs_embedded
def test_kill_then_restart_keeps_committed_data() -> None:
    srv = PgServer(use_env=False)
    with srv as url:
        conn = psycopg.connect(url, autocommit=True)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, embedding vector(3))")
        conn.execute(
            "INSERT INTO t SELECT g, ARRAY[g, 1, 0]::vector FROM generate_series(1, 500) g"
        )
        conn.execute("CREATE INDEX t_hnsw ON t USING hnsw (embedding vector_l2_ops)")
        pending = psycopg.connect(url)  # a transaction that never commits
        pending.execute("INSERT INTO t VALUES (10000, '[1,1,1]')")
        old_pid, port, data_dir = srv.pid, srv.port, srv.data_dir
        old_pids = _server_pids(srv)

        srv.kill()

        assert srv.pid is None
        assert not any(_alive(p) for p in old_pids), "kill() must leave no server process"
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
        pending.close()

        srv.restart()

        assert srv.pid is not None and srv.pid != old_pid
        assert (srv.port, srv.data_dir, srv.url) == (port, data_dir, url)
        assert srv.log_path is not None
        assert "automatic recovery in progress" in srv.log_path.read_text()
        with psycopg.connect(url) as conn2:
            assert conn2.execute("SELECT count(*), max(id) FROM t").fetchone() == (500, 500)
            conn2.execute("SET enable_seqscan = off")
            nearest = conn2.execute(
                "SELECT id FROM t ORDER BY embedding <-> '[500, 1, 0]' LIMIT 1"
            ).fetchone()
            assert nearest == (500,)

        srv.restart()  # on a running server: clean shutdown, then start
        with psycopg.connect(url) as conn3:
            assert conn3.execute("SELECT count(*) FROM t").fetchone() == (500,)


@needs_embedded
def test_stop_leaves_no_process_and_no_directory() -> None:
    srv = PgServer(use_env=False)
    with srv:
        pids = _server_pids(srv)
        workdir = srv.workdir
        assert workdir is not None and (workdir / "data" / "PG_VERSION").exists()
        assert len(pids) >= 5  # postmaster, checkpointer, walwriter, ...
    assert srv.pid is None
    assert not any(_alive(p) for p in pids)
    assert not workdir.exists()


@needs_embedded
def test_startup_failure_reports_the_server_log() -> None:
    with pytest.raises(ValueError, match="port"):
        PgServer(use_env=False, settings={"port": 5432})
    srv = PgServer(use_env=False, settings={"shared_buffers": "lots"})
    with pytest.raises(PgServerError, match="shared_buffers"):
        srv.start()
    assert srv.workdir is None and srv.pid is None


_OWNER_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
import psutil
from tests.support.pg import PgServer

srv = PgServer(use_env=False)
srv.start()
postmaster = psutil.Process(srv.pid)
pids = [postmaster.pid, postmaster.ppid(), *(c.pid for c in postmaster.children(recursive=True))]
print(json.dumps({{"pids": pids, "workdir": str(srv.workdir)}}), flush=True)
if sys.argv[1] == "hard":
    os._exit(3)  # no atexit, no finalizer: only the supervisor's watch pipe notices
raise RuntimeError("a test failed without stopping the server")
"""


@needs_embedded
@pytest.mark.parametrize("death", ["exception", "hard"])
def test_no_server_process_outlives_its_owner(death: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_URL}
    done = subprocess.run(
        [sys.executable, "-c", _OWNER_SCRIPT.format(root=str(ROOT)), death],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode != 0
    info = json.loads(done.stdout.strip().splitlines()[-1])
    _wait_gone(info["pids"], Path(info["workdir"]), timeout=60)
