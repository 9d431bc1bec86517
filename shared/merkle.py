"""RFC 6962 / RFC 9162 Merkle tree hashing, proof shapes and proof checks.

Trees are described by half-open leaf ranges [start, end). A range is
"perfect" when its size is a power of two and its start is a multiple of
that size; those are the subtrees a log stores as (level, index) nodes.
Proof generation here returns the ranges whose hashes make up a proof, so a
store can fetch the O(log n) perfect nodes behind them in one query.
"""

import hashlib
from collections.abc import Callable, Iterable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]
Node = tuple[int, int]


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """Largest power of two strictly below size (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """Ranges whose hashes form PATH(index, D[0:size]), leaf to root."""
    if not 0 <= index < size:
        raise ValueError("index must be below size")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start = start + k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, size: int) -> list[Range]:
    """Ranges whose hashes form PROOF(old, D[0:size]) as in RFC 6962 2.1.2."""
    if not 0 < old <= size:
        raise ValueError("need 0 < old <= size")
    ranges: list[Range] = []
    start, end, complete = 0, size, True
    while True:
        n, m = end - start, old - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, complete = start + k, False
    ranges.reverse()
    return ranges


def perfect_nodes(start: int, end: int) -> list[Node]:
    """Decomposes a proof range into perfect subtrees, left to right."""
    nodes: list[Node] = []
    while start < end:
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            nodes.append((size.bit_length() - 1, start >> (size.bit_length() - 1)))
            break
        k = split_point(size)
        level = k.bit_length() - 1
        nodes.append((level, start >> level))
        start += k
    return nodes


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combines perfect subtree hashes (left to right) into their tree's root."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def range_hash(start: int, end: int, lookup: Callable[[Node], bytes]) -> bytes:
    return fold_right([lookup(node) for node in perfect_nodes(start, end)])


def compact_range(size: int) -> list[Node]:
    """The perfect subtrees that cover [0, size), largest first."""
    return perfect_nodes(0, size) if size else []


def new_nodes_after_append(size: int) -> list[Node]:
    """Perfect nodes above level 0 completed by appending leaf number size."""
    nodes = []
    level, index = 0, size
    while index % 2 == 1:
        level, index = level + 1, index // 2
        nodes.append((level, index))
    return nodes


class StreamingRoot:
    """Computes MTH over a stream of leaf hashes in O(log n) memory."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    def push(self, hashed_leaf: bytes) -> None:
        height, value = 0, hashed_leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            height, value = height + 1, node_hash(left, value)
        self._stack.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        return fold_right([value for _, value in self._stack])


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    stream = StreamingRoot()
    for value in leaf_hashes:
        stream.push(value)
    return stream.root()


def _shift_until_set(fn: int, sn: int) -> tuple[int, int]:
    while fn & 1 == 0 and fn != 0:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def verify_inclusion(
    hashed_leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: checks PATH(index, D[0:size]) against root."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, hashed_leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_until_set(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: checks PROOF(old, D[0:size]) between two roots."""
    if old < 0 or old > size:
        return False
    if old == size:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            fn, sn = _shift_until_set(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0
