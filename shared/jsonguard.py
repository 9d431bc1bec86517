"""Refuses JSON that cannot be hashed or signed faithfully, before any parsing.

RFC 8785 canonical JSON has no NaN or Infinity (nor a number such as 1e400
that only a double's infinity holds) and only integers within ±(2^53 − 1).
Python's json module accepts all of them, so without this guard such a value
would be stored as something else, or fail later as a 500.
Text with a NUL character is refused too, wherever it comes (path, query,
form or JSON body): PostgreSQL cannot store it, and no field of Salvage
needs it.
"""

import json
import math
import re

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import MEDIA_TYPE, PayloadTooLarge, Problem, Unprocessable

SAFE_INTEGER = 2**53 - 1
SUSPECT = re.compile(rb"NaN|Infinity|\d{16,}|[eE][+-]?\d{3,}")
ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_URLENCODED = b"application/x-www-form-urlencoded"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class _Refused(ValueError):
    pass


def _refuse_constant(name: str):
    raise _Refused(f"{name} is not a JSON number that can be signed")


def _checked_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} is beyond the range of a double")
    return value


def _checked_int(text: str) -> int:
    value = int(text)
    if abs(value) > SAFE_INTEGER:
        raise _Refused(f"integer {text[:40]} is beyond ±(2^53 − 1)")
    return value


def json_problem(body: bytes) -> Problem | None:
    """The reason a JSON body must be refused, or None to let it through."""
    if ESCAPED_NUL.search(body):
        return nul_problem()
    if not SUSPECT.search(body):
        return None
    try:
        json.loads(
            body,
            parse_constant=_refuse_constant,
            parse_int=_checked_int,
            parse_float=_checked_float,
        )
    except _Refused as exc:
        return Unprocessable(str(exc), slug="json-number-out-of-range")
    except (ValueError, RecursionError):
        return None  # malformed: the endpoint's own parser refuses it
    return None


def nul_problem() -> Problem:
    return Unprocessable(
        "The request holds a NUL character, which no field accepts.",
        slug="nul-character",
    )


def _content_type(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.lower()
    return b""


def _guarded(content_type: bytes) -> bool:
    """JSON, unlabelled (FastAPI and the OsmAnd endpoint parse it as JSON) or
    a URL-encoded form; multipart and raw uploads pass untouched."""
    json_like = not content_type or b"json" in content_type
    return json_like or content_type.startswith(FORM_URLENCODED)


def url_problem(scope: Scope) -> Problem | None:
    """A NUL in the path or the query string, which no field accepts."""
    if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
        return nul_problem()
    return None


def body_problem(content_type: bytes, body: bytes) -> Problem | None:
    if content_type.startswith(FORM_URLENCODED):
        return nul_problem() if b"%00" in body else None
    return json_problem(body)


class StrictJsonMiddleware:
    """ASGI middleware refusing NUL characters, unsignable JSON numbers and
    bodies past a size limit, before any endpoint parses them."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = url_problem(scope)
        if problem is not None:
            await _refuse(problem, scope, receive, send)
            return
        content_type = _content_type(scope)
        if scope["method"] in BODILESS_METHODS or not _guarded(content_type):
            await self.app(scope, receive, send)
            return
        body, problem = await self._read(receive)
        problem = problem or body_problem(content_type, body)
        if problem is not None:
            await _refuse(problem, scope, receive, send)
            return
        await self.app(scope, _replay(body), send)

    async def _read(self, receive: Receive) -> tuple[bytes, Problem | None]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", PayloadTooLarge(
                    f"The body is larger than {self.max_body_bytes} bytes."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


async def _refuse(problem: Problem, scope: Scope, receive: Receive, send: Send):
    response = JSONResponse(
        problem.to_dict(instance=scope.get("path")),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
    )
    await response(scope, receive, send)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
