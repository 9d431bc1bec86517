"""The durable outbox: delivered once, retried when the target fails, in order."""

import httpx
import pytest
from fastapi import FastAPI, Header, Response
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select

from shared.db import make_engine
from shared.outbox import OutboxRelay, enqueue, outbox_table


class Target:
    """A tiny service that records what it receives and can be made to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.keys: set[str] = set()
        self.failing = False
        self.reject = False
        app = FastAPI()

        @app.post("/v1/things")
        def receive(
            body: dict, response: Response, key: str = Header(alias="Idempotency-Key")
        ):
            if self.failing:
                response.status_code = 503
                return {}
            if self.reject:
                response.status_code = 422
                return {}
            if key not in self.keys:
                self.keys.add(key)
                self.received.append((key, body))
            return {"ok": True}

        self.client = TestClient(app)


@pytest.fixture
def outbox(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    metadata = MetaData()
    table = outbox_table(metadata)
    metadata.create_all(engine)
    return engine, table


def add(engine, table, key: str, ordering_key: str | None = "batch-1") -> None:
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        enqueue(
            session,
            table,
            target="target",
            path="/v1/things",
            body={"n": key},
            key=key,
            ordering_key=ordering_key,
        )
        session.commit()


def rows(engine, table):
    with engine.connect() as connection:
        return connection.execute(select(table).order_by(table.c.id)).all()


def test_messages_are_delivered_in_order_with_their_keys(outbox):
    engine, table = outbox
    target = Target()
    for key in ("a", "b", "c"):
        add(engine, table, key)

    relay = OutboxRelay(engine=engine, table=table, clients={"target": target.client})

    assert relay.deliver_due() == 3
    assert [key for key, _ in target.received] == ["a", "b", "c"]
    assert all(row.delivered_at is not None for row in rows(engine, table))


def test_a_down_target_loses_nothing_and_gets_each_message_once(outbox):
    engine, table = outbox
    target = Target()
    target.failing = True
    add(engine, table, "a")
    add(engine, table, "b")
    relay = OutboxRelay(engine=engine, table=table, clients={"target": target.client})

    assert relay.deliver_due() == 0
    assert [row.attempts for row in rows(engine, table)] == [1, 0]

    target.failing = False
    now = rows(engine, table)[1].created_at
    with engine.begin() as connection:
        connection.execute(table.update().values(next_attempt_at=now))
    relay.deliver_due()
    relay.deliver_due()

    assert [key for key, _ in target.received] == ["a", "b"]
    assert relay.pending_count() == 0


def test_an_unreachable_target_is_retried_later(outbox):
    engine, table = outbox
    add(engine, table, "a")
    unreachable = httpx.Client(base_url="http://127.0.0.1:9", timeout=0.5)
    relay = OutboxRelay(engine=engine, table=table, clients={"target": unreachable})

    assert relay.deliver_due() == 0
    (row,) = rows(engine, table)
    assert row.attempts == 1 and row.failed_at is None
    assert "ConnectError" in row.last_error


def test_a_rejected_message_is_parked_with_its_reason(outbox):
    engine, table = outbox
    target = Target()
    target.reject = True
    add(engine, table, "a")
    relay = OutboxRelay(engine=engine, table=table, clients={"target": target.client})

    relay.deliver_due()

    (row,) = rows(engine, table)
    assert row.failed_at is not None and row.last_error.startswith("HTTP 422")
    assert relay.pending_count() == 0


def test_other_ordering_keys_are_not_held_up(outbox):
    engine, table = outbox
    target = Target()
    add(engine, table, "a", ordering_key="batch-1")
    add(engine, table, "b", ordering_key="batch-2")
    first = rows(engine, table)[0]
    far = first.created_at.replace(year=first.created_at.year + 1)
    with engine.begin() as connection:
        connection.execute(
            table.update().where(table.c.id == first.id).values(next_attempt_at=far)
        )
    relay = OutboxRelay(engine=engine, table=table, clients={"target": target.client})

    assert relay.deliver_due() == 1
    assert [key for key, _ in target.received] == ["b"]
