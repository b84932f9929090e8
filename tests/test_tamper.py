"""Edits made to the SQLite file behind the engine's back are caught by ``verify``.

Each case builds the same small database through the public API, closes it,
edits the file with :mod:`sqlite3` the way an intruder or a careless script
would, reopens it and expects ``verify()`` to say not ok, naming the first
bad event (or, for a row the log never wrote, the row) and why.

Out of reach by design, and therefore not tested here: someone who appends a
forged event with a correctly recomputed (unkeyed) chain hash, moves the
chain head along and makes the state tables agree. Only a signed checkpoint
held outside the database can expose that rewrite.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import engramdb
from engramdb.codec import canonical, chain_hash


@dataclass(frozen=True)
class Built:
    """What the tamper cases need to know about the database they edit."""

    path: Path
    seq_of: dict[str, int]  # a label -> the seq of the event that did it
    ids: dict[str, str]  # a label -> memory id
    grant_id: str
    last_seq: int


def build(tmp_path: Path) -> Built:
    path = tmp_path / "engram.db"
    seq_of: dict[str, int] = {}
    ids: dict[str, str] = {}
    with engramdb.open(path, embedder=None) as db:
        def mark(label: str) -> None:
            seq_of[label] = db.storage.head().seq

        db.admin.create_agent("alice")
        mark("agent")
        grant = db.admin.grant("alice", "team/**", ["read", "write"])
        mark("grant")
        alice = db.as_agent("alice")
        for label in ("m1", "m2", "m3"):
            ids[label] = alice.remember(f"fact {label} about the team", namespace="team/x").id
            mark(f"remember_{label}")
        alice.update(ids["m1"], text="fact m1, revised")
        mark("update_m1")
        alice.retract(ids["m2"], reason="wrong")
        mark("retract_m2")
        ids["m4"] = db.remember("last fact", namespace="team/y").id
        mark("remember_m4")
        report = db.verify()
        assert report.ok, report
        last = db.storage.head().seq
    assert seq_of["remember_m4"] == last
    return Built(path, seq_of, ids, grant.id, last)


# -- edits ------------------------------------------------------------------------


def _event(conn: sqlite3.Connection, seq: int) -> dict[str, object]:
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT * FROM events WHERE seq = ?", [seq]).fetchone()
    conn.row_factory = None
    return dict(row)


def _set_head_to(conn: sqlite3.Connection, seq: int) -> None:
    ev = _event(conn, seq)
    conn.execute("UPDATE chain_head SET seq = ?, hash = ?, tx = ?, recorded_at = ? WHERE id = 1",
                 [seq, ev["hash"], ev["tx"], ev["recorded_at"]])


def _forge(conn: sqlite3.Connection, seq: int, prev_hash: str, payload: dict[str, object],
           *, correct_hash: bool = True) -> str:
    """Insert an event at ``seq`` whose hash and commitment recompute correctly."""
    tx, recorded_at = conn.execute("SELECT MAX(tx) + 1, MAX(recorded_at) FROM events").fetchone()
    salt = b"\x01" * 16
    body = canonical(payload)
    commit = hashlib.sha256(salt + body).hexdigest()
    envelope = {"seq": seq, "tx": tx, "kind": "memory.remembered", "namespace": "team/x",
                "actor": "alice", "recorded_at": recorded_at, "subject_ref": None,
                "commitment": commit}
    digest = chain_hash(prev_hash, envelope) if correct_hash else "ab" * 32
    conn.execute("INSERT INTO events (seq, tx, kind, namespace, actor, recorded_at, subject_ref,"
                 " commitment, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                 [seq, tx, "memory.remembered", "team/x", "alice", recorded_at, None, commit,
                  prev_hash, digest])
    conn.execute("INSERT INTO event_payloads (seq, salt, payload) VALUES (?, ?, ?)",
                 [seq, salt, body.decode()])
    return digest


def _shift_after(conn: sqlite3.Connection, seq: int) -> None:
    for table in ("events", "event_payloads"):
        conn.execute(f"UPDATE {table} SET seq = seq + 1000000 WHERE seq > ?", [seq])
        conn.execute(f"UPDATE {table} SET seq = seq - 999999 WHERE seq > 1000000")


Edit = Callable[[sqlite3.Connection, Built], None]


def change_kind(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE events SET kind = 'memory.updated' WHERE seq = ?", [b.seq_of["remember_m2"]])


def change_actor(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE events SET actor = 'mallory' WHERE seq = ?", [b.seq_of["update_m1"]])


def change_namespace(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE events SET namespace = 'team/z' WHERE seq = ?", [b.seq_of["remember_m3"]])


def change_payload_byte(c: sqlite3.Connection, b: Built) -> None:
    seq = b.seq_of["remember_m3"]
    (payload,) = c.execute("SELECT payload FROM event_payloads WHERE seq = ?", [seq]).fetchone()
    i = payload.index("fact m3") + 5  # the "m" of "m3"
    forged = payload[:i] + chr(ord(payload[i]) ^ 1) + payload[i + 1:]
    c.execute("UPDATE event_payloads SET payload = ? WHERE seq = ?", [forged, seq])


def change_payload_consistently(c: sqlite3.Connection, b: Built) -> None:
    # The payload and the row both say the new text; only the commitment disagrees.
    seq = b.seq_of["remember_m3"]
    c.execute("UPDATE event_payloads SET payload = replace(payload, 'fact m3', 'fact m9') "
              "WHERE seq = ?", [seq])
    c.execute("UPDATE memories SET text = 'fact m9 about the team' WHERE id = ?", [b.ids["m3"]])


def delete_middle_event(c: sqlite3.Connection, b: Built) -> None:
    seq = b.seq_of["remember_m2"]
    c.execute("DELETE FROM events WHERE seq = ?", [seq])
    c.execute("DELETE FROM event_payloads WHERE seq = ?", [seq])


def delete_last_event(c: sqlite3.Connection, b: Built) -> None:
    c.execute("DELETE FROM events WHERE seq = ?", [b.last_seq])
    c.execute("DELETE FROM event_payloads WHERE seq = ?", [b.last_seq])


def delete_last_event_and_fix_head(c: sqlite3.Connection, b: Built) -> None:
    delete_last_event(c, b)
    _set_head_to(c, b.last_seq - 1)


def swap_two_events(c: sqlite3.Connection, b: Built) -> None:
    i, j = b.seq_of["remember_m1"], b.seq_of["remember_m3"]
    for table in ("events", "event_payloads"):
        c.execute(f"UPDATE {table} SET seq = -1 WHERE seq = ?", [i])
        c.execute(f"UPDATE {table} SET seq = ? WHERE seq = ?", [i, j])
        c.execute(f"UPDATE {table} SET seq = ? WHERE seq = -1", [j])


def insert_forged_event_in_middle(c: sqlite3.Connection, b: Built) -> None:
    k = b.seq_of["remember_m2"]
    _shift_after(c, k)
    _forge(c, k + 1, str(_event(c, k)["hash"]), {"effects": []})


def append_forged_event(c: sqlite3.Connection, b: Built) -> None:
    # A well-formed event appended without moving the chain head.
    _forge(c, b.last_seq + 1, str(_event(c, b.last_seq)["hash"]), {"effects": []})


def append_forged_event_with_bad_hash(c: sqlite3.Connection, b: Built) -> None:
    _forge(c, b.last_seq + 1, str(_event(c, b.last_seq)["hash"]), {"effects": []},
           correct_hash=False)
    _set_head_to(c, b.last_seq + 1)


def append_forged_event_claiming_a_memory(c: sqlite3.Connection, b: Built) -> None:
    # Chain and head recomputed; the event says a memory exists that the table lacks.
    row = {"id": "01900000-0000-7000-8000-000000000000", "version": 1, "namespace": "team/x",
           "layer": "semantic", "text": "forged", "subject": None, "predicate": None,
           "value": None, "metadata": {}, "importance": 0.5, "confidence": 1.0,
           "author": "alice", "source": None, "session": None, "valid_from": 1, "valid_to": None,
           "tx_from": 999, "tx_to": None, "recorded_at": 1, "status": "active",
           "expires_at": None}
    _forge(c, b.last_seq + 1, str(_event(c, b.last_seq)["hash"]),
           {"effects": [{"op": "insert", "table": "memories", "row": row}]})
    _set_head_to(c, b.last_seq + 1)


def edit_memory_text(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE memories SET text = 'fact m3 about someone else' WHERE id = ?", [b.ids["m3"]])


def edit_memory_status(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE memories SET status = 'active' WHERE id = ? AND version = 2", [b.ids["m2"]])


def edit_memory_tx_to(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE memories SET tx_to = tx_to + 1 WHERE id = ? AND version = 1", [b.ids["m1"]])


def edit_memory_metadata(c: sqlite3.Connection, b: Built) -> None:
    c.execute("""UPDATE memories SET metadata = '{"approved":true}' WHERE id = ?""", [b.ids["m3"]])


def delete_memory_row(c: sqlite3.Connection, b: Built) -> None:
    c.execute("DELETE FROM memories WHERE id = ?", [b.ids["m3"]])


def delete_old_version_row(c: sqlite3.Connection, b: Built) -> None:
    c.execute("DELETE FROM memories WHERE id = ? AND version = 1", [b.ids["m1"]])


def insert_memory_row(c: sqlite3.Connection, b: Built) -> None:
    c.execute("INSERT INTO memories (id, version, namespace, layer, text, metadata, importance,"
              " confidence, author, valid_from, tx_from, recorded_at, status, row_tx)"
              " SELECT '01900000-0000-7000-8000-0000000000aa', 1, namespace, layer, 'planted',"
              " metadata, importance, confidence,"
              " author, valid_from, tx_from, recorded_at, status, row_tx FROM memories"
              " WHERE id = ?", [b.ids["m4"]])


def edit_grant_pattern(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE grants SET pattern = '**' WHERE id = ?", [b.grant_id])


def edit_grant_actions(c: sqlite3.Connection, b: Built) -> None:
    c.execute("""UPDATE grants SET actions = '["admin","erase","read","write"]' WHERE id = ?""",
              [b.grant_id])


def edit_principal_roles(c: sqlite3.Connection, b: Built) -> None:
    c.execute("""UPDATE principals SET roles = '["admin"]' WHERE name = 'alice'""")


def edit_chain_head_hash(c: sqlite3.Connection, b: Built) -> None:
    c.execute("UPDATE chain_head SET hash = ? WHERE id = 1", ["cd" * 32])


@dataclass(frozen=True)
class Expect:
    """Which seq ``first_bad_seq`` must name (a label, ``last``, ``next``, or None)."""

    seq: str | None
    problem: str  # a phrase the problem must contain
    offset: int = 0


_LOG_PROBLEMS = ("was changed", "payload was changed", "missing", "does not link")

CASES: dict[str, tuple[Edit, Expect]] = {
    "event kind changed": (change_kind, Expect("remember_m2", "was changed")),
    "event actor changed": (change_actor, Expect("update_m1", "was changed")),
    "event namespace changed": (change_namespace, Expect("remember_m3", "was changed")),
    "payload byte changed": (change_payload_byte, Expect("remember_m3", "payload was changed")),
    "payload and row changed together": (change_payload_consistently,
                                         Expect("remember_m3", "payload was changed")),
    "event deleted in the middle": (delete_middle_event, Expect("remember_m2", "missing")),
    "last event deleted": (delete_last_event, Expect("last", "chain head")),
    "last event deleted, head fixed": (delete_last_event_and_fix_head,
                                       Expect("last", "removed from the end")),
    "two events swapped": (swap_two_events, Expect("remember_m1", "does not link")),
    "forged event inserted in the middle": (insert_forged_event_in_middle,
                                            Expect("remember_m2", "does not link", offset=2)),
    "forged event appended, head not moved": (append_forged_event,
                                              Expect("last", "chain head", offset=1)),
    "forged event with a bad hash": (append_forged_event_with_bad_hash,
                                     Expect("last", "was changed", offset=1)),
    "forged event claiming a memory": (append_forged_event_claiming_a_memory,
                                       Expect("last", "missing from the table", offset=1)),
    "memory text edited": (edit_memory_text, Expect("remember_m3", "'text'")),
    "memory status edited": (edit_memory_status, Expect("retract_m2", "'status'")),
    "memory tx_to edited": (edit_memory_tx_to, Expect("update_m1", "'tx_to'")),
    "memory metadata edited": (edit_memory_metadata, Expect("remember_m3", "'metadata'")),
    "memory row deleted": (delete_memory_row, Expect("remember_m3", "missing from the table")),
    "old version row deleted": (delete_old_version_row,
                                Expect("update_m1", "missing from the table")),
    "memory row inserted": (insert_memory_row, Expect(None, "not in the log")),
    "grant pattern edited": (edit_grant_pattern, Expect("grant", "'pattern'")),
    "grant actions edited": (edit_grant_actions, Expect("grant", "'actions'")),
    "principal roles edited": (edit_principal_roles, Expect("agent", "'roles'")),
    "chain head hash edited": (edit_chain_head_hash, Expect("last", "chain head")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_verify_detects_tampering(tmp_path: Path, case: str) -> None:
    built = build(tmp_path)
    edit, expect = CASES[case]
    conn = sqlite3.connect(built.path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        edit(conn, built)
        conn.execute("COMMIT")
        (events_left,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    finally:
        conn.close()

    with engramdb.open(built.path, embedder=None) as db:
        report = db.verify()
    assert not report.ok
    assert not report  # a failed report is falsy, so `if db.verify():` reads right
    assert report.problem is not None and expect.problem in report.problem, report.problem
    if expect.seq is None:
        want = None
    elif expect.seq == "last":
        want = built.last_seq + expect.offset
    else:
        want = built.seq_of[expect.seq] + expect.offset
    assert report.first_bad_seq == want, report
    if expect.problem in _LOG_PROBLEMS:
        # The chain was checked up to, and not including, the first bad event.
        assert report.events_checked == want - 1
    else:
        # Every event still in the file was checked before the head and the rows.
        assert report.events_checked == events_left


def test_untouched_database_verifies(tmp_path: Path) -> None:
    built = build(tmp_path)
    with engramdb.open(built.path, embedder=None) as db:
        report = db.verify()
        head = db.storage.head()
    assert report.ok
    assert report.first_bad_seq is None and report.problem is None
    assert report.events_checked == built.last_seq == head.seq
    assert report.head_hash == head.hash
    assert report.rows_checked > 0
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_deleted_row_names_the_memory(tmp_path: Path) -> None:
    built = build(tmp_path)
    conn = sqlite3.connect(built.path)
    with conn:
        delete_memory_row(conn, built)
    conn.close()
    with engramdb.open(built.path, embedder=None) as db:
        report = db.verify()
    assert report.problem is not None and built.ids["m3"] in report.problem
