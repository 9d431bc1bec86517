"""A thin HTTP helper for the demo: one client per service, clear failures."""

import uuid
from typing import Any

import httpx

from shared.http import problem_detail


class StepFailed(RuntimeError):
    """A service refused a step of the main job; carries its problem detail."""


class ServiceApi:
    def __init__(self, name: str, base_url: str, timeout: float = 30.0) -> None:
        self.name = name
        self.client = httpx.Client(base_url=base_url, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict | None = None,
        idempotent: bool = False,
        expect: tuple[int, ...] = (200, 201),
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if idempotent:
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4().hex}"
        response = self.client.request(
            method, path, json=json, params=params, headers=headers
        )
        if response.status_code not in expect:
            problem = problem_detail(response)
            raise StepFailed(
                f"{self.name} {method} {path} -> {response.status_code}: "
                f"{problem.get('detail') or problem}"
            )
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    def close(self) -> None:
        self.client.close()
