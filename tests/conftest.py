"""Shared fixtures. The conformance suite runs on every backend and door.

``cell`` is the one matrix: every storage backend (``STORES``) x every door
(``DOORS``), so a test written against ``cell.db`` runs unchanged embedded,
over HTTP and over MCP, on SQLite and PostgreSQL. ``engine_db`` is its
engine-only column (for what only the engine exposes), and ``db`` the older
view the conformance suite uses (sqlite, postgres, http and, in the
conformance modules, mcp). A new backend or door joins by adding an opener
here, never by copying test bodies.

Capability marks: a door may not offer every call (MCP has no tool for
``changes``, ``transaction``, ``who_read``, the database-wide calls, ...). A
test that uses such a call says so with ``@pytest.mark.uses("changes", ...)``
and is skipped on the doors that lack it, at collection (nothing is opened).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# -- the one test matrix: storage backend x door ------------------------------------------
#
# A cell is a storage backend (where the data lives) seen through a door (how the test talks
# to it): the embedded Python ``Database``/``Session``, the HTTP ``Client`` against a live
# uvicorn server over that same database, or the real MCP client calling the MCP server's
# tools (tests/support/mcp_door.py). ``cell`` runs a test on every combination;
# ``BACKENDS`` / ``db`` below are the older view (sqlite, postgres, http over SQLite, and
# mcp over SQLite where a module asks for ``CONFORMANCE``) kept for the conformance suite,
# built from the same openers.

STORES: dict[str, Callable[..., engramdb.Database]] = {"sqlite": _sqlite, "postgres": _postgres}
DOORS = ("python", "http", "mcp")


@dataclass
class Cell:
    """One backend x door combination, open and empty.

    Attributes:
        store: ``sqlite`` or ``postgres``.
        door: ``python``, ``http`` or ``mcp``.
        db: what the test talks to: the engine's ``Database``, an admin HTTP ``Client``, or
            the admin's session over MCP tools (``tests.support.mcp_door.McpCell``).
        engine: the engine database underneath (the same object as ``db`` for ``python``):
            the test's oracle for things no door shows (the head, raw rows).
    """

    store: str
    door: str
    db: Any
    engine: engramdb.Database

    def head_tx(self) -> int:
        """The latest transaction, read from the engine (oracle, not the door under test)."""
        return self.engine.head().tx

    def close(self) -> None:
        self.db.close()  # a served client also stops its server and closes the engine


def open_cell(store: str, door: str, tmp_path: Path, embedder, request=None) -> Cell:
    engine = STORES[store](tmp_path, embedder, request)
    if door == "python":
        return Cell(store, door, engine, engine)
    if door == "mcp":
        from tests.support.mcp_door import McpCell

        return Cell(store, door, McpCell(engine), engine)
    from tests.support.http_server import served_client

    return Cell(store, door, served_client(engine), engine)


def matrix(stores: tuple[str, ...] = tuple(STORES), doors: tuple[str, ...] = DOORS, *,
           embed: bool = True) -> list[Any]:
    """``pytest.param`` ids ``<store>-<door>`` for ``cell`` (postgres ones marked).

    ``embed=False`` opens full-text-only databases (no embedder), for tests whose
    expected hits are written for keyword search.
    """
    return [pytest.param((s, d, embed), id=f"{s}-{d}",
                         marks=[pytest.mark.postgres] if s == "postgres" else [])
            for s in stores for d in doors]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    """A module's ``CELLS = matrix(...)`` narrows ``cell`` for every test in it.

    Added as the test's own parametrize mark (before pytest reads the marks), so
    it takes precedence over the fixture's params as a decorator would.
    """
    cells = getattr(metafunc.module, "CELLS", None)
    if cells is None or "cell" not in metafunc.fixturenames:
        return
    if any("cell" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test narrows it itself
    metafunc.definition.add_marker(pytest.mark.parametrize("cell", cells, indirect=True))


@pytest.fixture(params=matrix())
def cell(request, tmp_path, embedder) -> Iterator[Cell]:
    """A fresh database on every backend x door.

    Narrow or change it with ``@pytest.mark.parametrize("cell", matrix(...), indirect=True)``,
    or for a whole module with ``CELLS = matrix(...)``.
    """
    store, door, embed = request.param
    c = open_cell(store, door, tmp_path, embedder if embed else None, request)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(params=matrix(doors=("python",)))
def engine_db(request, tmp_path, embedder) -> Iterator[engramdb.Database]:
    """The engine itself on each storage backend (tests of what only the engine exposes)."""
    store, _, _ = request.param
    database = STORES[store](tmp_path, embedder, request)
    try:
        yield database
    finally:
        database.close()


def _http(tmp_path: Path, embedder, request=None) -> engramdb.Database:
    """The HTTP door over SQLite: an admin client talking to a live uvicorn server.

    ``db.as_agent(name)`` on it issues a key for ``name`` and returns a client
    bound to that key (see ``engramdb.client.Client.as_agent``).
    """
    return open_cell("sqlite", "http", tmp_path, embedder, request).db


def _mcp(tmp_path: Path, embedder, request=None) -> Any:
    """The MCP door over SQLite: the admin's session through the real MCP client."""
    return open_cell("sqlite", "mcp", tmp_path, embedder, request).db


BACKENDS: dict[str, Callable[..., Any]] = {**STORES, "http": _http, "mcp": _mcp}


def backends(*names: str) -> list[Any]:
    """``pytest.param``s for ``backend`` (postgres marked)."""
    return [pytest.param(name, marks=pytest.mark.postgres) if name == "postgres" else name
            for name in names]


# The conformance modules (test_conformance*.py) add the MCP door to their ``backend``.
CONFORMANCE = backends("http", "mcp", "postgres", "sqlite")


@pytest.fixture(params=backends("http", "postgres", "sqlite"))
def backend(request) -> str:
    return request.param


def _door_of(item: pytest.Item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "cell" in params and isinstance(params["cell"], tuple):
        return str(params["cell"][1])
    if params.get("backend") == "mcp":
        return "mcp"
    return None


def pytest_collection_modifyitems(config, items):
    """Skip, on a door that does not offer it, a test marked as using a call."""
    for item in items:
        mark = item.get_closest_marker("uses")
        if mark is None or _door_of(item) != "mcp":
            continue
        from tests.support.mcp_door import offered  # only where MCP cells are collected

        missing = [name for name in mark.args if not offered(name)]
        if missing:
            item.add_marker(pytest.mark.skip(
                reason=f"the MCP door offers no tool for {', '.join(missing)}"))


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
