"""Dispatch: licences, vehicles, batches and the request's history."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import at, licence, sorted_outputs


def test_dispatch_puts_paid_requests_in_the_vehicles_open_batch(world):
    first = world.paid_request()
    second = world.paid_request("neighbour")

    one = world.dispatch(first["id"])
    two = world.dispatch(second["id"])

    assert one.status_code == 200, one.text
    assert one.json()["status"] == "dispatched"
    assert one.json()["batch_id"] == two.json()["batch_id"]
    batch = world.get(f"/v1/batches/{one.json()['batch_id']}", "hauler").json()
    assert batch["status"] == "open"
    assert batch["plant_id"] == world.plant_id
    assert batch["device_id"] == "truck-304"
    assert sorted(batch["request_ids"]) == sorted([first["id"], second["id"]])


def test_another_window_opens_another_batch(world):
    first = world.dispatch(world.paid_request()["id"]).json()
    second = world.dispatch(
        world.paid_request()["id"], window_start=at(100), window_end=at(200)
    ).json()
    assert first["batch_id"] != second["batch_id"]


def test_the_request_history_names_who_did_what(world):
    request = world.paid_request()
    world.dispatch(request["id"])

    history = world.get(f"/v1/pickup-requests/{request['id']}", "resident").json()

    steps = [(e["status"], e["actor_role"], e["actor_sub"]) for e in history["events"]]
    assert steps == [
        ("requested", "resident", "resident-1"),
        ("quoted", "service", "intake"),
        ("paid", "resident", "resident-1"),
        ("dispatched", "hauler", "dispatcher-1"),
    ]


def test_an_expired_licence_is_refused_at_dispatch(world):
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json=licence(-400, -1),
        headers=world.headers["inspector"],
    )
    request = world.paid_request()

    response = world.dispatch(request["id"])

    assert response.status_code == 409
    assert response.json()["type"] == "urn:salvage:problem:licence-invalid"
    assert response.json()["reason"] == "expired"
    stored = world.get(f"/v1/pickup-requests/{request['id']}").json()
    assert stored["status"] == "paid"
    assert stored["batch_id"] is None


def test_a_suspended_licence_is_refused_at_dispatch(world):
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"status": "suspended"},
        headers=world.headers["inspector"],
    )
    response = world.dispatch(world.paid_request()["id"])
    assert response.status_code == 409
    assert response.json()["reason"] == "suspended"


def test_a_licence_ending_inside_the_window_is_refused(world):
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json=licence(-10, 0),
        headers=world.headers["inspector"],
    )
    response = world.dispatch(
        world.paid_request()["id"], window_start=at(0), window_end=at(24 * 60)
    )
    assert response.status_code == 409


def test_a_vehicle_of_another_hauler_is_refused(world):
    rival = world.post(
        "/v1/haulers", {"name": "Rival", "licence_no": "R-1", **licence(-1, 30)}
    ).json()
    truck = world.post(
        "/v1/vehicles",
        {
            "plate": "R-9",
            "capacity_kg": 900,
            "hauler_id": rival["id"],
            "device_id": "r9",
        },
    ).json()

    response = world.dispatch(world.paid_request()["id"], vehicle_id=truck["id"])

    assert response.status_code == 409
    assert response.json()["type"] == "urn:salvage:problem:vehicle-not-hauler"


def test_a_hauler_cannot_dispatch_for_another_hauler(world):
    rival = world.post(
        "/v1/haulers", {"name": "Rival", "licence_no": "R-2", **licence(-1, 30)}
    ).json()
    response = world.dispatch(world.paid_request()["id"], hauler_id=rival["id"])
    assert response.status_code == 403


def test_unpaid_requests_are_not_dispatched(world):
    response = world.dispatch(world.request_pickup()["id"])
    assert response.status_code == 409
    assert response.json()["type"] == "urn:salvage:problem:invalid-state"


def test_a_cancelled_request_cannot_be_dispatched(world):
    request = world.paid_request()
    cancel = world.post(
        f"/v1/pickup-requests/{request['id']}/cancel", {"reason": "moved"}, "resident"
    )
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "cancelled"
    assert world.dispatch(request["id"]).status_code == 409


def test_a_request_runs_to_completed_naming_each_actor(world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id, mass=300)
    world.deliver(batch_id, gross=11_300, tare=11_000)
    world.process(batch_id, sorted_outputs(300))

    history = world.get(f"/v1/pickup-requests/{request_id}", "resident").json()

    assert history["status"] == "completed"
    steps = [(e["status"], e["actor_role"], e["actor_sub"]) for e in history["events"]]
    assert steps[-3:] == [
        ("dispatched", "hauler", "dispatcher-1"),
        ("collected", "device", "truck-304"),
        ("completed", "plant", "weighbridge-1"),
    ]
    times = [e["at"] for e in history["events"]]
    assert times == sorted(times)


def test_a_cancellation_keeps_who_cancelled_and_why(world):
    request = world.paid_request()

    world.post(
        f"/v1/pickup-requests/{request['id']}/cancel", {"reason": "moved"}, "resident"
    )
    again = world.post(
        f"/v1/pickup-requests/{request['id']}/cancel", {"reason": "twice"}, "resident"
    )
    history = world.get(f"/v1/pickup-requests/{request['id']}", "resident").json()

    assert again.status_code == 409
    last = history["events"][-1]
    assert (last["status"], last["actor_sub"], last["note"]) == (
        "cancelled",
        "resident-1",
        "moved",
    )
    assert [e["status"] for e in history["events"]].count("cancelled") == 1


def test_a_window_longer_than_one_run_is_refused_and_nothing_dispatched(world):
    request_id = world.paid_request()["id"]
    decade = world.dispatch(
        request_id, window_start=at(0), window_end=at(10 * 365 * 24 * 60)
    )
    assert decade.status_code == 422
    assert "24 hours" in decade.text
    day = world.dispatch(request_id, window_start=at(0), window_end=at(24 * 60))
    assert day.status_code == 200, day.text


def problem_of(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"urn:salvage:problem:{slug}"
    return response.json()


def assert_not_dispatched(world, request_id: str) -> None:
    stored = world.get(f"/v1/pickup-requests/{request_id}").json()
    assert (stored["status"], stored["batch_id"], stored["hauler_id"]) == (
        "paid",
        None,
        None,
    )
    assert world.get("/v1/batches").json() == []


def test_a_plant_that_refuses_a_material_is_refused_at_dispatch(world):
    concrete_only = world.post(
        "/v1/plants",
        {
            "name": "Concrete Crusher",
            "permit_no": "NB-P-002",
            "lat": 29.88,
            "lon": 121.56,
            "radius_m": 100,
            "accepted_ewc": ["17 01 01", "17 01 07"],
        },
    ).json()
    request_id = world.paid_request()["id"]

    response = world.dispatch(request_id, plant_id=concrete_only["id"])

    assert problem_of(response, 409, "plant-refuses-material")["missing"] == [
        "17 02 01"
    ]
    assert_not_dispatched(world, request_id)
    assert world.dispatch(request_id).status_code == 200


def test_an_unlicensed_plant_is_refused_at_dispatch(world):
    request_id = world.paid_request()["id"]
    world.client.patch(
        f"/v1/plants/{world.plant_id}",
        json={"licensed": False},
        headers=world.headers["inspector"],
    )

    response = world.dispatch(request_id)

    problem_of(response, 409, "plant-unlicensed")
    assert_not_dispatched(world, request_id)
    world.client.patch(
        f"/v1/plants/{world.plant_id}",
        json={"licensed": True},
        headers=world.headers["inspector"],
    )
    assert world.dispatch(request_id).status_code == 200


def test_no_quote_when_no_licensed_plant_accepts_the_materials(world):
    asbestos = world.post(
        "/v1/pickup-requests",
        {
            "community_id": world.community_id,
            "unit": "3-402",
            "materials": ["17 06 05*"],
            "bags": 2,
            "preferred_start": at(0),
            "preferred_end": at(120),
        },
        "resident",
    )
    world.client.patch(
        f"/v1/plants/{world.plant_id}",
        json={"licensed": False},
        headers=world.headers["inspector"],
    )
    unlicensed = world.post(
        "/v1/pickup-requests",
        {
            "community_id": world.community_id,
            "unit": "3-402",
            "materials": ["17 01 07"],
            "bags": 2,
            "preferred_start": at(0),
            "preferred_end": at(120),
        },
        "resident",
    )

    problem_of(asbestos, 409, "no-plant-accepts")
    problem_of(unlicensed, 409, "no-plant-accepts")
    assert world.get("/v1/pickup-requests").json() == []


@pytest.mark.parametrize(
    ("start", "end"),
    [(120, 240), (-240, 0), (600, 700)],
)
def test_a_window_missing_the_residents_preference_is_refused(world, start, end):
    request_id = world.paid_request()["id"]

    response = world.dispatch(request_id, window_start=at(start), window_end=at(end))

    problem = problem_of(response, 409, "window-outside-preference")
    assert (problem["preferred_start"], problem["preferred_end"]) == (at(0), at(120))
    assert_not_dispatched(world, request_id)


@pytest.mark.parametrize(("start", "end"), [(119, 180), (-60, 1), (30, 60)])
def test_a_window_sharing_time_with_the_preference_is_dispatched(world, start, end):
    request_id = world.paid_request()["id"]

    response = world.dispatch(request_id, window_start=at(start), window_end=at(end))

    assert response.status_code == 200, response.text


def test_one_request_sent_to_two_trucks_at_once_is_dispatched_once(world):
    spare = world.post(
        "/v1/vehicles",
        {
            "plate": "S-2",
            "capacity_kg": 900,
            "hauler_id": world.hauler_id,
            "device_id": "spare-2",
        },
    ).json()
    request = world.paid_request()

    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda vehicle: world.dispatch(request["id"], vehicle_id=vehicle),
                [world.vehicle_id, spare["id"]],
            )
        )

    assert sorted(answer.status_code for answer in answers) == [200, 409]
    history = world.get(f"/v1/pickup-requests/{request['id']}", "resident").json()
    steps = [event["status"] for event in history["events"]]
    assert steps.count("dispatched") == 1


@pytest.mark.parametrize(
    ("path", "status"), [("/v1/pickup-requests", "dispatched"), ("/v1/batches", "open")]
)
def test_an_unknown_status_filter_is_refused_not_answered_empty(world, path, status):
    world.dispatch(world.paid_request()["id"])

    refused = world.get(path, "admin", params={"status": "bogus"})
    known = world.get(path, "admin", params={"status": status})

    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert [item["status"] for item in known.json()] == [status]
