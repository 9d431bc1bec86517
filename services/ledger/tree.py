"""The log's Merkle tree in the database: perfect-subtree hashes stored as
(level, index) nodes, appended leaf by leaf and read back for proofs."""

from collections.abc import Iterable

from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session

from services.ledger.models import Node as NodeRow
from shared.db import insert_rows
from shared.merkle import (
    EMPTY_ROOT,
    Node,
    Range,
    compact_range,
    consistency_ranges,
    fold_right,
    inclusion_ranges,
    new_nodes_after_append,
    node_hash,
    perfect_nodes,
)
from shared.problems import Problem


class LogDamaged(Problem):
    """The operator's storage no longer matches what the log signed: the log
    serves what it can but signs nothing more until it is repaired."""

    status, slug, title = 503, "log-damaged", "The log's storage is damaged"


# On PostgreSQL the wanted nodes travel as two arrays: one statement text
# whatever their number, which the server plans once and reuses.
NODES_BY_ARRAYS = text(
    'SELECT n.level, n."index", n.hash FROM nodes AS n '
    "JOIN unnest(CAST(:levels AS integer[]), CAST(:indexes AS bigint[])) "
    'AS w(level, idx) ON n.level = w.level AND n."index" = w.idx'
)


def load_nodes(session: Session, nodes: Iterable[Node]) -> dict[Node, bytes]:
    """Fetches the hashes of the given nodes in one query."""
    wanted = sorted(set(nodes))
    if not wanted:
        return {}
    found = {(row.level, row.index): row.hash for row in _node_rows(session, wanted)}
    if len(found) != len(wanted):
        lost = [node for node in wanted if node not in found]
        raise LogDamaged(f"Tree nodes {lost[:5]} are missing from storage.")
    return found


def _node_rows(session: Session, wanted: list[Node]):
    if session.get_bind().dialect.name == "postgresql":
        levels, indexes = zip(*wanted, strict=True)
        arrays = {"levels": list(levels), "indexes": list(indexes)}
        return session.execute(NODES_BY_ARRAYS, arrays)
    return session.execute(
        select(NodeRow.level, NodeRow.index, NodeRow.hash).where(
            tuple_(NodeRow.level, NodeRow.index).in_(wanted)
        )
    )


class TreeAppender:
    """Appends leaf hashes after the tree's current size, keeping only the
    compact range (the right frontier) in memory and buffering new nodes."""

    def __init__(self, session: Session, size: int) -> None:
        self.session = session
        self.size = size
        self.frontier = load_nodes(session, compact_range(size))
        self.pending: list[dict] = []

    def append(self, leaf_hash: bytes) -> int:
        index = self.size
        self.frontier[(0, index)] = leaf_hash
        self.pending.append({"level": 0, "index": index, "hash": leaf_hash})
        for level, position in new_nodes_after_append(index):
            left = self.frontier[(level - 1, 2 * position)]
            right = self.frontier[(level - 1, 2 * position + 1)]
            value = node_hash(left, right)
            self.frontier[(level, position)] = value
            self.pending.append({"level": level, "index": position, "hash": value})
        self.size += 1
        keep = set(compact_range(self.size))
        self.frontier = {node: h for node, h in self.frontier.items() if node in keep}
        return index

    def root(self) -> bytes:
        if self.size == 0:
            return EMPTY_ROOT
        return fold_right([self.frontier[node] for node in compact_range(self.size)])

    def flush(self) -> None:
        """Writes the buffered nodes in the caller's transaction."""
        if self.pending:
            insert_rows(self.session, NodeRow.__table__, self.pending)
            self.pending = []


def _range_hashes(session: Session, ranges: list[Range]) -> list[bytes]:
    decomposed = [perfect_nodes(start, end) for start, end in ranges]
    found = load_nodes(session, [node for nodes in decomposed for node in nodes])
    return [fold_right([found[node] for node in nodes]) for nodes in decomposed]


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) from O(log n) stored nodes."""
    return _range_hashes(session, inclusion_ranges(index, size))


def consistency_proof(session: Session, old: int, size: int) -> list[bytes]:
    """PROOF(old, D[0:size]) from O(log n) stored nodes."""
    if old == size:
        return []
    return _range_hashes(session, consistency_ranges(old, size))


def root_at(session: Session, size: int) -> bytes:
    """MTH(D[0:size]) from the stored compact range of that size."""
    if size == 0:
        return EMPTY_ROOT
    return _range_hashes(session, [(0, size)])[0]
