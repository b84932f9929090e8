"""Export and import: the whole log round-trips to the same head hash and state.

The source is each storage backend (SQLite, and PostgreSQL when its marker is
selected), the target a fresh SQLite file: this is backup/restore and the
migration path between backends. Damaged or edited export files are refused
with the line that is wrong. Plain-memory JSONL loads in batches.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import engramdb
from engramdb.engine import import_database
from engramdb.engine.portability import load_memories
from engramdb.errors import EmbeddingDimensionMismatch, InvalidInput, InvalidNamespace


def _history(db: engramdb.Database) -> dict[str, str]:
    """A varied history: agents, grants, writes, a conflict-free update chain, a retraction."""
    db.admin.create_agent("researcher", roles=["analyst"])
    db.admin.create_agent("reviewer")
    db.admin.grant("researcher", "acme/**", ["read", "write"])
    db.admin.grant("reviewer", "acme/research", ["read"])
    me = db.as_agent("researcher")
    sky = me.remember("The sky over Lyon was blue all week", namespace="acme/research",
                      metadata={"source": "weather log", "n": 3}, importance=0.7)
    me.update(sky.id, text="The sky over Lyon turned grey on Friday", expected_version=1)
    office = me.remember("The office moves to Marseille in June", namespace="acme/ops",
                         subject="office:hq", predicate="city", value="Marseille",
                         valid_from="2026-06-01T00:00:00Z", idempotency_key="office-1")
    gone = me.remember("The printer on floor 2 is broken", namespace="acme/ops")
    me.retract(gone.id, reason="fixed on Tuesday")
    with me.transaction() as tx:
        tx.remember("Quarterly revenue grew 12 percent", namespace="acme/research",
                    layer="episodic")
        tx.remember("Hiring freeze until September", namespace="acme/ops")
    db.remember_many([{"text": f"Meeting note {i}: budget review for team {i % 3}",
                       "namespace": "acme/notes", "layer": "episodic"} for i in range(30)])
    return {"sky": sky.id, "office": office.id, "gone": gone.id}


def _export(db: engramdb.Database) -> str:
    buf = io.StringIO()
    summary = db.export(buf)
    assert summary.head_seq == db.storage.head().seq
    return buf.getvalue()


def _answers(db, query: str, **kw) -> list[tuple[str, int, str]]:
    return [(h.memory.id, h.memory.version, h.memory.text) for h in db.recall(query, **kw).hits]


def test_export_import_has_same_head_state_and_answers(engine_db, tmp_path, embedder):
    source = engine_db  # each storage backend (the matrix's engine column)
    ids = _history(source)
    text = _export(source)
    target = tmp_path / "restored.db"
    summary = import_database(target, io.StringIO(text))
    restored = engramdb.open(target, embedder=embedder)
    try:
        assert restored.storage.head() == source.storage.head()
        assert summary.head_hash == source.storage.head().hash
        report = restored.verify()
        assert report.ok, report.problem
        assert report.events_checked == source.storage.head().seq

        for query, kw in [("What colour was the sky in Lyon?", {"k": 1}),
                          ("where is the office moving", {"namespace": "acme/ops", "k": 1}),
                          ("printer", {"filters": {"statuses": ["retracted"]}})]:
            assert _answers(restored, query, **kw) == _answers(source, query, **kw), query
        # Thirty near-identical notes tie; full-text scores differ between backends, so
        # compare what is found, not the order of ties.
        kw = {"k": 40, "layers": ["episodic"], "namespace": "acme/notes"}
        assert sorted(_answers(restored, "budget review", **kw)) == \
            sorted(_answers(source, "budget review", **kw))
        assert len(_answers(restored, "budget review", **kw)) == 30
        # Transaction time survives: the sky read as of before its update is version 1.
        sky_tx = source.history(ids["sky"])[0].tx_from
        old = restored.get(ids["sky"], as_of=sky_tx)
        assert old.version == 1 and "blue" in old.text
        assert [m.to_dict() for m in restored.history(ids["sky"])] == \
            [m.to_dict() for m in source.history(ids["sky"])]
        # Grants came along: the reviewer reads research but not ops, as before.
        reviewer = restored.as_agent("reviewer")
        seen = {h.memory.namespace for h in reviewer.recall("sky office revenue", k=20).hits}
        assert seen == {"acme/research"}
        # Idempotency records came along: a retried write returns the original memory.
        again = restored.as_agent("researcher").remember(
            "The office moves to Marseille in June", namespace="acme/ops",
            subject="office:hq", predicate="city", value="Marseille",
            valid_from="2026-06-01T00:00:00Z", idempotency_key="office-1")
        assert again.id == ids["office"]
        # The restored database keeps working: a new write chains on the imported head.
        restored.remember("After the restore", namespace="acme/notes")
        assert restored.verify().ok
    finally:
        restored.close()


def test_export_file_is_header_then_events_in_order(tmp_path, embedder):
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        _history(db)
        lines = _export(db).splitlines()
        head = db.storage.head()
    finally:
        db.close()
    header = json.loads(lines[0])
    assert header["format"] == "engramdb-export" and header["version"] == 1
    assert header["embedder"] == {"name": embedder.name, "dimension": 384}
    assert header["head"]["seq"] == head.seq and header["head"]["hash"] == head.hash
    assert "memories" in header["schema"]["tables"]
    events = [json.loads(line) for line in lines[1:]]
    assert [e["seq"] for e in events] == list(range(1, head.seq + 1))
    assert list(events[0]) == ["seq", "tx", "kind", "namespace", "actor", "recorded_at",
                               "subject_ref", "commitment", "prev_hash", "hash", "salt",
                               "payload"]
    assert all(len(bytes.fromhex(e["salt"])) == 16 for e in events)
    assert events[-1]["hash"] == head.hash
    assert any(e["kind"] == "memory.retracted" for e in events)


def test_import_into_non_empty_database_is_refused(tmp_path, embedder):
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        _history(db)
        text = _export(db)
    finally:
        db.close()
    other = engramdb.open(tmp_path / "b.db", embedder=embedder)
    other.remember("already here", namespace="x")
    head = other.storage.head()
    other.close()
    with pytest.raises(InvalidInput, match="already holds 2 events"):
        import_database(tmp_path / "b.db", io.StringIO(text))
    again = engramdb.open(tmp_path / "b.db", embedder=embedder)
    try:
        assert again.storage.head() == head
        assert again.verify().ok
    finally:
        again.close()


def _mutations():
    def payload_text(lines):
        i = next(i for i, line in enumerate(lines) if "blue all week" in line)
        lines[i] = lines[i].replace("blue all week", "green all week")
        return i + 1, "payload was changed"

    def envelope_actor(lines):
        i = next(i for i, line in enumerate(lines) if '"actor": "researcher"' in line)
        lines[i] = lines[i].replace('"actor": "researcher"', '"actor": "reviewer"', 1)
        return i + 1, "was changed: its hash does not recompute"

    def deleted(lines):
        del lines[5]
        return 6, "expected event 5 but found event 6"

    def reordered(lines):
        lines[6], lines[7] = lines[7], lines[6]
        return 7, "expected event 6 but found event 7"

    def inserted(lines):
        lines.insert(4, lines[3])
        return 5, "expected event 4 but found event 3"

    def relinked(lines):
        ev = json.loads(lines[9])
        ev["prev_hash"] = "0" * 64
        lines[9] = json.dumps(ev)
        return 10, "does not link"

    def truncated(lines):
        del lines[-3:]
        return None, "truncated"

    def not_json(lines):
        lines[2] = lines[2][:40]
        return 3, "not JSON"

    return [payload_text, envelope_actor, deleted, reordered, inserted, relinked, truncated,
            not_json]


@pytest.mark.parametrize("mutate", _mutations(), ids=lambda f: f.__name__)
def test_edited_export_is_refused_with_its_line(mutate, tmp_path, embedder):
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        _history(db)
        lines = _export(db).splitlines()
    finally:
        db.close()
    line_no, problem = mutate(lines)
    with pytest.raises(InvalidInput) as info:
        import_database(tmp_path / "b.db", io.StringIO("\n".join(lines) + "\n"))
    assert problem in info.value.message
    if line_no is not None:
        assert info.value.details["line"] == line_no
        assert info.value.message.startswith(f"export line {line_no}:")


def test_import_can_reembed_with_another_embedder(tmp_path, embedder):
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        ids = _history(db)
        text = _export(db)
    finally:
        db.close()
    import_database(tmp_path / "fts.db", io.StringIO(text), embedder="none")
    plain = engramdb.open(tmp_path / "fts.db", embedder=None)
    try:
        assert plain.embedder_name == "none"
        assert plain.verify().ok
        hits = plain.recall("Marseille office", k=3).hits
        assert hits[0].memory.id == ids["office"]
        assert "vector_rank" not in hits[0].why
    finally:
        plain.close()


def test_load_memories_in_batches_reports_a_bad_line(tmp_path, embedder):
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        good = [json.dumps({"text": f"Note {i} about the quarterly plan", "namespace": "team/a",
                            "metadata": {"i": i}}) for i in range(6)]
        bad = json.dumps({"text": "wrong namespace", "namespace": "Team/A"})
        lines = [*good, "", bad, json.dumps({"text": "never stored", "namespace": "team/a"})]
        head = db.storage.head().seq
        with pytest.raises(InvalidNamespace) as info:
            load_memories(db, io.StringIO("\n".join(lines) + "\n"), batch_size=3)
        assert info.value.details["line"] == 8
        assert info.value.details["stored"] == 6
        assert "line 8:" in info.value.message
        # Lines 1-6 made two full batches; nothing from line 8's batch was written.
        assert db.storage.head().seq == head + 6
        stored = db.recall("quarterly plan", k=20).hits
        assert sorted(h.memory.metadata["i"] for h in stored) == list(range(6))
        assert db.storage.fetch("memories", {"text": "never stored"}) == []

        summary = load_memories(db, io.StringIO(json.dumps(
            {"text": "A fresh note", "namespace": "team/b", "layer": "episodic"}) + "\n"))
        assert (summary.memories, summary.lines) == (1, 1)
        with pytest.raises(InvalidInput, match="line 1: unknown fields"):
            load_memories(db, io.StringIO('{"text": "x", "namespace": "a", "author": "me"}\n'))
        with pytest.raises(InvalidInput, match="line 2: not JSON"):
            load_memories(db, io.StringIO('{"text": "x", "namespace": "a"}\n{oops\n'))
        assert db.verify().ok
    finally:
        db.close()


def test_recall_with_query_embedding_skips_the_embedder(tmp_path, embedder):
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        _history(db)
        query = "What colour was the sky in Lyon?"
        vector = np.asarray(embedder.embed([query])[0])
        assert _answers(db, query, query_embedding=vector.tolist()) == _answers(db, query)
        # The vector side follows the embedding given, not the query text.
        other = np.asarray(embedder.embed(["hiring freeze in September"])[0])
        by_vector = db.recall("zzz", query_embedding=other, k=1).hits
        assert by_vector[0].memory.text == "Hiring freeze until September"
        with pytest.raises(EmbeddingDimensionMismatch):
            db.recall(query, query_embedding=[0.1, 0.2, 0.3])
    finally:
        db.close()


def test_an_exported_file_is_stable_text(tmp_path, embedder):
    """Exporting a restored database gives back the same events, line for line."""
    db = engramdb.open(tmp_path / "a.db", embedder=embedder)
    try:
        _history(db)
        first = _export(db)
    finally:
        db.close()
    import_database(tmp_path / "b.db", io.StringIO(first))
    restored = engramdb.open(tmp_path / "b.db", embedder=embedder)
    try:
        second = _export(restored)
    finally:
        restored.close()
    assert first.splitlines()[1:] == second.splitlines()[1:]
    assert Path(tmp_path / "b.db").exists()
