"""Running the server: open the database, make sure an admin can get in, start uvicorn.

The admin key: HTTP callers all come with a key, and the first one has to
come from somewhere. The server uses the database's built-in ``admin``
principal (kind ``admin``, created with the database): with
``admin_key="auto"`` (the default) it issues and prints a key for it when
``admin`` has no live key yet, i.e. on the first start, and prints nothing
secret afterwards. ``"new"`` issues a fresh key on every start (revoke old
ones with ``POST /v1/admin/keys/revoke``); ``"none"`` never issues one
(create keys offline with ``db.admin.create_key("admin")``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from engramdb.engine import Database, open_database
from engramdb.errors import InvalidInput
from engramdb.server.app import create_app
from engramdb.server.settings import ServerSettings

__all__ = ["ensure_admin_key", "run", "serve"]

AdminKeyPolicy = Literal["auto", "new", "none"]


def ensure_admin_key(db: Database, policy: AdminKeyPolicy = "auto") -> str | None:
    """Issue a key for the built-in ``admin`` principal if the policy says so.

    Returns:
        The new key (to show once), or ``None`` if none was issued.
    """
    if policy not in ("auto", "new", "none"):
        raise InvalidInput("admin_key must be 'auto', 'new' or 'none'", field="admin_key")
    if policy == "none":
        return None
    name = db.principal.name
    if policy == "auto" and db.admin.has_key(name):
        return None
    return db.admin.create_key(name)


def serve(
    target: str | Path = "engram.db",
    host: str = "127.0.0.1",
    port: int = 8420,
    *,
    settings: ServerSettings | None = None,
    embedder: Any = "default",
    admin_key: AdminKeyPolicy = "auto",
    log_level: str = "info",
    announce: Callable[[str], None] = print,
) -> None:
    """Serve a database over HTTP until interrupted (what ``engram serve`` runs).

    Args:
        target: SQLite path or ``postgresql://`` URL, as for :func:`engramdb.open`.
        host: Interface to bind; the default serves only this machine.
        port: TCP port.
        settings: Server limits (body size, batch, page size, rate limit, ...).
        embedder: As for :func:`engramdb.open`.
        admin_key: ``auto``, ``new`` or ``none``; see this module's docstring.
        log_level: uvicorn's log level.
        announce: Where the admin key and address are printed.

    Raises:
        MissingExtra: uvicorn is not installed (``pip install 'engramdb[server]'``).
    """
    import uvicorn

    db = open_database(target, embedder=embedder)
    try:
        key = ensure_admin_key(db, admin_key)
        if key is not None:
            announce(f"EngramDB admin API key (shown once, keep it): {key}")
        announce(f"EngramDB serving {db.info().url} on http://{host}:{port} "
                 f"(docs: http://{host}:{port}/docs)")
        app = create_app(db, settings=settings)
        uvicorn.run(app, host=host, port=port, log_level=log_level,
                    timeout_graceful_shutdown=5)
    finally:
        db.close()


run = serve
