"""Signed custody: the statements intake serves, the rules it enforces, and
the ledger appends and tracking messages it queues with each event."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from services.intake.config import IntakeConfig
from services.intake.models import CustodyEvent
from shared.canonical import b64, canonical_json
from shared.crypto import generate_key, key_id, sign_statement
from shared.merkle import leaf_hash

from .conftest import at, count, drain, outbox_rows, sorted_outputs


def entries(app) -> list:
    return [row for row in outbox_rows(app) if row.path == "/v1/entries"]


def test_the_pickup_statement_is_exactly_the_contract(world):
    batch_id, request_id = world.dispatched_batch()

    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.pickup",
            "at": at(10),
            "body": {
                "request_id": request_id,
                "declared_volume_l": 400,
                "estimated_mass_kg": 300,
                "photo_sha256": "ab" * 32,
            },
        },
        "device",
    )

    assert response.status_code == 200, response.text
    assert response.json()["statement"] == {
        "v": 1,
        "kind": "custody.pickup",
        "batch_id": batch_id,
        "prev": None,
        "at": at(10),
        "body": {
            "request_id": request_id,
            "community_id": world.community_id,
            "property_manager_id": world.pm_id,
            "hauler_id": world.hauler_id,
            "vehicle_id": world.vehicle_id,
            "device_id": world.device_id,
            "declared_volume_l": 400,
            "estimated_mass_kg": 300,
            "mass_basis": "estimated",
            "materials": ["17 01 07", "17 02 01"],
            "photo_sha256": "ab" * 32,
        },
    }
    assert response.json()["signers"] == [
        {"party_kind": "device", "party_id": world.device_id},
        {"party_kind": "property_manager", "party_id": world.pm_id},
    ]


def test_a_full_chain_is_stored_linked_and_queued_for_the_ledger(app, world, peers):
    batch_id, request_id = world.dispatched_batch()

    pickup = world.pickup(batch_id, request_id, mass=300)
    delivery = world.deliver(batch_id, gross=11_300, tare=11_000)
    processing = world.process(batch_id, sorted_outputs(300))

    assert [r.status_code for r in (pickup, delivery, processing)] == [201, 201, 201]
    with app.state.sessions() as session:
        events = session.scalars(
            select(CustodyEvent)
            .where(CustodyEvent.batch_id == batch_id)
            .order_by(CustodyEvent.seq)
        ).all()
    assert [e.kind for e in events] == [
        "custody.pickup",
        "custody.delivery",
        "custody.processing",
    ]
    for previous, event in zip(events, events[1:], strict=False):
        entry = {"statement": previous.statement, "signatures": previous.signatures}
        assert event.statement["prev"] == b64(leaf_hash(canonical_json(entry)))
    queued = entries(app)
    assert [row.body["statement"]["kind"] for row in queued] == [e.kind for e in events]
    assert [row.key for row in queued] == [f"custody:{e.id}" for e in events]
    assert {row.ordering_key for row in queued} == {"ledger"}
    assert queued[0].body == {
        "statement": events[0].statement,
        "signatures": events[0].signatures,
    }
    batch = world.get(f"/v1/batches/{batch_id}", "plant").json()
    assert batch["status"] == "processed"
    assert batch["head"] == events[-1].leaf_hash
    request = world.get(f"/v1/pickup-requests/{request_id}", "resident").json()
    assert [e["status"] for e in request["events"]][-2:] == ["collected", "completed"]

    drain(app)
    appended = [m for m in peers.received if m["path"] == "/v1/entries"]
    assert [m["key"] for m in appended] == [f"custody:{e.id}" for e in events]


def test_delivery_asks_tracking_for_the_trip(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300)
    world.deliver(batch_id, gross=11_320, tare=11_000, minute=75)

    trips = [row for row in outbox_rows(app) if row.path.endswith("/trip")]

    assert len(trips) == 1
    assert trips[0].path == f"/v1/batches/{batch_id}/trip"
    assert trips[0].key == f"trip:{batch_id}"
    assert trips[0].body == {
        "device_id": world.device_id,
        "vehicle_id": world.vehicle_id,
        "start": at(0),
        "end": at(75),
    }


def test_a_far_off_net_mass_is_a_discrepancy_and_an_alert(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300, volume=1000)

    response = world.deliver(batch_id, gross=11_900, tare=11_000)

    assert response.status_code == 201
    assert response.json()["discrepancy"]["expected_kg"] == 300
    assert response.json()["discrepancy"]["actual_kg"] == 900
    alerts = [row for row in outbox_rows(app) if row.path == "/v1/alerts"]
    assert len(alerts) == 1
    body = alerts[0].body
    assert (body["kind"], body["batch_id"], body["device_id"], body["start"]) == (
        "mass_discrepancy",
        batch_id,
        world.device_id,
        at(60),
    )
    assert body["vehicle_id"] == world.vehicle_id
    assert "900 kg" in body["message"]
    assert body["detail"]["net_kg"] == 900
    batch = world.get(f"/v1/batches/{batch_id}").json()
    assert batch["discrepancies"][0]["kind"] == "mass_discrepancy"


def test_a_net_mass_within_tolerance_raises_nothing(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300)

    response = world.deliver(batch_id, gross=11_350, tare=11_000)

    assert response.json()["discrepancy"] is None
    assert not [row for row in outbox_rows(app) if row.path == "/v1/alerts"]


@pytest.mark.parametrize(
    ("volume", "bound", "density"),
    [(200, 284, 1500), (2000, 474, 150)],
    ids=["too-dense", "too-light"],
)
def test_a_net_mass_implausible_for_the_declared_volume_is_a_discrepancy_and_an_alert(
    app, world, volume, bound, density
):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300, volume=volume)

    response = world.deliver(batch_id, gross=11_300, tare=11_000)

    assert response.status_code == 201, response.text
    [found] = response.json()["discrepancies"]
    assert response.json()["discrepancy"] == found
    assert (found["kind"], found["expected_kg"], found["actual_kg"]) == (
        "volume_discrepancy",
        bound,
        300,
    )
    [alert] = alerts(app)
    assert alert.key == f"alert:volume_discrepancy:{batch_id}"
    assert (alert.body["kind"], alert.body["batch_id"], alert.body["start"]) == (
        "volume_discrepancy",
        batch_id,
        at(60),
    )
    assert alert.body["device_id"] == world.device_id
    assert f"{density} kg/m3" in alert.body["message"]
    assert alert.body["detail"] == {
        "check": "weighbridge_volume",
        "declared_volume_l": volume,
        "net_kg": 300,
        "density_kg_m3": density,
        "density_min_kg_m3": 237,
        "density_max_kg_m3": 1424,
        "ticket_no": "T-1",
        "discrepancy_id": found["id"],
    }
    batch = world.get(f"/v1/batches/{batch_id}").json()
    assert [d["kind"] for d in batch["discrepancies"]] == ["volume_discrepancy"]


@pytest.mark.parametrize("net", [237, 1424], ids=["lightest", "densest"])
def test_a_density_at_either_end_of_the_range_raises_nothing(app, world, net):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=net, volume=1000)

    response = world.deliver(batch_id, gross=11_000 + net, tare=11_000)

    assert response.status_code == 201, response.text
    assert response.json()["discrepancies"] == []
    assert not alerts(app)


def test_mass_weighed_against_no_declared_volume_is_a_discrepancy(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300, volume=0)

    response = world.deliver(batch_id, gross=11_300, tare=11_000)

    assert response.status_code == 201, response.text
    [found] = response.json()["discrepancies"]
    assert (found["kind"], found["expected_kg"], found["actual_kg"]) == (
        "volume_discrepancy",
        0,
        300,
    )
    [alert] = alerts(app)
    assert alert.body["message"] == (
        "Weighed net 300 kg, but the pickups declared no volume."
    )
    assert alert.body["detail"]["density_kg_m3"] is None


def test_the_volume_check_sums_every_pickup_of_the_batch(app, world):
    batch_id, first = world.dispatched_batch()
    second = world.paid_request("neighbour")["id"]
    world.dispatch(second)
    world.pickup(batch_id, first, mass=150, volume=0)
    world.pickup(batch_id, second, mass=150, volume=100, minute=20)

    response = world.deliver(batch_id, gross=11_300, tare=11_000)

    [found] = response.json()["discrepancies"]
    assert (found["kind"], found["expected_kg"]) == ("volume_discrepancy", 142)
    assert alerts(app)[0].body["detail"]["declared_volume_l"] == 100


def test_a_delivery_off_on_mass_and_volume_raises_both_under_their_own_keys(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300, volume=400)

    response = world.deliver(batch_id, gross=11_900, tare=11_000)

    kinds = [d["kind"] for d in response.json()["discrepancies"]]
    assert kinds == ["mass_discrepancy", "volume_discrepancy"]
    assert response.json()["discrepancy"]["kind"] == "mass_discrepancy"
    assert [(row.key, row.body["kind"]) for row in alerts(app)] == [
        (f"alert:mass_discrepancy:{batch_id}", "mass_discrepancy"),
        (f"alert:volume_discrepancy:{batch_id}", "volume_discrepancy"),
    ]
    batch = world.get(f"/v1/batches/{batch_id}").json()
    assert [d["kind"] for d in batch["discrepancies"]] == kinds


def test_the_density_range_must_be_in_order():
    with pytest.raises(ValueError, match="must be below"):
        IntakeConfig(volume_density_min_kg_m3=1424, volume_density_max_kg_m3=237)


def test_a_stale_prev_is_refused(app, world):
    batch_id, first = world.dispatched_batch()
    second = world.paid_request("neighbour")
    world.dispatch(second["id"])
    body = {
        "request_id": second["id"],
        "declared_volume_l": 100,
        "estimated_mass_kg": 80,
    }
    stale = world.statement(batch_id, "custody.pickup", at(20), body, "device")
    world.pickup(batch_id, first, minute=10)

    response = world.record(batch_id, stale, [world.device_key, world.pm_key], "device")

    assert response.status_code == 409
    assert response.json()["type"] == "urn:salvage:problem:stale-prev"
    assert count(app, CustodyEvent.__table__) == 1


def test_delivery_before_any_pickup_is_refused(world):
    batch_id, _ = world.dispatched_batch()
    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.delivery",
            "at": at(60),
            "body": {"ticket_no": "T-1", "gross_kg": 2, "tare_kg": 1},
        },
        "plant",
    )
    assert response.status_code == 409
    assert response.json()["type"] == "urn:salvage:problem:custody-order"


def test_pickup_after_delivery_and_processing_before_delivery_are_refused(world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    too_early = world.post(
        f"/v1/batches/{batch_id}/statements",
        {"kind": "custody.processing", "at": at(30), "body": {"outputs": []}},
        "plant",
    )
    world.deliver(batch_id, gross=11_300, tare=11_000)
    late = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.pickup",
            "at": at(70),
            "body": {
                "request_id": request_id,
                "declared_volume_l": 1,
                "estimated_mass_kg": 1,
            },
        },
        "device",
    )
    assert too_early.status_code == 409
    assert late.status_code == 409


def test_a_statement_dated_before_the_previous_one_is_refused(world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, minute=30)
    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.delivery",
            "at": at(20),
            "body": {"ticket_no": "T", "gross_kg": 2, "tare_kg": 1},
        },
        "plant",
    )
    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:time-order"


@pytest.mark.parametrize(
    ("signers", "slug"),
    [
        ("device_only", "signature-missing"),
        ("plant_signs_pickup", "wrong-signer"),
        ("unregistered", "key-unknown"),
        ("forged", "signature-invalid"),
    ],
)
def test_pickup_signatures_must_be_the_right_parties(app, world, signers, slug):
    batch_id, request_id = world.dispatched_batch()
    body = {
        "request_id": request_id,
        "declared_volume_l": 400,
        "estimated_mass_kg": 300,
    }
    statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")
    signatures = {
        "device_only": [sign_statement(world.device_key, statement)],
        "plant_signs_pickup": [
            sign_statement(world.device_key, statement),
            sign_statement(world.plant_key, statement),
        ],
        "unregistered": [
            sign_statement(world.device_key, statement),
            sign_statement(generate_key(), statement),
        ],
        "forged": [
            sign_statement(world.device_key, statement),
            {
                "key_id": key_id(world.pm_key),
                "signature": sign_statement(world.pm_key, {"other": 1})["signature"],
            },
        ],
    }[signers]

    response = world.post(
        f"/v1/batches/{batch_id}/custody",
        {"statement": statement, "signatures": signatures},
        "device",
    )

    assert response.status_code == 422
    assert response.json()["type"] == f"urn:salvage:problem:{slug}"
    assert count(app, CustodyEvent.__table__) == 0
    assert not entries(app)


def test_a_revoked_key_is_refused_at_signing(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.post(f"/v1/parties/keys/{key_id(world.pm_key)}/revoke", {"reason": "left"})

    response = world.pickup(batch_id, request_id)

    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:key-revoked"
    assert count(app, CustodyEvent.__table__) == 0


def test_a_tampered_statement_is_refused(world):
    batch_id, request_id = world.dispatched_batch()
    body = {
        "request_id": request_id,
        "declared_volume_l": 400,
        "estimated_mass_kg": 300,
    }
    statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")
    statement["body"]["hauler_id"] = "someone-else"

    response = world.record(
        batch_id, statement, [world.device_key, world.pm_key], "device"
    )

    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:statement-mismatch"


def alerts(app) -> list:
    return [row for row in outbox_rows(app) if row.path == "/v1/alerts"]


def weighed_batch(world, net: int = 300) -> str:
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=net)
    world.deliver(batch_id, gross=11_000 + net, tare=11_000)
    return batch_id


def test_outputs_above_the_net_input_are_refused(app, world):
    batch_id = weighed_batch(world)

    draft = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.processing",
            "at": at(90),
            "body": {"outputs": sorted_outputs(301)},
        },
        "plant",
    )

    assert draft.status_code == 422
    assert draft.json()["type"] == "urn:salvage:problem:outputs-imbalance"
    assert draft.json()["outputs_kg"] == 301
    assert [event.kind for event in stored_chain(app, batch_id)] == [
        "custody.pickup",
        "custody.delivery",
    ]


def test_a_shortfall_within_tolerance_raises_nothing(app, world):
    batch_id = weighed_batch(world)

    response = world.process(batch_id, sorted_outputs(295))

    assert response.status_code == 201
    assert response.json()["discrepancy"] is None
    assert not alerts(app)


def test_a_shortfall_beyond_tolerance_is_a_discrepancy_and_an_alert(app, world):
    batch_id = weighed_batch(world)

    response = world.process(batch_id, sorted_outputs(290))

    assert response.status_code == 201, response.text
    found = response.json()["discrepancy"]
    assert (found["kind"], found["expected_kg"], found["actual_kg"]) == (
        "output_imbalance",
        300,
        290,
    )
    [alert] = alerts(app)
    assert alert.key == f"alert:output_imbalance:{batch_id}"
    assert (alert.body["kind"], alert.body["batch_id"], alert.body["start"]) == (
        "mass_discrepancy",
        batch_id,
        at(90),
    )
    assert alert.body["detail"]["check"] == "sorting_outputs"
    assert alert.body["detail"]["shortfall_kg"] == 10
    assert alert.body["detail"]["discrepancy_id"] == found["id"]
    batch = world.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "processed"
    assert [d["kind"] for d in batch["discrepancies"]] == ["output_imbalance"]
    assert len(entries(app)) == 3


def stored_chain(app, batch_id: str) -> list:
    with app.state.sessions() as session:
        query = select(CustodyEvent).where(CustodyEvent.batch_id == batch_id)
        return list(session.scalars(query.order_by(CustodyEvent.seq)))


def test_an_output_code_must_fit_its_material(world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    world.deliver(batch_id, gross=11_300, tare=11_000)
    outputs = [{"material": "wood", "ewc": "17 01 01", "kg": 300}]

    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {"kind": "custody.processing", "at": at(90), "body": {"outputs": outputs}},
        "plant",
    )
    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:ewc-invalid"


def test_a_ticket_number_is_unique_per_plant(app, world):
    first, first_request = world.dispatched_batch()
    world.pickup(first, first_request)
    assert world.deliver(first, 11_300, 11_000, ticket="WB-77").status_code == 201
    second_request = world.paid_request()
    second = world.dispatch(
        second_request["id"], window_start=at(100), window_end=at(200)
    ).json()["batch_id"]
    world.pickup(second, second_request["id"], minute=110)

    response = world.post(
        f"/v1/batches/{second}/statements",
        {
            "kind": "custody.delivery",
            "at": at(150),
            "body": {"ticket_no": "WB-77", "gross_kg": 11_300, "tare_kg": 11_000},
        },
        "plant",
    )

    assert response.status_code == 409
    assert response.json()["type"] == "urn:salvage:problem:duplicate-ticket"


def test_net_must_be_gross_minus_tare(world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.delivery",
            "at": at(60),
            "body": {"ticket_no": "T", "gross_kg": 500, "tare_kg": 100, "net_kg": 300},
        },
        "plant",
    )
    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:net-mismatch"


def test_posting_the_same_entry_again_replays_it(app, world):
    batch_id, request_id = world.dispatched_batch()
    body = {
        "request_id": request_id,
        "declared_volume_l": 400,
        "estimated_mass_kg": 300,
    }
    statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")

    first = world.record(
        batch_id, statement, [world.device_key, world.pm_key], "device"
    )
    again = world.record(
        batch_id, statement, [world.device_key, world.pm_key], "device"
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["event_id"] == first.json()["event_id"]
    assert len(entries(app)) == 1


def test_uncollected_requests_return_to_paid_at_delivery(world):
    batch_id, collected = world.dispatched_batch()
    missed = world.paid_request("neighbour")
    world.dispatch(missed["id"])
    world.pickup(batch_id, collected)

    world.deliver(batch_id, 11_300, 11_000)

    stored = world.get(f"/v1/pickup-requests/{missed['id']}").json()
    assert stored["status"] == "paid"
    assert stored["batch_id"] is None


def test_a_plant_cannot_record_custody_for_another_plants_batch(world, auth_header):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    stranger = auth_header("plant", "other", "some-other-plant")
    response = world.client.post(
        f"/v1/batches/{batch_id}/statements",
        json={
            "kind": "custody.delivery",
            "at": at(60),
            "body": {"ticket_no": "T", "gross_kg": 2, "tare_kg": 1},
        },
        headers=stranger,
    )
    assert response.status_code == 403


def test_a_load_over_the_vehicles_capacity_is_refused(world):
    batch_id, request_id = world.dispatched_batch()

    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {
            "kind": "custody.pickup",
            "at": at(10),
            "body": {
                "request_id": request_id,
                "declared_volume_l": 4000,
                "estimated_mass_kg": 5001,
            },
        },
        "device",
    )

    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:over-capacity"


def test_concurrent_pickups_on_one_head_store_exactly_one(app, world):
    batch_id, first = world.dispatched_batch()
    second = world.paid_request("neighbour")
    world.dispatch(second["id"])
    posts = []
    for request_id in (first, second["id"]):
        body = {
            "request_id": request_id,
            "declared_volume_l": 9,
            "estimated_mass_kg": 9,
        }
        statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")
        signatures = [
            sign_statement(key, statement) for key in (world.device_key, world.pm_key)
        ]
        posts.append({"statement": statement, "signatures": signatures})

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(
            pool.map(
                lambda body: world.post(
                    f"/v1/batches/{batch_id}/custody", body, "device"
                ),
                posts,
            )
        )

    assert sorted(r.status_code for r in responses) == [201, 409]
    assert count(app, CustodyEvent.__table__) == 1
    assert len(entries(app)) == 1


def refused(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"urn:salvage:problem:{slug}"
    return response.json()


def change_plant(world, **patch) -> None:
    response = world.client.patch(
        f"/v1/plants/{world.plant_id}", json=patch, headers=world.headers["inspector"]
    )
    assert response.status_code == 200, response.text


def pickup_draft(world, batch_id: str, request_id: str, **extra):
    body = {
        "request_id": request_id,
        "declared_volume_l": 400,
        "estimated_mass_kg": 300,
        **extra,
    }
    return world.post(
        f"/v1/batches/{batch_id}/statements",
        {"kind": "custody.pickup", "at": at(10), "body": body},
        "device",
    )


def test_a_pickup_naming_a_material_the_plant_refuses_is_refused(app, world):
    batch_id, request_id = world.dispatched_batch()

    steel = pickup_draft(world, batch_id, request_id, materials=["17 04 05"])
    plastic = pickup_draft(world, batch_id, request_id, materials=["17 02 03"])

    problem = refused(steel, 409, "plant-refuses-material")
    assert problem["missing"] == ["17 04 05"]
    assert plastic.status_code == 200, plastic.text
    assert plastic.json()["statement"]["body"]["materials"] == ["17 02 03"]


def test_a_pickup_signed_after_the_plant_stops_taking_a_material_stores_nothing(
    app, world
):
    batch_id, request_id = world.dispatched_batch()
    body = {"request_id": request_id, "declared_volume_l": 400, "estimated_mass_kg": 9}
    statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")
    change_plant(world, accepted_ewc=["17 01 07"])

    response = world.record(
        batch_id, statement, [world.device_key, world.pm_key], "device"
    )

    assert refused(response, 409, "plant-refuses-material")["missing"] == ["17 02 01"]
    assert stored_chain(app, batch_id) == []
    assert entries(app) == []
    request = world.get(f"/v1/pickup-requests/{request_id}").json()
    assert request["status"] == "dispatched"


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"status": "suspended"}, "suspended"),
        ({"valid_from": at(-60 * 24 * 30), "valid_until": at(5)}, "expired"),
    ],
)
def test_a_pickup_is_refused_once_the_haulers_licence_lapses(app, world, patch, reason):
    batch_id, request_id = world.dispatched_batch()
    body = {"request_id": request_id, "declared_volume_l": 400, "estimated_mass_kg": 9}
    statement = world.statement(batch_id, "custody.pickup", at(10), body, "device")
    lapsed = world.client.patch(
        f"/v1/haulers/{world.hauler_id}", json=patch, headers=world.headers["inspector"]
    )
    assert lapsed.status_code == 200, lapsed.text

    response = world.record(
        batch_id, statement, [world.device_key, world.pm_key], "device"
    )

    assert refused(response, 409, "licence-invalid")["reason"] == reason
    assert stored_chain(app, batch_id) == []
    assert entries(app) == []


def test_a_pickup_by_a_licensed_hauler_is_recorded(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"valid_from": at(-60 * 24 * 30), "valid_until": at(11)},
        headers=world.headers["inspector"],
    )

    response = world.pickup(batch_id, request_id, minute=10)

    assert response.status_code == 201, response.text
    assert len(stored_chain(app, batch_id)) == 1


WEIGHED = {"ticket_no": "T-9", "gross_kg": 11_300, "tare_kg": 11_000}


def delivery_statement(world, batch_id: str) -> dict:
    return world.statement(batch_id, "custody.delivery", at(60), WEIGHED, "plant")


@pytest.mark.parametrize(
    ("patch", "slug"),
    [
        ({"licensed": False}, "plant-unlicensed"),
        ({"accepted_ewc": ["17 01 07", "17 09 04"]}, "plant-refuses-material"),
    ],
)
def test_a_delivery_the_plant_may_not_receive_is_refused(app, world, patch, slug):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    statement = delivery_statement(world, batch_id)
    change_plant(world, **patch)

    draft = world.post(
        f"/v1/batches/{batch_id}/statements",
        {"kind": "custody.delivery", "at": at(60), "body": WEIGHED},
        "plant",
    )
    response = world.record(batch_id, statement, [world.plant_key], "plant")

    refused(draft, 409, slug)
    problem = refused(response, 409, slug)
    if slug == "plant-refuses-material":
        assert problem["missing"] == ["17 02 01"]
    assert [e.kind for e in stored_chain(app, batch_id)] == ["custody.pickup"]
    assert len(entries(app)) == 1
    assert world.get(f"/v1/batches/{batch_id}").json()["status"] == "open"


def test_a_delivery_of_accepted_materials_to_a_licensed_plant_is_recorded(app, world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    change_plant(world, accepted_ewc=["17 01 07", "17 02 01"], licensed=True)

    response = world.record(
        batch_id, delivery_statement(world, batch_id), [world.plant_key], "plant"
    )

    assert response.status_code == 201, response.text
    assert world.get(f"/v1/batches/{batch_id}").json()["status"] == "delivered"


def test_sorting_outputs_the_plant_does_not_accept_are_refused(app, world):
    batch_id = weighed_batch(world)
    glass = [
        {"material": "concrete_mortar", "ewc": "17 01 07", "kg": 200},
        {"material": "glass", "ewc": "17 02 02", "kg": 100},
    ]

    response = world.post(
        f"/v1/batches/{batch_id}/statements",
        {"kind": "custody.processing", "at": at(90), "body": {"outputs": glass}},
        "plant",
    )

    assert refused(response, 409, "plant-refuses-material")["missing"] == ["17 02 02"]
    assert len(stored_chain(app, batch_id)) == 2


def test_residue_to_landfill_may_carry_a_code_the_plant_does_not_accept(app, world):
    batch_id = weighed_batch(world)
    outputs = [
        {"material": "concrete_mortar", "ewc": "17 01 07", "kg": 200},
        {"material": "residue_landfill", "ewc": "17 05 04", "kg": 100},
    ]

    response = world.process(batch_id, outputs)

    assert response.status_code == 201, response.text
    assert world.get(f"/v1/batches/{batch_id}").json()["status"] == "processed"
