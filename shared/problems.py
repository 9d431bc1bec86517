"""Domain errors and their RFC 9457 problem+json rendering."""

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from rfc8785 import CanonicalizationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_TYPE_BASE = "urn:salvage:problem:"
MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger()


class Problem(Exception):
    """A failure a client can understand; services raise its subclasses."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, *, slug: str | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        self.extra = extra

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(Problem):
    pass


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(Problem):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(Problem):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(Problem):
    status, slug, title = 409, "conflict", "Conflict with the current state"


class Unprocessable(Problem):
    status, slug, title = 422, "unprocessable", "Request cannot be processed"


class PayloadTooLarge(Problem):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class TooManyRequests(Problem):
    status, slug, title = 429, "too-many-requests", "Too many requests"


class ServiceUnavailable(Problem):
    status, slug, title = 503, "unavailable", "A dependency is unavailable"


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else {}
    if "retry_after_s" in problem.extra:
        headers["Retry-After"] = str(problem.extra["retry_after_s"])
    return JSONResponse(
        problem.to_dict(instance=request.url.path),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        errors.append({"location": location, "message": error.get("msg", "")})
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    """Renders every error, expected or not, as problem+json."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem):
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        problem = Unprocessable(
            "The request does not match the schema.",
            slug="validation-error",
            errors=_validation_errors(exc),
        )
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        problem = Problem(str(exc.detail), slug=f"http-{exc.status_code}")
        problem.status, problem.title = exc.status_code, str(exc.detail)
        return problem_response(problem, request)

    @app.exception_handler(CanonicalizationError)
    async def on_canonicalization(request: Request, exc: CanonicalizationError):
        problem = Unprocessable(
            f"The request holds a value canonical JSON cannot carry: {exc}",
            slug="not-canonicalizable",
        )
        return problem_response(problem, request)

    @app.exception_handler(OverflowError)
    async def on_overflow(request: Request, exc: OverflowError):
        problem = Unprocessable(
            "A value is out of the range this service can represent "
            "(for example a time before year 1 or after year 9999 in UTC).",
            slug="value-out-of-range",
        )
        return problem_response(problem, request)

    @app.exception_handler(DataError)
    async def on_unstorable(request: Request, exc: DataError):
        log.warning(
            "request.unstorable_value", path=request.url.path, error=str(exc.orig)
        )
        problem = Unprocessable(
            "A value does not fit what the database can store (a number too large "
            "for its column, or text it cannot hold); nothing was written.",
            slug="value-not-storable",
        )
        return problem_response(problem, request)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        log.exception("request.unhandled_error", path=request.url.path)
        problem = Problem("An unexpected error occurred.", slug="internal-error")
        problem.status, problem.title = 500, "Internal error"
        return problem_response(problem, request)
