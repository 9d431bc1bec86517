"""Principals see and change only what is their own."""

from .conftest import licence


def test_a_resident_sees_only_their_requests(world):
    mine = world.request_pickup()
    theirs = world.request_pickup("neighbour")

    listed = world.get("/v1/pickup-requests", "resident").json()

    assert [request["id"] for request in listed] == [mine["id"]]
    assert (
        world.get(f"/v1/pickup-requests/{theirs['id']}", "resident").status_code == 403
    )
    cancel = world.post(
        f"/v1/pickup-requests/{theirs['id']}/cancel", {"reason": "x"}, "resident"
    )
    assert cancel.status_code == 403
    assert world.get(f"/v1/pickup-requests/{theirs['id']}").json()["status"] == "quoted"


def test_a_property_manager_sees_the_requests_of_its_communities(world):
    request = world.request_pickup()
    listed = world.get("/v1/pickup-requests", "pm").json()
    assert [item["id"] for item in listed] == [request["id"]]


def test_a_hauler_sees_only_its_dispatches_and_batches(world, auth_header):
    batch_id, request_id = world.dispatched_batch()
    rival = world.post(
        "/v1/haulers", {"name": "Rival", "licence_no": "R-5", **licence(-1, 30)}
    ).json()
    rival_header = auth_header("hauler", "rival-desk", rival["id"])

    assert [r["id"] for r in world.get("/v1/pickup-requests", "hauler").json()] == [
        request_id
    ]
    assert world.client.get("/v1/pickup-requests", headers=rival_header).json() == []
    assert world.client.get("/v1/batches", headers=rival_header).json() == []
    assert (
        world.client.get(f"/v1/batches/{batch_id}", headers=rival_header).status_code
        == 403
    )


def test_a_plant_sees_only_its_deliveries(world, auth_header):
    batch_id, _ = world.dispatched_batch()
    stranger = auth_header("plant", "other-desk", "other-plant")

    assert [b["id"] for b in world.get("/v1/batches", "plant").json()] == [batch_id]
    assert world.client.get("/v1/batches", headers=stranger).json() == []


def test_residents_cannot_dispatch_or_touch_the_registry(world):
    request = world.paid_request()
    dispatch = world.post(
        f"/v1/pickup-requests/{request['id']}/dispatch",
        {
            "hauler_id": world.hauler_id,
            "vehicle_id": world.vehicle_id,
            "window_start": "2026-12-03T08:00:00Z",
            "window_end": "2026-12-03T12:00:00Z",
        },
        "resident",
    )
    assert dispatch.status_code == 403
    assert world.post("/v1/depots", {"name": "d"}, "resident").status_code == 403


def test_a_property_manager_sees_batches_serving_its_communities(world, auth_header):
    batch_id, _ = world.dispatched_batch()
    stranger = auth_header("property_manager", "x", "pm-elsewhere")

    assert [b["id"] for b in world.get("/v1/batches", "pm").json()] == [batch_id]
    assert [b["id"] for b in world.get("/v1/batches", "device").json()] == [batch_id]
    assert world.client.get("/v1/batches", headers=stranger).json() == []
    assert world.get("/v1/batches", "resident").json() == []
