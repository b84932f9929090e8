"""Lifecycle with an injected clock: expiry, decay and archival exactly when due,
capacity, legal holds, restore, idempotent and concurrent ``maintain``, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import engramdb
from engramdb.codec import to_micros
from engramdb.errors import InvalidInput, InvalidPolicy, NotFound

HOUR = 3600 * 1_000_000
DAY = 24 * HOUR


@pytest.fixture
def ldb(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    yield db
    db.close()


def _at(db, micros: int) -> None:
    db.lifecycle.clock = lambda: micros


def _ids(result) -> set[str]:
    return {m.id for m in result.memories}


def test_ttl_expires_exactly_when_due_and_restore_brings_it_back(ldb):
    t0 = to_micros(datetime.now(UTC))
    _at(ldb, t0)
    ldb.admin.set_lifecycle("tmp/**", ttl="1h")
    m = ldb.remember("Scratch note about the deploy window", namespace="tmp/a")
    keep = ldb.remember("Pinned deploy window note", namespace="tmp/a",
                        expires_at=datetime.now(UTC) + timedelta(days=30))
    assert to_micros(m.expires_at) == t0 + HOUR
    _at(ldb, t0 + HOUR - 1)
    assert ldb.maintain().expired == ()
    _at(ldb, t0 + HOUR)
    report = ldb.maintain()
    assert report.expired == (m.id,)
    assert m.id not in _ids(ldb.recall("deploy window note", namespace="tmp/**"))
    assert keep.id in _ids(ldb.recall("deploy window note", namespace="tmp/**"))
    versions = ldb.history(m.id)
    assert [v.status for v in versions] == ["superseded", "archived"]
    assert ldb.get(m.id, as_of=versions[0].tx_from).status == "active"  # as_of still sees it
    again = ldb.maintain()
    assert again.changed == 0 and again.seq is None
    restored = ldb.restore(m.id)
    assert restored.status == "active" and restored.expires_at is None
    assert ldb.maintain().changed == 0
    assert m.id in _ids(ldb.recall("deploy window note", namespace="tmp/**"))
    with pytest.raises(InvalidInput):
        ldb.restore(m.id)  # not archived
    assert ldb.verify().ok


def test_decay_archives_when_relevance_reaches_the_floor_and_use_postpones_it(ldb):
    ldb.admin.set_lifecycle("kb/**", half_life="1d", archive_below=0.25)  # due 2 days idle
    a = ldb.remember("Quarterly revenue grew in the north region", namespace="kb")
    b = ldb.remember("Office plants need watering on fridays", namespace="kb")
    born = max(to_micros(a.recorded_at), to_micros(b.recorded_at))
    _at(ldb, born + DAY + DAY // 2)
    hit = ldb.recall("quarterly revenue north region", namespace="kb", k=1).hits[0]
    assert hit.memory.id == a.id and 0.3 < hit.why["decay"] < 0.4  # ranked by decayed score
    _at(ldb, to_micros(b.recorded_at) + 2 * DAY - 1)
    early = ldb.maintain()
    assert early.archived == () and early.reinforced == 1  # the recall's use, written now
    _at(ldb, born + 2 * DAY)
    report = ldb.maintain()
    assert report.archived == (b.id,)   # a was recalled at 1.5 days: not due yet
    _at(ldb, born + DAY + DAY // 2 + 2 * DAY)
    assert ldb.maintain().archived == (a.id,)
    assert ldb.maintain().changed == 0
    assert ldb.verify().ok


def test_capacity_keeps_the_best_and_legal_hold_blocks_archival(ldb):
    ldb.admin.set_lifecycle("inbox/**", capacity=2)
    low = [ldb.remember(f"low note {i}", namespace="inbox/x", importance=0.1) for i in range(2)]
    high = [ldb.remember(f"high note {i}", namespace="inbox/x", importance=0.9)
            for i in range(2)]
    ldb.admin.legal_hold("inbox/**", on=True, reason="audit")
    held = ldb.maintain()
    assert held.changed == 0 and set(held.held) == {m.id for m in low}
    ldb.admin.legal_hold("inbox/**", on=False, reason="audit over")
    report = ldb.maintain()
    assert set(report.over_capacity) == {m.id for m in low}
    assert {m.id for m in ldb.recent(namespace="inbox/**")} == {m.id for m in high}
    assert ldb.maintain().changed == 0


def test_policies_are_stored_logged_and_merged_per_field(ldb):
    ldb.admin.set_lifecycle("acme/**", ttl="30d", half_life="7d")
    ldb.admin.set_lifecycle("acme/chat", layer="episodic", ttl="1d")
    got = ldb.admin.lifecycle("acme/chat", layer="episodic")
    assert got["ttl"] == DAY and got["half_life"] == 7 * DAY
    assert ldb.admin.lifecycle("acme/docs")["ttl"] == 30 * DAY
    assert ldb.admin.lifecycle("other") is None
    kinds = [e.kind for e in ldb.changes(0)]
    assert kinds.count("lifecycle.policy_set") == 2
    assert ldb.verify().ok


@pytest.mark.parametrize("fields", [
    {"ttl": -5}, {"ttl": "-1d"}, {"half_life": 0}, {"half_life": "soon"},
    {"archive_below": 1.5}, {"archive_below": 0.1}, {"capacity": 0}, {"on_retire": "burn"},
    {"layer": "dreams"},
])
def test_bad_policies_are_typed_and_change_nothing(ldb, fields):
    before = ldb.storage.head().seq
    with pytest.raises(InvalidInput):
        ldb.admin.set_lifecycle("acme/**", **fields)
    assert ldb.storage.head().seq == before


def test_unknown_policy_fields_are_refused(ldb):
    from engramdb.policy.lifecycle import LifecyclePolicy
    with pytest.raises(InvalidPolicy):
        LifecyclePolicy.build("acme/**", None, {"ttl": "1d", "forever": True})
    with pytest.raises(NotFound):
        ldb.admin.legal_hold("nothing/**", on=False, reason="never set")


def test_two_concurrent_maintain_processes_do_not_double_apply(tmp_path, embedder):
    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=embedder)
    past = datetime.now(UTC) - timedelta(minutes=1)
    due = db.remember_many([{"text": f"stale item {i}", "namespace": "q",
                             "expires_at": past} for i in range(40)])
    db.close()
    script = textwrap.dedent(f"""
        import json, engramdb
        db = engramdb.open({str(path)!r})
        print(json.dumps(db.maintain().to_dict()))
        db.close()
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(engramdb.__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    reports = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1])
               for p in procs]
    first, second = (set(r["expired"]) for r in reports)
    assert first | second == {m.id for m in due} and not first & second
    db = engramdb.open(path, embedder=embedder)
    assert all(len(db.history(m.id)) == 2 for m in due)
    assert db.verify().ok
    db.close()
