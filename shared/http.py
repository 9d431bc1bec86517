"""HTTP between services: httpx clients with a service token and request IDs."""

from contextvars import ContextVar
from typing import Any

import httpx

from shared.auth import Role, issue_token
from shared.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

SERVICE_TOKEN_TTL_SECONDS = 30 * 24 * 3600


def service_token(settings: Settings, service: str) -> str:
    """The token a service presents to the others: configured, or minted in dev."""
    if settings.service_token is not None:
        return settings.service_token.get_secret_value()
    return issue_token(
        settings.auth_key(),
        sub=f"service:{service}",
        role=Role.SERVICE,
        ttl_seconds=SERVICE_TOKEN_TTL_SECONDS,
    )


def _propagate_request_id(request: httpx.Request) -> None:
    request_id = request_id_var.get()
    if request_id and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


def service_client(
    settings: Settings, *, caller: str, target: str, timeout: float = 10.0
) -> httpx.Client:
    """A client for one target service, authenticated as the calling service."""
    return httpx.Client(
        base_url=settings.service_url(target),
        headers={"Authorization": f"Bearer {service_token(settings, caller)}"},
        timeout=timeout,
        event_hooks={"request": [_propagate_request_id]},
    )


def problem_detail(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body of an error response, or a stand-in for it."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"status": response.status_code, "detail": response.text[:500]}
