"""JSON that canonical JSON cannot carry is refused before any service sees it."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.jsonguard import StrictJsonMiddleware
from shared.problems import install_problem_handlers


@pytest.fixture
def client():
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(StrictJsonMiddleware, max_body_bytes=10_000)
    received = []

    @app.post("/echo")
    def echo(body: dict) -> dict:
        received.append(body)
        return body

    test_client = TestClient(app)
    test_client.received = received
    return test_client


def post(client, raw: bytes):
    return client.post(
        "/echo", content=raw, headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"x": NaN}',
        b'{"x": Infinity}',
        b'{"x": -Infinity}',
        b'{"x": 9007199254740992}',
        b'{"x": [1, -12345678901234567890]}',
        b'{"x": 1e400}',
        b'{"x": {"y": -2.5E+999}}',
    ],
)
def test_values_canonical_json_cannot_carry_are_refused(client, raw):
    response = post(client, raw)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("json-number-out-of-range")
    assert client.received == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"x": 9007199254740991, "y": -9007199254740991}',
        b'{"note": "NaN and Infinity inside a string are text"}',
        b'{"hash": "12345678901234567890abcdef"}',
        b'{"x": 1.5e300}',
        b'{"x": 1e-400, "note": "e999 in a string is text"}',
    ],
)
def test_ordinary_json_passes_unchanged(client, raw):
    response = post(client, raw)

    assert response.status_code == 200
    assert len(client.received) == 1


def test_malformed_json_is_left_to_the_schema_error(client):
    assert post(client, b'{"x": NaN').status_code == 422
    assert client.received == []


def test_oversized_bodies_are_refused(client):
    response = post(client, b'{"x": "' + b"a" * 20_000 + b'"}')

    assert response.status_code == 413
    assert client.received == []


def test_a_value_out_of_range_is_a_422_not_a_500():
    from datetime import UTC, datetime

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/when")
    def when(at: datetime) -> dict:
        return {"utc": at.astimezone(UTC).isoformat()}

    response = TestClient(app).get("/when", params={"at": "0001-01-01T00:00:00+14:00"})

    assert response.status_code == 422
    assert response.json()["type"].endswith("value-out-of-range")


@pytest.mark.parametrize(
    "raw", [b'{"x": "a\\u0000b"}', b'{"x\\u0000": 1}', b'{"x": "\\\\\\u0000"}']
)
def test_a_nul_character_in_a_json_string_is_refused(client, raw):
    response = post(client, raw)

    assert response.status_code == 422
    assert response.json()["type"].endswith("nul-character")
    assert client.received == []


def test_an_escaped_backslash_before_u0000_is_ordinary_text(client):
    response = post(client, b'{"x": "C:\\\\u0000"}')

    assert response.status_code == 200
    assert response.json() == {"x": "C:\\u0000"}


def test_an_unlabelled_body_is_guarded_as_json(client):
    response = client.post("/echo", content=b'{"x": NaN}')

    assert response.status_code == 422
    assert response.json()["type"].endswith("json-number-out-of-range")
    assert client.received == []


@pytest.mark.parametrize(
    ("path", "form"),
    [("/echo/a%00b", None), ("/echo?x=%00", None), ("/echo", b"x=a%00")],
)
def test_a_nul_in_the_url_or_a_form_is_refused(client, path, form):
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = client.post(path, content=form or b"", headers=headers)

    assert response.status_code == 422
    assert response.json()["type"].endswith("nul-character")
    assert client.received == []


def test_a_value_the_database_cannot_store_is_a_422_not_a_500():
    from sqlalchemy.exc import DataError

    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/store")
    def store() -> dict:
        raise DataError("INSERT", {}, ValueError("numeric field overflow"))

    response = TestClient(app, raise_server_exceptions=False).post("/store")

    assert response.status_code == 422
    assert response.json()["type"].endswith("value-not-storable")
