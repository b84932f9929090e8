"""The one migration runner, shared by every backend.

Migrations are append-only numbered SQL files, one folder per backend
(``storage/<backend>/migrations/NNNN_name.sql``); the versions applied are
recorded in ``schema_migrations`` inside the database. :func:`migrate` applies
the pending ones in order through the backend's own ``run`` (and splitter, for
drivers that take one statement at a time); the backend owns the transaction
and the lock around it, so ``setup()`` is safe to call twice, from several
processes at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

__all__ = ["Migration", "load", "migrate"]

Migration = tuple[int, str, str]  # (version, name, sql)
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


def load(package: str) -> list[Migration]:
    """The migrations shipped in ``package``'s ``migrations`` folder, oldest first."""
    out = []
    for entry in (resources.files(package) / "migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out)


def migrate(run: Callable[[str, Sequence[Any]], Any], migrations: Iterable[Migration], *,
            placeholder: str = "?",
            statements: Callable[[str], list[str]] = lambda sql: [sql]) -> list[int]:
    """Apply every migration not yet recorded in ``schema_migrations``; return their versions.

    Args:
        run: executes one SQL statement with parameters, returning a cursor.
        migrations: all of the backend's migrations (see :func:`load`).
        placeholder: the driver's parameter marker (``?`` or ``%s``).
        statements: splits a migration into what ``run`` executes at once.
    """
    run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at BIGINT NOT NULL)", ())
    applied = {int(r[0]) for r in run("SELECT version FROM schema_migrations", ()).fetchall()}
    done = []
    for version, name, sql in migrations:
        if version in applied:
            continue
        for statement in statements(sql):
            run(statement, ())
        p = placeholder
        run(f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({p}, {p}, {p})",
            (version, name, time.time_ns() // 1000))
        done.append(version)
    return done
