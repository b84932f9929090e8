"""Searching with the in-process full-text index on or off (FTS5's bm25 in SQL), for the
tests comparing the two (test_lexical_index.py, test_lexical_snapshot.py)."""

from __future__ import annotations

from typing import Any

from engramdb.model import RecallFilter

# A threshold no test database reaches: FTS5 ranks alone.
OFF = 10**12


def search(db: Any, query: str, flt: RecallFilter, limit: int, *, index: bool
           ) -> list[tuple[str, int, float]]:
    """(id, version, score) of ``search_text`` through the index or not; the index is left
    answering every search afterwards."""
    lexical = db.storage._lexical
    lexical.min_rows = 0 if index else OFF
    try:
        return [(r["id"], r["version"], s) for r, s in db.storage.search_text(query, flt, limit)]
    finally:
        lexical.min_rows = 0
