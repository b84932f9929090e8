"""``maintain`` in bounded batches: each write transaction archives at most
``batch_size`` memories, and a backlog larger than one run's read is finished by
the next runs, nothing skipped and nothing applied twice (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import engramdb
from engramdb.codec import to_micros
from tests.conftest import matrix

DAY = 24 * 3600 * 1_000_000
CELLS = matrix(doors=("python",), embed=False)  # SQLite and PostgreSQL, no embedder


@pytest.fixture
def ldb(cell) -> engramdb.Database:
    return cell.engine


def _maintained_events(db: engramdb.Database) -> list[list[str]]:
    return [[m for m, _ in e.payload["archived"]]
            for e in db.changes(since=0, limit=10_000) if e.kind == "lifecycle.maintained"]


def test_a_run_archives_in_batches_of_at_most_batch_size(ldb):
    past = datetime.now(UTC) - timedelta(hours=1)
    due = ldb.remember_many([{"text": f"stale note {i}", "namespace": "tmp/a",
                              "expires_at": past} for i in range(10)])
    keep = ldb.remember("fresh note", namespace="tmp/a")
    ldb.lifecycle.batch_size = 3

    report = ldb.maintain()

    assert set(report.expired) == {m.id for m in due}
    batches = _maintained_events(ldb)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(m for b in batches for m in b) == sorted(m.id for m in due)
    assert report.seq == max(e.seq for e in ldb.changes(since=0, limit=10_000)
                             if e.kind == "lifecycle.maintained")
    assert [m.id for m in ldb.recent(namespace="tmp/**")] == [keep.id]
    assert ldb.maintain().changed == 0
    assert ldb.verify().ok


def test_a_backlog_larger_than_one_read_is_finished_by_the_next_runs(ldb):
    past = datetime.now(UTC) - timedelta(hours=1)
    expiring = ldb.remember_many([{"text": f"expired {i}", "namespace": "tmp/e",
                                   "expires_at": past} for i in range(7)])
    ldb.admin.set_lifecycle("kb/**", half_life="1d", archive_below=0.5)  # due 1 day idle
    decaying = ldb.remember_many([{"text": f"idle fact {i}", "namespace": "kb/x"}
                                  for i in range(7)])
    newest = max(to_micros(m.recorded_at) for m in decaying)
    ldb.lifecycle.clock = lambda: newest + DAY
    ldb.lifecycle.max_per_kind = 3

    runs = [ldb.maintain() for _ in range(4)]

    assert [len(r.expired) for r in runs] == [3, 3, 1, 0]
    assert {m for r in runs for m in r.expired} == {m.id for m in expiring}
    assert {m for r in runs for m in r.archived} == {m.id for m in decaying}
    assert runs[-1].changed == 0 and ldb.maintain().changed == 0
    assert ldb.recent(namespace="kb/**") == [] and ldb.recent(namespace="tmp/**") == []
    assert ldb.verify().ok
