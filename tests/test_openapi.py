"""Every operation in each service's OpenAPI document, fuzzed by schemathesis
with an administrator's token, against the four services wired together on
real databases: whatever the generated input, the answer is never a server
error, and every refusal is an RFC 9457 problem document."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.api import create_app as create_intake
from services.ledger.api import create_app as create_ledger
from services.tracking.api import create_app as create_tracking
from services.trading.api import create_app as create_trading
from shared.auth import issue_token
from shared.settings import Settings

FACTORIES = {
    "ledger": create_ledger,
    "tracking": create_tracking,
    "trading": create_trading,
    "intake": create_intake,
}
EXAMPLES = 25


def _operations() -> list[tuple[str, object]]:
    """Each service's operations, read from the OpenAPI document it serves."""
    with tempfile.TemporaryDirectory() as folder:
        spec_settings = Settings(environment="test", data_dir=Path(folder))
        specs = {
            name: factory(spec_settings).openapi()
            for name, factory in FACTORIES.items()
        }
    found = []
    for name, spec in specs.items():
        schema = schemathesis.openapi.from_dict(spec)
        found += [(name, result.ok()) for result in schema.get_all_operations()]
    return found


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def suite(databases, tmp_path_factory) -> Iterator[dict[str, TestClient]]:
    """The four services wired to each other in-process, on real databases."""
    base = Settings(
        environment="test",
        data_dir=tmp_path_factory.mktemp("openapi") / "data",
        log_json=True,
        outbox_poll_seconds=60,
        **{f"{name}_database_url": databases.url(name) for name in FACTORIES},
    )
    token = issue_token(base.auth_key(), sub="admin:fuzz", role="admin")
    clients: dict[str, TestClient] = {}
    for name, factory in FACTORIES.items():
        peers = {
            peer: TestClient(client.app, base_url=f"http://{peer}")
            for peer, client in clients.items()
        }
        app = factory(base, clients=peers)
        clients[name] = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        clients[name].__enter__()
    yield clients
    for client in reversed(clients.values()):
        client.__exit__(None, None, None)


def _is_page(operation) -> bool:
    """A page a person opens in a browser answers errors as HTML too."""
    answers = operation.definition.raw.get("responses", {}).get("200", {})
    return "text/html" in answers.get("content", {})


def _request(case, client: TestClient):
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    kwargs.pop("cookies", None)
    kwargs["headers"] = {**kwargs.get("headers", {}), **client.headers}
    data = kwargs.get("data")
    if isinstance(data, str | bytes):
        kwargs["content"] = kwargs.pop("data")
    return client.request(**kwargs)


@pytest.mark.parametrize(
    ("service", "operation"),
    OPERATIONS,
    ids=[f"{name} {operation.label}" for name, operation in OPERATIONS],
)
def test_any_generated_request_gets_an_answer_that_is_not_a_server_error(
    suite, service, operation
):
    client = suite[service]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def probe(data):
        case = data.draw(operation.as_strategy())
        response = _request(case, client)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
            f" -> {response.status_code}: {response.text[:300]}"
        )
        kind = response.headers.get("content-type", "")
        if response.status_code >= 400 and not _is_page(operation):
            assert kind.startswith("application/problem+json"), response.text[:300]
            assert response.json()["status"] == response.status_code

    probe()
