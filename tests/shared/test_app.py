"""The request context every service shares: request IDs and metrics."""

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from shared.app import create_service_app
from shared.http import REQUEST_ID_HEADER, request_id_var


def build(settings, tmp_path) -> TestClient:
    settings = settings.model_copy(
        update={"ledger_database_url": f"sqlite:///{tmp_path / 'app.db'}"}
    )
    app = create_service_app("ledger", settings, title="t", description="d")

    @app.get("/v1/echo/{word}")
    def echo(word: str) -> dict:
        return {"word": word, "request_id": request_id_var.get()}

    return TestClient(app)


def served(route: str, status: int) -> float:
    labels = {"service": "ledger", "method": "GET", "route": route}
    value = REGISTRY.get_sample_value(
        "salvage_http_requests_total", {**labels, "status": str(status)}
    )
    return value or 0.0


def test_a_given_request_id_is_used_in_the_handler_and_echoed(settings, tmp_path):
    with build(settings, tmp_path) as client:
        response = client.get("/v1/echo/a", headers={REQUEST_ID_HEADER: "req-42"})

    assert response.headers[REQUEST_ID_HEADER] == "req-42"
    assert response.json()["request_id"] == "req-42"


def test_a_missing_request_id_is_made_and_an_overlong_one_cut(settings, tmp_path):
    with build(settings, tmp_path) as client:
        made = client.get("/v1/echo/a")
        long = client.get("/v1/echo/a", headers={REQUEST_ID_HEADER: "x" * 500})

    assert len(made.headers[REQUEST_ID_HEADER]) == 32
    assert made.json()["request_id"] == made.headers[REQUEST_ID_HEADER]
    assert long.headers[REQUEST_ID_HEADER] == "x" * 128


def test_requests_are_counted_by_route_template_and_status(settings, tmp_path):
    before_ok = served("/v1/echo/{word}", 200)
    before_missing = served("unmatched", 404)
    with build(settings, tmp_path) as client:
        client.get("/v1/echo/a")
        client.get("/v1/echo/b")
        missing = client.get("/nowhere")
        metrics = client.get("/metrics").text

    assert served("/v1/echo/{word}", 200) == before_ok + 2
    assert served("unmatched", 404) == before_missing + 1
    assert missing.headers[REQUEST_ID_HEADER]
    assert "salvage_http_request_seconds_bucket" in metrics
