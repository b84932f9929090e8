"""Signed checkpoints: key files, signatures, the file format and its errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engramdb.audit import hash_leaves, root
from engramdb.audit.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    check_checkpoint,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_from_pem,
    public_key_pem,
    sign_checkpoint,
    verify_checkpoint_signature,
)
from engramdb.errors import InvalidInput

HEAD = "ab" * 32
ROOT = "cd" * 32


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def checkpoint(key: Ed25519PrivateKey) -> Checkpoint:
    return sign_checkpoint(
        database_id="db-7f3a",
        tree_size=42,
        head_seq=42,
        head_hash=HEAD,
        merkle_root=ROOT,
        private_key=key,
        created_at=datetime(2025, 3, 1, 12, 30, tzinfo=UTC),
    )


# --------------------------------------------------------------- keys


def test_generate_key_writes_an_owner_only_pem_that_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    public = generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    private = load_private_key(path)
    assert key_id(private) == key_id(public)
    assert public_key_pem(private) == public_key_pem(public)


def test_generate_key_never_silently_replaces_a_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    first = generate_key(path)
    with pytest.raises(InvalidInput, match="already exists"):
        generate_key(path)
    assert key_id(load_private_key(path)) == key_id(first)
    path.chmod(0o644)
    second = generate_key(path, overwrite=True)
    assert key_id(second) != key_id(first)
    assert key_id(load_private_key(path)) == key_id(second)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generate_key_into_a_missing_directory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="directory exists"):
        generate_key(tmp_path / "nope" / "signing.pem")


def test_load_private_key_rejects_missing_garbage_and_other_algorithms(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read key file"):
        load_private_key(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(InvalidInput, match="not an unencrypted PEM private key"):
        load_private_key(garbage)
    ed448 = tmp_path / "ed448.pem"
    ed448.write_bytes(
        Ed448PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(InvalidInput, match="not an Ed25519 key"):
        load_private_key(ed448)


def test_public_key_round_trips_through_pem_and_file(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    pem = public_key_pem(key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(public_key_from_pem(pem)) == key_id(key)
    path = tmp_path / "public.pem"
    path.write_text(pem)
    assert key_id(load_public_key(path)) == key_id(key)
    with pytest.raises(InvalidInput):
        public_key_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidInput, match="cannot read public key file"):
        load_public_key(tmp_path / "missing.pem")


def test_key_id_is_the_sha256_prefix_of_the_raw_public_key(key: Ed25519PrivateKey) -> None:
    import hashlib

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key) == hashlib.sha256(raw).hexdigest()[:16]


# --------------------------------------------------------------- signatures


def test_signature_verifies_with_the_signing_key(
    checkpoint: Checkpoint, key: Ed25519PrivateKey
) -> None:
    assert verify_checkpoint_signature(checkpoint, key.public_key())
    assert checkpoint.key_id == key_id(key)
    assert checkpoint.created_at == "2025-03-01T12:30:00.000000+00:00"


def test_signature_fails_with_another_key(checkpoint: Checkpoint) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    assert not verify_checkpoint_signature(checkpoint, other)


def test_signed_bytes_are_the_documented_canonical_json(
    checkpoint: Checkpoint, key: Ed25519PrivateKey
) -> None:
    """An outside verifier can rebuild the signed bytes from the file alone."""
    body = json.loads(checkpoint.to_json())
    signature = base64.b64decode(body.pop("signature"))
    expected = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert checkpoint.signing_bytes() == expected
    assert body["format"] == CHECKPOINT_FORMAT
    key.public_key().verify(signature, expected)  # raises if not


CHANGES: dict[str, Any] = {
    "database_id": "db-other",
    "tree_size": 43,
    "head_seq": 41,
    "head_hash": "ac" * 32,
    "merkle_root": "cd" * 31 + "ce",
    "created_at": "2025-03-01T12:30:00.000001+00:00",
    "public_key": public_key_pem(Ed25519PrivateKey.generate()),
}


@pytest.mark.parametrize(("field", "value"), sorted(CHANGES.items()))
def test_any_field_change_breaks_the_signature(
    checkpoint: Checkpoint, key: Ed25519PrivateKey, field: str, value: Any
) -> None:
    changed = dataclasses.replace(checkpoint, **{field: value})
    assert not verify_checkpoint_signature(changed, key.public_key())
    assert not check_checkpoint(changed, key.public_key()).ok


def test_every_signed_field_is_covered_by_the_change_test(checkpoint: Checkpoint) -> None:
    signed = {f.name for f in dataclasses.fields(checkpoint)} - {"signature", "key_id"}
    assert signed == set(CHANGES)


def test_key_id_change_or_tampered_signature_fails(
    checkpoint: Checkpoint, key: Ed25519PrivateKey
) -> None:
    assert not verify_checkpoint_signature(
        dataclasses.replace(checkpoint, key_id="0" * 16), key.public_key()
    )
    raw = bytearray(base64.b64decode(checkpoint.signature))
    raw[10] ^= 0x01
    tampered = dataclasses.replace(checkpoint, signature=base64.b64encode(bytes(raw)).decode())
    assert not verify_checkpoint_signature(tampered, key.public_key())
    assert not verify_checkpoint_signature(
        dataclasses.replace(checkpoint, signature="!!"), key.public_key()
    )


def test_check_checkpoint_flags_the_embedded_key_as_untrusted(
    checkpoint: Checkpoint, key: Ed25519PrivateKey
) -> None:
    trusted = check_checkpoint(checkpoint, key.public_key())
    assert trusted.ok and trusted.trusted and trusted.reason is None
    embedded = check_checkpoint(checkpoint)
    assert embedded.ok and not embedded.trusted
    assert embedded.reason is not None and "published public key" in embedded.reason


def test_a_log_re_signed_by_an_impostor_passes_only_untrusted(
    checkpoint: Checkpoint, key: Ed25519PrivateKey
) -> None:
    """Why the flag matters: anyone can sign a rewritten log with a fresh key."""
    forged = sign_checkpoint(
        database_id=checkpoint.database_id,
        tree_size=checkpoint.tree_size,
        head_seq=checkpoint.head_seq,
        head_hash=checkpoint.head_hash,
        merkle_root="ee" * 32,
        private_key=Ed25519PrivateKey.generate(),
    )
    assert check_checkpoint(forged).ok
    assert not check_checkpoint(forged).trusted
    verdict = check_checkpoint(forged, key.public_key())
    assert not verdict.ok and verdict.trusted
    assert verdict.reason is not None and "signed by key" in verdict.reason


def test_signing_accepts_bytes_and_normalises_times(key: Ed25519PrivateKey) -> None:
    hashes = hash_leaves([b"a", b"b", b"c"])
    top = root(hashes)
    cp = sign_checkpoint(
        database_id="db",
        tree_size=3,
        head_seq=3,
        head_hash=b"\x01" * 32,
        merkle_root=top,
        private_key=key,
        created_at=datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert cp.merkle_root == top.hex()
    assert cp.head_hash == "01" * 32
    assert cp.created_at == "2025-01-01T12:00:00.000000+00:00"
    assert cp.created_at_datetime == datetime(2025, 1, 1, 12, tzinfo=UTC)
    naive = sign_checkpoint(
        database_id="db",
        tree_size=0,
        head_seq=0,
        head_hash="00" * 32,
        merkle_root=root([]),
        private_key=key,
        created_at=datetime(2025, 1, 1, 12, 0),
    )
    assert naive.created_at == cp.created_at
    assert verify_checkpoint_signature(naive, key.public_key())
    before = datetime.now(UTC)
    now = sign_checkpoint(
        database_id="db",
        tree_size=0,
        head_seq=0,
        head_hash="00" * 32,
        merkle_root=root([]),
        private_key=key,
    )
    assert before <= now.created_at_datetime <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("database_id", ""),
        ("tree_size", -1),
        ("head_seq", True),
        ("head_hash", "AB" * 32),
        ("merkle_root", b"\x00" * 31),
    ],
)
def test_sign_checkpoint_rejects_malformed_fields(
    key: Ed25519PrivateKey, field: str, value: Any
) -> None:
    fields: dict[str, Any] = {
        "database_id": "db",
        "tree_size": 1,
        "head_seq": 1,
        "head_hash": HEAD,
        "merkle_root": ROOT,
    }
    fields[field] = value
    if field == "head_hash":
        # Upper-case hex is normalised on signing, so only the file parser rejects it.
        assert sign_checkpoint(**fields, private_key=key).head_hash == HEAD
        return
    with pytest.raises(InvalidInput):
        sign_checkpoint(**fields, private_key=key)


# --------------------------------------------------------------- file format


def test_file_round_trip_keeps_the_checkpoint_and_its_signature(
    checkpoint: Checkpoint, key: Ed25519PrivateKey
) -> None:
    text = checkpoint.to_json()
    assert text.endswith("\n")
    again = Checkpoint.from_json(text)
    assert again == checkpoint
    assert verify_checkpoint_signature(again, key.public_key())
    assert Checkpoint.from_json(text.encode()) == checkpoint
    assert key_id(again.embedded_public_key()) == key_id(key)


def _edited(checkpoint: Checkpoint, **changes: Any) -> str:
    body = checkpoint.to_dict()
    for name, value in changes.items():
        if value is _DROP:
            del body[name]
        else:
            body[name] = value
    return json.dumps(body)


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"format": "engramdb.checkpoint.v0"}, "format"),
        ({"format": _DROP}, "format"),
        ({"signature": _DROP}, "missing fields"),
        ({"comment": "hi"}, "unexpected fields"),
        ({"database_id": 7}, "database_id"),
        ({"tree_size": "42"}, "tree_size"),
        ({"tree_size": -1}, "tree_size"),
        ({"tree_size": 4.2}, "tree_size"),
        ({"head_seq": False}, "head_seq"),
        ({"head_hash": "ab" * 31}, "head_hash"),
        ({"head_hash": "AB" * 32}, "head_hash"),
        ({"merkle_root": "zz" * 32}, "merkle_root"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"created_at": "2025-03-01T12:30:00"}, "UTC"),
        ({"created_at": "2025-03-01T14:30:00+02:00"}, "UTC"),
        ({"key_id": "xyz"}, "key_id"),
        ({"key_id": "0" * 16}, "does not match the embedded public key"),
        ({"public_key": "garbage"}, "PEM public key"),
        ({"signature": "not base64!"}, "signature"),
        ({"signature": base64.b64encode(b"\x00" * 63).decode()}, "signature"),
        ({"signature": None}, "signature"),
    ],
)
def test_malformed_checkpoint_file_is_invalid_input(
    checkpoint: Checkpoint, changes: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidInput, match=says) as info:
        Checkpoint.from_json(_edited(checkpoint, **changes))
    assert "EngramDB wrote it" in info.value.message


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", b"\xff\xfe", '"checkpoint"'])
def test_non_object_or_broken_json_is_invalid_input(text: str | bytes) -> None:
    with pytest.raises(InvalidInput, match="invalid checkpoint"):
        Checkpoint.from_json(text)
