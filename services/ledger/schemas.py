"""Request and response bodies of the ledger's API."""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Base64 = Annotated[str, Field(max_length=200)]
# Free text shown to auditors: printable, no control characters.
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]+$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignatureIn(Strict):
    key_id: Annotated[str, Field(min_length=1, max_length=64)]
    signature: Base64


class EntryIn(Strict):
    """A signed statement: what happened, and the signatures over it."""

    statement: dict[str, Any]
    signatures: Annotated[list[SignatureIn], Field(min_length=1, max_length=16)]


class AppendOut(BaseModel):
    index: int
    leaf_hash: str
    size: int


class BatchItemIn(Strict):
    """One entry of a batch append, with its own idempotency key."""

    key: Annotated[str, Field(min_length=1, max_length=200)]
    entry: EntryIn


class EntryBatchIn(Strict):
    items: Annotated[list[BatchItemIn], Field(min_length=1)]


class BatchItemOut(BaseModel):
    """201 appended, 200 replayed, or a problem's status with the problem."""

    key: str
    status: int
    index: int | None = None
    leaf_hash: str | None = None
    size: int | None = None
    problem: dict[str, Any] | None = None


class EntryBatchOut(BaseModel):
    results: list[BatchItemOut]


class KeyIn(Strict):
    public_key: Base64
    party_kind: Annotated[str, Field(max_length=32)]
    party_id: Annotated[str, Field(min_length=1, max_length=200, pattern=PLAIN_TEXT)]
    kinds: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=16)]


class KeyOut(BaseModel):
    key_id: str
    public_key: str
    party_kind: str
    party_id: str
    kinds: list[str]
    revoked_at: str | None
    revoke_reason: str | None
    revoked_at_size: int | None = None


class RevokeIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=1000, pattern=PLAIN_TEXT)]


class EntryOut(BaseModel):
    index: int
    leaf: str
    leaf_hash: str
    entry: dict[str, Any] | None


class RawEntry(BaseModel):
    index: int
    leaf: str
    leaf_hash: str


class EntryRangeOut(BaseModel):
    start: int
    end: int
    entries: list[RawEntry]


class InclusionOut(BaseModel):
    index: int
    size: int
    hashes: list[str]


class ConsistencyOut(BaseModel):
    old: int
    size: int
    hashes: list[str]


class CheckpointOut(BaseModel):
    size: int
    root: str
    note: str


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointOut]


class BatchEntryOut(BaseModel):
    index: int
    kind: str
    leaf_hash: str


class RefusalOut(BaseModel):
    rule: str
    detail: str


class BatchOut(BaseModel):
    batch_id: str
    entries: list[BatchEntryOut]
    seal_index: int | None
    missing: list[str]
    refusal: RefusalOut | None


class SealOut(BaseModel):
    batch_id: str
    index: int
    leaf: str
    leaf_hash: str
    entry: dict[str, Any] | None
    inclusion: InclusionOut
    checkpoint: str


class SealRef(BaseModel):
    batch_id: str
    index: int


class SealList(BaseModel):
    seals: list[SealRef]
    next_after: int | None


class BundleEntry(BaseModel):
    index: int
    leaf: str
    inclusion: list[str]


class BundleOut(BaseModel):
    format: str
    batch_id: str
    verifier_key: str
    checkpoint: str
    key_history: str
    entries: list[BundleEntry]
    keys: list[KeyOut]
