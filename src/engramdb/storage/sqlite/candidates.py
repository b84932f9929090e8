"""A semantic write's full-text candidates on SQLite: its contradiction check's search.

:meth:`SQLiteStorage.search_text_current` ranks the new text's rarest words
(:data:`~.fulltext.CANDIDATE_WORDS`) with FTS5's BM25 inside the namespace's
``scope`` token, exactly as recall's full-text search ranks a query, and returns
the best current rows read through the write transaction's own connection. It
is its own function (recall's search keeps its shape) so that a write pays only
for what the check reads: no stored words, the filter's SQL built once per
filter, and the JSON columns of a candidate parsed only when the check looks at
them (most candidates are judged unrelated from their text alone).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from engramdb.model import RecallFilter
from engramdb.storage.schema import TABLES
from engramdb.storage.sql import Dialect, memory_where
from engramdb.storage.sqlite.fulltext import CANDIDATE_WORDS, FullText

__all__ = ["CandidateRow", "text_candidates"]

_COLS = tuple(TABLES["memories"].columns)
_SELECT = ", ".join("m." + c for c in _COLS)
_AT = {c: i for i, c in enumerate(_COLS)}  # column -> its position in a row
_JSON = frozenset(c for c, kind in TABLES["memories"].columns.items() if kind == "json")
# The table's configured rank (migration 0013), as recall's search names it.
_BM25 = "bm25(memories_fts, 1.0, 0.0)"
# Up to this many matches (by the words' counts) FTS5 returns them unsorted and the
# rank order is taken here: cheaper than SQLite's sorter (~10 us a write at 10k rows,
# where a namespace holds a tenth of the ~200 matches of the words).
SORT_HERE = 500


def _rank_order(row: tuple[int, float | None]) -> tuple[bool, float, int]:
    """``ORDER BY rank, rowid`` as SQLite sorts: a NULL rank (none from BM25 on rows
    that match) first, then the lower score, then the lower row id."""
    rank = row[1]
    return (rank is not None, 0.0 if rank is None else rank, row[0])


class CandidateRow(Mapping[str, Any]):
    """A memory row read by the candidate search; each JSON column is parsed on its
    first access (a row judged unrelated never needs its metadata, and reading the
    assertion's ``value`` parses only that column). The values stay the row's tuple,
    looked up by column position (no dict built for a row the check barely reads)."""

    __slots__ = ("_parsed", "_values")

    def __init__(self, values: tuple[Any, ...]) -> None:
        if len(values) != len(_COLS):
            raise ValueError(f"a memory row has {len(_COLS)} columns, not {len(values)}")
        self._values = values
        self._parsed: dict[str, Any] = {}

    def _get(self, key: str) -> Any:
        value = self._values[_AT[key]]
        if key not in _JSON or not isinstance(value, str):
            return value
        if key not in self._parsed:
            self._parsed[key] = {} if value == "{}" else json.loads(value)
        return self._parsed[key]

    __getitem__ = _get

    def __iter__(self) -> Iterator[str]:
        return iter(_COLS)

    def __len__(self) -> int:
        return len(_COLS)

    def get(self, key: str, default: Any = None) -> Any:
        at = _AT.get(key)
        if at is None:
            return default
        value = self._values[at]
        return value if key not in _JSON or not isinstance(value, str) else self._get(key)

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict, every JSON column parsed."""
        return {key: self._get(key) for key in _COLS}


@lru_cache(maxsize=256)
def _where(flt: RecallFilter, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    cond, params = memory_where(flt, dialect)
    return cond, tuple(params)


def text_candidates(conn: sqlite3.Connection, fts: FullText, dialect: Dialect,
                    run: Callable[..., Any], namespaces: Callable[[], int], query: str,
                    flt: RecallFilter, limit: int, total: int) -> list[CandidateRow]:
    """The best ``limit`` rows matching ``query``'s rarest words that pass ``flt``.

    The same rows, in the same order, as recall's full-text search of ``query``
    limited to :data:`~.fulltext.CANDIDATE_WORDS` words: rank in FTS5 alone (the
    namespace inside the index), then look the best ``limit * 2 + 20`` up by row
    id in rank order; only when fewer than ``limit`` of them pass the filter and
    FTS5 had more does the filtered query run in full.

    Args:
        run: the storage's statement runner (driver errors become EngramErrors).
        namespaces: how many namespaces the database has (asked only for a filter
            of several).
        total: the largest memory row id (0: none), as full-text search sizes the
            database.
    """
    if limit <= 0:
        return []
    found = fts.counted_match(conn, query, total, CANDIDATE_WORDS)
    if found is None:
        return []
    words, rows = found
    scope = fts.scope(conn, flt.namespaces, namespaces, total)
    match = words if scope is None else f"{words} AND {scope}"
    pool = limit * 2 + 20
    if scope is not None and rows is not None and rows <= SORT_HERE:
        # Few matches (the words' counts bound them): every match and its score, in
        # FTS5's order, sorted here by the same key as the SQL below. The same
        # scores (one statement, one cursor, as below), with no sorter to set up.
        ranked = run(conn.execute,
                     f"SELECT rowid, {_BM25} FROM memories_fts WHERE memories_fts MATCH ?",
                     [match]).fetchall()
        ranked.sort(key=_rank_order)
        del ranked[pool:]
    else:
        ranked = run(conn.execute,
                     f"SELECT rowid, {_BM25} AS rank FROM memories_fts WHERE memories_fts "
                     f"MATCH ? ORDER BY rank, rowid LIMIT {int(pool)}", [match]).fetchall()
    if not ranked:
        return []
    cond, params = _where(flt, dialect)
    sql = (f"SELECT j.key, {_SELECT} FROM json_each(?) j "
           f"CROSS JOIN memories m ON m.row_id = j.value WHERE {cond}")
    # The row ids as a JSON array (integers: their decimal text).
    args = ["[" + ",".join([str(r) for r, _ in ranked]) + "]", *params]
    passing = run(conn.execute, f"{sql} LIMIT {int(limit)}", args).fetchall()
    if any(a[0] >= b[0] for a, b in itertools.pairwise(passing)):
        passing = run(conn.execute, f"{sql} ORDER BY j.key LIMIT {int(limit)}",
                      args).fetchall()
    if len(passing) >= limit or len(ranked) < pool:
        return [CandidateRow(r[1:]) for r in passing]
    full = run(conn.execute,
               f"SELECT {_SELECT}, {_BM25} AS rank "
               "FROM memories_fts JOIN memories m ON m.row_id = memories_fts.rowid "
               f"WHERE memories_fts MATCH ? AND {cond} "
               f"ORDER BY rank, m.row_id LIMIT {int(limit)}", [match, *params]).fetchall()
    return [CandidateRow(r[:-1]) for r in full]
