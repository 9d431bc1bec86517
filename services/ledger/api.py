"""HTTP routes of the ledger and its app factory."""

import functools
import json
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session

from services.ledger import service
from services.ledger.config import LedgerConfig, get_ledger_config
from services.ledger.schemas import (
    AppendOut,
    BatchOut,
    BundleOut,
    CheckpointList,
    ConsistencyOut,
    EntryBatchIn,
    EntryBatchOut,
    EntryIn,
    EntryOut,
    EntryRangeOut,
    InclusionOut,
    KeyId,
    KeyIn,
    KeyOut,
    RevokeIn,
    SealList,
    SealOut,
)
from services.ledger.sequencer import Sequencer
from services.ledger.service import LogSigner, Submission
from shared.app import create_service_app, get_read_session, get_session
from shared.auth import Principal, Role, require
from shared.idempotency import check_key
from shared.problems import Unprocessable
from shared.settings import Settings, get_settings

MAX_INDEX = 2**62
TEXT = "text/plain; charset=utf-8"

SessionDep = Annotated[Session, Depends(get_session)]
# For reads of the append-only log that each statement answers consistently.
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
ServiceCaller = Annotated[Principal, Depends(require(Role.SERVICE))]
Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]
OptionalSize = Annotated[int | None, Query(ge=0, le=MAX_INDEX)]
After = Annotated[int, Query(ge=-1, le=MAX_INDEX)]
BatchId = Annotated[str, Path(min_length=1, max_length=200)]

router = APIRouter(prefix="/v1")


def get_signer(request: Request) -> LogSigner:
    return request.app.state.signer


def get_config(request: Request) -> LedgerConfig:
    return request.app.state.ledger_config


def get_sequencer(request: Request) -> Sequencer:
    return request.app.state.sequencer


SignerDep = Annotated[LogSigner, Depends(get_signer)]
SequencerDep = Annotated[Sequencer, Depends(get_sequencer)]
ConfigDep = Annotated[LedgerConfig, Depends(get_config)]


def _limit(limit: int | None, config: LedgerConfig) -> int:
    if limit is None:
        return config.max_page
    if not 1 <= limit <= config.max_page:
        raise Unprocessable(
            f"limit is between 1 and {config.max_page}.", slug="limit-invalid"
        )
    return limit


@router.put("/keys/{key_id}", response_model=KeyOut, tags=["keys"])
def put_key(
    key_id: Annotated[KeyId, Path()],
    body: KeyIn,
    response: Response,
    session: SessionDep,
    caller: ServiceCaller,
) -> dict:
    """Registers a party's Ed25519 key and the statement kinds it may sign.
    The same content again is a no-op; different content is a 409. Intake
    vouches for parties' keys; a service registers only its own."""
    service.check_key_authority(
        caller, party_kind=body.party_kind, party_id=body.party_id, revoking=False
    )
    key, created = service.register_key(session, key_id=key_id, **body.model_dump())
    session.commit()
    response.status_code = 201 if created else 200
    return service.key_to_dict(key)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, tags=["keys"])
def revoke_key(
    key_id: Annotated[KeyId, Path()],
    body: RevokeIn,
    session: SessionDep,
    caller: ServiceCaller,
) -> dict:
    """Revokes a key: from now on the ledger refuses entries it signs."""
    key = service.revoke_key(session, key_id=key_id, reason=body.reason, caller=caller)
    session.commit()
    return service.key_to_dict(key)


@router.get("/keys/{key_id}", response_model=KeyOut, tags=["keys"])
def get_key(key_id: Annotated[KeyId, Path()], session: ReadSessionDep) -> dict:
    """A registered key, for auditors re-checking signatures."""
    return service.key_to_dict(service.get_key(session, key_id=key_id))


@router.post("/entries", response_model=AppendOut, status_code=201, tags=["entries"])
def append_entry(
    body: EntryIn,
    response: Response,
    sequencer: SequencerDep,
    _: ServiceCaller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict:
    """Verifies a signed statement and appends it to the log, batched with
    the appends that arrive meanwhile. A repeat with the same
    Idempotency-Key and entry answers 200 with the same index."""
    key = _append_key(idempotency_key)
    outcome = sequencer.submit(Submission(key=key, entry=body.model_dump()))
    if outcome.problem is not None:
        raise outcome.problem
    response.status_code = 201 if outcome.appended.created else 200
    return outcome.appended.to_dict()


@router.post("/entries/batch", response_model=EntryBatchOut, tags=["entries"])
def append_batch(
    body: EntryBatchIn,
    session: SessionDep,
    signer: SignerDep,
    config: ConfigDep,
    _: ServiceCaller,
) -> dict:
    """Appends many signed statements in one transaction and one checkpoint.
    Each item carries its own idempotency key and gets its own result: a
    refused item is answered with its problem and the others still append."""
    if len(body.items) > config.max_batch:
        raise Unprocessable(
            f"A batch holds at most {config.max_batch} entries.",
            slug="batch-too-large",
        )
    keys = [_append_key(item.key) for item in body.items]
    if len(set(keys)) != len(keys):
        raise Unprocessable(
            "Each item of a batch needs its own key.", slug="batch-keys-repeated"
        )
    submissions = [
        Submission(key=key, entry=item.entry.model_dump())
        for key, item in zip(keys, body.items, strict=True)
    ]
    outcomes = service.append_entries(
        session,
        submissions=submissions,
        signer=signer,
        max_bytes=config.max_entry_bytes,
    )
    session.commit()
    pairs = zip(keys, outcomes, strict=True)
    return {"results": [_item_result(key, outcome) for key, outcome in pairs]}


def _append_key(key: str | None) -> str:
    """An append's idempotency key: well formed, and not the ledger's own."""
    key = check_key(key)
    if key.startswith(service.RESERVED_KEY_PREFIX):
        raise Unprocessable(
            f"Idempotency keys starting '{service.RESERVED_KEY_PREFIX}' are the "
            "ledger's own.",
            slug="idempotency-key-reserved",
        )
    return key


def _item_result(key: str, outcome: service.Outcome) -> dict:
    if outcome.problem is not None:
        problem = outcome.problem
        return {"key": key, "status": problem.status, "problem": problem.to_dict()}
    appended = outcome.appended
    status = 201 if appended.created else 200
    return {"key": key, "status": status, **appended.to_dict()}


@router.get("/entries", response_model=EntryRangeOut, tags=["audit"])
def list_entries(
    session: ReadSessionDep,
    config: ConfigDep,
    start: Index,
    end: Index,
) -> Response:
    """Entries [start, end) exactly as stored, for streaming audits (written
    straight to JSON: a page holds up to max_range entries)."""
    if end < start or end - start > config.max_range:
        raise Unprocessable(
            f"Ask for start <= end and at most {config.max_range} entries.",
            slug="range-invalid",
        )
    page = service.entries_range(session, start=start, end=end)
    return Response(json.dumps(page), media_type="application/json")


@router.get("/entries/{index}", response_model=EntryOut, tags=["audit"])
def get_entry(
    index: Annotated[int, Path(ge=0, le=MAX_INDEX)], session: ReadSessionDep
) -> dict:
    """One entry: its exact leaf bytes (base64), leaf hash and decoded entry."""
    return service.entry_at(session, index=index)


@router.get("/checkpoint", response_class=PlainTextResponse, tags=["audit"])
def get_checkpoint(session: ReadSessionDep) -> PlainTextResponse:
    """The latest checkpoint: a C2SP tlog-checkpoint in a C2SP signed note."""
    return PlainTextResponse(service.latest_checkpoint(session).note, media_type=TEXT)


@router.get("/key", response_class=PlainTextResponse, tags=["audit"])
def get_verifier_key(signer: SignerDep) -> PlainTextResponse:
    """The log's note verifier key: name+hexkeyid+base64(0x01 || key)."""
    return PlainTextResponse(signer.verifier_key + "\n", media_type=TEXT)


@router.get("/log-keys", response_class=PlainTextResponse, tags=["audit"])
def get_log_keys(session: SessionDep, signer: SignerDep) -> PlainTextResponse:
    """The ledger's key history, oldest first, as a note signed by the
    current key: "<key id> <base64 public key> <from size>" per line."""
    note = service.key_history_note(session, signer=signer)
    return PlainTextResponse(note, media_type=TEXT)


@router.get("/checkpoints", response_model=CheckpointList, tags=["audit"])
def list_checkpoints(
    session: ReadSessionDep,
    config: ConfigDep,
    after: After = -1,
    limit: Annotated[int | None, Query()] = None,
) -> dict:
    """Past checkpoints with sizes above `after`, oldest first."""
    return service.list_checkpoints(session, after=after, limit=_limit(limit, config))


@router.get("/proof/inclusion", response_model=InclusionOut, tags=["audit"])
async def get_inclusion(
    request: Request, index: Index, size: OptionalSize = None
) -> Response:
    """PATH(index, D[0:size]) for a checkpointed size (default: the latest)."""
    return await _read_json(request, service.inclusion, index=index, size=size)


@router.get("/proof/consistency", response_model=ConsistencyOut, tags=["audit"])
async def get_consistency(
    request: Request, old: Index, size: OptionalSize = None
) -> Response:
    """PROOF(old, D[0:size]) for a checkpointed size (default: the latest)."""
    return await _read_json(request, service.consistency, old=old, size=size)


async def _read_json(request: Request, read, **arguments) -> Response:
    """Runs a read on a read session in one worker-thread hop and answers its
    result as JSON: the auditor's hot paths skip the per-request dependency
    and response-model overhead."""

    def run() -> dict:
        with request.app.state.read_sessions() as session:
            return read(session, **arguments)

    body = await run_in_threadpool(run)
    return Response(json.dumps(body), media_type="application/json")


@router.get("/batches/{batch_id}", response_model=BatchOut, tags=["batches"])
def get_batch(batch_id: BatchId, session: SessionDep) -> dict:
    """A batch's entries, its seal index, what it lacks or why sealing failed."""
    return service.batch_view(session, batch_id=batch_id)


@router.post("/batches/{batch_id}/seal", response_model=SealOut, tags=["batches"])
def post_seal(
    batch_id: BatchId, session: SessionDep, signer: SignerDep, _: ServiceCaller
) -> dict:
    """Tries to seal a complete batch now; a refusal names the failed rule."""
    attempt = service.seal_batch(session, batch_id=batch_id, signer=signer)
    session.commit()
    if attempt.refusal is not None:
        raise Unprocessable(
            attempt.refusal.detail, slug=attempt.refusal.rule, batch_id=batch_id
        )
    return service.seal_view(session, batch_id=batch_id)


@router.get("/batches/{batch_id}/seal", response_model=SealOut, tags=["batches"])
def get_seal(batch_id: BatchId, session: SessionDep) -> dict:
    """The seal entry, its inclusion proof and the checkpoint it is for."""
    return service.seal_view(session, batch_id=batch_id)


@router.get("/batches/{batch_id}/bundle", response_model=BundleOut, tags=["audit"])
def get_bundle(batch_id: BatchId, session: SessionDep, signer: SignerDep) -> dict:
    """An offline proof bundle: every entry of the batch with its inclusion
    proof against one signed checkpoint, the signers' keys and the log key."""
    return service.bundle(session, batch_id=batch_id, signer=signer)


@router.get("/seals", response_model=SealList, tags=["batches"])
def list_seals(
    session: SessionDep,
    config: ConfigDep,
    after: After = -1,
    limit: Annotated[int | None, Query()] = None,
) -> dict:
    """Seals in log order after entry index `after`."""
    return service.list_seals(session, after=after, limit=_limit(limit, config))


def _append(
    session: Session, submissions: list[Submission], **options
) -> list[service.Outcome]:
    return service.append_entries(session, submissions=submissions, **options)


def create_app(
    settings: Settings | None = None,
    *,
    clients: dict[str, httpx.Client] | None = None,
    config: LedgerConfig | None = None,
) -> FastAPI:
    """Builds the ledger app; the ledger calls no other service."""
    settings = settings or get_settings()
    config = config or get_ledger_config()
    signer = LogSigner(origin=config.origin, key=settings.signing_key("ledger"))

    def open_log(app: FastAPI) -> None:
        with app.state.sessions() as session:
            service.open_log(session, signer=signer)
            session.commit()

    app = create_service_app(
        "ledger",
        settings,
        title="Salvage ledger",
        description="A verifiable Merkle tree log of custody, trips, seals "
        "and credits, with signed checkpoints and proofs.",
        on_startup=(open_log,),
    )
    app.state.signer = signer
    app.state.ledger_config = config
    app.state.sequencer = Sequencer(
        app.state.sessions,
        functools.partial(_append, signer=signer, max_bytes=config.max_entry_bytes),
        max_batch=config.max_batch,
    )
    app.state.clients = clients or {}
    app.include_router(router)
    return app
