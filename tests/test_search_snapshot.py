"""Recall reads its candidates under one snapshot (issue 9, item 4).

A recall runs two candidate queries (full text, then vectors), reads their
rows, and marks contested hits. Transaction-time pinning (``as_of`` = the head
it saw) already hides ordinary writes made meanwhile; an erasure is different:
it rewrites rows and deletes vectors in place. Here another handle (its own
connections, as another process would have) erases the best match *between*
the full-text and the vector query of a recall. Read under one snapshot, the
recall still answers exactly as the database stood when it began: the same
hit, with both its text and its vector score; the next recall sees the
erasure. On SQLite (a WAL read transaction) and PostgreSQL (REPEATABLE READ).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import STORES, matrix

TEXT = "The vault code is kept under the blue doormat"
QUERY = "where is the vault code kept"


def _parts(result) -> list[tuple[str, int, str, tuple[str, ...]]]:
    return [(h.memory.id, h.memory.version, h.memory.text, tuple(sorted(k for k, v in
            h.why.items() if v))) for h in result.hits]


@pytest.mark.parametrize("cell", matrix(doors=("python",)), indirect=True)
def test_an_erasure_between_the_two_candidate_queries_is_in_neither(cell, tmp_path, embedder):
    db = cell.engine
    db.admin.set_read_audit("**", "off")  # no audit writes between the two recalls
    target = db.remember(TEXT, namespace="ops")
    db.remember("Lunch is at noon on Fridays", namespace="ops")
    before = db.recall(QUERY, namespace="ops", k=1)
    assert [h.memory.id for h in before.hits] == [target.id]
    assert before.hits[0].why["vector_similarity"] > 0 and before.hits[0].why["text_rank"] > 0

    other = STORES[cell.store](tmp_path, embedder)  # a second handle on the same database
    seq_before = other.head().seq
    eraser = threading.Thread(target=lambda: other.forget(id=target.id, reason="test"))
    search_text = db.storage.search_text
    injected = []

    def text_then_erase(*args, **kwargs):
        found = search_text(*args, **kwargs)
        if not injected:
            injected.append(True)
            eraser.start()
            deadline = time.monotonic() + 30
            # Wait until the erasure is committed (its event is on the log). Not by reading
            # the memory: PostgreSQL's purge then queues for the table behind this recall.
            while other.head().seq <= seq_before:
                assert time.monotonic() < deadline, "the erasure never committed"
                time.sleep(0.02)
        return found

    db.storage.search_text = text_then_erase  # type: ignore[method-assign]
    try:
        during = db.recall(QUERY, namespace="ops", k=1)
    finally:
        db.storage.search_text = search_text  # type: ignore[method-assign]
    eraser.join(timeout=60)
    other.close()

    assert injected
    assert _parts(during) == _parts(before)
    assert during.receipt.as_of == before.receipt.as_of
    after = db.recall(QUERY, namespace="ops", k=1)
    assert target.id not in [h.memory.id for h in after.hits]
