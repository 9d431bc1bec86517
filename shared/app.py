"""The pieces every Salvage service app shares: database, auth, errors,
request IDs, logs, health and Prometheus metrics."""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.crypto import public_key_from_b64
from shared.db import make_engine, make_sessionmaker
from shared.http import REQUEST_ID_HEADER, request_id_var
from shared.jsonguard import StrictJsonMiddleware
from shared.logging import configure_logging
from shared.problems import ServiceUnavailable, install_problem_handlers
from shared.settings import Settings

log = structlog.get_logger()

REQUESTS = Counter(
    "salvage_http_requests_total",
    "HTTP requests served",
    ["service", "method", "route", "status"],
)
LATENCY = Histogram(
    "salvage_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
)

Hook = Callable[[FastAPI], None]


def create_service_app(
    name: str,
    settings: Settings,
    *,
    title: str,
    description: str,
    on_startup: tuple[Hook, ...] = (),
    on_shutdown: tuple[Hook, ...] = (),
) -> FastAPI:
    """Builds a FastAPI app with the database and cross-cutting parts wired in."""
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for hook in on_startup:
            hook(app)
        log.info("service.started", service=name)
        yield
        for hook in on_shutdown:
            hook(app)
        app.state.engine.dispose()
        log.info("service.stopped", service=name)

    app = FastAPI(title=title, description=description, version="1", lifespan=lifespan)
    app.state.service_name = name
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url(name))
    app.state.sessions = make_sessionmaker(app.state.engine)
    app.state.auth_public_key = _auth_public_key(settings)
    install_problem_handlers(app)
    app.add_middleware(StrictJsonMiddleware)
    _install_request_context(app, name)
    _install_operational_routes(app)
    return app


def _auth_public_key(settings: Settings):
    if settings.auth_public_key:
        return public_key_from_b64(settings.auth_public_key)
    return settings.auth_key().public_key()


def get_session(request: Request) -> Iterator[Session]:
    """Yields a session on the app's own database; the endpoint commits."""
    with request.app.state.sessions() as session:
        yield session


def _install_request_context(app: FastAPI, name: str) -> None:
    @app.middleware("http")
    async def request_context(request: Request, call_next):
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        request_id = request_id[:128]
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        elapsed = time.perf_counter() - started
        REQUESTS.labels(name, request.method, route, response.status_code).inc()
        LATENCY.labels(name, request.method, route).observe(elapsed)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response


def _install_operational_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok", "service": app.state.service_name}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> dict:
        try:
            with app.state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:
            raise ServiceUnavailable("The database is not reachable.") from exc
        return {"status": "ready", "service": app.state.service_name}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
