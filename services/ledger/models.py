"""Tables of the ledger: the log's leaves, its perfect-subtree hashes, its
head, its signed checkpoints, party keys and batch seal state."""

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HEAD_ID = 1


class Base(DeclarativeBase):
    pass


class LogHead(Base):
    """The single row appenders lock: the tree's current size and root."""

    __tablename__ = "log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Entry(Base):
    """One leaf: the exact canonical bytes that were hashed, and its hash."""

    __tablename__ = "entries"

    index: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    leaf: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    batch_id: Mapped[str | None] = mapped_column(String(200), index=True)
    idempotency_key: Mapped[str] = mapped_column(
        String(300), nullable=False, unique=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Node(Base):
    """The hash of the perfect subtree of 2**level leaves starting at
    index * 2**level; level 0 holds the leaf hashes."""

    __tablename__ = "nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    index: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)


class Checkpoint(Base):
    """A signed checkpoint; the size is the key, so one size has one root."""

    __tablename__ = "checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PartyKey(Base):
    """An Ed25519 key a party signs statements with, and what it may sign."""

    __tablename__ = "party_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64), nullable=False)
    party_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    party_id: Mapped[str] = mapped_column(String(200), nullable=False)
    kinds: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    # The log size when the key was revoked: entries below it stay valid.
    revoked_at_size: Mapped[int | None] = mapped_column(BigInteger)
    # For the ledger's own keys: the log size from which the key signs.
    active_from_size: Mapped[int | None] = mapped_column(BigInteger)


class Batch(Base):
    """Seal state of a batch: the seal's index, or why sealing was refused."""

    __tablename__ = "batches"

    batch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seal_index: Mapped[int | None] = mapped_column(BigInteger)
    refusal_rule: Mapped[str | None] = mapped_column(String(64))
    refusal_detail: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
