"""Refuses JSON that cannot be hashed or signed faithfully, before any parsing.

RFC 8785 canonical JSON has no NaN or Infinity and only integers within
±(2^53 − 1). Python's json module accepts all of them, so without this guard
such a value would be stored as something else, or fail later as a 500.
"""

import json
import re

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import MEDIA_TYPE, PayloadTooLarge, Problem, Unprocessable

SAFE_INTEGER = 2**53 - 1
SUSPECT = re.compile(rb"NaN|Infinity|\d{16,}")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class _Refused(ValueError):
    pass


def _refuse_constant(name: str):
    raise _Refused(f"{name} is not a JSON number that can be signed")


def _checked_int(text: str) -> int:
    value = int(text)
    if abs(value) > SAFE_INTEGER:
        raise _Refused(f"integer {text[:40]} is beyond ±(2^53 − 1)")
    return value


def json_problem(body: bytes) -> Problem | None:
    """The reason a JSON body must be refused, or None to let it through."""
    if not SUSPECT.search(body):
        return None
    try:
        json.loads(body, parse_constant=_refuse_constant, parse_int=_checked_int)
    except _Refused as exc:
        return Unprocessable(str(exc), slug="json-number-out-of-range")
    except (ValueError, RecursionError):
        return None  # malformed: the endpoint's own parser refuses it
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


class StrictJsonMiddleware:
    """ASGI middleware applying json_problem and a body size limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, problem = await self._read(receive)
        problem = problem or json_problem(body)
        if problem is not None:
            response = JSONResponse(
                problem.to_dict(instance=scope.get("path")),
                status_code=problem.status,
                media_type=MEDIA_TYPE,
            )
            await response(scope, receive, send)
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


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
