"""Shared fixtures. The conformance suite runs on every backend and door.

``db`` is parametrised over the backends in ``BACKENDS``; a test written
against it runs unchanged on each. A new backend or door joins by adding a
factory here, never by copying test bodies.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import engramdb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Factory = Callable[[Path], engramdb.Database]


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder (all-MiniLM-L6-v2), loaded once per test session."""
    from engramdb.retrieval.embed import default_embedder

    emb = default_embedder()
    emb.embed(["warm up"])
    return emb


def _sqlite(tmp_path: Path, embedder, request=None) -> engramdb.Database:
    return engramdb.open(tmp_path / "engram.db", embedder=embedder)


_pg_server = None  # one PostgreSQL server per test session, started on first use
_pg_urls: dict[Path, str] = {}  # tmp_path -> its database: reopening finds the same data
_pg_names = itertools.count()


def pg_server():
    """The session's real PostgreSQL + pgvector server (or ``ENGRAM_TEST_PG_URL``'s)."""
    global _pg_server
    if _pg_server is None:
        from tests.support.pg import PgServer

        server = PgServer()
        server.start()
        _pg_server = server
    return _pg_server


def _postgres(tmp_path: Path, embedder, request=None) -> engramdb.Database:
    """A fresh database per test on the session's server; dropped when the test ends."""
    url = _pg_urls.get(tmp_path)
    if url is None:
        server = pg_server()
        name = f"t{next(_pg_names)}_{os.getpid()}"
        url = server.fresh_database(name)
        _pg_urls[tmp_path] = url
        if request is not None:
            request.addfinalizer(lambda: _drop_pg_database(server, name, tmp_path))
    return engramdb.open(url, embedder=embedder)


def _drop_pg_database(server, name: str, tmp_path: Path) -> None:
    import psycopg
    from psycopg import sql

    _pg_urls.pop(tmp_path, None)
    with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg():
    """The session's PostgreSQL server (a ``tests.support.pg.PgServer``)."""
    return pg_server()


@pytest.fixture
def pg_url(pg, request) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    import psycopg

    name = f"tp_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    url = pg.fresh_database(name)
    yield url
    with psycopg.connect(pg.url_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_sessionfinish(session, exitstatus):
    if _pg_server is not None:
        _pg_server.stop()


def _http(tmp_path: Path, embedder, request=None) -> engramdb.Database:
    """The HTTP door: an admin client talking to a live uvicorn server over SQLite.

    ``db.as_agent(name)`` on it issues a key for ``name`` and returns a client
    bound to that key (see ``engramdb.client.Client.as_agent``).
    """
    from tests.support.http_server import served_client

    return served_client(engramdb.open(tmp_path / "engram.db", embedder=embedder))


BACKENDS: dict[str, Callable[..., engramdb.Database]] = {
    "sqlite": _sqlite, "postgres": _postgres, "http": _http}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.postgres) if name == "postgres"
                        else name for name in sorted(BACKENDS)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def db(backend, tmp_path, embedder, request) -> Iterator[engramdb.Database]:
    """A fresh, empty database on each backend, with the real embedder."""
    database = BACKENDS[backend](tmp_path, embedder, request)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def sqlite_path(tmp_path) -> Path:
    return tmp_path / "engram.db"
