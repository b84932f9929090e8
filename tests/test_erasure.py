"""Erasure that really erases: canaries in every byte of the files, a second process,
bad input.

The canary test writes N subjects, each with a unique canary string in its text
(some updated to several versions, some recalled so they sit in the read audit,
some decided on), erases a tenth of them, and then scans every byte of the
database files and of a fresh export: no erased canary may remain, every other
one must still be there and recallable, and ``verify`` and signed checkpoints
must pass. ``ENGRAM_CANARY_SUBJECTS`` scales it (``make test-erasure-full``
runs the full 1,000).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engramdb
from engramdb.audit.checkpoint import generate_key
from engramdb.audit.evidence import verify_event_proof
from engramdb.errors import InvalidInput, LegalHoldActive, NotFound, PermissionDenied
from engramdb.storage.base import Insert

N = int(os.environ.get("ENGRAM_CANARY_SUBJECTS", "20"))


def canary(i: int) -> str:
    return f"ZQX{i:05d}CANARY"


def _populate(db: engramdb.Database) -> dict[int, str]:
    ids: dict[int, str] = {}
    for start in range(0, N, 200):
        mems = db.remember_many([
            {"text": f"Customer {i} secret note {canary(i)} about renewal",
             "namespace": f"crm/region{i % 4}", "subject": f"user:{i}",
             "predicate": "note", "value": canary(i)}
            for i in range(start, min(N, start + 200))])
        for i, m in zip(range(start, min(N, start + 200)), mems, strict=True):
            ids[i] = m.id
    for i in range(0, N, 3):  # several versions
        cur = db.get(ids[i])
        for v in range(2):
            cur = db.update(ids[i], text=f"Customer {i} {canary(i)} note revised {v}",
                            value=f"{canary(i)}-{v}", expected_version=cur.version)
    for i in range(0, N, 5):  # in the read audit
        r = db.recall(f"Customer {i} {canary(i)}", namespace="crm/**", k=3)
        if i % 10 == 0:
            db.decide(f"renewal call for customer {i}", basis=r.receipt)
    db.flush_reads()
    return ids


def _erase(db: engramdb.Database, ids: dict[int, str]) -> set[int]:
    erased = set(range(0, N, 10))
    for i in sorted(erased):
        receipt = db.forget(subject=f"user:{i}", reason="GDPR Art. 17 request")
        assert receipt.memories == (ids[i],)
        assert receipt.counts["versions"] == (3 if i % 3 == 0 else 1)
    return erased


def _check_survivors(db: engramdb.Database, ids: dict[int, str], erased: set[int]) -> None:
    for i in range(N):
        if i in erased:
            with pytest.raises(NotFound):
                db.get(ids[i])
            continue
        assert canary(i) in db.get(ids[i]).text
    for i in [j for j in range(N) if j not in erased][:10]:
        hits = db.recall(canary(i), namespace="crm/**", k=5).hits
        assert any(canary(i) in h.memory.text for h in hits)
    assert db.verify().ok
    buf = io.StringIO()
    db.export(buf)
    dump = buf.getvalue()
    assert [i for i in erased if canary(i) in dump] == []
    assert all(canary(i) in dump for i in range(N) if i not in erased)


# Case-insensitive: the ranking's stored words (schema 20) hold the text lower-cased.
_CANARY = re.compile(rb"(?i)ZQX(\d{5})CANARY")


def _scan(paths: list[Path], erased: set[int]) -> list[tuple[str, int]]:
    """Every (file, subject) whose erased canary is in the file's bytes: one pass per file."""
    found = []
    for p in paths:
        seen = {int(m.group(1)) for m in _CANARY.finditer(p.read_bytes())}
        found += [(p.name, i) for i in sorted(seen & erased)]
    return found


def test_canaries_are_gone_from_sqlite_files_export_and_indexes(tmp_path, embedder):
    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=embedder)
    ids = _populate(db)
    generate_key(tmp_path / "key")
    cp = db.checkpoint(tmp_path / "key")
    erased = _erase(db, ids)
    _check_survivors(db, ids, erased)
    assert db.verify_checkpoint(cp).ok
    db.forget(subject="user:1", reason="one more")
    later = db.checkpoint(tmp_path / "key")
    assert db.verify_checkpoint(later).ok
    gone = [int(r["seq"]) for r in db.storage.scan("erased_events")]
    assert gone
    proof = db.prove(gone[0], tree_size=later.tree_size)
    assert verify_event_proof(proof, later).ok  # an erased event still proves its position
    db.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("engram.db")]
    assert {p.name for p in files} >= {"engram.db"}
    assert _scan(files, erased | {1}) == []
    assert any(canary(2).encode() in p.read_bytes() for p in files)
    assert any(canary(2).lower().encode() in p.read_bytes() for p in files)  # stored words


@pytest.mark.postgres
def test_canaries_are_gone_from_the_postgres_data_directory(tmp_path, embedder):
    from tests.support.pg import PgServer

    with PgServer(settings={"wal_recycle": False, "min_wal_size": "32MB"}) as url:
        server_dir = None
        db = engramdb.open(url, embedder=embedder)
        try:
            ids = _populate(db)
            erased = _erase(db, ids)
            _check_survivors(db, ids, erased)
        finally:
            db.close()
        import psycopg
        with psycopg.connect(url, autocommit=True) as conn:
            server_dir = Path(conn.execute("SHOW data_directory").fetchone()[0])
        files = [p for p in server_dir.rglob("*") if p.is_file()]
        assert _scan(files, erased) == []


def test_a_second_process_cannot_return_an_erased_memory(tmp_path, embedder):
    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=embedder)
    m = db.remember(f"Secret plan {canary(7)} for launch", namespace="team")
    db.remember("Unrelated launch checklist", namespace="team")
    script = textwrap.dedent(f"""
        import sys, engramdb
        db = engramdb.open({str(path)!r})
        hits = db.recall("secret plan for launch", namespace="team", k=5).hits
        assert any("{canary(7)}" in h.memory.text for h in hits)  # now in its index
        print("cached", flush=True)
        sys.stdin.readline()                                        # wait for the erasure
        hits = db.recall("secret plan for launch", namespace="team", k=5).hits
        texts = [h.memory.text for h in hits]
        print("after", any("{canary(7)}" in t for t in texts), len(texts), flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(engramdb.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "cached"
        db.forget(id=m.id, reason="leaked")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split() == ["after", "False", "1"]
    finally:
        proc.wait(timeout=120)
        db.close()


def _state(db: engramdb.Database) -> tuple[int, int]:
    return db.storage.head().seq, len(list(db.storage.scan("memories")))


def test_bad_erasures_are_typed_and_change_nothing(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    m = db.remember("Holdable fact", namespace="legal/case1", subject="user:9")
    db.remember("Other fact", namespace="crm/x", subject="user:9")
    db.admin.create_agent("reader")
    db.admin.grant("reader", "crm/**", ["read", "write"])
    reader = db.as_agent("reader")
    before = _state(db)
    with pytest.raises(InvalidInput):
        db.forget(reason="no selector")
    with pytest.raises(InvalidInput):
        db.forget(subject="user:9", reason="")
    with pytest.raises(NotFound):  # not readable: looks missing
        reader.forget(id=m.id, reason="try")
    with pytest.raises(PermissionDenied):  # readable, but no erase grant
        reader.forget(subject="user:9", reason="try")
    assert _state(db) == before
    db.admin.legal_hold("legal/**", on=True, reason="litigation")
    held = _state(db)
    with pytest.raises(LegalHoldActive):
        db.forget(subject="user:9", reason="GDPR")
    assert _state(db) == held
    assert db.get(m.id).text == "Holdable fact"
    db.admin.legal_hold("legal/**", on=False, reason="case closed")
    assert db.forget(subject="user:9", reason="GDPR").counts["versions"] == 2
    assert db.verify().ok
    db.close()


def test_retire_agent_erase_erases_its_private_memories(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    db.admin.create_agent("temp")
    agent = db.as_agent("temp")
    mine = agent.remember(f"my scratch {canary(3)}")
    shared = db.remember("shared note", namespace="team")
    db.admin.retire_agent("temp", policy="erase")
    with pytest.raises(NotFound):
        db.get(mine.id)
    assert db.get(shared.id).text == "shared note"
    assert db.admin.principal("temp").status == "retired"
    assert db.verify().ok
    db.close()


def test_derived_memories_and_merged_values_go_with_their_sources(tmp_path, embedder):
    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    source = db.remember(f"Call notes {canary(11)} with the customer", namespace="crm",
                         subject="user:11")
    summary = db.remember("Summary: the customer call went well", namespace="crm/summaries")
    other = db.remember("Summary of an unrelated call", namespace="crm/summaries")
    # A derivation as the summariser records it (the `derivations` contract), on the
    # one commit path.
    with db.storage.write("admin") as w:
        db._res.commit(w, "memory.derived", "admin", "crm/summaries", summary.id, [
            Insert("derivations", {"derived_id": summary.id, "derived_version": 1,
                                   "source_id": source.id, "source_version": 1,
                                   "kind": "summary", "tx": w.tx})])
    receipt = db.forget(subject="user:11", reason="GDPR")
    assert set(receipt.memories) == {source.id, summary.id}
    assert receipt.counts["derived_memories"] == 1
    with pytest.raises(NotFound):
        db.get(summary.id)
    assert db.get(other.id).text == "Summary of an unrelated call"
    # A CRDT-merged value folds every contribution into one memory: erasing one
    # contributor erases the merged memory (its value is derived from theirs).
    db.admin.declare_predicate("team/**", "tags", cardinality="one", merge="set")
    db.admin.create_agent("ann")
    db.admin.grant("ann", "team/**", ["read", "write"])
    db.as_agent("ann").remember(f"tag {canary(12)}", namespace="team/t", subject="doc:1",
                                predicate="tags", value=[canary(12)])
    merged = db.remember("tag blue", namespace="team/t", subject="doc:1", predicate="tags",
                         value=["blue"])
    assert canary(12) in db.get(merged.id).value
    db.forget(author="ann", reason="left the company")
    with pytest.raises(NotFound):
        db.get(merged.id)
    assert db.verify().ok
    db.close()
