"""The writer's connection, which can run one statement on a helper thread.

A batch's full-text fill is one ``INSERT ... SELECT`` over the memory rows just
inserted: SQLite tokenizes and indexes them without needing the GIL (the
driver releases it around ``sqlite3_step``). :meth:`WriterConnection.send`
runs such a statement on a helper thread, so the engine plans the batch's next
memories meanwhile (BENCHMARKS.md, ``batch4``). Every other use of the connection
first waits for it and raises what it raised, so the statements of a
transaction still run one at a time, in the order they were issued, and a
failure surfaces inside the transaction (which then rolls back, as any failed
statement's would).

Only statements that bind a few values fit: a statement binding a row at a time
(``executemany``) would need the GIL back for every row, and would get it only
when the planning thread lets go (every few milliseconds).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

__all__ = ["WriterConnection"]


class WriterConnection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that may have one statement in flight (:meth:`send`)."""

    _sent: threading.Thread | None = None
    _failure: BaseException | None = None

    def send(self, sql: str, params: Sequence[Any]) -> None:
        """Run ``sql`` on a helper thread; the next use of the connection waits for it."""
        self.wait()
        thread = threading.Thread(target=self._run_sent, args=(sql, params),
                                  name="engramdb-writer-send", daemon=True)
        self._sent = thread
        thread.start()

    def _run_sent(self, sql: str, params: Sequence[Any]) -> None:
        try:
            sqlite3.Connection.execute(self, sql, params)  # the base: it must not wait
        except BaseException as exc:  # noqa: BLE001 - raised by wait(), in the caller's thread
            self._failure = exc

    def wait(self) -> None:
        """Wait for the statement sent, if any; raise what it raised."""
        thread = self._sent
        if thread is None:
            return
        thread.join()
        self._sent = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def settle(self) -> None:
        """Wait for the statement sent, ignoring its failure (before a rollback)."""
        with suppress(Exception):  # the transaction is being undone anyway
            self.wait()

    # Every way in waits first, so statements never overlap on the connection.

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.wait()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        self.wait()
        return super().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        self.wait()
        return super().executescript(sql_script)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        self.wait()
        return super().cursor(*args, **kwargs)

    def commit(self) -> None:
        self.wait()
        super().commit()

    def rollback(self) -> None:
        self.settle()
        super().rollback()

    def close(self) -> None:
        self.settle()
        super().close()
