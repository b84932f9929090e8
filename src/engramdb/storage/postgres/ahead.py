"""A recall's searches sent ahead, in its snapshot's first round trip.

A recall's filter depends on what its snapshot's first round trip reads
(:mod:`.snapshot`): the head pins ``as_of``, the namespace list resolves the
reader's glob, the configuration rows its grants. So the searches waited for
that round trip, and a recall took three (snapshot, searches, ``ROLLBACK``).

Here the engine's own filter code (``Storage.snapshot(ahead=...)``) runs first
on a *prediction* of those values: the head, ``config_tx`` and namespaces of
the last snapshot this process opened, with the configuration rows kept under
that ``config_tx``. A read the prediction cannot answer from them ends it
(:class:`Unpredictable`: nothing is sent ahead). The searches it plans are
sent in the snapshot's first pipeline, after the head read, so in the same
transaction: the same snapshot as every later read of the recall.

Exactness: when the recall then searches (inside the snapshot, with the
filter computed from what the snapshot actually read), its statements are
planned again, and the rows sent ahead answer it only if both statements
are identical, SQL text and every parameter (:func:`take`): the same
statements in the same REPEATABLE READ transaction return the same rows.
Otherwise (a write moved the head, a namespace appeared, a grant changed)
the searches are sent as before. A wrong prediction costs the server time
of the searches sent ahead, never a different answer; after one, the next
recalls do not predict (1, 2, 4, ... up to :data:`MAX_BACKOFF` of them) until
a prediction holds again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from engramdb.storage.base import Head, SearchAhead
from engramdb.storage.postgres import fulltext
from engramdb.storage.postgres._conn import to_pyformat
from engramdb.storage.postgres.knn import VectorSearch
from engramdb.storage.postgres.snapshot import Pinned

__all__ = ["MAX_BACKOFF", "Predictor", "Sent", "Unpredictable", "plan", "take"]

MAX_BACKOFF = 32


class Unpredictable(Exception):
    """A read the prediction cannot answer from the last snapshot's values."""


@dataclass
class Sent:
    """The searches sent ahead, and their cursors once the pipeline has been synced."""

    text: tuple[str, list[Any]] | None
    search: VectorSearch
    text_cur: Any = None

    def send(self, conn: psycopg.Connection[Any]) -> None:
        """Queue both searches in ``conn``'s open pipeline, as ``search_text_and_vector``
        would, the vector search without its savepoint (its settings are for this
        transaction either way)."""
        if self.text is not None:
            self.text_cur = conn.execute(to_pyformat(self.text[0]), self.text[1],
                                         prepare=False)
        self.search.send(conn, savepoint=False)


class Predictor:
    """The values of the last snapshot this process opened, and how well they predict
    (shared by threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: tuple[Head, int, tuple[str, ...]] | None = None
        self._backoff = 0  # recalls to skip after the next wrong prediction
        self._skip = 0  # recalls still to skip
        self.held = 0  # predictions whose rows answered the search
        self.missed = 0  # predictions sent and not used

    def remember(self, head: Head, config_tx: int, namespaces: tuple[str, ...]) -> None:
        with self._lock:
            self.last = (head, config_tx, namespaces)

    def guess(self) -> tuple[Head, int, tuple[str, ...]] | None:
        """The values to predict with, or None: nothing seen yet, or backing off."""
        with self._lock:
            if self._skip > 0:
                self._skip -= 1
                return None
            return self.last

    def outcome(self, held: bool) -> None:
        with self._lock:
            if held:
                self.held += 1
                self._backoff = self._skip = 0
            else:
                self.missed += 1
                self._skip = self._backoff
                self._backoff = min(MAX_BACKOFF, 2 * self._backoff + 1)


@contextmanager
def _predicting(store: Any, head: Head, config_tx: int, namespaces: tuple[str, ...]
                ) -> Iterator[None]:
    """This thread's reads answered from the predicted values only (others raise
    :class:`Unpredictable`, see ``PostgresStorage._read_conn``)."""
    local = store._local
    cache: dict[str, tuple[int, list[Sequence[Any]]]] = store.__dict__.get("_config", {})

    def config(table: str) -> list[Sequence[Any]]:
        hit = cache.get(table)
        if hit is None or hit[0] != config_tx:
            raise Unpredictable(table)
        return hit[1]

    local.pinned = Pinned(None, head, config_tx, namespaces, None)  # type: ignore[arg-type]
    local.predicting = True
    try:
        with store.config_scope(config):
            yield
    finally:
        local.pinned = None
        local.predicting = False


def plan(store: Any, conn: psycopg.Connection[Any],
         ahead: Callable[[], SearchAhead | None]) -> Sent | None:
    """The searches ``ahead`` asks for on the predicted values, planned on ``conn``
    (outside any transaction: it may stem new words and read the planner's
    statistics), or None when there is nothing to predict with or it cannot."""
    predictor: Predictor = store.predictor
    guess = predictor.guess()
    if guess is None:
        return None
    stats = fulltext.term_stats(store, conn)  # on conn: the pool may hold no other
    try:
        with _predicting(store, *guess):
            wanted = ahead()
            if wanted is None or wanted.limit <= 0:
                return None
            text = fulltext.text_statement(store, conn, stats, wanted.query, wanted.flt,
                                           wanted.limit, brief=wanted.brief)
            search = VectorSearch(store, conn, wanted.vector, wanted.flt, wanted.limit,
                                  brief=wanted.brief)
    except Unpredictable:
        return None
    return Sent(text, search)


def take(store: Any, text: tuple[str, list[Any]] | None, search: VectorSearch
         ) -> tuple[list[Any], VectorSearch] | None:
    """The rows sent ahead in this thread's snapshot, if its searches were exactly
    ``text`` and ``search`` (then ``(text rows, the sent VectorSearch)``: read its
    hits), else None. Either way they are used at most once."""
    sent: Sent | None = getattr(store._local, "ahead", None)
    if sent is None:
        return None
    store._local.ahead = None
    same = (_same_statement(sent.text, text)
            and sent.search.sql == search.sql and sent.search.n == search.n
            and sent.search.brief == search.brief and _same(sent.search.args, search.args))
    store.predictor.outcome(same)
    if not same:
        return None
    return ([] if sent.text_cur is None else sent.text_cur.fetchall()), sent.search


def _same_statement(a: tuple[str, list[Any]] | None, b: tuple[str, list[Any]] | None) -> bool:
    if a is None or b is None:
        return a is b
    return a[0] == b[0] and _same(a[1], b[1])


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Parameters equal in type and value (vectors element by element)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, np.ndarray):
            if x.dtype != y.dtype or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True
