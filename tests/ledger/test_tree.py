"""The log's stored tree against RFC 6962 itself: an independent
implementation of MTH, PATH and PROOF written straight from the RFC's
recursive definitions, the published test vectors, and property tests."""

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from services.ledger.tree import (
    TreeAppender,
    consistency_proof,
    inclusion_proof,
    root_at,
)
from shared.canonical import unb64
from shared.db import make_engine
from shared.merkle import verify_consistency, verify_inclusion

# RFC 6962 section 2.1, transcribed without looking at the service's code.


def rfc_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def rfc_largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return rfc_leaf(leaves[0])
    k = rfc_largest_power_below(n)
    return hashlib.sha256(b"\x01" + rfc_mth(leaves[:k]) + rfc_mth(leaves[k:])).digest()


def rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = rfc_largest_power_below(n)
    if m < k:
        return rfc_path(m, leaves[:k]) + [rfc_mth(leaves[k:])]
    return rfc_path(m - k, leaves[k:]) + [rfc_mth(leaves[:k])]


def rfc_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [rfc_mth(leaves)]
    k = rfc_largest_power_below(n)
    if m <= k:
        return rfc_subproof(m, leaves[:k], complete) + [rfc_mth(leaves[k:])]
    return rfc_subproof(m - k, leaves[k:], False) + [rfc_mth(leaves[:k])]


def rfc_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return rfc_subproof(m, leaves, True)


# Published vectors: the Certificate Transparency reference leaves and roots
# (certificate-transparency / transparency-dev merkle test data).

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
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [  # (index, size, path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY = [  # (old, size, proof)
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

TREE_SIZE = 300
LEAVES = [f"leaf {i}".encode() for i in range(TREE_SIZE)]


def stored_tree(url: str, leaves: list[bytes]) -> Session:
    """Appends leaves through the service's TreeAppender into a fresh database."""
    session = Session(make_engine(url))
    tree = TreeAppender(session, 0)
    for leaf in leaves:
        tree.append(rfc_leaf(leaf))
    tree.flush()
    session.commit()
    return session


@pytest.fixture(scope="module")
def ct_tree(databases):
    session = stored_tree(databases.url("ledger"), CT_LEAVES)
    yield session
    session.close()
    session.get_bind().dispose()


@pytest.fixture(scope="module")
def big_tree(databases):
    session = stored_tree(databases.url("ledger"), LEAVES)
    yield session
    session.close()
    session.get_bind().dispose()


def test_the_reference_implementation_reproduces_the_published_vectors():
    for size, root in enumerate(CT_ROOTS, start=1):
        assert rfc_mth(CT_LEAVES[:size]).hex() == root
    for index, size, path in CT_INCLUSION:
        assert [h.hex() for h in rfc_path(index, CT_LEAVES[:size])] == path
    for old, size, proof in CT_CONSISTENCY:
        assert [h.hex() for h in rfc_proof(old, CT_LEAVES[:size])] == proof


def test_stored_tree_roots_match_the_published_roots(ct_tree):
    assert root_at(ct_tree, 0).hex() == hashlib.sha256(b"").hexdigest()
    for size, root in enumerate(CT_ROOTS, start=1):
        assert root_at(ct_tree, size).hex() == root


def test_stored_tree_proofs_match_the_published_proofs(ct_tree):
    for index, size, path in CT_INCLUSION:
        assert [h.hex() for h in inclusion_proof(ct_tree, index, size)] == path
    for old, size, proof in CT_CONSISTENCY:
        assert [h.hex() for h in consistency_proof(ct_tree, old, size)] == proof


def test_every_inclusion_proof_of_small_trees_matches_the_rfc(big_tree):
    for size in range(1, 65):
        root = rfc_mth(LEAVES[:size])
        assert root_at(big_tree, size) == root
        for index in range(size):
            path = inclusion_proof(big_tree, index, size)
            assert path == rfc_path(index, LEAVES[:size])
            assert verify_inclusion(rfc_leaf(LEAVES[index]), index, size, path, root)


def test_every_tree_size_up_to_the_full_tree_matches_the_rfc(big_tree):
    """Each size 1..TREE_SIZE: its root, the inclusion of its first, middle
    and last leaves, and its consistency with sizes 1, size - 1 and every
    power of two below, all as the RFC's recursive definitions give them."""
    for size in range(1, TREE_SIZE + 1):
        leaves = LEAVES[:size]
        root = rfc_mth(leaves)
        assert root_at(big_tree, size) == root
        for index in {0, size // 2, size - 1}:
            path = inclusion_proof(big_tree, index, size)
            assert path == rfc_path(index, leaves)
            assert verify_inclusion(rfc_leaf(LEAVES[index]), index, size, path, root)
        olds = {1, size - 1, *(1 << k for k in range(size.bit_length()))}
        for old in sorted(m for m in olds if 0 < m <= size):
            proof = consistency_proof(big_tree, old, size)
            assert proof == rfc_proof(old, leaves)
            assert verify_consistency(old, size, rfc_mth(LEAVES[:old]), root, proof)


def _flip(hashes: list[bytes], position: int) -> list[bytes]:
    changed = list(hashes)
    changed[position] = bytes([changed[position][0] ^ 0x08]) + changed[position][1:]
    return changed


sizes_and_indices = st.integers(1, TREE_SIZE).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1))
)
size_pairs = st.integers(1, TREE_SIZE).flatmap(
    lambda n: st.tuples(st.integers(1, n), st.just(n))
)
quick = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@quick
@given(sizes_and_indices)
def test_inclusion_proofs_agree_with_the_rfc_and_reject_any_change(big_tree, case):
    size, index = case
    root = rfc_mth(LEAVES[:size])
    hashed = rfc_leaf(LEAVES[index])
    path = inclusion_proof(big_tree, index, size)

    assert path == rfc_path(index, LEAVES[:size])
    assert verify_inclusion(hashed, index, size, path, root)

    for position in range(len(path)):
        assert not verify_inclusion(hashed, index, size, _flip(path, position), root)
    if path:
        assert not verify_inclusion(hashed, index, size, path[:-1], root)
    assert not verify_inclusion(hashed, index, size, [*path, root], root)
    assert not verify_inclusion(rfc_leaf(b"other"), index, size, path, root)
    assert not verify_inclusion(hashed, index, size, path, rfc_leaf(b"root"))
    if size > 1:
        other = (index + 1) % size
        assert not verify_inclusion(hashed, other, size, path, root)
    for other_size in {size - 1, size + 1} - {0}:
        if index < other_size <= TREE_SIZE:
            other_root = rfc_mth(LEAVES[:other_size])
            assert not verify_inclusion(hashed, index, other_size, path, other_root)


@quick
@given(size_pairs)
def test_consistency_proofs_agree_with_the_rfc_and_reject_any_change(big_tree, pair):
    old, size = pair
    old_root, new_root = rfc_mth(LEAVES[:old]), rfc_mth(LEAVES[:size])
    proof = consistency_proof(big_tree, old, size)

    assert proof == rfc_proof(old, LEAVES[:size])
    assert verify_consistency(old, size, old_root, new_root, proof)
    if old == size:
        assert not verify_consistency(old, size, old_root, rfc_leaf(b"x"), proof)
        return

    for position in range(len(proof)):
        assert not verify_consistency(
            old, size, old_root, new_root, _flip(proof, position)
        )
    assert not verify_consistency(old, size, old_root, new_root, proof[:-1])
    assert not verify_consistency(old, size, old_root, new_root, [*proof, new_root])
    assert not verify_consistency(old, size, new_root, old_root, proof)
    assert not verify_consistency(old, size, rfc_leaf(b"x"), new_root, proof)
    assert not verify_consistency(old, size, old_root, rfc_leaf(b"x"), proof)
    if old > 1:
        earlier = rfc_mth(LEAVES[: old - 1])
        assert not verify_consistency(old - 1, size, earlier, new_root, proof)
    if size < TREE_SIZE:
        later = rfc_mth(LEAVES[: size + 1])
        assert not verify_consistency(old, size + 1, old_root, later, proof)


def test_served_checkpoints_and_proofs_agree_with_the_rfc(client, chain_for):
    for batch_id in ("B1", "B2"):
        chain_for(batch_id).complete()
    size = int(client.get("/v1/checkpoint").text.split("\n")[1])
    rows = client.get("/v1/entries", params={"start": 0, "end": size}).json()
    leaves = [unb64(row["leaf"]) for row in rows["entries"]]
    checkpoints = client.get("/v1/checkpoints").json()["checkpoints"]
    assert [c["size"] for c in checkpoints] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12]

    for checkpoint in checkpoints:
        n = checkpoint["size"]
        assert unb64(checkpoint["root"]) == rfc_mth(leaves[:n])
        for index in range(n):
            served = client.get(
                "/v1/proof/inclusion", params={"index": index, "size": n}
            ).json()
            assert [unb64(h) for h in served["hashes"]] == rfc_path(index, leaves[:n])
        for old in range(1, n + 1):
            served = client.get(
                "/v1/proof/consistency", params={"old": old, "size": n}
            ).json()
            assert [unb64(h) for h in served["hashes"]] == rfc_proof(old, leaves[:n])
