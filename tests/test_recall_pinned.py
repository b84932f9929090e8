"""A SQLite recall reads its snapshot's one-row facts once (storage/sqlite/pinned.py).

The snapshot's first statement reads the chain head, the configuration tag, the
latest erasure and the highest row id; the receipt, the namespace list and both
indexes take them from there. Configuration reads (the reader's principal, its
grants, the lifecycle policies) are kept per query under the configuration tag, so
a recall sends none while the configuration is unchanged, and reads again once
anyone (here another handle on the file, as another process would be) changes it.
"""

from __future__ import annotations

import pytest

import engramdb
from engramdb.errors import PermissionDenied
from engramdb.storage.sqlite.pinned import ConfigReads


def _open(tmp_path, embedder) -> engramdb.Database:
    return engramdb.open(tmp_path / "engram.db", embedder=embedder)


def _statements(db, call) -> list[str]:
    """The SQL statements ``call()`` sends through this handle's connections."""
    sent: list[str] = []
    conns = list(db.storage._all_conns)
    for conn in conns:
        conn.set_trace_callback(sent.append)
    try:
        call()
    finally:
        for conn in conns:
            conn.set_trace_callback(None)
    return sent


def test_a_recall_reads_the_head_once_and_no_unchanged_configuration(tmp_path, embedder):
    db = _open(tmp_path, embedder)
    db.admin.set_read_audit("**", "off")  # only the recall's own reads below
    db.admin.create_agent("ana")
    db.admin.grant("ana", "team/**", ["read", "write"])
    ana = db.as_agent("ana")
    for i in range(30):
        ana.remember(f"Deploy note {i}: the build server restarts at {i} o'clock",
                     namespace=f"team/n{i % 3}")
    ana.recall("when does the build server restart", namespace="team/**", k=5)
    sent = _statements(db, lambda: ana.recall("when does the build server restart",
                                              namespace="team/**", k=5))
    assert sum("chain_head" in s for s in sent) == 1, sent
    assert sum("FROM erasures" in s for s in sent) == 1, sent
    assert not [s for s in sent if any(f"FROM {t}" in s for t in (
        "principals", "grants", "lifecycle_policies"))], sent
    db.close()


def test_another_handle_s_grant_changes_reach_the_next_recall(tmp_path, embedder):
    db = _open(tmp_path, embedder)
    db.admin.set_read_audit("**", "off")
    db.admin.create_agent("ana")
    grant = db.admin.grant("ana", "team/**", ["read", "write"])
    ana = db.as_agent("ana")
    kept = ana.remember("The staging database password rotates every Monday",
                        namespace="team/ops")
    query = "when does the staging password rotate"
    assert [h.memory.id for h in ana.recall(query, namespace="team/**", k=3).hits] == [kept.id]

    other = _open(tmp_path, embedder)  # its own connections, as another process
    other.admin.revoke(grant.id)
    assert ana.recall(query, namespace="team/**", k=3).hits == ()
    other.admin.grant("ana", "team/ops", ["read"])
    assert [h.memory.id for h in ana.recall(query, namespace="team/**", k=3).hits] == [kept.id]
    other.admin.retire_agent("ana", policy="freeze")
    with pytest.raises(PermissionDenied):
        ana.recall(query, namespace="team/**", k=3)
    other.close()
    db.close()


def test_a_recall_s_receipt_names_the_head_another_handle_left(tmp_path, embedder):
    db = _open(tmp_path, embedder)
    db.admin.set_read_audit("**", "off")
    db.remember("Backups run nightly at two", namespace="ops")
    first = db.recall("when do backups run", namespace="ops", k=1)
    other = _open(tmp_path, embedder)
    newer = other.remember("Backups moved to three at night", namespace="ops")
    after = db.recall("when do backups run", namespace="ops", k=2)
    assert after.receipt.as_of == other.head().tx > first.receipt.as_of
    assert newer.id in [h.memory.id for h in after.hits]
    other.forget(id=newer.id, reason="test")
    assert newer.id not in [h.memory.id for h in
                            db.recall("when do backups run", namespace="ops", k=2).hits]
    other.close()
    db.close()


def test_configuration_answers_are_kept_per_tag_and_per_query() -> None:
    reads: list[str] = []

    def read(answer: str):
        return lambda: reads.append(answer) or [(answer,)]

    kept = ConfigReads()
    where = {"grantee": ["ana", "role:ops"], "tx_to": None}
    assert kept.rows("grants", where, None, None, 7, read("a")) == [("a",)]
    assert kept.rows("grants", dict(where), None, None, 7, read("b")) == [("a",)]
    assert kept.rows("grants", where, None, None, 8, read("c")) == [("c",)]  # a new tag
    assert kept.rows("grants", {"grantee": ["ana"], "tx_to": None}, None, None, 8,
                     read("d")) == [("d",)]  # another query
    assert kept.rows("grants", {"grantee": "ana"}, None, None, 8, read("e")) == [("e",)]
    assert kept.rows("grants", {"grantee": ("ana",)}, None, None, 8, read("f")) == [("f",)]
    assert kept.rows("grants", {"grantee": [["ana"]]}, None, None, 8, read("g")) == [("g",)]
    assert kept.rows("grants", {"grantee": [["ana"]]}, None, None, 8, read("h")) == [("h",)]
    assert reads == ["a", "c", "d", "e", "f", "g", "h"]
