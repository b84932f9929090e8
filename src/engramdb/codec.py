"""Canonical encodings shared by every backend: JSON, hashes, ids, times.

The audit chain must hash the same bytes whichever backend stored an event,
and an export must re-import to identical hashes, so everything that feeds a
hash goes through :func:`canonical` here and nowhere else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from engramdb.errors import InvalidInput, InvalidMetadata
from engramdb.jsonshape import check_shape

__all__ = [
    "GENESIS_HASH",
    "canonical",
    "canonical_payload",
    "chain_hash",
    "check_chars",
    "commitment",
    "event_hash",
    "from_micros",
    "insert_payload",
    "json_dumps",
    "json_loads",
    "new_id",
    "new_ids",
    "random_bytes",
    "sha256_hex",
    "to_micros",
]

GENESIS_HASH = "0" * 64


# Built once: json.dumps with options builds a new encoder on every call, which
# cost as much as encoding a small event (two encodings per write).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)


# The C encoder ``_CANONICAL.encode`` builds on every call, made once (a tenth of
# encoding a memory's event). Without a marker table it does not detect a cycle
# itself: a cyclic value ends in RecursionError, refused below as json does.
_JSON_C: Any = json.encoder  # its C functions are not in the type stubs
_C_ENCODER = (None if _JSON_C.c_make_encoder is None else _JSON_C.c_make_encoder(
    None, _CANONICAL.default, _JSON_C.c_encode_basestring, None, ":", ",", True, False,
    False))


def canonical(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no spaces, UTF-8, no NaN.

    Raises:
        TypeError: a value JSON has no form for.
        ValueError: NaN or infinity, or a value nested in itself (or too deep).
    """
    if _C_ENCODER is None:  # pragma: no cover - CPython always has the C encoder
        return _CANONICAL.encode(obj).encode("utf-8")
    try:
        return "".join(_C_ENCODER(obj, 0)).encode("utf-8")
    except RecursionError as exc:
        raise ValueError("value is nested in itself or too deeply to encode") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def commitment(salt: bytes, payload: Any) -> str:
    """A hiding commitment to an event payload.

    The chain hashes this, never the payload: erasure deletes the payload and
    its random salt, after which the commitment reveals nothing about the
    plaintext, yet every chain hash still recomputes.
    """
    return hashlib.sha256(salt + canonical(payload)).hexdigest()


def chain_hash(prev_hash: str, envelope: dict[str, Any]) -> str:
    """``H(prev_hash || canonical(envelope))`` as hex."""
    body = _envelope_bytes(envelope)
    if body is None:
        body = canonical(envelope)
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


def event_hash(prev_hash: str, seq: int, tx: int, kind: str, namespace: str | None,
               actor: str, recorded_at: int, subject_ref: str | None, commitment: str) -> str:
    """:func:`chain_hash` of the envelope with these fields, without building it."""
    body = _envelope_text(actor, commitment, kind, namespace, recorded_at, seq, subject_ref, tx)
    if body is None:
        return chain_hash(prev_hash, {
            "seq": seq, "tx": tx, "kind": kind, "namespace": namespace, "actor": actor,
            "recorded_at": recorded_at, "subject_ref": subject_ref, "commitment": commitment})
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


_STR = _JSON_C.c_encode_basestring or json.encoder.py_encode_basestring


def _envelope_bytes(e: dict[str, Any]) -> bytes | None:
    """``canonical(e)`` of a log event's envelope, written directly (a third of the
    encoder's time: every write hashes one, ``verify`` every event); ``None`` for
    anything else, which the encoder writes."""
    if len(e) != 8:
        return None
    try:
        return _envelope_text(e["actor"], e["commitment"], e["kind"], e["namespace"],
                              e["recorded_at"], e["seq"], e["subject_ref"], e["tx"])
    except KeyError:
        return None


def _envelope_text(actor: Any, commit: Any, kind: Any, ns: Any, recorded_at: Any, seq: Any,
                   ref: Any, tx: Any) -> bytes | None:
    if not (type(actor) is str and type(commit) is str and type(kind) is str
            and (ns is None or type(ns) is str) and (ref is None or type(ref) is str)
            and type(recorded_at) is int and type(seq) is int and type(tx) is int):
        return None
    return (f'{{"actor":{_STR(actor)},"commitment":{_STR(commit)},"kind":{_STR(kind)},'
            f'"namespace":{"null" if ns is None else _STR(ns)},"recorded_at":{recorded_at},'
            f'"seq":{seq},"subject_ref":{"null" if ref is None else _STR(ref)},"tx":{tx}}}'
            ).encode()


# Per key order of a row: its keys sorted, each with its encoded name (insert_payload).
_ROW_PLANS: dict[tuple[Any, ...], tuple[tuple[str, str], ...] | None] = {}
_INT_REPR = int.__repr__
_FLOAT_REPR = float.__repr__


def _value_text(v: Any) -> str:
    """``canonical(v)`` as text; scalars written directly (most of a row's values)."""
    t = type(v)
    if t is str:
        return _STR(v)
    if v is None:
        return "null"
    if t is int:
        return _INT_REPR(v)
    if t is float and math.isfinite(v):
        return _FLOAT_REPR(v)
    if t is dict and not v:
        return "{}"
    return canonical(v).decode("utf-8")


_MEMORY_KEYS = frozenset((
    "author", "confidence", "expires_at", "id", "importance", "layer", "metadata", "namespace",
    "predicate", "recorded_at", "session", "source", "status", "subject", "text", "tx_from",
    "tx_to", "valid_from", "valid_to", "value", "version"))
_MEMORY_WIDTH = len(_MEMORY_KEYS)  # _memory_row_text reads each: a row this wide has no other


def _memory_row_text(r: dict[str, Any]) -> str | None:
    """``canonical(r)`` as text of a memory row whose values have their usual types (the
    keys in sorted order, written in one expression); ``None`` for any other."""
    author, conf, exp, mid, imp = r["author"], r["confidence"], r["expires_at"], r["id"], \
        r["importance"]
    layer, meta, ns, pred, rec = r["layer"], r["metadata"], r["namespace"], r["predicate"], \
        r["recorded_at"]
    sess, src, status, subj, text = r["session"], r["source"], r["status"], r["subject"], \
        r["text"]
    tx_from, tx_to, vf, vt, value, version = r["tx_from"], r["tx_to"], r["valid_from"], \
        r["valid_to"], r["value"], r["version"]
    if not (type(author) is str and type(mid) is str and type(layer) is str
            and type(ns) is str and type(status) is str and type(text) is str
            and type(conf) is float and type(imp) is float and type(meta) is dict
            and type(rec) is int and type(tx_from) is int and type(vf) is int
            and type(version) is int
            and (pred is None or type(pred) is str) and (sess is None or type(sess) is str)
            and (src is None or type(src) is str) and (subj is None or type(subj) is str)
            and (exp is None or type(exp) is int) and (tx_to is None or type(tx_to) is int)
            and (vt is None or type(vt) is int)
            and math.isfinite(conf) and math.isfinite(imp)):
        return None
    return (
        f'{{"author":{_STR(author)},"confidence":{_FLOAT_REPR(conf)},'
        f'"expires_at":{"null" if exp is None else _INT_REPR(exp)},"id":{_STR(mid)},'
        f'"importance":{_FLOAT_REPR(imp)},"layer":{_STR(layer)},'
        f'"metadata":{"{}" if not meta else canonical(meta).decode("utf-8")},'
        f'"namespace":{_STR(ns)},"predicate":{"null" if pred is None else _STR(pred)},'
        f'"recorded_at":{_INT_REPR(rec)},"session":{"null" if sess is None else _STR(sess)},'
        f'"source":{"null" if src is None else _STR(src)},"status":{_STR(status)},'
        f'"subject":{"null" if subj is None else _STR(subj)},"text":{_STR(text)},'
        f'"tx_from":{_INT_REPR(tx_from)},"tx_to":{"null" if tx_to is None else _INT_REPR(tx_to)},'
        f'"valid_from":{_INT_REPR(vf)},"valid_to":{"null" if vt is None else _INT_REPR(vt)},'
        f'"value":{"null" if value is None else canonical(value).decode("utf-8")},'
        f'"version":{_INT_REPR(version)}}}')


def canonical_payload(payload: Any) -> bytes:
    """``canonical(payload)`` of an event payload; one that only inserts one row (what
    a new memory logs) is written by :func:`insert_payload`."""
    if type(payload) is dict and len(payload) == 1:
        effects = payload.get("effects")
        if type(effects) is list and len(effects) == 1:
            e = effects[0]
            if (type(e) is dict and len(e) == 3 and e.get("op") == "insert"
                    and type(e.get("row")) is dict and type(e.get("table")) is str):
                return insert_payload(e["table"], e["row"])
    return canonical(payload)


def insert_payload(table: str, row: dict[str, Any]) -> bytes:
    """``canonical({"effects": [{"op": "insert", "table": table, "row": row}]})``:
    the payload of an event that inserts one row, written without the encoder's
    per-key work (a ``remember_many`` logs one per memory).

    Raises:
        TypeError, ValueError: as :func:`canonical` (a value JSON has no form for).
    """
    if len(row) == _MEMORY_WIDTH:
        try:
            text = _memory_row_text(row)  # None: a value of another type
        except KeyError:  # as many keys, other names
            text = None
        if text is not None:
            return f'{{"effects":[{{"op":"insert","row":{text},"table":{_STR(table)}}}]}}'.encode()
    order = tuple(row)
    plan = _ROW_PLANS.get(order)
    if plan is None and order not in _ROW_PLANS:
        plan = (tuple((k, _STR(k) + ":") for k in sorted(order))
                if all(type(k) is str for k in order) else None)
        if len(_ROW_PLANS) < 256:
            _ROW_PLANS[order] = plan
    if plan is None:
        return canonical({"effects": [{"op": "insert", "table": table, "row": row}]})
    body = ",".join([name + _value_text(row[k]) for k, name in plan])
    return f'{{"effects":[{{"op":"insert","row":{{{body}}},"table":{_STR(table)}}}]}}'.encode()


def json_dumps(obj: Any, *, what: str = "metadata") -> str:
    """Encode user JSON for storage, refusing what JSON cannot carry.

    Raises:
        InvalidMetadata: the value holds NaN/inf, non-string keys, or objects
            JSON has no form for (sets, bytes, custom classes).
    """
    try:
        return _CANONICAL.encode(obj)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMetadata(
            f"{what} must be JSON: strings, numbers, booleans, null, lists and objects "
            f"with string keys, nested a reasonable depth ({exc})",
            field=what,
        ) from exc


def json_loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# NUL cannot be stored by PostgreSQL (text or jsonb), and an unpaired UTF-16
# surrogate is not Unicode at all (it cannot be encoded as UTF-8): neither may
# enter the database through any backend, so both are refused at validation.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_chars(value: str, what: str, error: type[InvalidInput] = InvalidInput) -> str:
    """Refuse a string that no backend can store intact; return it unchanged.

    Raises:
        InvalidInput: (or ``error``) ``value`` holds a NUL character or an
            unpaired UTF-16 surrogate.
    """
    found = _UNSTORABLE.search(value)
    if found is None:
        return value
    if found.group() == "\x00":
        raise error(f"{what} contains a NUL character (\\x00), which the database cannot "
                    "store; remove it", field=what)
    raise error(f"{what} contains an unpaired UTF-16 surrogate (U+{ord(found.group()):04X}), "
                "which is not valid Unicode text; decode the input properly (e.g. with "
                "errors='replace')", field=what)


def check_json(obj: Any, *, what: str = "metadata") -> Any:
    """Round-trip ``obj`` through JSON, returning the plain JSON value.

    Raises:
        InvalidMetadata: what JSON cannot carry (NaN, sets, non-string keys, ...)
            or a string (key or value) holding NUL or an unpaired surrogate.
    """
    return checked_json(obj, what=what)[0]


def checked_json(obj: Any, *, what: str = "metadata") -> tuple[Any, str]:
    """:func:`check_json`'s value and its stored text (``json_dumps`` of the value:
    re-encoding what was decoded from the text gives the same text)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise InvalidMetadata(f"{what} must be a finite number", field=what)
    # Depth, width and size first: a hostile value must not reach the encoder.
    check_shape(obj, what=what)
    text = json_dumps(obj, what=what)
    # json.dumps turns 1, None and True keys into strings; refuse them instead
    # of storing something other than what the caller sent.
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_chars(item, what, InvalidMetadata)
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise InvalidMetadata(
                        f"{what} object keys must be strings, not {key!r}; convert keys "
                        "with str()",
                        field=what,
                    )
                check_chars(key, what, InvalidMetadata)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return json.loads(text), text


def to_micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _from_micros(value)


@functools.lru_cache(maxsize=4096)
def _from_micros(value: int) -> datetime:
    # Cached: the memories of one write share their transaction's time (a batch of
    # 2,000 converted it 6,000 times), and a datetime is immutable. One addition builds
    # the same datetime as fromtimestamp(...).replace(...) in half the time; out of
    # datetime's range that expression runs, to raise what it raised.
    try:
        return _EPOCH + timedelta(microseconds=value)
    except OverflowError:
        return datetime.fromtimestamp(value // 1_000_000, UTC).replace(
            microsecond=value % 1_000_000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_id_lock = threading.Lock()
_last_ms = 0
_seq = 0
# Random bytes read from the operating system 4 KiB at a time and handed out once each
# (:func:`random_bytes`): a read is a system call, and a single write took two (its
# id's bits, its salt and placeholders), several microseconds each in a VM.
_RANDOM_CHUNK = 4096
_rand_lock = threading.Lock()
_rand_buf = b""
_rand_at = 0


def _new_id_lock_in_child() -> None:
    global _id_lock, _rand_lock, _rand_buf, _rand_at
    _id_lock = threading.Lock()  # another parent thread may have held it at fork
    # The parent's unused random bytes are the parent's: a child that handed them
    # out too would repeat them (ids, salts, placeholders). It reads its own.
    _rand_lock = threading.Lock()
    _rand_buf, _rand_at = b"", 0


def random_bytes(n: int) -> bytes:
    """``n`` bytes from ``os.urandom``, read in chunks: none is ever handed out twice,
    in this process or in a child forked from it."""
    global _rand_buf, _rand_at
    if n > _RANDOM_CHUNK // 4:
        return os.urandom(n)
    with _rand_lock:
        at = _rand_at
        if at + n > len(_rand_buf):
            _rand_buf, at = os.urandom(_RANDOM_CHUNK), 0
        _rand_at = at + n
        return _rand_buf[at:at + n]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_id_lock_in_child)


def new_id() -> str:
    """A UUIDv7 string: time-ordered, unique across processes.

    Within one millisecond a 12-bit counter keeps ids from one process
    strictly increasing; 62 random bits separate processes.
    """
    return new_ids(1)[0]


def new_ids(n: int) -> list[str]:
    """``n`` :func:`new_id` values in increasing order, made at once (one lock, one
    read of random bytes: a batch of memories takes one id each)."""
    global _last_ms, _seq
    stamps: list[int] = []
    with _id_lock:
        for _ in range(n):
            ms = time.time_ns() // 1_000_000
            if ms <= _last_ms:
                _seq += 1
                if _seq > 0xFFF:
                    _last_ms += 1
                    _seq = 0
                ms = _last_ms
            else:
                _last_ms = ms
                _seq = 0
            stamps.append((ms << 16) | (0x7 << 12) | _seq)  # the id's high 64 bits
    # The low 64 bits: the variant (0b10) over 62 random bits, written from the hex of
    # the random bytes (its first digit keeps two random bits under the variant's).
    rand = random_bytes(8 * n).hex()
    out = []
    for i, stamp in enumerate(stamps):
        hi, lo = f"{stamp:016x}", rand[16 * i:16 * i + 16]
        out.append(f"{hi[:8]}-{hi[8:12]}-{hi[12:]}-{_VARIANT[lo[0]]}{lo[1:4]}-{lo[4:]}")
    return out


_VARIANT = {f"{d:x}": "89ab"[d & 3] for d in range(16)}  # 0b10 then the digit's low bits
