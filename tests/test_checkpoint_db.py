"""Checkpoints, rewrite detection and inclusion proofs against a real database.

The Merkle root a checkpoint signs is recomputed here from the stored event
hashes with a separate, plain RFC 9162 implementation, so the test does not
take the engine's word for it. Forged proofs and checkpoints must be refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import engramdb
from engramdb.audit import (
    Checkpoint,
    EventProof,
    MerkleProof,
    default_key_path,
    ensure_signing_key,
    generate_key,
    load_private_key,
    public_key_path,
    sign_checkpoint,
    verify_event_proof,
)
from engramdb.engine import import_database
from engramdb.errors import IntegrityError, InvalidInput
from tests.support.log_surgery import connect, rewrite_event, rewrite_memory_text


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 Merkle tree head, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _stored_hashes(path: Path) -> list[bytes]:
    conn = connect(path)
    try:
        return [bytes.fromhex(h) for (h,) in conn.execute("SELECT hash FROM events ORDER BY seq")]
    finally:
        conn.close()


def _activity(db: engramdb.Database, n: int = 6) -> list[engramdb.Memory]:
    if not db.storage.fetch("principals", {"name": "planner"}):
        db.admin.create_agent("planner")
        db.admin.grant("planner", "acme/**", ["read", "write"])
    p = db.as_agent("planner")
    made = [p.remember(f"fact {i} about Company X", namespace="acme/x") for i in range(n)]
    p.update(made[0].id, text="fact 0 about Company X, revised")
    p.retract(made[1].id, reason="wrong")
    p.decide("buy", basis=p.recall("Company X", namespace="acme/**"))
    return made


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[engramdb.Database, Path]]:
    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=None)
    ensure_signing_key(default_key_path(path))
    _activity(db)
    try:
        yield db, path
    finally:
        db.close()


def _public(path: Path):
    return load_private_key(default_key_path(path)).public_key()


def test_checkpoint_signs_the_merkle_root_of_every_event(audited):
    db, path = audited
    cp = db.checkpoint()
    hashes = _stored_hashes(path)
    assert cp.tree_size == cp.head_seq == len(hashes) == db.storage.head().seq
    assert cp.head_hash == hashes[-1].hex()
    assert cp.merkle_root == _mth(hashes).hex()
    assert Checkpoint.from_json(cp.to_json()) == cp
    report = db.verify_checkpoint(cp, _public(path))
    assert report.ok and report.signature.trusted and report.log.ok
    assert report.consistency.old_size == report.consistency.new_size == cp.tree_size


def test_the_last_checkpoint_signed_is_remembered_across_reopen(audited):
    db, path = audited
    assert db.last_checkpoint() is None
    first = db.checkpoint()
    assert db.last_checkpoint() == first
    db.as_agent("planner").remember("one more fact", namespace="acme/x")
    second = db.checkpoint()
    assert second.tree_size == first.tree_size + 1
    head = db.storage.head().seq
    assert db.verify().ok  # remembering it wrote nothing to the log
    db.close()
    again = engramdb.open(path, embedder=None)
    try:
        last = again.last_checkpoint()
        assert last == second and last.head_seq == head
        assert again.verify_checkpoint(last, _public(path)).ok
    finally:
        again.close()


def test_every_backend_remembers_the_last_checkpoint_and_each_principals_grants(engine_db):
    db = engine_db
    db.admin.create_agent("planner", roles=["analyst"])
    db.admin.create_agent("other")
    mine = [db.admin.grant("planner", "acme/**", ["read", "write"]),
            db.admin.grant("role:analyst", "reports/**", ["read"])]
    db.admin.grant("other", "acme/**", ["read"])
    assert db.as_agent("planner").my_grants() == mine
    assert db.last_checkpoint() is None
    key = Ed25519PrivateKey.generate()
    cp = db.checkpoint(private_key=key)
    assert db.last_checkpoint() == cp and cp.head_seq == db.head().seq
    assert db.verify().ok


def test_a_growing_log_stays_consistent_with_old_checkpoints(audited):
    db, path = audited
    first = db.checkpoint()
    _activity(db, 3)
    second = db.checkpoint()
    for cp in (first, second):
        report = db.verify_checkpoint(cp, _public(path))
        assert report.ok, report.problem
        assert report.current_size == second.tree_size
        assert report.consistency.verify(cp.merkle_root)
        assert report.consistency.new_root == second.merkle_root
    assert second.merkle_root == _mth(_stored_hashes(path)).hex()


def test_a_consistent_rewrite_passes_verify_but_not_the_checkpoint(audited):
    db, path = audited
    cp = db.checkpoint()
    grant_seq = next(e.seq for e in db.changes() if e.kind == "grant.created")
    db.close()
    # The attacker rewrites who granted the access, and recomputes every hash after it.
    rewrite_event(path, grant_seq, envelope={"actor": "planner"})
    with engramdb.open(path, embedder=None) as db2:
        assert db2.verify().ok  # internally consistent: the chain alone cannot tell
        report = db2.verify_checkpoint(cp, _public(path))
        assert not report.ok and "rewritten" in report.problem
        assert report.consistency is None


def test_a_rewritten_memory_text_is_caught_by_the_checkpoint(audited):
    db, path = audited
    cp = db.checkpoint()
    # fact 2 was never updated or retracted, so its first version is the current one.
    seq = [e.seq for e in db.changes() if e.kind == "memory.remembered"][2]
    db.close()
    assert rewrite_memory_text(path, seq, "fact 2: Company X is a fraud")
    with engramdb.open(path, embedder=None) as db2:
        assert db2.verify().ok
        assert db2.recall("fraud").hits  # the state really says the forged thing
        assert not db2.verify_checkpoint(cp, _public(path)).ok


def test_rewrites_after_the_checkpoint_are_not_anchored(audited):
    db, path = audited
    cp = db.checkpoint()
    _activity(db, 2)
    last = db.storage.head().seq
    db.close()
    rewrite_event(path, last, envelope={"actor": "someone-else"})
    with engramdb.open(path, embedder=None) as db2:
        # Nothing signed covers event `last` yet: this is what the next checkpoint is for.
        assert db2.verify_checkpoint(cp, _public(path)).ok


def test_truncation_after_a_checkpoint_is_caught(audited):
    db, path = audited
    cp = db.checkpoint()
    db.close()
    conn = connect(path)
    conn.execute("DELETE FROM events WHERE seq >= ?", (cp.tree_size - 1,))
    conn.execute("DELETE FROM event_payloads WHERE seq >= ?", (cp.tree_size - 1,))
    conn.close()
    with engramdb.open(path, embedder=None) as db2:
        report = db2.verify_checkpoint(cp, _public(path))
        assert not report.ok and "deleted" in report.problem


def test_forged_or_foreign_checkpoints_are_refused(audited, tmp_path):
    db, path = audited
    cp = db.checkpoint()
    real = _public(path)
    # Edited after signing: the signature no longer matches.
    edited = dataclasses.replace(cp, tree_size=cp.tree_size - 1)
    assert not db.verify_checkpoint(edited, real).ok
    # Re-signed by an attacker's key: fine with the embedded key, refused with the real one.
    generate_key(tmp_path / "attacker.pem")
    attacker = load_private_key(tmp_path / "attacker.pem")
    forged = sign_checkpoint(database_id=cp.database_id, tree_size=cp.tree_size,
                             head_seq=cp.head_seq, head_hash=cp.head_hash,
                             merkle_root=cp.merkle_root, private_key=attacker)
    untrusted = db.verify_checkpoint(forged)
    assert untrusted.ok and not untrusted.signature.trusted
    assert not db.verify_checkpoint(forged, real).ok
    # Another database's checkpoint does not vouch for this one.
    with engramdb.open(tmp_path / "other.db", embedder=None) as other:
        _activity(other)
        theirs = other.checkpoint(private_key=load_private_key(default_key_path(path)))
    report = db.verify_checkpoint(theirs, real)
    assert not report.ok and "another database" in report.problem


def test_checkpoint_refuses_to_sign_a_damaged_log(audited):
    db, path = audited
    db.close()
    conn = connect(path)
    conn.execute("UPDATE events SET kind = 'memory.forgotten' WHERE seq = 3")
    conn.close()
    with engramdb.open(path, embedder=None) as db2:
        with pytest.raises(IntegrityError):
            db2.checkpoint()
        assert not db2.verify_checkpoint(
            Checkpoint.from_json(json.dumps(_signed_stub(path))), _public(path)).ok


def _signed_stub(path: Path) -> dict:
    hashes = _stored_hashes(path)
    cp = sign_checkpoint(database_id="engramdb:" + hashes[0].hex()[:32],
                         tree_size=len(hashes), head_seq=len(hashes),
                         head_hash=hashes[-1], merkle_root=_mth(hashes),
                         private_key=load_private_key(default_key_path(path)))
    return cp.to_dict()


def test_inclusion_proofs_verify_offline_against_the_checkpoint(audited, tmp_path):
    db, path = audited
    cp = db.checkpoint()
    _activity(db, 2)  # the log grows past the checkpoint
    files = {}
    for seq in range(1, cp.tree_size + 1):
        proof = db.prove(seq, tree_size=cp.tree_size)
        files[seq] = tmp_path / f"proof-{seq}.json"
        files[seq].write_text(proof.to_json())
    current = db.prove(cp.tree_size + 1)
    db.close()
    os.replace(path, tmp_path / "gone.db")  # no database from here on
    pub = _public(tmp_path / "engram.db")
    for seq, file in files.items():
        proof = EventProof.from_json(file.read_text())
        check = verify_event_proof(proof, cp, pub)
        assert check.ok and check.signature.trusted, (seq, check.reason)
        assert proof.event["seq"] == seq
    assert not verify_event_proof(current, cp, pub).ok  # made for a later tree


def test_forged_proofs_are_rejected(audited):
    db, path = audited
    cp = db.checkpoint()
    pub = _public(path)
    good = db.prove(4, tree_size=cp.tree_size)
    other = db.prove(5, tree_size=cp.tree_size)
    assert verify_event_proof(good, cp, pub).ok
    p = good.proof

    def flip(h: str) -> str:
        return ("0" if h[0] != "0" else "1") + h[1:]

    forgeries = {
        "path element flipped": EventProof(good.event, dataclasses.replace(
            p, path=(flip(p.path[0]), *p.path[1:]))),
        "path element dropped": EventProof(good.event, dataclasses.replace(p, path=p.path[1:])),
        "path element added": EventProof(good.event, dataclasses.replace(
            p, path=(*p.path, p.path[0]))),
        "other index": EventProof(good.event, dataclasses.replace(p, leaf_index=5)),
        "other tree size": EventProof(good.event, dataclasses.replace(
            p, tree_size=p.tree_size + 1)),
        "root swapped in": EventProof(good.event, dataclasses.replace(p, root=cp.merkle_root,
                                                                      leaf_hash=flip(p.leaf_hash))),
        "event kind changed": EventProof({**good.event, "kind": "grant.created"}, p),
        "event actor changed": EventProof({**good.event, "actor": "mallory"}, p),
        "event seq changed": EventProof({**good.event, "seq": 5}, p),
        "event hash changed": EventProof({**good.event, "hash": flip(good.event["hash"])}, p),
        "envelope of another event": EventProof(other.event, p),
        "path of another event": EventProof(good.event, other.proof),
        "root of another tree": EventProof(good.event, MerkleProof.build(
            [hashlib.sha256(b"\x00" + bytes(32)).digest()] * cp.tree_size, 3)),
    }
    for name, forged in forgeries.items():
        assert not verify_event_proof(forged, cp, pub).ok, name
    # A genuine proof under a tampered checkpoint, or a checkpoint signed by someone else.
    assert not verify_event_proof(good, dataclasses.replace(cp, merkle_root=flip(
        cp.merkle_root)), pub).ok
    with pytest.raises(InvalidInput):
        EventProof.from_json('{"format": "engramdb.proof.v1", "event": {}, "proof": {}}')
    with pytest.raises(InvalidInput):
        db.prove(cp.tree_size + 5)
    with pytest.raises(InvalidInput):
        db.prove(1, tree_size=0)


def test_checkpoints_hold_for_an_exported_and_imported_copy(audited, tmp_path):
    db, path = audited
    cp = db.checkpoint()
    out = io.StringIO()
    db.export(out)
    import_database(tmp_path / "copy.db", io.StringIO(out.getvalue()), embedder=None)
    with engramdb.open(tmp_path / "copy.db", embedder=None) as copy:
        assert copy.verify_checkpoint(cp, _public(path)).ok


def test_the_audit_cli(tmp_path):
    from engramdb.cli import cli

    runner = CliRunner()
    db_path = tmp_path / "engram.db"
    base = ["--db", str(db_path)]

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, [*base, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init", "--embedder", "none")
    key = default_key_path(db_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert public_key_path(key).exists()
    with engramdb.open(db_path, embedder=None) as db:
        _activity(db)
    cp_file, proof_file = tmp_path / "cp.json", tmp_path / "proof.json"
    run("audit", "checkpoint", "-o", str(cp_file))
    pub = str(public_key_path(key))
    assert "intact" in run("audit", "verify", "--checkpoint", str(cp_file), "--public-key", pub)
    run("audit", "prove", "3", "--checkpoint", str(cp_file), "-o", str(proof_file))
    ok = runner.invoke(cli, ["audit", "verify-proof", str(proof_file), "--checkpoint",
                             str(cp_file), "--public-key", pub])
    assert ok.exit_code == 0 and "Proof valid" in ok.output
    as_json = json.loads(run("--json", "audit", "verify", "--checkpoint", str(cp_file)))
    assert as_json["ok"] is True and as_json["signature"]["trusted"] is False
    stdout_cp = Checkpoint.from_json(run("audit", "checkpoint"))
    assert stdout_cp.tree_size >= Checkpoint.from_json(cp_file.read_text()).tree_size

    rewrite_event(db_path, 2, envelope={"actor": "mallory"})
    out = run("audit", "verify", "--checkpoint", str(cp_file), "--public-key", pub, code=1)
    assert "NOT intact" in out
    forged = json.loads(proof_file.read_text())
    forged["event"]["actor"] = "mallory"
    proof_file.write_text(json.dumps(forged))
    bad = runner.invoke(cli, ["audit", "verify-proof", str(proof_file), "--checkpoint",
                              str(cp_file), "--public-key", pub])
    assert bad.exit_code == 1 and "INVALID" in bad.output
