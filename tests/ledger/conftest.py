"""Fixtures for the ledger: a running app on a fresh database, registered
party keys, and a helper that writes a batch's signed custody chain."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from services.ledger.api import create_app
from services.ledger.config import LedgerConfig
from tests.ledger.helpers import ORIGIN, Chain, Parties, make_parties, register


@pytest.fixture
def ledger_url(databases) -> str:
    return databases.url("ledger")


@pytest.fixture
def ledger_settings(settings, ledger_url):
    return settings.model_copy(update={"ledger_database_url": ledger_url})


@pytest.fixture
def client(ledger_settings, auth_header) -> Iterator[TestClient]:
    app = create_app(ledger_settings, config=LedgerConfig(origin=ORIGIN))
    with TestClient(app) as test_client:
        test_client.headers.update(auth_header("service", sub="service:intake"))
        yield test_client


@pytest.fixture
def parties(client, auth_header) -> Parties:
    """The parties of a chain, each key registered by whoever may vouch for it:
    intake (the client's identity) for parties, a service for its own key."""
    registered = make_parties()
    for party in registered.all():
        own = party.party_kind == "service"
        headers = auth_header("service", sub=f"service:{party.party_id}")
        register(client, party, headers if own else None)
    return registered


@pytest.fixture
def chain_for(client, parties):
    def make(batch_id: str) -> Chain:
        return Chain(client, parties, batch_id)

    return make
