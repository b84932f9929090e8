"""Signed checkpoints of the audit log: Ed25519 keys, signing and the file format.

A checkpoint is a statement "database D had ``tree_size`` events, the last one
``head_seq`` with chain hash ``head_hash``, and the RFC 9162 Merkle root over
them was ``merkle_root``", signed with an Ed25519 key kept outside the
database. Published or handed to an auditor, it makes a later rewrite of the
log detectable: the rewritten log no longer matches the signed root, and a
consistency proof ties any later checkpoint to this one.

This module owns key files, the checkpoint value, the exact bytes that are
signed and the JSON file format. It never touches storage.

Signed bytes (what :meth:`Checkpoint.signing_bytes` returns) are the canonical
JSON (sorted keys, ``","``/``":"`` separators, UTF-8, no NaN) of every field
except ``signature``, plus ``"format": "engramdb.checkpoint.v1"`` so that a
signature made for a checkpoint can never be replayed as any other statement.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from engramdb.errors import InvalidInput
from engramdb.private_file import write_private

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "SignatureCheck",
    "check_checkpoint",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_key_from_pem",
    "public_key_pem",
    "sign_checkpoint",
    "verify_checkpoint_signature",
]

CHECKPOINT_FORMAT = "engramdb.checkpoint.v1"
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_HEX16 = re.compile(r"^[0-9a-f]{16}\Z")
_SIGNATURE_SIZE = 64


def _canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# ---------------------------------------------------------------- keys


def generate_key(path: str | os.PathLike[str], *, overwrite: bool = False) -> Ed25519PublicKey:
    """Create a new Ed25519 signing key and write it as an unencrypted PEM file.

    The file is created with mode 0600 (owner read/write only). Keep it
    outside the database directory: whoever holds it can sign checkpoints.

    Args:
        path: Where to write the PKCS#8 PEM private key.
        overwrite: Replace an existing file. Off by default, because losing a
            signing key makes every checkpoint signed with it unverifiable
            against a new one.

    Returns:
        The public key; publish it (see :func:`public_key_pem`) to auditors.

    Raises:
        InvalidInput: the file exists and ``overwrite`` is false, or it cannot
            be written.
    """
    target = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    if not overwrite and target.exists():
        raise InvalidInput(
            f"key file {str(target)!r} already exists; use it, move it away, or pass "
            "overwrite=True if you really mean to replace the signing key",
            path=str(target),
        )
    write_private(target, pem, what="key file", overwrite=overwrite)
    return key.public_key()


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by :func:`generate_key`.

    Args:
        path: The PEM key file.

    Returns:
        The private key.

    Raises:
        InvalidInput: the file is missing, unreadable, encrypted, or not an
            Ed25519 private key.
    """
    target = Path(path)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read key file {str(target)!r}: {exc.strerror}; pass the path of "
            "the Ed25519 PEM key made for checkpoint signing (generate_key creates one)",
            path=str(target),
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            f"{str(target)!r} is not an unencrypted PEM private key; pass the key "
            "file that generate_key wrote",
            path=str(target),
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(
            f"{str(target)!r} holds a {type(key).__name__}, not an Ed25519 key; "
            "checkpoints are signed with Ed25519 only",
            path=str(target),
        )
    return key


def public_key_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The SubjectPublicKeyInfo PEM text of a key's public half.

    Args:
        key: A public key, or a private key whose public half is wanted.

    Returns:
        PEM text beginning ``-----BEGIN PUBLIC KEY-----``.
    """
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode("ascii")


def public_key_from_pem(pem: str | bytes) -> Ed25519PublicKey:
    """Parse an Ed25519 public key from PEM text.

    Raises:
        InvalidInput: the text is not a PEM Ed25519 public key.
    """
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            "not a PEM public key; expected text beginning '-----BEGIN PUBLIC KEY-----'"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(
            f"public key is a {type(key).__name__}, not Ed25519; checkpoints are "
            "signed with Ed25519 only"
        )
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read a trusted Ed25519 public key from a PEM file.

    Raises:
        InvalidInput: the file is missing, unreadable or not an Ed25519 public key.
    """
    target = Path(path)
    try:
        data = target.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read public key file {str(target)!r}: {exc.strerror}",
            path=str(target),
        ) from exc
    return public_key_from_pem(data)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Short key identifier: the first 16 hex digits of SHA-256(raw public key)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------- checkpoint


def _bad(message: str, **details: Any) -> InvalidInput:
    return InvalidInput(
        f"invalid checkpoint: {message}; pass the file exactly as EngramDB wrote it "
        "(Checkpoint.to_json)",
        **details,
    )


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{name} must be a non-negative integer, got {value!r}", field=name)


def _check_hex(name: str, value: object, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise _bad(f"{name} must be {what} in lowercase hex, got {value!r}", field=name)


def _parse_created_at(value: object) -> datetime:
    if not isinstance(value, str):
        raise _bad(f"created_at must be an ISO-8601 string, got {value!r}", field="created_at")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad(f"created_at is not ISO-8601: {value!r}", field="created_at") from exc
    if parsed.utcoffset() != timedelta(0):
        raise _bad(f"created_at must be in UTC (+00:00), got {value!r}", field="created_at")
    return parsed


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # naive means UTC, as everywhere in EngramDB
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _as_hex(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes | bytearray) else value.lower()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement of the audit log's size, head and Merkle root.

    Attributes:
        database_id: Stable identifier of the database the log belongs to.
        tree_size: Number of log events covered (leaves of the Merkle tree).
        head_seq: ``seq`` of the last covered event.
        head_hash: Hex chain hash of the last covered event.
        merkle_root: Hex RFC 9162 root over the covered events' chain hashes.
        created_at: ISO-8601 UTC time of signing, e.g. ``2025-01-01T00:00:00.000000+00:00``.
        key_id: First 16 hex digits of SHA-256 of the raw signing public key.
        public_key: PEM of the signing public key, carried so a checkpoint is
            self-describing. A verifier should rather use a key it got from
            elsewhere; see :func:`check_checkpoint`.
        signature: Base64 Ed25519 signature over :meth:`signing_bytes`.

    Raises:
        InvalidInput: on construction, if any field is malformed.
    """

    database_id: str
    tree_size: int
    head_seq: int
    head_hash: str
    merkle_root: str
    created_at: str
    key_id: str
    public_key: str
    signature: str

    def __post_init__(self) -> None:
        if not isinstance(self.database_id, str) or not self.database_id:
            raise _bad("database_id must be a non-empty string", field="database_id")
        _check_count("tree_size", self.tree_size)
        _check_count("head_seq", self.head_seq)
        _check_hex("head_hash", self.head_hash, _HEX64, "a 32-byte hash")
        _check_hex("merkle_root", self.merkle_root, _HEX64, "a 32-byte hash")
        _parse_created_at(self.created_at)
        _check_hex("key_id", self.key_id, _HEX16, "16 digits")
        if not isinstance(self.public_key, str):
            raise _bad("public_key must be PEM text", field="public_key")
        if not isinstance(self.signature, str):
            raise _bad("signature must be a base64 string", field="signature")

    @property
    def created_at_datetime(self) -> datetime:
        """``created_at`` as an aware UTC datetime."""
        return _parse_created_at(self.created_at)

    def signing_bytes(self) -> bytes:
        """The exact bytes the signature covers (see the module docstring)."""
        body = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "signature"
        }
        body["format"] = CHECKPOINT_FORMAT
        return _canonical_json(body)

    def embedded_public_key(self) -> Ed25519PublicKey:
        """The public key carried in the checkpoint, parsed.

        Raises:
            InvalidInput: ``public_key`` is not an Ed25519 PEM public key.
        """
        return public_key_from_pem(self.public_key)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the file format, ``format`` field included."""
        out: dict[str, Any] = {"format": CHECKPOINT_FORMAT}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return out

    def to_json(self) -> str:
        """The checkpoint file's text: indented, sorted-key JSON with a final newline."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> Checkpoint:
        """Rebuild a checkpoint from :meth:`to_dict` output, checking its shape.

        This checks form only (types, hex, the embedded key matching
        ``key_id``); call :func:`check_checkpoint` to check the signature.

        Raises:
            InvalidInput: a field is missing, unexpected or malformed.
        """
        if not isinstance(data, dict):
            raise _bad(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != CHECKPOINT_FORMAT:
            raise _bad(
                f"format is {data.get('format')!r}, expected {CHECKPOINT_FORMAT!r}",
                field="format",
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data))
        extra = sorted(set(data) - names - {"format"})
        if missing or extra:
            raise _bad(
                f"missing fields {missing}, unexpected fields {extra}",
                missing=missing,
                unexpected=extra,
            )
        checkpoint = cls(**{name: data[name] for name in names})
        try:
            embedded = checkpoint.embedded_public_key()
        except InvalidInput as exc:
            raise _bad(f"public_key: {exc.message}", field="public_key") from exc
        if key_id(embedded) != checkpoint.key_id:
            raise _bad("key_id does not match the embedded public key", field="key_id")
        if _decode_signature(checkpoint.signature) is None:
            raise _bad(f"signature must be base64 of {_SIGNATURE_SIZE} bytes", field="signature")
        return checkpoint

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint file written by :meth:`to_json`.

        Raises:
            InvalidInput: the text is not JSON or not a well-formed checkpoint.
        """
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad(f"not valid JSON ({exc})") from exc
        return cls.from_dict(data)


def _decode_signature(signature: str) -> bytes | None:
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return raw if len(raw) == _SIGNATURE_SIZE else None


def sign_checkpoint(
    *,
    database_id: str,
    tree_size: int,
    head_seq: int,
    head_hash: str | bytes,
    merkle_root: str | bytes,
    private_key: Ed25519PrivateKey,
    created_at: datetime | None = None,
) -> Checkpoint:
    """Sign a checkpoint of the audit log.

    Args:
        database_id: Stable identifier of the database.
        tree_size: Number of log events covered.
        head_seq: ``seq`` of the last covered event.
        head_hash: Chain hash of the last covered event (hex or 32 bytes).
        merkle_root: :func:`engramdb.audit.merkle.root` over the covered
            events (hex or 32 bytes).
        private_key: The Ed25519 signing key (see :func:`load_private_key`).
        created_at: Signing time; now if omitted. Naive values are taken as UTC.

    Returns:
        The signed checkpoint, with the public key embedded.

    Raises:
        InvalidInput: a field is malformed.
    """
    unsigned = Checkpoint(
        database_id=database_id,
        tree_size=tree_size,
        head_seq=head_seq,
        head_hash=_as_hex(head_hash),
        merkle_root=_as_hex(merkle_root),
        created_at=_format_time(created_at or datetime.now(UTC)),
        key_id=key_id(private_key),
        public_key=public_key_pem(private_key),
        signature="",
    )
    signature = private_key.sign(unsigned.signing_bytes())
    return dataclasses.replace(unsigned, signature=base64.b64encode(signature).decode("ascii"))


def verify_checkpoint_signature(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    """Whether ``public_key`` signed exactly this checkpoint.

    Args:
        checkpoint: The checkpoint to check.
        public_key: The key the verifier trusts.

    Returns:
        ``True`` if ``key_id`` names ``public_key`` and the signature verifies
        over :meth:`Checkpoint.signing_bytes`; ``False`` otherwise.
    """
    if key_id(public_key) != checkpoint.key_id:
        return False
    signature = _decode_signature(checkpoint.signature)
    if signature is None:
        return False
    try:
        public_key.verify(signature, checkpoint.signing_bytes())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Outcome of :func:`check_checkpoint`.

    Attributes:
        ok: The signature verifies.
        trusted: The key came from the verifier, not from the checkpoint
            itself. ``ok`` with ``trusted`` false only shows the file is
            self-consistent: anyone can sign a forged log with a fresh key,
            so warn the user.
        key_id: Id of the key the signature was checked with.
        reason: Why it failed, or a warning when ``trusted`` is false.
    """

    ok: bool
    trusted: bool
    key_id: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_checkpoint(
    checkpoint: Checkpoint, trusted_key: Ed25519PublicKey | None = None
) -> SignatureCheck:
    """Check a checkpoint's signature with a trusted key, or the embedded one.

    Args:
        checkpoint: The checkpoint to check.
        trusted_key: A public key obtained independently of the checkpoint.
            Without it the embedded key is used and the result is untrusted.

    Returns:
        A :class:`SignatureCheck` saying whether it verifies and whether the
        key was trusted.
    """
    trusted = trusted_key is not None
    if trusted_key is None:
        try:
            key = checkpoint.embedded_public_key()
        except InvalidInput as exc:
            return SignatureCheck(False, False, checkpoint.key_id, exc.message)
    else:
        key = trusted_key
    kid = key_id(key)
    if kid != checkpoint.key_id:
        return SignatureCheck(
            False,
            trusted,
            kid,
            f"checkpoint was signed by key {checkpoint.key_id}, not by key {kid}",
        )
    if not verify_checkpoint_signature(checkpoint, key):
        return SignatureCheck(False, trusted, kid, "signature does not match the checkpoint")
    if not trusted:
        return SignatureCheck(
            True,
            False,
            kid,
            "verified with the key embedded in the checkpoint only; pass the "
            "published public key to prove who signed it",
        )
    return SignatureCheck(True, True, kid)
