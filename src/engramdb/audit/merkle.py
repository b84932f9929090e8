"""RFC 9162 (Certificate Transparency v2) Merkle trees over the audit log.

This module owns the pure tree arithmetic: leaf and node hashing, the tree
head (``MTH``), inclusion proofs (``PATH``) and consistency proofs
(``PROOF``), and their verification exactly as RFC 9162 sections 2.1.1 to
2.1.4 define them. It never touches storage: callers pass the leaves.

Hashing is domain separated so that a leaf can never pass for an inner node::

    leaf_hash(d)  = SHA-256(0x00 || d)
    node(l, r)    = SHA-256(0x01 || l || r)
    MTH({})       = SHA-256("")
    MTH(D[n])     = node(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of 2 < n

Every function except :func:`leaf_hash` and :func:`hash_leaves` works on the
32-byte *leaf hashes*, not on the raw leaf data, so a log of a million events
is a list of a million digests and never re-hashed per proof. Verifiers never
raise on hostile input: a malformed or forged proof is simply ``False``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engramdb.errors import InvalidInput

__all__ = [
    "HASH_SIZE",
    "ConsistencyProof",
    "MerkleProof",
    "consistency_proof",
    "empty_root",
    "hash_leaves",
    "inclusion_proof",
    "leaf_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf's data: ``SHA-256(0x00 || data)``.

    Args:
        data: The leaf data. For the EngramDB audit log this is the event's
            32-byte chain hash (``bytes.fromhex(event.hash)``).

    Returns:
        The 32-byte leaf hash.
    """
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def hash_leaves(leaves: Iterable[bytes]) -> list[bytes]:
    """Hash every leaf in order; the input form the other functions expect.

    Args:
        leaves: The leaf data, in log order.

    Returns:
        One 32-byte leaf hash per leaf, in the same order.
    """
    prefix = _LEAF_PREFIX
    sha256 = hashlib.sha256
    return [sha256(prefix + bytes(d)).digest() for d in leaves]


def empty_root() -> bytes:
    """The root of the tree with no leaves, ``SHA-256("")`` per RFC 9162."""
    return _EMPTY_ROOT


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise InvalidInput(
                f"leaf hash at index {i} is not {HASH_SIZE} bytes; pass leaf hashes "
                "(from leaf_hash/hash_leaves), not raw leaf data or hex strings",
                index=i,
            )


def _root_unchecked(leaf_hashes: Sequence[bytes]) -> bytes:
    # Pairing level by level and carrying an odd last node up unchanged builds
    # exactly the RFC tree: its left subtrees are always perfect, so the odd
    # node at each level is the right-most, which MTH also leaves unpaired.
    n = len(leaf_hashes)
    if n == 0:
        return _EMPTY_ROOT
    level: Sequence[bytes] = leaf_hashes
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    while n > 1:
        nxt = [sha256(prefix + level[i] + level[i + 1]).digest() for i in range(0, n - 1, 2)]
        if n & 1:
            nxt.append(level[n - 1])
        level = nxt
        n = len(level)
    return bytes(level[0])


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree head ``MTH`` of a sequence of leaf hashes, in O(n).

    Args:
        leaf_hashes: 32-byte leaf hashes in log order (see :func:`hash_leaves`).

    Returns:
        The 32-byte root; ``SHA-256("")`` for an empty sequence.

    Raises:
        InvalidInput: an element is not a 32-byte digest.
    """
    _check_leaf_hashes(leaf_hashes)
    return _root_unchecked(leaf_hashes)


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_index(name: str, value: int, low: int, high: int, size: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"{name} must be an integer in [{low}, {high}] for a tree of {size} leaves, "
            f"got {value!r}",
            **{name: repr(value), "tree_size": size},
        )


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 9162 audit path ``PATH(index, D[n])`` for one leaf.

    The path is ordered from the leaf's sibling up to the root's child, as
    :func:`verify_inclusion` consumes it. Costs O(n) hashing.

    Args:
        leaf_hashes: 32-byte leaf hashes of the whole tree, in log order.
        index: Zero-based position of the leaf to prove.

    Returns:
        The sibling hashes, ``ceil(log2(n))`` or fewer of them; empty for a
        one-leaf tree.

    Raises:
        InvalidInput: ``index`` is outside ``[0, n)`` or a leaf hash is malformed.
    """
    n = len(leaf_hashes)
    if n == 0:
        raise InvalidInput("cannot prove inclusion in an empty tree", tree_size=0)
    _check_index("index", index, 0, n - 1, n)
    _check_leaf_hashes(leaf_hashes)
    # Walk down from the root, remembering the sibling subtree at each split;
    # the RFC lists them bottom-up, so reverse at the end.
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(_root_unchecked(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(_root_unchecked(leaf_hashes[lo : lo + k]))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def _is_digest(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof with the RFC 9162 section 2.1.3.2 algorithm.

    Args:
        leaf_hash: The 32-byte leaf hash claimed to be at ``index``.
        index: Zero-based leaf position claimed.
        tree_size: Number of leaves in the tree the root belongs to.
        proof: The audit path, as returned by :func:`inclusion_proof`.
        root: The trusted 32-byte root of a tree of ``tree_size`` leaves.

    Returns:
        ``True`` only if the path recomputes ``root`` from ``leaf_hash`` at
        exactly this ``index`` and ``tree_size`` with no element left over or
        missing; ``False`` for any malformed or forged input.

    Note:
        As in the RFC, ``tree_size`` is bound only through ``root``: take
        both from the same trusted checkpoint, never the size from the prover.
    """
    if not (_is_count(index) and _is_count(tree_size) and index < tree_size):
        return False
    if not (_is_digest(leaf_hash) and _is_digest(root)):
        return False
    if not all(_is_digest(p) for p in proof):
        return False
    fn, sn = index, tree_size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(bytes(p), r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, bytes(p))
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, bytes(root))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The RFC 9162 consistency proof ``PROOF(old_size, D[n])``.

    It shows that the tree of the first ``old_size`` leaves is a prefix of the
    tree of all ``n`` leaves. Costs O(n) hashing.

    Args:
        leaf_hashes: 32-byte leaf hashes of the newer (larger) tree.
        old_size: Size of the older tree, ``0 <= old_size <= n``.

    Returns:
        The proof hashes; empty when ``old_size`` is 0 or ``n`` (nothing to
        prove beyond the roots themselves).

    Raises:
        InvalidInput: ``old_size`` is out of range or a leaf hash is malformed.
    """
    n = len(leaf_hashes)
    _check_index("old_size", old_size, 0, n, n)
    _check_leaf_hashes(leaf_hashes)
    if old_size in (0, n):
        return []
    # SUBPROOF(m, D[lo:hi], b), unrolled: each step appends one sibling root.
    proof: list[bytes] = []
    lo, hi, m, complete = 0, n, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_root_unchecked(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(_root_unchecked(leaf_hashes[lo : lo + k]))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(_root_unchecked(leaf_hashes[lo:hi]))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof with the RFC 9162 section 2.1.4.2 algorithm.

    The RFC defines verification for ``0 < old_size < new_size``; the edge
    cases follow the only sound reading: equal sizes need an empty proof and
    equal roots, and an empty old tree (root ``SHA-256("")``) is a prefix of
    every tree with an empty proof.

    Args:
        old_size: Leaf count of the older tree.
        new_size: Leaf count of the newer tree.
        old_root: Trusted 32-byte root of the older tree.
        new_root: 32-byte root of the newer tree.
        proof: The proof, as returned by :func:`consistency_proof`.

    Returns:
        ``True`` only if ``proof`` shows the old tree is a prefix of the new
        one; ``False`` for any malformed or forged input.

    Note:
        Each size is bound only through its root: take ``old_size`` with
        ``old_root`` and ``new_size`` with ``new_root`` from trusted checkpoints.
    """
    if not (_is_count(old_size) and _is_count(new_size) and old_size <= new_size):
        return False
    if not (_is_digest(old_root) and _is_digest(new_root)):
        return False
    if not all(_is_digest(p) for p in proof):
        return False
    old_root, new_root = bytes(old_root), bytes(new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, _EMPTY_ROOT)
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = [bytes(p) for p in proof]
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def _hex_digest(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a hex string of a {HASH_SIZE}-byte hash")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid hex: {value!r}") from exc
    if len(raw) != HASH_SIZE:
        raise InvalidInput(f"{what} must be {HASH_SIZE * 2} hex characters, got {len(value)}")
    return raw


def _count_field(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if not _is_count(value):
        raise InvalidInput(f"{what} field {key!r} must be a non-negative integer, got {value!r}")
    assert isinstance(value, int)
    return value


def _require_mapping(data: object, what: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{what} must be a JSON object, got {type(data).__name__}")
    missing = sorted(keys - set(data))
    extra = sorted(set(data) - keys)
    if missing or extra:
        raise InvalidInput(
            f"{what} has missing fields {missing} and unexpected fields {extra}; "
            f"regenerate it with this version of EngramDB",
            missing=missing,
            unexpected=extra,
        )
    return data


def _hex_path(data: Mapping[str, Any], what: str) -> tuple[str, ...]:
    path = data.get("path")
    if not isinstance(path, list):
        raise InvalidInput(f"{what} field 'path' must be a list of hex hashes")
    return tuple(_hex_digest(p, f"{what} path[{i}]").hex() for i, p in enumerate(path))


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """An inclusion proof in printable form (hex), for the CLI and HTTP doors.

    Attributes:
        leaf_index: Zero-based position of the leaf.
        tree_size: Number of leaves of the tree ``root`` belongs to.
        leaf_hash: Hex of the 32-byte leaf hash.
        path: Hex of each audit path element, bottom-up.
        root: Hex of the tree root the proof leads to. Only meaningful once
            compared with a root the verifier trusts (e.g. a signed checkpoint).
    """

    leaf_index: int
    tree_size: int
    leaf_hash: str
    path: tuple[str, ...]
    root: str

    @classmethod
    def build(cls, leaf_hashes: Sequence[bytes], index: int) -> MerkleProof:
        """Prove the leaf at ``index`` of the tree over ``leaf_hashes``.

        Raises:
            InvalidInput: as :func:`inclusion_proof`.
        """
        path = inclusion_proof(leaf_hashes, index)
        return cls(
            leaf_index=index,
            tree_size=len(leaf_hashes),
            leaf_hash=bytes(leaf_hashes[index]).hex(),
            path=tuple(p.hex() for p in path),
            root=_root_unchecked(leaf_hashes).hex(),
        )

    def verify(self, trusted_root: bytes | str) -> bool:
        """Whether this proof is valid and leads to ``trusted_root``.

        Args:
            trusted_root: The root the verifier trusts, as bytes or hex.

        Returns:
            ``True`` if the proof's root equals ``trusted_root`` and the path
            verifies; ``False`` otherwise, including for malformed hex.
        """
        try:
            expected = (
                bytes.fromhex(trusted_root) if isinstance(trusted_root, str) else trusted_root
            )
            own_root = bytes.fromhex(self.root)
            leaf = bytes.fromhex(self.leaf_hash)
            path = [bytes.fromhex(p) for p in self.path]
        except (TypeError, ValueError):
            return False
        if not (_is_digest(expected) and hmac.compare_digest(own_root, bytes(expected))):
            return False
        return verify_inclusion(leaf, self.leaf_index, self.tree_size, path, own_root)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``leaf_index``, ``tree_size``, ``leaf_hash``, ``path``, ``root``."""
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash,
            "path": list(self.path),
            "root": self.root,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MerkleProof:
        """Rebuild a proof from :meth:`to_dict` output, checking its shape.

        Raises:
            InvalidInput: a field is missing, unexpected, or of the wrong form.
        """
        what = "inclusion proof"
        data = _require_mapping(
            data, what, {"leaf_index", "tree_size", "leaf_hash", "path", "root"}
        )
        return cls(
            leaf_index=_count_field(data, "leaf_index", what),
            tree_size=_count_field(data, "tree_size", what),
            leaf_hash=_hex_digest(data["leaf_hash"], f"{what} leaf_hash").hex(),
            path=_hex_path(data, what),
            root=_hex_digest(data["root"], f"{what} root").hex(),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """A consistency proof in printable form (hex), for the CLI and HTTP doors.

    Attributes:
        old_size: Leaf count of the older tree.
        new_size: Leaf count of the newer tree.
        old_root: Hex root of the older tree.
        new_root: Hex root of the newer tree.
        path: Hex of each proof element, in RFC order.
    """

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    path: tuple[str, ...]

    @classmethod
    def build(cls, leaf_hashes: Sequence[bytes], old_size: int) -> ConsistencyProof:
        """Prove the first ``old_size`` leaves form a prefix of ``leaf_hashes``.

        Raises:
            InvalidInput: as :func:`consistency_proof`.
        """
        path = consistency_proof(leaf_hashes, old_size)
        return cls(
            old_size=old_size,
            new_size=len(leaf_hashes),
            old_root=_root_unchecked(leaf_hashes[:old_size]).hex(),
            new_root=_root_unchecked(leaf_hashes).hex(),
            path=tuple(p.hex() for p in path),
        )

    def verify(self, trusted_old_root: bytes | str) -> bool:
        """Whether the proof is valid and starts from ``trusted_old_root``.

        The caller still has to decide whether to trust ``new_root`` (e.g.
        by checking a signed checkpoint for it).
        """
        try:
            expected = (
                bytes.fromhex(trusted_old_root)
                if isinstance(trusted_old_root, str)
                else trusted_old_root
            )
            old_root = bytes.fromhex(self.old_root)
            new_root = bytes.fromhex(self.new_root)
            path = [bytes.fromhex(p) for p in self.path]
        except (TypeError, ValueError):
            return False
        if not (_is_digest(expected) and hmac.compare_digest(old_root, bytes(expected))):
            return False
        return verify_consistency(self.old_size, self.new_size, old_root, new_root, path)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``old_size``, ``new_size``, ``old_root``, ``new_root``, ``path``."""
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root,
            "new_root": self.new_root,
            "path": list(self.path),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencyProof:
        """Rebuild a proof from :meth:`to_dict` output, checking its shape.

        Raises:
            InvalidInput: a field is missing, unexpected, or of the wrong form.
        """
        what = "consistency proof"
        data = _require_mapping(
            data, what, {"old_size", "new_size", "old_root", "new_root", "path"}
        )
        return cls(
            old_size=_count_field(data, "old_size", what),
            new_size=_count_field(data, "new_size", what),
            old_root=_hex_digest(data["old_root"], f"{what} old_root").hex(),
            new_root=_hex_digest(data["new_root"], f"{what} new_root").hex(),
            path=_hex_path(data, what),
        )
