"""Running the server: open the database, make sure an admin can get in, start uvicorn.

The admin key: HTTP callers all come with a key, and the first one has to
come from somewhere. The server uses the database's built-in ``admin``
principal (kind ``admin``, created with the database): with
``admin_key="auto"`` (the default) it issues and prints a key for it when
``admin`` has no live key yet, i.e. on the first start, and prints nothing
secret afterwards. ``"new"`` issues a fresh key on every start (revoke old
ones with ``POST /v1/admin/keys/revoke``); ``"none"`` never issues one
(create keys offline with ``engram agent key admin`` or
``db.admin.create_key("admin")``). An issued key is written to
``admin_key_file`` (a new file, mode 0600) when one is given, otherwise shown
once through ``announce_key``.

Worker processes: ``workers=N`` (``engram serve --workers N``) runs N uvicorn
worker processes on the one port, each with its own database handle, so
requests use every core instead of queueing behind one interpreter (the GIL)
and one embedding run at a time. The parent issues the admin key and runs the
maintenance schedule; each worker is a fresh interpreter (uvicorn spawns it)
that opens the database again, from a description in the environment
(:func:`worker_app`), so the embedder must be given as a spec string. SQLite
workers share the vector snapshot (a memory-mapped file); PostgreSQL workers
share the server. Limits such as ``rate_limit_per_s`` and ``max_in_flight``
apply per worker.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from engramdb.engine import Database, open_database
from engramdb.errors import ConfigurationError, EngramError, InvalidInput
from engramdb.private_file import private_file
from engramdb.server.app import create_app
from engramdb.server.settings import ServerSettings

__all__ = ["MaintenanceSchedule", "ensure_admin_key", "run", "serve", "worker_app"]

log = logging.getLogger("engramdb.server")

AdminKeyPolicy = Literal["auto", "new", "none"]

# How serve() describes the database to its worker processes (JSON).
WORKER_ENV = "ENGRAM_SERVE_WORKER"


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
    admin_key_file: str | Path | None = None,
    log_level: str = "info",
    announce: Callable[[str], None] = print,
    announce_key: Callable[[str], None] | None = None,
    workers: int = 1,
    combine: bool = False,
) -> None:
    """Serve a database over HTTP until interrupted (what ``engram serve`` runs).

    Args:
        target: SQLite path or ``postgresql://`` URL, as for :func:`engramdb.open`.
        host: Interface to bind; the default serves only this machine.
        port: TCP port.
        settings: Server limits (body size, batch, page size, rate limit, ...).
        embedder: As for :func:`engramdb.open`.
        admin_key: ``auto``, ``new`` or ``none``; see this module's docstring.
        admin_key_file: write an issued admin key to this new 0600 file.
        log_level: uvicorn's log level.
        announce: Where the address (and, by default, the admin key) is printed.
        announce_key: Where an issued admin key is shown, if not ``announce``.
        workers: server processes (see the module docstring); more than one
            needs ``embedder`` as a spec string (``"default"`` included).
        combine: PostgreSQL only: send the workers' single writes through the
            write combiner (``engramdb.open(url, combine=True)``), so the
            workers, and any other process on this host opened the same way,
            share one call per batch of writes (``docs/scaling.md``).

    Raises:
        MissingExtra: uvicorn is not installed (``pip install 'engramdb[server]'``).
        ConfigurationError: the port is in use or the address cannot be bound.
        InvalidInput: ``admin_key_file`` exists already, ``workers`` is not a
            positive integer, ``workers > 1`` with an embedder object, or
            ``combine`` with a SQLite database.
    """
    import uvicorn

    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise InvalidInput("workers must be an integer from 1 to 64", field="workers")
    if workers > 1 and not (embedder is None or isinstance(embedder, str)):
        raise InvalidInput("workers > 1 needs the embedder as a spec string (each worker "
                           "process opens the database again); pass e.g. 'local'",
                           field="embedder")
    check_bindable(host, port)
    db = open_database(target, embedder=embedder, combine=combine)
    try:
        with private_file(admin_key_file, what="admin key file") as fh:
            key = ensure_admin_key(db, admin_key)
            if fh is not None and key is not None:
                fh.write((key + "\n").encode())
        if admin_key_file is not None and key is None:
            Path(admin_key_file).unlink()  # claimed for a key that was not issued
        if key is not None and admin_key_file is not None:
            announce(f"EngramDB admin API key written to {admin_key_file} (mode 0600)")
        elif key is not None:
            (announce_key or (lambda k: announce(
                f"EngramDB admin API key (shown once, keep it): {k}")))(key)
        docs = "" if (settings or ServerSettings()).docs == "off" else (
            f" (docs: http://{host}:{port}/docs)")
        announce(f"EngramDB serving {db.info().url} on http://{host}:{port}{docs}; "
                 f"inspector: http://{host}:{port}/ui")
        schedule = MaintenanceSchedule(db, (settings or ServerSettings()).maintain_every_s)
        schedule.start()
        try:
            if workers == 1:
                uvicorn.run(create_app(db, settings=settings), host=host, port=port,
                            log_level=log_level, timeout_graceful_shutdown=5)
            else:
                os.environ[WORKER_ENV] = json.dumps({
                    "target": str(target), "embedder": embedder, "combine": combine,
                    "settings": dataclasses.asdict(settings or ServerSettings())})
                uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers,
                            host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=5)
        except SystemExit as exc:  # uvicorn exits 3 when it cannot start
            if exc.code in (0, None):
                raise
            raise ConfigurationError(
                f"the HTTP server could not start on {host}:{port} (uvicorn exit "
                f"{exc.code}); see the lines above") from None
        finally:
            schedule.stop()
    finally:
        db.close()


def worker_app() -> Any:
    """The ASGI app of one worker process of ``serve(workers=N)``.

    uvicorn calls this in each worker it spawns; the database, embedder and
    settings come from the description ``serve`` left in :data:`WORKER_ENV`.
    The handle stays open for the process's life; its read-audit buffer is
    flushed at exit.
    """
    spec = json.loads(os.environ[WORKER_ENV])
    db = open_database(spec["target"], embedder=spec["embedder"],
                       combine=bool(spec.get("combine", False)))
    return create_app(db, settings=ServerSettings(**spec["settings"]))


def check_bindable(host: str, port: int) -> None:
    """Fail early, with a typed error, when ``host:port`` cannot be served.

    Raises:
        ConfigurationError: the port is taken or the address is not this machine's.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot resolve host {host!r} ({exc.strerror}); "
                                 "give an address of this machine with --host") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(addr)
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            why = "is already in use" if taken else f"cannot be bound ({exc.strerror})"
            raise ConfigurationError(
                f"port {port} on {host} {why}; stop the other server or pick another port "
                "with --port", port=port) from None


class MaintenanceSchedule:
    """Runs ``db.maintain()`` every ``interval_s`` seconds on a daemon thread
    (``None``: never). A failed run is logged and retried at the next tick."""

    def __init__(self, db: Database, interval_s: float | None) -> None:
        self._db = db
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        if self._interval is None:
            return
        self._thread = threading.Thread(target=self._loop, name="engram-maintain", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._interval is not None
        while not self._stop.wait(self._interval):
            try:
                self._db.maintain()
                self.runs += 1
            except EngramError as exc:
                log.warning("scheduled maintain failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


run = serve
