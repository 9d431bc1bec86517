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
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.crypto import public_key_from_b64
from shared.db import make_engine, make_read_sessionmaker, make_sessionmaker
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
    app.state.read_sessions = make_read_sessionmaker(app.state.engine)
    app.state.auth_public_key = _auth_public_key(settings)
    install_problem_handlers(app)
    app.add_middleware(StrictJsonMiddleware)
    app.add_middleware(RequestContext, service=name)
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


def get_read_session(request: Request) -> Iterator[Session]:
    """Yields a session for reads that need no transaction around them
    (each statement sees committed data): no BEGIN and ROLLBACK round trips."""
    with request.app.state.read_sessions() as session:
        yield session


class RequestContext:
    """Pure ASGI middleware: gives each request an ID (its X-Request-ID, or a
    new one), binds it to the logs, echoes it on the response and counts the
    request and its latency per route."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = (given or uuid.uuid4().hex)[:128]
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        REQUESTS.labels(self.service, method, route, status).inc()
        LATENCY.labels(self.service, method, route).observe(elapsed)


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
