"""Quotes from the tariff, payments, their split to the cent, statements."""

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from services.intake.config import IntakeConfig
from services.intake.fees import haversine_m, split
from services.intake.models import Payment, PaymentShare, Refund, RefundShare
from shared.timeutil import iso_utc, utcnow

from .conftest import at, moments

SHARES = {
    "property_manager": Decimal("0.10"),
    "hauler": Decimal("0.60"),
    "plant": Decimal("0.30"),
}


@given(
    cents=st.integers(min_value=1, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=3, max_size=3),
)
def test_split_parts_always_sum_to_the_whole(cents, weights):
    if sum(weights) == 0:
        weights = [1, 0, 0]
    total = sum(weights)
    shares = {
        "property_manager": Decimal(weights[0]) / total,
        "hauler": Decimal(weights[1]) / total,
        "plant": Decimal(weights[2]) / total,
    }
    amount = Decimal(cents) / 100

    parts = split(amount, shares)

    assert sum(parts.values()) == amount
    for party, part in parts.items():
        assert part == part.quantize(Decimal("0.01"))
        assert abs(part - amount * shares[party]) < Decimal("0.01")


@given(st.integers(min_value=1, max_value=10**9))
def test_split_is_deterministic(cents):
    amount = Decimal(cents) / 100
    assert split(amount, SHARES) == split(amount, SHARES)


def test_leftover_cents_go_to_the_largest_remainders():
    thirds = {"a": Decimal(1) / 3, "b": Decimal(1) / 3, "c": Decimal(1) / 3}
    assert split(Decimal("0.01"), thirds) == {
        "a": Decimal("0.01"),
        "b": Decimal("0.00"),
        "c": Decimal("0.00"),
    }
    assert split(Decimal("10.00"), SHARES) == {
        "property_manager": Decimal("1.00"),
        "hauler": Decimal("6.00"),
        "plant": Decimal("3.00"),
    }


def test_haversine_matches_a_known_distance():
    # One degree of latitude is about 111.2 km.
    assert abs(haversine_m(29.0, 121.0, 30.0, 121.0) - 111_195) < 50


def test_quote_uses_the_distance_band_and_bags(world):
    request = world.request_pickup()
    quote = request["quote"]

    assert request["status"] == "quoted"
    assert quote["basis"] == "bags"
    assert quote["plant_id"] == world.plant_id
    assert 5 < quote["distance_km"] < 10
    assert quote["band"] == 0
    assert quote["unit_price"] == "5.00"
    assert quote["amount"] == "30.00"
    assert [event["status"] for event in request["events"]] == ["requested", "quoted"]


def test_quote_by_volume_never_falls_below_the_minimum(world):
    small = world.request_pickup(bags=None, volume_l=50)
    large = world.request_pickup(bags=None, volume_l=1500)

    assert small["quote"]["amount"] == "10.00"
    assert large["quote"]["amount"] == "60.00"


def test_payment_is_split_by_the_configured_shares(world):
    request = world.request_pickup(bags=7)
    response = world.post(
        f"/v1/pickup-requests/{request['id']}/payment",
        {"amount": "35.00", "method": "alipay", "reference": "AP-1"},
        "resident",
        headers={**world.headers["resident"], "Idempotency-Key": "p-1"},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    shares = {share["party_kind"]: share for share in body["shares"]}
    assert shares["property_manager"] == {
        "party_kind": "property_manager",
        "party_id": world.pm_id,
        "amount": "3.50",
    }
    assert shares["hauler"]["amount"] == "21.00"
    assert shares["hauler"]["party_id"] is None
    assert shares["plant"]["amount"] == "10.50"
    assert sum(Decimal(share["amount"]) for share in body["shares"]) == Decimal("35")


def test_a_repeated_payment_replays_the_first_answer(world):
    request = world.request_pickup()
    headers = {**world.headers["resident"], "Idempotency-Key": "same"}
    body = {"amount": request["quote"]["amount"], "method": "card"}
    path = f"/v1/pickup-requests/{request['id']}/payment"

    first = world.client.post(path, json=body, headers=headers)
    second = world.client.post(path, json=body, headers=headers)
    different = world.client.post(
        path, json={**body, "method": "cash"}, headers=headers
    )

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert different.status_code == 409


def test_payment_needs_an_idempotency_key_and_the_quoted_amount(world):
    request = world.request_pickup()
    path = f"/v1/pickup-requests/{request['id']}/payment"

    missing = world.post(path, {"amount": "30.00", "method": "card"}, "resident")
    wrong = world.client.post(
        path,
        json={"amount": "29.99", "method": "card"},
        headers={**world.headers["resident"], "Idempotency-Key": "w"},
    )

    assert missing.status_code == 422
    assert wrong.status_code == 422
    assert wrong.json()["type"] == "urn:salvage:problem:amount-mismatch"
    assert world.get(f"/v1/pickup-requests/{request['id']}").json()["status"] == (
        "quoted"
    )


@pytest.mark.parametrize(
    "written",
    [
        str.maketrans("0123456789", "０１２３４５６７８９"),
        str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"),
    ],
)
def test_an_amount_in_other_digits_is_refused_though_it_reads_as_the_quote(
    world, written
):
    request = world.request_pickup()
    quoted = request["quote"]["amount"]
    path = f"/v1/pickup-requests/{request['id']}/payment"
    headers = {**world.headers["resident"], "Idempotency-Key": "digits"}

    odd = world.client.post(
        path,
        json={"amount": quoted.translate(written), "method": "card"},
        headers=headers,
    )
    plain = world.client.post(
        path,
        json={"amount": quoted, "method": "card"},
        headers={**headers, "Idempotency-Key": "plain"},
    )

    assert odd.status_code == 422, odd.text
    assert "ASCII digits" in odd.text
    assert plain.status_code == 201, plain.text


def test_a_resident_cannot_pay_anothers_request(world):
    request = world.request_pickup()
    response = world.client.post(
        f"/v1/pickup-requests/{request['id']}/payment",
        json={"amount": "30.00", "method": "card"},
        headers={**world.headers["neighbour"], "Idempotency-Key": "n"},
    )
    assert response.status_code == 403


def test_party_statements_total_their_shares(world):
    batch_id, _ = world.dispatched_batch()
    world.paid_request()
    start, end = moments()
    query = {"start": start.isoformat(), "end": end.isoformat()}

    hauler = world.get(
        "/v1/statements", "hauler", params={"party_id": world.hauler_id, **query}
    )
    manager = world.get(
        "/v1/statements", "pm", params={"party_id": world.pm_id, **query}
    )
    other = world.get(
        "/v1/statements", "hauler", params={"party_id": world.plant_id, **query}
    )

    assert hauler.status_code == 200, hauler.text
    assert hauler.json()["total"] == "18.00"
    assert len(hauler.json()["lines"]) == 1
    assert manager.json()["total"] == "6.00"
    assert other.status_code == 403


def test_fee_shares_must_sum_to_one():
    try:
        IntakeConfig(
            fee_shares={"property_manager": "0.5", "hauler": "0.5", "plant": "0.1"}
        )
    except ValueError as exc:
        assert "sum to 1" in str(exc)
    else:
        raise AssertionError("shares summing to 1.1 were accepted")


def statement(world, who: str, party_id: str, start, end) -> dict:
    params = {"party_id": party_id, "start": iso_utc(start), "end": iso_utc(end)}
    response = world.get("/v1/statements", who, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_statements_cover_one_party_and_one_period(app, world):
    requests = [world.paid_request()["id"] for _ in range(3)]
    for request_id in requests:
        assert world.dispatch(request_id).status_code == 200
    now = utcnow()
    with app.state.sessions() as session:
        old = session.scalars(
            select(Payment).where(Payment.request_id == requests[0])
        ).one()
        old.paid_at = now - timedelta(days=40)
        session.commit()
    last_month = (now - timedelta(days=60), now - timedelta(days=20))
    this_month = (now - timedelta(days=1), now + timedelta(days=1))

    earlier = statement(world, "hauler", world.hauler_id, *last_month)
    current = {
        party: statement(world, "admin", party, *this_month)
        for party in (world.pm_id, world.hauler_id, world.plant_id)
    }

    assert [line["request_id"] for line in earlier["lines"]] == [requests[0]]
    assert earlier["total"] == "18.00"
    hauler = current[world.hauler_id]
    assert sorted(line["request_id"] for line in hauler["lines"]) == sorted(
        requests[1:]
    )
    assert {line["party_kind"] for line in hauler["lines"]} == {"hauler"}
    assert hauler["currency"] == "CNY"
    totals = [Decimal(view["total"]) for view in current.values()]
    assert totals == [Decimal("6.00"), Decimal("36.00"), Decimal("18.00")]
    assert sum(totals) == 2 * Decimal("30.00")


def test_a_statement_period_must_be_a_real_interval(world):
    now = utcnow()
    params = {
        "party_id": world.hauler_id,
        "start": iso_utc(now),
        "end": iso_utc(now - timedelta(days=1)),
    }

    backwards = world.get("/v1/statements", "hauler", params=params)
    naive = world.get(
        "/v1/statements",
        "hauler",
        params={**params, "start": "2026-12-01T00:00:00", "end": iso_utc(now)},
    )

    assert backwards.status_code == 422
    assert backwards.json()["type"] == "urn:salvage:problem:period-invalid"
    assert naive.status_code in (400, 422)
    assert naive.headers["content-type"].startswith("application/problem+json")


def pay(world, request: dict, who: str = "resident") -> None:
    response = world.post(
        f"/v1/pickup-requests/{request['id']}/payment",
        {"amount": request["quote"]["amount"], "method": "wechat"},
        who,
        headers={**world.headers[who], "Idempotency-Key": f"pay-{request['id']}"},
    )
    assert response.status_code == 201, response.text


def cancel(world, request_id: str, who: str = "resident") -> None:
    response = world.post(
        f"/v1/pickup-requests/{request_id}/cancel", {"reason": "moved out"}, who
    )
    assert response.status_code == 200, response.text


def today(world, party_id: str) -> dict:
    return statement(world, "admin", party_id, *moments())


def hauler_share(app, request_id: str) -> str | None:
    with app.state.sessions() as session:
        return session.scalars(
            select(PaymentShare.party_id)
            .join(Payment, Payment.id == PaymentShare.payment_id)
            .where(
                Payment.request_id == request_id, PaymentShare.party_kind == "hauler"
            )
        ).one()


def test_a_request_returned_to_paid_leaves_the_haulers_statement(app, world):
    batch_id, collected = world.dispatched_batch()
    missed = world.paid_request("neighbour")["id"]
    assert world.dispatch(missed).status_code == 200
    world.pickup(batch_id, collected)

    before = today(world, world.hauler_id)
    world.deliver(batch_id, 11_300, 11_000)
    after = today(world, world.hauler_id)

    assert before["total"] == "36.00"
    assert [line["request_id"] for line in after["lines"]] == [collected]
    assert after["total"] == "18.00"
    assert hauler_share(app, missed) is None
    assert hauler_share(app, collected) == world.hauler_id
    plant = today(world, world.plant_id)
    assert plant["total"] == "18.00"


def test_a_request_dispatched_again_credits_the_new_hauler(app, world):
    batch_id, collected = world.dispatched_batch()
    missed = world.paid_request("neighbour")["id"]
    world.dispatch(missed)
    world.pickup(batch_id, collected)
    world.deliver(batch_id, 11_300, 11_000)

    again = world.dispatch(missed, window_start=at(100), window_end=at(200))

    assert again.status_code == 200, again.text
    assert hauler_share(app, missed) == world.hauler_id
    assert today(world, world.hauler_id)["total"] == "36.00"


def test_cancelling_a_paid_request_refunds_every_share_exactly(app, world):
    request = world.request_pickup(bags=None, volume_l=1234)
    pay(world, request)

    cancel(world, request["id"])

    fee = Decimal(request["quote"]["amount"])
    assert fee == Decimal("49.36")
    with app.state.sessions() as session:
        refund = session.scalars(
            select(Refund).where(Refund.request_id == request["id"])
        ).one()
        shares = session.scalars(
            select(RefundShare).where(RefundShare.refund_id == refund.id)
        ).all()
    assert (refund.amount, refund.reason, refund.refunded_by) == (
        fee,
        "moved out",
        "resident-1",
    )
    assert sum(share.amount for share in shares) == -fee
    assert all(share.amount <= 0 for share in shares)
    for party in (world.pm_id, world.plant_id):
        view = today(world, party)
        assert [line["kind"] for line in view["lines"]] == ["payment", "refund"]
        paid, refunded = (Decimal(line["amount"]) for line in view["lines"])
        assert paid > 0 and refunded == -paid
        assert view["total"] == "0.00"
    assert today(world, world.hauler_id)["lines"] == []


def test_cancelling_a_dispatched_request_nets_the_haulers_statement_to_zero(world):
    _, request_id = world.dispatched_batch()

    cancel(world, request_id, who="admin")

    hauler = today(world, world.hauler_id)
    assert [(line["kind"], line["amount"]) for line in hauler["lines"]] == [
        ("payment", "18.00"),
        ("refund", "-18.00"),
    ]
    assert hauler["lines"][1]["refund_id"] is not None
    assert hauler["total"] == "0.00"


def test_a_refund_is_dated_when_it_happens_not_when_the_fee_was_paid(app, world):
    request_id = world.paid_request()["id"]
    now = utcnow()
    with app.state.sessions() as session:
        payment = session.scalars(
            select(Payment).where(Payment.request_id == request_id)
        ).one()
        payment.paid_at = now - timedelta(days=40)
        session.commit()

    cancel(world, request_id)

    last_month = statement(
        world, "pm", world.pm_id, now - timedelta(days=60), now - timedelta(days=20)
    )
    this_month = today(world, world.pm_id)
    assert [(line["kind"], line["amount"]) for line in last_month["lines"]] == [
        ("payment", "3.00")
    ]
    assert [(line["kind"], line["amount"]) for line in this_month["lines"]] == [
        ("refund", "-3.00")
    ]


def test_cancelling_an_unpaid_request_refunds_nothing(app, world):
    request = world.request_pickup()

    cancel(world, request["id"])

    with app.state.sessions() as session:
        assert session.scalars(select(Refund)).all() == []
    assert today(world, world.pm_id)["lines"] == []


def test_only_a_partys_own_accounts_read_its_statement(world):
    now = utcnow()
    params = {
        "party_id": world.hauler_id,
        "start": iso_utc(now - timedelta(days=1)),
        "end": iso_utc(now + timedelta(days=1)),
    }

    answers = {
        who: world.get("/v1/statements", who, params=params).status_code
        for who in ("hauler", "device", "plant", "resident", "inspector")
    }

    assert answers == {
        "hauler": 200,
        "device": 403,
        "plant": 403,
        "resident": 403,
        "inspector": 200,
    }
