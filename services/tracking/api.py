"""Routes of the tracking service and its app factory."""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
import structlog
from anyio import to_thread
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from pydantic import AwareDatetime
from sqlalchemy.orm import Session

from services.tracking import ingest as ingestion
from services.tracking import partitions, service
from services.tracking.config import TrackingConfig
from services.tracking.fixgroup import DeviceFix, fix_writer
from services.tracking.gpx import fixes_from_gpx
from services.tracking.models import idempotency_keys, outbox
from services.tracking.osmand import (
    RawFix,
    device_of,
    fix_from_json,
    fix_from_params,
)
from services.tracking.schemas import (
    ID_PATTERN,
    AlertIn,
    AlertOut,
    AlertsOut,
    AlertStatus,
    DaysOut,
    DeviceIn,
    DeviceOut,
    DeviceTripOut,
    DistanceOut,
    DropsOut,
    IngestOut,
    PlaceIn,
    PlaceOut,
    PositionBatch,
    ResolveIn,
    StopOut,
    TripIn,
    TripOut,
)
from shared import idempotency
from shared.app import create_service_app, get_session
from shared.auth import Principal, Role, decode_token, require
from shared.db import is_sqlite, make_engine, make_sessionmaker
from shared.http import service_client
from shared.jsonguard import json_problem, nul_problem
from shared.outbox import OutboxRelay
from shared.problems import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
)
from shared.settings import Settings, get_settings
from shared.timeutil import as_utc, utcnow

log = structlog.get_logger()

DESCRIPTION = (
    "GPS telemetry from trucks (OsmAnd at `/`, JSON batches), cleaning, stops, "
    "trip summaries signed for the ledger, and alerts for inspectors."
)
MAX_OSMAND_BODY = 64 * 1024
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)

SessionDep = Annotated[Session, Depends(get_session)]
DeviceId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
Service = Annotated[Principal, Depends(require(Role.SERVICE))]
Inspector = Annotated[Principal, Depends(require(Role.INSPECTOR))]
Reader = Annotated[
    Principal, Depends(require(Role.SERVICE, Role.INSPECTOR, Role.AUDITOR))
]
Uploader = Annotated[Principal, Depends(require(Role.DEVICE, Role.SERVICE))]


class MalformedBody(BadRequest):
    slug, title = "malformed-body", "The body cannot be parsed"


@dataclass
class OsmAndRequest:
    """What Traccar Client sent: parameters, or a JSON body."""

    params: dict[str, str]
    body: Any = None


async def osmand_request(request: Request) -> OsmAndRequest:
    """Query parameters; else a form-encoded or JSON body."""
    params = dict(request.query_params)
    if request.method != "POST" or (params.keys() - {"token"}):
        return OsmAndRequest(params)
    raw = await request.body()
    if len(raw) > MAX_OSMAND_BODY:
        raise PayloadTooLarge("An OsmAnd body is at most 64 KiB.")
    if not raw.strip():
        return OsmAndRequest(params)
    if "json" in request.headers.get("content-type", "") or raw.lstrip()[:1] == b"{":
        return OsmAndRequest(params, _json_body(raw))
    try:
        form = parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBody("The form body is malformed.") from exc
    if any("\x00" in key + value for key, value in form):
        raise nul_problem()
    return OsmAndRequest({**dict(form), **params})


def _json_body(raw: bytes) -> Any:
    """A JSON body under whatever content type: refused as the guard would."""
    problem = json_problem(raw)
    if problem is not None:
        raise problem
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedBody("The JSON body is malformed.") from exc


async def gpx_body(request: Request) -> bytes:
    """The raw GPX body, refused past the configured size."""
    limit = request.app.state.tracking_config.max_gpx_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"A GPX upload is at most {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"A GPX upload is at most {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def osmand_principal(request: Request, payload: OsmAndRequest) -> Principal:
    """A bearer token from the header, or from `token` for clients that cannot
    set headers."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else None
    token = token or payload.params.get("token")
    if not token:
        raise Unauthorized("Send a bearer token, or the token query parameter.")
    principal = decode_token(request.app.state.auth_public_key, token)
    if principal.role not in (Role.DEVICE, Role.ADMIN):
        raise Forbidden(f"Role '{principal.role}' may not post telemetry.")
    return principal


def create_app(
    settings: Settings | None = None,
    *,
    clients: dict[str, httpx.Client] | None = None,
    config: TrackingConfig | None = None,
) -> FastAPI:
    """Builds the tracking app; `clients` replaces the client to the ledger."""
    settings = settings or get_settings()
    config = config or TrackingConfig()

    def start_outbox(app: FastAPI) -> None:
        threads = getattr(app.state, "request_threads", None)
        if threads is not None:
            to_thread.current_default_thread_limiter().total_tokens = threads
        partitions.maintain(app.state.engine, config, utcnow())
        with app.state.sessions() as session:
            service.enqueue_key_registration(session, settings=settings)
            session.commit()
        ledger = (clients or {}).get("ledger") or service_client(
            settings, caller="tracking", target="ledger"
        )
        app.state.outbox_relay = OutboxRelay(
            engine=app.state.engine,
            table=outbox,
            clients={"ledger": ledger},
            poll_seconds=settings.outbox_poll_seconds,
        )
        app.state.outbox_relay.start()

    def stop_outbox(app: FastAPI) -> None:
        relay = getattr(app.state, "outbox_relay", None)
        if relay is not None:
            relay.stop()

    app = create_service_app(
        "tracking",
        settings,
        title="Salvage tracking",
        description=DESCRIPTION,
        on_startup=(start_outbox,),
        on_shutdown=(stop_outbox,),
    )
    app.state.tracking_config = config
    _use_lean_engine(app, settings, config)
    app.state.fix_writer = fix_writer(lambda: app.state.sessions(), config)
    _telemetry_routes(app, config)
    _registry_routes(app, config)
    _motion_trip_routes(app, config)
    _alert_routes(app)
    _trip_routes(app, config, settings)
    return app


def _use_lean_engine(app: FastAPI, settings: Settings, config: TrackingConfig):
    """Telemetry's hot path skips the pool's liveness ping: a dead pooled
    connection fails one request instead of adding a round trip to every one."""
    url = settings.database_url("tracking")
    if is_sqlite(url):
        return
    app.state.engine.dispose()
    app.state.engine = make_engine(
        url,
        pool_pre_ping=False,
        pool_size=config.pool_size,
        max_overflow=config.pool_overflow,
    )
    app.state.sessions = make_sessionmaker(app.state.engine)
    # Two connections stay free for the outbox relay and partition upkeep.
    app.state.request_threads = max(1, config.pool_size + config.pool_overflow - 2)


def _ingest_out(device_id: str, result: ingestion.IngestResult) -> IngestOut:
    return IngestOut(
        device_id=device_id,
        received=result.received,
        accepted=result.accepted,
        dropped=dict(sorted(result.dropped.items())),
    )


def _raw_fix(position) -> RawFix:
    """A batch point as a raw fix; one off the globe is invalid, for cleaning
    to count."""
    placed = -90 <= position.lat <= 90 and -180 <= position.lon <= 180
    return RawFix(
        time=as_utc(position.time),
        lat=position.lat if placed else 0.0,
        lon=position.lon if placed else 0.0,
        valid=placed,
        speed_mps=position.speed_mps,
        course=position.course,
        altitude_m=position.altitude_m,
        accuracy_m=position.accuracy_m,
        hdop=position.hdop,
        battery=position.battery,
        attributes=position.attributes,
    )


def _telemetry_routes(app: FastAPI, config: TrackingConfig) -> None:
    async def osmand(
        request: Request,
        payload: Annotated[OsmAndRequest, Depends(osmand_request)],
    ) -> IngestOut:
        """Takes one fix in the OsmAnd form Traccar Client sends: query or form
        parameters (`id`, `lat`, `lon`, `timestamp`, `speed` in knots, ...) or
        its JSON body. The device's token goes in the Authorization header or
        the `token` parameter. A fix that cannot be read, or comes from an
        unknown or another device, is refused with a problem. A fix cleaning
        drops (invalid, at (0,0), in the future, too old, inaccurate, duplicate,
        too fast) is counted under its reason in `dropped` and answered 200, as
        Traccar's server does, so that the client does not resend it and hold
        back the fixes queued behind it. Fixes that arrive together are stored
        in one transaction."""
        principal = osmand_principal(request, payload)
        now = utcnow()
        if payload.body is not None:
            device_id, fix = fix_from_json(payload.body, now)
            service.check_device_access(principal, device_id)
        else:
            device_id = device_of(payload.params)
            service.check_device_access(principal, device_id)
            fix = fix_from_params(payload.params, now)
        writer = request.app.state.fix_writer
        result = await writer.submit(DeviceFix(device_id, fix, now))
        return _ingest_out(device_id, result)

    for method in ("GET", "POST"):
        app.add_api_route(
            "/",
            osmand,
            methods=[method],
            response_model=IngestOut,
            tags=["telemetry"],
            operation_id=f"osmand_{method.lower()}",
        )

    @app.post(
        "/v1/devices/{device_id}/positions",
        response_model=IngestOut,
        tags=["telemetry"],
    )
    def post_positions(
        device_id: DeviceId,
        batch: PositionBatch,
        principal: Uploader,
        session: SessionDep,
    ) -> IngestOut:
        """Takes a batch of buffered fixes, in any order and with repeats. Ingest
        is idempotent per device and fix time; every dropped fix is counted
        under its reason in `dropped`, a position off the globe as `invalid`,
        and the rest of the batch is stored. A body that is not a list of
        points with finite numbers and times with an offset is refused whole."""
        service.check_device_access(principal, device_id)
        if len(batch.positions) > config.max_batch_points:
            raise PayloadTooLarge(
                f"A batch holds at most {config.max_batch_points} positions."
            )
        target = service.device_for_ingest(session, device_id)
        fixes = [_raw_fix(position) for position in batch.positions]
        result = ingestion.ingest(
            session, config=config, target=target, fixes=fixes, now=utcnow()
        )
        session.commit()
        return _ingest_out(device_id, result)

    @app.post(
        "/v1/devices/{device_id}/gpx",
        response_model=IngestOut,
        tags=["telemetry"],
        openapi_extra={
            "requestBody": {
                "content": {"application/gpx+xml": {"schema": {"type": "string"}}}
            }
        },
    )
    def post_gpx(
        device_id: DeviceId,
        principal: Uploader,
        data: Annotated[bytes, Depends(gpx_body)],
        session: SessionDep,
    ) -> IngestOut:
        """Takes a whole trip as a GPX 1.0 or 1.1 file: every track point (and
        route point) is cleaned and stored like a batch upload; a point without
        a time is counted as `invalid`."""
        service.check_device_access(principal, device_id)
        now = utcnow()
        fixes = fixes_from_gpx(data, now)
        if not fixes:
            raise Unprocessable("The GPX file holds no points.", slug="empty-gpx")
        if len(fixes) > config.max_batch_points:
            raise PayloadTooLarge(
                f"A GPX upload holds at most {config.max_batch_points} points."
            )
        target = service.device_for_ingest(session, device_id)
        result = ingestion.ingest(
            session, config=config, target=target, fixes=fixes, now=now
        )
        session.commit()
        return _ingest_out(device_id, result)

    @app.get(
        "/v1/devices/{device_id}/drops", response_model=DropsOut, tags=["telemetry"]
    )
    def get_drops(device_id: DeviceId, _: Reader, session: SessionDep) -> DropsOut:
        """How many of the device's fixes cleaning dropped, by reason."""
        service.get_device(session, device_id)
        return DropsOut(
            device_id=device_id,
            dropped=service.drop_counts(session, device_id=device_id),
        )


def _registry_routes(app: FastAPI, config: TrackingConfig) -> None:
    @app.put("/v1/places/{place_id}", response_model=PlaceOut, tags=["registry"])
    def put_place(
        place_id: EntityId,
        data: PlaceIn,
        _: Service,
        session: SessionDep,
        response: Response,
    ) -> PlaceOut:
        """Creates or replaces a community, plant or depot: a GeoJSON Point or
        Polygon, grown by `radius_m` metres."""
        _, created = service.put_place(
            session, place_id=place_id, data=data, now=utcnow()
        )
        session.commit()
        response.status_code = 201 if created else 200
        return PlaceOut(place_id=place_id, **data.model_dump())

    @app.put("/v1/devices/{device_id}", response_model=DeviceOut, tags=["registry"])
    def put_device(
        device_id: DeviceId,
        data: DeviceIn,
        _: Service,
        session: SessionDep,
        response: Response,
    ) -> DeviceOut:
        """Creates or replaces a truck's device, as intake registered it."""
        _, created = service.put_device(
            session, device_id=device_id, data=data, now=utcnow()
        )
        session.commit()
        response.status_code = 201 if created else 200
        return DeviceOut(device_id=device_id, **data.model_dump())

    @app.get("/v1/devices/{device_id}", response_model=DeviceOut, tags=["registry"])
    def get_device(device_id: DeviceId, _: Reader, session: SessionDep) -> DeviceOut:
        """The device as tracking knows it; 404 until intake has synced it."""
        device = service.get_device(session, device_id)
        valid_from, valid_until = service.licence_window(device)
        return DeviceOut(
            device_id=device.device_id,
            vehicle_id=device.vehicle_id,
            hauler_id=device.hauler_id,
            plate=device.plate,
            licence_valid_from=valid_from,
            licence_valid_until=valid_until,
        )

    @app.get(
        "/v1/devices/{device_id}/stops",
        response_model=list[StopOut],
        tags=["motion"],
    )
    def get_stops(
        device_id: DeviceId,
        _: Reader,
        session: SessionDep,
        start: Annotated[AwareDatetime | None, Query()] = None,
        end: Annotated[AwareDatetime | None, Query()] = None,
    ) -> list[dict]:
        """The device's detected stops overlapping [start, end], in time order,
        each with the registered place it was at (or null); the stop still going
        on, if any, comes last with `ongoing` true."""
        service.get_device(session, device_id)
        window = service.check_window(start or EARLIEST, end or LATEST)
        return service.stops_between(
            session, config=config, device_id=device_id, start=window[0], end=window[1]
        )

    @app.get(
        "/v1/devices/{device_id}/distance",
        response_model=DistanceOut,
        tags=["motion"],
    )
    def get_distance(
        device_id: DeviceId,
        start: Annotated[AwareDatetime, Query()],
        end: Annotated[AwareDatetime, Query()],
        _: Reader,
        session: SessionDep,
    ) -> DistanceOut:
        """Haversine distance over the device's cleaned fixes in [start, end]."""
        service.get_device(session, device_id)
        start, end = service.check_window(start, end)
        distance, count = service.distance_between(
            session, device_id=device_id, start=start, end=end
        )
        return DistanceOut(
            device_id=device_id,
            start=start,
            end=end,
            distance_m=round(distance),
            point_count=count,
        )


def _motion_trip_routes(app: FastAPI, config: TrackingConfig) -> None:
    @app.get(
        "/v1/devices/{device_id}/trips",
        response_model=list[DeviceTripOut],
        tags=["motion"],
    )
    def get_trips(
        device_id: DeviceId,
        _: Reader,
        session: SessionDep,
        start: Annotated[AwareDatetime | None, Query()] = None,
        end: Annotated[AwareDatetime | None, Query()] = None,
    ) -> list[dict]:
        """The device's trips (movement from one stop to the next, at least the
        configured distance and duration) overlapping [start, end]."""
        service.get_device(session, device_id)
        window = service.check_window(start or EARLIEST, end or LATEST)
        trips = service.device_trips(
            session, device_id=device_id, start=window[0], end=window[1]
        )
        return [service.device_trip_view(trip) for trip in trips]

    @app.get("/v1/devices/{device_id}/trips/{trip_id}/geojson", tags=["motion"])
    def get_trip_replay(
        device_id: DeviceId,
        trip_id: Annotated[int, Path(ge=1)],
        _: Reader,
        session: SessionDep,
    ) -> Any:
        """Replay of one trip as GeoJSON: its path with the time of each fix,
        the stops at its ends and the alerts raised during it."""
        trip = service.get_device_trip(session, device_id=device_id, trip_id=trip_id)
        return Response(
            json.dumps(service.device_trip_geojson(session, config=config, trip=trip)),
            media_type="application/geo+json",
        )

    @app.get("/v1/devices/{device_id}/days", response_model=DaysOut, tags=["motion"])
    def get_days(
        device_id: DeviceId,
        start: Annotated[AwareDatetime, Query()],
        end: Annotated[AwareDatetime, Query()],
        _: Reader,
        session: SessionDep,
    ) -> DaysOut:
        """Distance, fixes and trips per UTC day in [start, end] (at most 92
        days)."""
        service.get_device(session, device_id)
        start, end = service.check_window(start, end)
        days = service.daily_distance(
            session, config=config, device_id=device_id, start=start, end=end
        )
        return DaysOut(device_id=device_id, days=days)


def _alert_routes(app: FastAPI) -> None:
    @app.post("/v1/alerts", response_model=AlertOut, status_code=201, tags=["alerts"])
    def post_alert(
        data: AlertIn,
        principal: Service,
        session: SessionDep,
        response: Response,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Raises an alert another service found (e.g. intake's
        `mass_discrepancy`); `batch_id` links it to the batch. Needs an
        Idempotency-Key."""
        key = idempotency.check_key(idempotency_key)
        request_body = data.model_dump(mode="json")
        stored = idempotency.replay(
            session,
            idempotency_keys,
            key=key,
            principal=principal.sub,
            request=request_body,
        )
        if stored is not None:
            response.status_code = stored[0]
            return stored[1]
        alert = service.raise_external_alert(
            session, principal=principal, data=data, now=utcnow()
        )
        view = AlertOut(**service.alert_view(session, alert)).model_dump(mode="json")
        idempotency.remember(
            session,
            idempotency_keys,
            key=key,
            principal=principal.sub,
            request=request_body,
            status_code=201,
            response=view,
        )
        session.commit()
        return view

    @app.get("/v1/alerts", response_model=AlertsOut, tags=["alerts"])
    def get_alerts(
        _: Reader,
        session: SessionDep,
        batch_id: Annotated[str | None, Query(max_length=64)] = None,
        device_id: Annotated[str | None, Query(max_length=64)] = None,
        status: Annotated[AlertStatus | None, Query()] = None,
        day: Annotated[date | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> AlertsOut:
        """Alerts by batch, device, status and UTC day, in the order they were
        raised, up to `limit` a page. While `next_cursor` is not null, pass it
        back as `cursor` (with the same filters) for the next page; a cursor
        this service did not give out is a 422 `invalid-cursor` problem."""
        page = service.list_alerts(
            session,
            batch_id=batch_id,
            device_id=device_id,
            status=status,
            day=day,
            limit=limit,
            cursor=cursor,
        )
        return AlertsOut(
            alerts=service.alert_views(session, page.alerts),
            next_cursor=page.next_cursor,
        )

    @app.get("/v1/alerts/{alert_id}", response_model=AlertOut, tags=["alerts"])
    def get_alert(alert_id: EntityId, _: Reader, session: SessionDep) -> AlertOut:
        """One alert with the batches it is linked to."""
        alert = service.get_alert(session, alert_id)
        return AlertOut(**service.alert_view(session, alert))

    @app.post(
        "/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut, tags=["alerts"]
    )
    def acknowledge(
        alert_id: EntityId, principal: Inspector, session: SessionDep
    ) -> AlertOut:
        """Marks an open alert as being looked at."""
        alert = service.acknowledge_alert(
            session, alert_id=alert_id, principal=principal, now=utcnow()
        )
        session.commit()
        return AlertOut(**service.alert_view(session, alert))

    @app.post("/v1/alerts/{alert_id}/resolve", response_model=AlertOut, tags=["alerts"])
    def resolve(
        alert_id: EntityId, data: ResolveIn, principal: Inspector, session: SessionDep
    ) -> AlertOut:
        """Resolves an alert with the inspector's reason; credits wait for this."""
        alert = service.resolve_alert(
            session,
            alert_id=alert_id,
            principal=principal,
            reason=data.reason,
            now=utcnow(),
        )
        session.commit()
        return AlertOut(**service.alert_view(session, alert))


def _trip_routes(app: FastAPI, config: TrackingConfig, settings: Settings) -> None:
    @app.post("/v1/batches/{batch_id}/trip", response_model=TripOut, tags=["trips"])
    def post_trip(
        batch_id: EntityId,
        data: TripIn,
        _: Service,
        session: SessionDep,
        request: Request,
        response: Response,
    ) -> TripOut:
        """Summarises the device's trip in [start, end] for the batch, links the
        trip's alerts to the batch, signs the `trip.summary` statement with the
        tracking key and queues it for the ledger. Idempotent by batch_id."""
        trip, created = service.create_trip(
            session,
            config=config,
            settings=settings,
            batch_id=batch_id,
            data=data,
            now=utcnow(),
        )
        session.commit()
        relay = getattr(request.app.state, "outbox_relay", None)
        if created and relay is not None:
            relay.wake()
        response.status_code = 201 if created else 200
        return TripOut(**service.trip_view(session, trip))

    @app.get("/v1/batches/{batch_id}/trip", response_model=TripOut, tags=["trips"])
    def get_trip(batch_id: EntityId, _: Reader, session: SessionDep) -> TripOut:
        """The batch's trip summary, the signed entry and whether the ledger has
        it yet."""
        return TripOut(
            **service.trip_view(session, service.get_trip(session, batch_id))
        )

    @app.get("/v1/batches/{batch_id}/trip/geojson", tags=["trips"])
    def get_trip_geojson(batch_id: EntityId, _: Reader, session: SessionDep) -> Any:
        """The trip as a GeoJSON FeatureCollection: its path, stops and alerts."""
        trip = service.get_trip(session, batch_id)
        return Response(
            json.dumps(service.trip_geojson(session, trip)),
            media_type="application/geo+json",
        )
