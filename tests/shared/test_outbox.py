"""The durable outbox: delivered once, retried when the target fails, in order."""

import httpx
import pytest
from fastapi import FastAPI, Header, Response
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session

from shared import outbox as outbox_module
from shared.db import make_engine
from shared.outbox import (
    OutboxRelay,
    enqueue,
    failed_messages,
    outbox_table,
    retry_failed,
)
from shared.problems import Conflict, NotFound


class Target:
    """A tiny service that records what it receives and can be made to fail."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.keys: set[str] = set()
        self.failing = False
        self.reject = False
        self.rejecting: set[str] = set()
        app = FastAPI()

        @app.post("/v1/things")
        def receive(
            body: dict, response: Response, key: str = Header(alias="Idempotency-Key")
        ):
            if self.failing:
                response.status_code = 503
                return {}
            if self.reject or key in self.rejecting:
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


def relay_for(engine, table, target: Target, service: str) -> OutboxRelay:
    return OutboxRelay(
        engine=engine, table=table, clients={"target": target.client}, service=service
    )


def failed_gauge(service: str) -> float | None:
    return REGISTRY.get_sample_value(
        "salvage_outbox_failed_messages", {"service": service}
    )


def rejected_total(service: str) -> float:
    labels = {"service": service, "target": "target"}
    return REGISTRY.get_sample_value("salvage_outbox_rejected_total", labels) or 0.0


def test_a_rejected_message_holds_back_later_messages_with_its_key(outbox):
    engine, table = outbox
    target = Target()
    target.rejecting = {"a"}
    add(engine, table, "a", ordering_key="batch-1")
    add(engine, table, "b", ordering_key="batch-1")
    add(engine, table, "c", ordering_key="batch-2")
    relay = relay_for(engine, table, target, "held-back")

    first = relay.deliver_due()
    second = relay.deliver_due()

    assert (first, second) == (1, 0)
    assert [key for key, _ in target.received] == ["c"]
    a, b, _ = rows(engine, table)
    assert a.failed_at is not None and a.last_error.startswith("HTTP 422")
    assert b.delivered_at is None and b.failed_at is None and b.attempts == 0
    assert relay.pending_count() == 1
    assert relay.failed_count() == 1


def test_a_message_without_an_ordering_key_holds_back_nothing(outbox):
    engine, table = outbox
    target = Target()
    target.rejecting = {"a"}
    add(engine, table, "a", ordering_key=None)
    add(engine, table, "b", ordering_key=None)
    add(engine, table, "c", ordering_key="batch-1")
    relay = relay_for(engine, table, target, "unordered")

    assert relay.deliver_due() == 2
    assert [key for key, _ in target.received] == ["b", "c"]


class Recorder:
    """Stands in for the module's structlog logger and keeps each event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **context: self.events.append((level, event, context))


def test_a_rejection_is_logged_as_an_error_and_counted(outbox, monkeypatch):
    engine, table = outbox
    recorder = Recorder()
    monkeypatch.setattr(outbox_module, "log", recorder)
    target = Target()
    target.rejecting = {"a"}
    add(engine, table, "a")
    add(engine, table, "b")
    relay = relay_for(engine, table, target, "counted")
    before = rejected_total("counted")

    relay.deliver_due()

    [(level, context)] = [
        (level, context)
        for level, event, context in recorder.events
        if event == "outbox.delivery_rejected"
    ]
    assert level == "error"
    assert (context["key"], context["ordering_key"]) == ("a", "batch-1")
    assert context["error"].startswith("HTTP 422")
    assert rejected_total("counted") == before + 1
    assert failed_gauge("counted") == 1


def test_retrying_a_fixed_message_delivers_it_then_those_it_held_back(outbox):
    engine, table = outbox
    target = Target()
    target.rejecting = {"a"}
    for key in ("a", "b", "c"):
        add(engine, table, key)
    relay = relay_for(engine, table, target, "retried")
    relay.deliver_due()
    target.rejecting = set()

    with Session(engine) as session:
        [failed] = failed_messages(session, table)
        retried = retry_failed(session, table, message_id=failed.id)
        session.commit()
    delivered = relay.deliver_due()

    assert failed.key == "a" and failed.last_error.startswith("HTTP 422")
    assert retried.failed_at is None and retried.attempts == 1
    assert delivered == 3
    assert [key for key, _ in target.received] == ["a", "b", "c"]
    assert relay.pending_count() == 0
    assert relay.failed_count() == 0
    assert failed_gauge("retried") == 0


def test_only_a_failed_message_can_be_retried(outbox):
    engine, table = outbox
    target = Target()
    add(engine, table, "a")
    add(engine, table, "b")
    relay_for(engine, table, target, "not-failed").deliver_due()
    add(engine, table, "c")
    delivered, _, waiting = rows(engine, table)

    with Session(engine) as session:
        for row in (delivered, waiting):
            with pytest.raises(Conflict):
                retry_failed(session, table, message_id=row.id)
        with pytest.raises(NotFound):
            retry_failed(session, table, message_id=999)
        session.rollback()

    assert [row.failed_at for row in rows(engine, table)] == [None, None, None]
    assert rows(engine, table)[2].next_attempt_at == waiting.next_attempt_at
