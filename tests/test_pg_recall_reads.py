"""PostgreSQL recall reads its namespaces and configuration from its snapshot, exactly.

A recall on PostgreSQL no longer asks the server separately for the namespace
list, the reader's principal and grants, or the decay policies: the
snapshot's first round trip reads the chain head (with ``config_tx``) and the
namespaces written since this process last looked, and configuration is
served from rows kept under ``config_tx``. These tests change the database
through a *second handle* (its own caches, as another process would) between
two recalls of the first, whose caches are warm, and check that the very next
recall sees the change: a revoked grant hides the namespace, a new grant and
a new namespace show, an erased memory is gone, a decay policy weighs the hits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import engramdb
from engramdb.storage.postgres import snapshot
from tests.test_pg_vector_scope import _embedder, _unit

pytestmark = pytest.mark.postgres


@pytest.fixture
def handles(pg_url: str) -> Iterator[tuple[engramdb.Database, engramdb.Database]]:
    with engramdb.open(pg_url, embedder=_embedder()) as a, \
            engramdb.open(pg_url, embedder=_embedder()) as b:
        yield a, b


def _ids(session: Any, query: str, q: np.ndarray, namespace: str = "**") -> set[str]:
    return {h.memory.id for h in session.recall(query, namespace=namespace, k=10,
                                                query_embedding=q.tolist()).hits}


def test_a_grant_changed_by_another_handle_decides_the_next_recall(handles: Any) -> None:
    a, b = handles
    vecs = _unit(np.random.default_rng(5), 3)
    a.admin.create_agent("reader")
    grant = a.admin.grant("reader", "team/**", ["read"])
    key = a.remember("the deploy key rotates on Fridays", namespace="team/ops",
                     embedding=vecs[0])
    reader = a.as_agent("reader")
    assert _ids(reader, "deploy key", vecs[0]) == {key.id}  # caches warm
    assert _ids(reader, "deploy key", vecs[0], "team/ops") == {key.id}

    b.admin.revoke(grant.id)
    assert _ids(reader, "deploy key", vecs[0]) == set()
    assert _ids(reader, "deploy key", vecs[0], "team/ops") == set()
    assert _ids(reader, "deploy key", vecs[0], "team/*") == set()

    b.admin.grant("reader", "team/ops", ["read"])
    assert _ids(reader, "deploy key", vecs[0]) == {key.id}


def test_a_namespace_created_by_another_handle_is_searched_by_the_next_recall(
        handles: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = handles
    vecs = _unit(np.random.default_rng(6), 4)
    old = a.remember("the backup runs at midnight", namespace="ops/old", embedding=vecs[0])
    assert _ids(a, "backup midnight", vecs[0]) == {old.id}
    assert a.namespaces() == ["ops/old"]

    new = b.remember("the backup moved to noon", namespace="ops/new", embedding=vecs[1])
    assert _ids(a, "backup noon", vecs[1]) == {old.id, new.id}
    assert _ids(a, "backup noon", vecs[1], "ops/*") == {old.id, new.id}
    assert _ids(a, "backup noon", vecs[1], "ops/new") == {new.id}

    # More new rows than the snapshot counts (20,000; 10 here): the namespaces are
    # listed in full instead, still in the snapshot.
    monkeypatch.setattr(snapshot, "_NEW_ROWS_CAP", 10)
    many = b.remember_many([{"text": f"bulk note {i}", "namespace": f"bulk/ns{i % 3}",
                             "embedding": vecs[2]} for i in range(15)])
    assert _ids(a, "bulk note", vecs[2], "bulk/ns2") == {
        m.id for m in many if m.namespace == "bulk/ns2"}
    assert a.namespaces("bulk/**") == ["bulk/ns0", "bulk/ns1", "bulk/ns2"]


def test_an_erasure_and_a_decay_policy_from_another_handle_show_at_once(handles: Any) -> None:
    a, b = handles
    vecs = _unit(np.random.default_rng(7), 2)
    gone = a.remember("the alarm code is 4711", namespace="home/safe", embedding=vecs[0])
    kept = a.remember("the alarm is serviced in May", namespace="home/safe", embedding=vecs[1])
    assert _ids(a, "alarm", vecs[0]) == {gone.id, kept.id}
    assert all("decay" not in h.why for h in a.recall("alarm", query_embedding=vecs[0].tolist()
                                                      ).hits)

    b.forget(id=gone.id, reason="test: erased elsewhere")
    b.admin.set_lifecycle("home/**", half_life="1d")
    hits = a.recall("alarm", query_embedding=vecs[0].tolist()).hits
    assert [h.memory.id for h in hits] == [kept.id]
    assert "decay" in hits[0].why


@pytest.mark.parametrize("kept", [200, 0], ids=["open-conflicts-read-with-the-snapshot",
                                                "too-many-open-conflicts-read-apart"])
def test_a_conflict_opened_by_another_handle_marks_the_next_recall(
        handles: Any, monkeypatch: pytest.MonkeyPatch, kept: int) -> None:
    a, b = handles
    monkeypatch.setattr(snapshot, "OPEN_CONFLICTS", kept)
    vecs = _unit(np.random.default_rng(8), 2)
    b.admin.declare_predicate("acme/**", "outlook", policy="flag")
    up = a.remember("Company X outlook is positive", namespace="acme/x", subject="company:x",
                    predicate="outlook", value="positive", embedding=vecs[0])
    hits = a.recall("Company X outlook", query_embedding=vecs[0].tolist()).hits
    assert [(h.memory.id, h.contested) for h in hits] == [(up.id, False)]

    down = b.remember("Company X outlook is uncertain", namespace="acme/x",
                      subject="company:x", predicate="outlook", value="uncertain",
                      embedding=vecs[1])
    hits = a.recall("Company X outlook", query_embedding=vecs[0].tolist()).hits
    assert {h.memory.id: (h.contested, h.rivals) for h in hits} == {
        up.id: (True, (down.id,)), down.id: (True, (up.id,))}


def test_threads_recalling_while_namespaces_appear_miss_none(handles: Any) -> None:
    """Threads of one handle share the kept names; whichever order their snapshots
    update them in, each recall searches every namespace its snapshot sees."""
    a, b = handles
    vecs = _unit(np.random.default_rng(9), 1)
    written: list[tuple[str, int]] = []
    missed: list[str] = []

    def reader() -> None:
        for _ in range(15):
            seen_before = list(written)  # committed before this recall began
            got = _ids(a, "shared note", vecs[0], "crowd/**")
            missed.extend(mid for mid, _ in seen_before if mid not in got)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(8):  # k=10 holds every one of them
        m = b.remember(f"shared note {i}", namespace=f"crowd/ns{i}", embedding=vecs[0])
        written.append((m.id, i))
    for t in threads:
        t.join(timeout=120)
    assert not missed
    assert _ids(a, "shared note", vecs[0], "crowd/**") == {mid for mid, _ in written}
