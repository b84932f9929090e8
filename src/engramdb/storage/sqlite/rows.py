"""Memory rows as recall reads them from SQLite: whole, or brief until the best are chosen.

A recall ranks about 150 candidates and returns ``k`` (usually 10), so reading
every column of every candidate and decoding it was a fifth of its CPU. A
*brief* candidate row (:data:`BRIEF`) holds only what ranking reads
(:mod:`engramdb.retrieval.hybrid`, :mod:`engramdb.retrieval.first_person`, the
session draw of :mod:`engramdb.engine.recall`): identity, namespace, text and
its stored words, metadata, session, importance and the two times, plus the row
id under :data:`ROW_KEY`. :func:`whole_rows` then reads the chosen rows in full,
by row id, on the connection and in the snapshot the candidates were read in, so
what a hit shows is the same version's columns as if they had been read at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from engramdb.storage.schema import TABLES
from engramdb.storage.sql import decode_row
from engramdb.storage.words import WORDS_KEY

__all__ = ["BRIEF", "CANDIDATE", "ROW_KEY", "brief", "candidate", "is_brief", "whole_rows"]

# The key a brief row carries its row id under (not a memory column).
ROW_KEY = "_row_id"
# A whole candidate row: every memory column, then its stored words (migration 0020).
_COLS = tuple(TABLES["memories"].columns)
CANDIDATE = ", ".join("m." + c for c in _COLS) + ", m.words"
_CANDIDATE_KEYS = (*_COLS, WORDS_KEY)  # a tuple: decode_row keys its cache on it as is
# A brief candidate row: what ranking reads. ``layer`` is left out on purpose: its
# absence marks a row as brief (every whole row has it).
_BRIEF_COLS = ("id", "version", "namespace", "text", "metadata", "importance", "session",
               "valid_from", "recorded_at")
BRIEF = ", ".join("m." + c for c in _BRIEF_COLS) + ", m.words, m.row_id"
_BRIEF_KEYS = (*_BRIEF_COLS, WORDS_KEY, ROW_KEY)


def candidate(values: Sequence[Any]) -> dict[str, Any]:
    """A memory row from :data:`CANDIDATE`'s columns, its stored words under ``WORDS_KEY``."""
    row = decode_row(TABLES["memories"], _CANDIDATE_KEYS, values)
    if row[WORDS_KEY] is None:
        del row[WORDS_KEY]
    return row


def brief(values: Sequence[Any]) -> dict[str, Any]:
    """A brief row from :data:`BRIEF`'s columns (metadata, its one JSON column, decoded as
    :func:`~engramdb.storage.sql.decode_row` decodes it)."""
    row = dict(zip(_BRIEF_KEYS, values, strict=True))
    meta = row["metadata"]
    if meta == "{}":  # by far the most common metadata: skip the parser
        row["metadata"] = {}
    elif isinstance(meta, str):
        row["metadata"] = json.loads(meta)
    if row[WORDS_KEY] is None:
        del row[WORDS_KEY]
    return row


def is_brief(row: dict[str, Any]) -> bool:
    return "layer" not in row and ROW_KEY in row


def whole_rows(execute: Callable[[str, Sequence[Any]], Any], rows: Sequence[dict[str, Any]]
               ) -> list[dict[str, Any] | None]:
    """``rows`` with every brief one read again in full (one statement for all), in
    order; None for a row no longer in the table (never inside one snapshot)."""
    wanted = [int(r[ROW_KEY]) for r in rows if is_brief(r)]
    if not wanted:
        return list(rows)
    found = {r[0]: candidate(r[1:]) for r in execute(
        f"SELECT m.row_id, {CANDIDATE} FROM json_each(?) j "
        "CROSS JOIN memories m ON m.row_id = j.value", [json.dumps(wanted)])}
    return [found.get(int(r[ROW_KEY])) if is_brief(r) else r for r in rows]
