"""RFC 9162 Merkle trees: roots, inclusion and consistency proofs, and forgeries.

The reference below is written straight from the RFC's recursive definitions
(MTH, PATH, SUBPROOF) and shares no code with ``engramdb.audit.merkle``; the
published Certificate Transparency vectors pin both to the standard.
"""

from __future__ import annotations

import hashlib
import time
from functools import cache

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engramdb.audit import merkle
from engramdb.audit.merkle import (
    ConsistencyProof,
    MerkleProof,
    consistency_proof,
    hash_leaves,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from engramdb.errors import InvalidInput

# --------------------------------------------------------------- reference


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """Largest power of two strictly less than n (RFC 9162 2.1.1), by counting."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + data[0])
    k = _k(n)
    return _sha(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:]))


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def ref_subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [ref_mth(data)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, data[:k], complete), ref_mth(data[k:])]
    return [*ref_subproof(m - k, data[k:], False), ref_mth(data[:k])]


def ref_proof(m: int, data: list[bytes]) -> list[bytes]:
    return ref_subproof(m, data, True)


@cache
def tree(n: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]]:
    """Leaf data, leaf hashes and the reference root of every prefix, for n leaves."""
    data = tuple(b"event-%d" % i for i in range(n))
    hashes = tuple(hash_leaves(data))
    roots = tuple(ref_mth(list(data[:size])) for size in range(n + 1))
    return data, hashes, roots


# --------------------------------------------------------------- vectors

# Certificate Transparency reference leaves and tree heads for sizes 0..8
# (transparency-dev/merkle testonly; identical in RFC 6962 and RFC 9162).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
CT_CONSISTENCY = [
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def test_roots_match_the_published_ct_vectors() -> None:
    hashes = hash_leaves(CT_LEAVES)
    for size, expected in enumerate(CT_ROOTS):
        assert root(hashes[:size]).hex() == expected, size
        assert ref_mth(CT_LEAVES[:size]).hex() == expected, size


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root([]) == merkle.empty_root() == hashlib.sha256(b"").digest()


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_inclusion_proofs_match_the_published_ct_vectors(
    index: int, size: int, path: list[str]
) -> None:
    hashes = hash_leaves(CT_LEAVES[:size])
    assert [p.hex() for p in inclusion_proof(hashes, index)] == path
    proof = [bytes.fromhex(p) for p in path]
    assert verify_inclusion(hashes[index], index, size, proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_published_ct_vectors(
    old: int, new: int, path: list[str]
) -> None:
    hashes = hash_leaves(CT_LEAVES[:new])
    assert [p.hex() for p in consistency_proof(hashes, old)] == path
    proof = [bytes.fromhex(p) for p in path]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)


def test_leaf_hash_is_domain_separated_from_nodes() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(b"a") == _sha(b"\x00a")
    # A leaf whose data is two child hashes must not hash like their parent.
    assert leaf_hash(a + b) != root([a, b])


# --------------------------------------------------------------- exhaustive small trees


def test_every_root_proof_and_consistency_proof_matches_the_rfc_up_to_64_leaves() -> None:
    for n in range(1, 65):
        data, hashes, roots = tree(n)
        assert root(hashes) == roots[n]
        for i in range(n):
            path = inclusion_proof(hashes, i)
            assert path == ref_path(i, list(data)), (n, i)
            assert verify_inclusion(hashes[i], i, n, path, roots[n]), (n, i)
        for m in range(1, n + 1):
            proof = consistency_proof(hashes, m)
            assert proof == (ref_proof(m, list(data)) if m < n else []), (m, n)
            assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)


@given(st.lists(st.binary(max_size=40), max_size=300))
@settings(max_examples=60, deadline=None)
def test_root_of_arbitrary_leaves_matches_the_rfc_definition(data: list[bytes]) -> None:
    assert root(hash_leaves(data)) == ref_mth(data)


# --------------------------------------------------------------- inclusion properties

sizes = st.integers(min_value=1, max_value=300)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(sizes, st.data())
@SETTINGS
def test_every_inclusion_proof_verifies_and_equals_the_rfc_path(
    n: int, data: st.DataObject
) -> None:
    leaves, hashes, roots = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    path = inclusion_proof(hashes, i)
    assert path == ref_path(i, list(leaves))
    assert verify_inclusion(hashes[i], i, n, path, roots[n])
    assert MerkleProof.build(hashes, i).verify(roots[n])


@given(sizes, st.data())
@SETTINGS
def test_inclusion_proof_with_a_flipped_bit_is_rejected(n: int, data: st.DataObject) -> None:
    _, hashes, roots = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    path = inclusion_proof(hashes, i)
    assume(path)
    j = data.draw(st.integers(0, len(path) - 1), label="element")
    bit = data.draw(st.integers(0, 255), label="bit")
    forged = list(path)
    element = bytearray(forged[j])
    element[bit // 8] ^= 1 << (bit % 8)
    forged[j] = bytes(element)
    assert not verify_inclusion(hashes[i], i, n, forged, roots[n])


@given(sizes, st.data())
@SETTINGS
def test_inclusion_proof_at_another_index_is_rejected(n: int, data: st.DataObject) -> None:
    _, hashes, roots = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    j = data.draw(st.integers(-3, n + 3).filter(lambda j: j != i), label="claimed")
    path = inclusion_proof(hashes, i)
    assert not verify_inclusion(hashes[i], j, n, path, roots[n])


@given(sizes, st.data())
@SETTINGS
def test_proof_for_another_leaf_is_rejected(n: int, data: st.DataObject) -> None:
    assume(n > 1)
    _, hashes, roots = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
    # Leaf j claimed at i with i's path, and i's path passed off as j's.
    assert not verify_inclusion(hashes[j], i, n, inclusion_proof(hashes, i), roots[n])
    assert not verify_inclusion(hashes[j], j, n, inclusion_proof(hashes, i), roots[n])


@given(sizes, st.data())
@SETTINGS
def test_proof_from_another_tree_size_is_rejected(n: int, data: st.DataObject) -> None:
    _, hashes, roots = tree(301)
    other = data.draw(st.integers(1, 301).filter(lambda m: m != n), label="other size")
    i = data.draw(st.integers(0, min(n, other) - 1), label="index")
    path = inclusion_proof(hashes[:n], i)
    # The verifier's trusted (size, root) pair belongs to the other tree.
    assert not verify_inclusion(hashes[i], i, other, path, roots[other])
    # A size whose audit path has another length fails against any root.
    if len(ref_path(i, [b""] * other)) != len(path):
        assert not verify_inclusion(hashes[i], i, other, path, roots[n])


@given(sizes, st.data())
@SETTINGS
def test_truncated_or_extended_inclusion_proof_is_rejected(n: int, data: st.DataObject) -> None:
    _, hashes, roots = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    path = inclusion_proof(hashes, i)
    extra = data.draw(st.sampled_from([roots[n], hashes[i], _sha(b"x")]), label="extra")
    assert not verify_inclusion(hashes[i], i, n, [*path, extra], roots[n])
    assert not verify_inclusion(hashes[i], i, n, [extra, *path], roots[n])
    if path:
        assert not verify_inclusion(hashes[i], i, n, path[:-1], roots[n])
        assert not verify_inclusion(hashes[i], i, n, path[1:], roots[n])


@given(sizes, st.data())
@SETTINGS
def test_swapped_siblings_are_rejected(n: int, data: st.DataObject) -> None:
    _, hashes, roots = tree(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    path = inclusion_proof(hashes, i)
    assume(len(path) >= 2)
    a = data.draw(st.integers(0, len(path) - 2), label="swap at")
    swapped = list(path)
    swapped[a], swapped[a + 1] = swapped[a + 1], swapped[a]
    assert not verify_inclusion(hashes[i], i, n, swapped, roots[n])


def test_malformed_inclusion_inputs_are_rejected_not_raised() -> None:
    _, hashes, roots = tree(5)
    path = inclusion_proof(hashes, 2)
    good = (hashes[2], 2, 5, path, roots[5])
    assert verify_inclusion(*good)
    assert not verify_inclusion(hashes[2], 5, 5, path, roots[5])  # index == size
    assert not verify_inclusion(hashes[2], 2, 0, [], roots[5])
    assert not verify_inclusion(hashes[2], True, 5, path, roots[5])  # bool is an int subtype
    assert not verify_inclusion(hashes[2][:31], 2, 5, path, roots[5])
    assert not verify_inclusion(hashes[2], 2, 5, [path[0][:31], *path[1:]], roots[5])
    assert not verify_inclusion(hashes[2], 2, 5, [p.hex() for p in path], roots[5])  # type: ignore[misc]
    assert not verify_inclusion(hashes[2], 2, 5, path, roots[5].hex())  # type: ignore[arg-type]


def test_single_leaf_tree_has_an_empty_path() -> None:
    _, hashes, roots = tree(1)
    assert inclusion_proof(hashes, 0) == []
    assert roots[1] == hashes[0]
    assert verify_inclusion(hashes[0], 0, 1, [], roots[1])
    assert not verify_inclusion(hashes[0], 0, 1, [hashes[0]], roots[1])


@pytest.mark.parametrize(("n", "index"), [(0, 0), (3, 3), (3, -1), (3, True)])
def test_inclusion_proof_of_a_missing_leaf_is_invalid_input(n: int, index: int) -> None:
    with pytest.raises(InvalidInput):
        inclusion_proof(tree(n)[1], index)


@pytest.mark.parametrize("bad", [b"short", "ab" * 32, b"\x00" * 33])
def test_root_refuses_anything_but_32_byte_leaf_hashes(bad: object) -> None:
    with pytest.raises(InvalidInput, match="leaf hash at index 1"):
        root([leaf_hash(b"a"), bad, leaf_hash(b"c")])  # type: ignore[list-item]


# --------------------------------------------------------------- consistency properties


def _pair(data: st.DataObject, n: int) -> int:
    return data.draw(st.integers(1, n - 1), label="old size")


@given(sizes, st.data())
@SETTINGS
def test_every_consistency_proof_verifies_and_equals_the_rfc_proof(
    n: int, data: st.DataObject
) -> None:
    assume(n > 1)
    leaves, hashes, roots = tree(n)
    m = _pair(data, n)
    proof = consistency_proof(hashes, m)
    assert proof == ref_proof(m, list(leaves))
    assert verify_consistency(m, n, roots[m], roots[n], proof)
    assert ConsistencyProof.build(hashes, m).verify(roots[m])


@given(sizes, st.data())
@SETTINGS
def test_forged_consistency_proofs_are_rejected(n: int, data: st.DataObject) -> None:
    assume(n > 1)
    _, hashes, roots = tree(n)
    m = _pair(data, n)
    proof = consistency_proof(hashes, m)

    j = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, 255), label="bit")
    flipped = list(proof)
    element = bytearray(flipped[j])
    element[bit // 8] ^= 1 << (bit % 8)
    flipped[j] = bytes(element)
    assert not verify_consistency(m, n, roots[m], roots[n], flipped)

    assert not verify_consistency(m, n, roots[m], roots[n], proof[:-1])
    assert not verify_consistency(m, n, roots[m], roots[n], proof[1:])
    assert not verify_consistency(m, n, roots[m], roots[n], [*proof, roots[m]])
    assert not verify_consistency(m, n, roots[m], roots[n], [roots[m], *proof])

    other = data.draw(st.integers(1, n).filter(lambda o: o != m), label="other old size")
    assert not verify_consistency(other, n, roots[other], roots[n], proof)
    assert not verify_consistency(m, n, roots[m - 1], roots[n], proof)
    assert not verify_consistency(m, n, roots[m], roots[n - 1], proof)
    assert not verify_consistency(n, m, roots[n], roots[m], proof)

    # A new size whose proof has another shape fails even against the true root.
    claimed = data.draw(st.integers(m + 1, n + 8).filter(lambda c: c != n), label="claimed")
    if len(ref_proof(m, [b""] * claimed)) != len(proof):
        assert not verify_consistency(m, claimed, roots[m], roots[n], proof)


@given(sizes, st.data())
@SETTINGS
def test_rewriting_history_breaks_consistency(n: int, data: st.DataObject) -> None:
    """A log whose first m events were altered cannot prove it extends the old head."""
    assume(n > 1)
    _, hashes, roots = tree(n)
    m = _pair(data, n)
    k = data.draw(st.integers(0, m - 1), label="rewritten event")
    rewritten = list(hashes)
    rewritten[k] = leaf_hash(b"rewritten")
    proof = consistency_proof(rewritten, m)
    assert not verify_consistency(m, n, roots[m], root(rewritten), proof)


def test_consistency_edge_sizes() -> None:
    _, hashes, roots = tree(7)
    assert consistency_proof(hashes, 0) == []
    assert consistency_proof(hashes, 7) == []
    assert verify_consistency(0, 7, merkle.empty_root(), roots[7], [])
    assert not verify_consistency(0, 7, roots[1], roots[7], [])
    assert not verify_consistency(0, 7, merkle.empty_root(), roots[7], [roots[7]])
    assert verify_consistency(7, 7, roots[7], roots[7], [])
    assert not verify_consistency(7, 7, roots[7], roots[6], [])
    assert not verify_consistency(7, 7, roots[7], roots[7], [roots[7]])
    assert not verify_consistency(3, 7, roots[3], roots[7], [])
    assert not verify_consistency(-1, 7, roots[3], roots[7], [])
    with pytest.raises(InvalidInput):
        consistency_proof(hashes, 8)
    with pytest.raises(InvalidInput):
        consistency_proof(hashes, -1)


# --------------------------------------------------------------- printable proofs


def test_merkle_proof_round_trips_through_json_form_and_checks_the_trusted_root() -> None:
    _, hashes, roots = tree(11)
    proof = MerkleProof.build(hashes, 6)
    again = MerkleProof.from_dict(proof.to_dict())
    assert again == proof
    assert again.verify(roots[11].hex())
    assert not again.verify(roots[10])
    assert not again.verify("zz")
    forged = MerkleProof.from_dict({**proof.to_dict(), "leaf_index": 5})
    assert not forged.verify(roots[11])


def test_consistency_proof_round_trips_through_json_form() -> None:
    _, hashes, roots = tree(11)
    proof = ConsistencyProof.build(hashes, 4)
    assert proof.old_root == roots[4].hex()
    assert proof.new_root == roots[11].hex()
    again = ConsistencyProof.from_dict(proof.to_dict())
    assert again == proof
    assert again.verify(roots[4])
    assert not again.verify(roots[5])


@pytest.mark.parametrize(
    "change",
    [
        {"leaf_index": -1},
        {"tree_size": "11"},
        {"tree_size": True},
        {"leaf_hash": "00"},
        {"root": "not hex"},
        {"path": "abc"},
        {"path": ["00" * 31]},
        {"extra": 1},
    ],
)
def test_malformed_merkle_proof_dict_is_invalid_input(change: dict[str, object]) -> None:
    _, hashes, _ = tree(11)
    with pytest.raises(InvalidInput):
        MerkleProof.from_dict({**MerkleProof.build(hashes, 6).to_dict(), **change})


def test_missing_field_or_non_object_is_invalid_input() -> None:
    _, hashes, _ = tree(11)
    body = ConsistencyProof.build(hashes, 4).to_dict()
    del body["path"]
    with pytest.raises(InvalidInput, match="missing fields"):
        ConsistencyProof.from_dict(body)
    with pytest.raises(InvalidInput):
        MerkleProof.from_dict([1, 2])  # type: ignore[arg-type]


# --------------------------------------------------------------- scale


@pytest.mark.slow
def test_root_of_a_million_leaves_is_fast_and_proofs_still_verify() -> None:
    hashes = hash_leaves(i.to_bytes(8, "big") for i in range(1_000_000))
    started = time.perf_counter()
    top = root(hashes)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"root of 1M leaves took {elapsed:.1f}s"
    index = 777_777
    path = inclusion_proof(hashes, index)
    assert len(path) == 20
    assert verify_inclusion(hashes[index], index, len(hashes), path, top)
    old = 999_999
    proof = consistency_proof(hashes, old)
    assert verify_consistency(old, len(hashes), root(hashes[:old]), top, proof)
