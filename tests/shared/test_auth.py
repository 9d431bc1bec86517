"""Bearer tokens: roles admitted, everything else refused as problem+json."""

import time
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from shared.auth import Principal, Role, decode_token, issue_token, require
from shared.crypto import generate_key
from shared.problems import Unauthorized, install_problem_handlers


@pytest.fixture
def issuer():
    return generate_key()


@pytest.fixture
def client(issuer):
    app = FastAPI()
    app.state.auth_public_key = issuer.public_key()
    install_problem_handlers(app)

    @app.post("/things")
    def make_thing(who: Annotated[Principal, Depends(require(Role.PLANT))]) -> dict:
        return {"sub": who.sub, "org": who.org}

    return TestClient(app)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_allowed_role_passes_with_its_claims(client, issuer):
    token = issue_token(issuer, sub="plant-1", role=Role.PLANT, org="plant-1")
    response = client.post("/things", headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {"sub": "plant-1", "org": "plant-1"}


def test_admin_is_always_admitted(client, issuer):
    token = issue_token(issuer, sub="root", role=Role.ADMIN)
    assert client.post("/things", headers=bearer(token)).status_code == 200


def test_other_role_is_forbidden(client, issuer):
    token = issue_token(issuer, sub="b", role=Role.BUYER)
    response = client.post("/things", headers=bearer(token))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:salvage:problem:forbidden"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_missing_or_malformed_tokens_are_401(client, headers):
    response = client.post("/things", headers=headers)

    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_token_from_another_issuer_is_401(client):
    token = issue_token(generate_key(), sub="x", role=Role.PLANT)
    assert client.post("/things", headers=bearer(token)).status_code == 401


def test_expired_token_is_401(client, issuer):
    token = issue_token(issuer, sub="x", role=Role.PLANT, ttl_seconds=-10)
    assert client.post("/things", headers=bearer(token)).status_code == 401


def test_a_remembered_token_is_refused_once_it_expires(client, issuer, monkeypatch):
    token = issue_token(issuer, sub="plant-1", role=Role.PLANT, ttl_seconds=60)
    assert client.post("/things", headers=bearer(token)).status_code == 200

    later = time.time() + 61
    monkeypatch.setattr("shared.auth.time.time", lambda: later)

    assert client.post("/things", headers=bearer(token)).status_code == 401


def test_a_remembered_token_is_checked_again_under_another_key(issuer):
    token = issue_token(issuer, sub="plant-1", role=Role.PLANT)
    assert decode_token(issuer.public_key(), token).sub == "plant-1"

    with pytest.raises(Unauthorized):
        decode_token(generate_key().public_key(), token)
