"""Shared fixtures. The conformance suite runs on every backend and door.

``db`` is parametrised over the backends in ``BACKENDS``; a test written
against it runs unchanged on each. A new backend or door joins by adding a
factory here, never by copying test bodies.
"""

from __future__ import annotations

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


def _http(tmp_path: Path, embedder, request=None) -> engramdb.Database:
    """The HTTP door: an admin client talking to a live uvicorn server over SQLite.

    ``db.as_agent(name)`` on it issues a key for ``name`` and returns a client
    bound to that key (see ``engramdb.client.Client.as_agent``).
    """
    from tests.support.http_server import served_client

    return served_client(engramdb.open(tmp_path / "engram.db", embedder=embedder))


BACKENDS: dict[str, Callable[..., engramdb.Database]] = {"sqlite": _sqlite, "http": _http}


@pytest.fixture(params=sorted(BACKENDS))
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
