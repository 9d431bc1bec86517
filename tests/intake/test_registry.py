"""The registry, and what it tells tracking through the outbox."""

from .conftest import drain, licence, outbox_rows


def tracking_messages(app, path_prefix: str) -> list:
    return [
        row
        for row in outbox_rows(app)
        if row.target == "tracking" and row.path.startswith(path_prefix)
    ]


def test_places_reach_tracking_as_puts(app, world):
    places = tracking_messages(app, "/v1/places/")
    by_id = {row.path.rsplit("/", 1)[1]: row for row in places}

    community = by_id[world.community_id]
    assert community.method == "PUT"
    assert community.ordering_key == "tracking"
    assert community.body == {
        "kind": "community",
        "name": "Lakeside Gardens",
        "geometry": {"type": "Point", "coordinates": [121.55, 29.87]},
        "radius_m": 120,
        "licensed": True,
    }
    assert by_id[world.plant_id].body["kind"] == "plant"
    assert by_id[world.plant_id].body["licensed"] is True


def test_depot_with_polygon_is_sent_as_its_polygon(app, world):
    ring = [[121.5, 29.8], [121.51, 29.8], [121.51, 29.81], [121.5, 29.8]]
    response = world.post(
        "/v1/depots",
        {
            "name": "Depot",
            "lat": 29.805,
            "lon": 121.505,
            "polygon": {"type": "Polygon", "coordinates": [ring]},
        },
    )

    assert response.status_code == 201, response.text
    sent = tracking_messages(app, f"/v1/places/{response.json()['id']}")
    assert sent[0].body["kind"] == "depot"
    assert sent[0].body["geometry"] == {"type": "Polygon", "coordinates": [ring]}
    assert sent[0].body["radius_m"] == 0


def test_vehicle_device_reaches_tracking_with_its_licence_window(app, world):
    devices = tracking_messages(app, "/v1/devices/truck-304")
    hauler = world.get(f"/v1/haulers/{world.hauler_id}").json()

    assert devices[-1].method == "PUT"
    assert devices[-1].body == {
        "vehicle_id": world.vehicle_id,
        "hauler_id": world.hauler_id,
        "plate": "浙B-12345",
        "licence_valid_from": hauler["valid_from"],
        "licence_valid_until": hauler["valid_until"],
    }


def test_suspending_a_hauler_resends_its_devices(app, world):
    before = len(tracking_messages(app, "/v1/devices/truck-304"))

    response = world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"status": "suspended"},
        headers=world.headers["inspector"],
    )

    assert response.status_code == 200, response.text
    devices = tracking_messages(app, "/v1/devices/truck-304")
    assert len(devices) == before + 1
    assert devices[-1].body["licence_valid_from"] == response.json()["valid_from"]
    assert (
        devices[-1].body["licence_valid_until"] == response.json()["status_changed_at"]
    )


def test_revoking_a_licence_before_it_begins_sends_an_empty_window(app, world):
    world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json=licence(5, 300),
        headers=world.headers["inspector"],
    )

    response = world.client.patch(
        f"/v1/haulers/{world.hauler_id}",
        json={"status": "revoked"},
        headers=world.headers["inspector"],
    )

    assert response.status_code == 200, response.text
    sent = tracking_messages(app, "/v1/devices/truck-304")[-1].body
    assert sent["licence_valid_from"] == response.json()["valid_from"]
    assert sent["licence_valid_until"] == response.json()["valid_from"]


def test_plant_losing_its_licence_reaches_tracking(app, world):
    response = world.client.patch(
        f"/v1/plants/{world.plant_id}",
        json={"licensed": False},
        headers=world.headers["inspector"],
    )

    assert response.status_code == 200
    assert (
        tracking_messages(app, f"/v1/places/{world.plant_id}")[-1].body["licensed"]
        is False
    )


def test_relay_delivers_registry_messages_with_their_keys(app, world, peers):
    drain(app)

    paths = [(m["target"], m["method"], m["path"]) for m in peers.received]
    assert ("tracking", "PUT", f"/v1/places/{world.community_id}") in paths
    assert ("tracking", "PUT", "/v1/devices/truck-304") in paths
    assert all(message["key"] for message in peers.received)
    assert all(row.delivered_at is not None for row in outbox_rows(app))


def test_regulator_lists_haulers_not_valid_on_a_date(world):
    expired = world.post(
        "/v1/haulers", {"name": "Old Haul", "licence_no": "NB-H-1", **licence(-400, -1)}
    ).json()
    future = world.post(
        "/v1/haulers", {"name": "New Haul", "licence_no": "NB-H-9", **licence(5, 300)}
    ).json()

    response = world.get("/v1/haulers/invalid-licences", "inspector")

    assert response.status_code == 200
    reasons = {row["hauler"]["id"]: row["reason"] for row in response.json()}
    assert reasons == {expired["id"]: "expired", future["id"]: "not_yet_valid"}


def test_duplicates_are_refused(world):
    again = world.post(
        "/v1/vehicles",
        {
            "plate": "浙B-99999",
            "capacity_kg": 1000,
            "hauler_id": world.hauler_id,
            "device_id": "truck-304",
        },
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_only_admins_register_places(world):
    response = world.post(
        "/v1/plants",
        {
            "name": "X",
            "permit_no": "P",
            "lat": 1,
            "lon": 1,
            "radius_m": 5,
            "accepted_ewc": ["17 01 01"],
        },
        "inspector",
    )
    assert response.status_code == 403


def test_plant_codes_must_be_chapter_17(world):
    response = world.post(
        "/v1/plants",
        {
            "name": "X",
            "permit_no": "P2",
            "lat": 1,
            "lon": 1,
            "radius_m": 5,
            "accepted_ewc": ["20 03 01"],
        },
    )
    assert response.status_code == 422


def test_a_geofence_is_required(world):
    response = world.post("/v1/depots", {"name": "D", "lat": 1, "lon": 1})
    assert response.status_code == 422


def test_hauler_sees_only_its_vehicles(world):
    other = world.post(
        "/v1/haulers", {"name": "Rival", "licence_no": "NB-H-2", **licence(-1, 10)}
    ).json()
    world.post(
        "/v1/vehicles",
        {
            "plate": "R-1",
            "capacity_kg": 100,
            "hauler_id": other["id"],
            "device_id": "r1",
        },
    )

    mine = world.get("/v1/vehicles", "hauler").json()
    everyone = world.get("/v1/vehicles").json()

    assert [vehicle["id"] for vehicle in mine] == [world.vehicle_id]
    assert len(everyone) == 2
    rival = next(v for v in everyone if v["plate"] == "R-1")
    assert world.get(f"/v1/vehicles/{rival['id']}", "hauler").status_code == 403


def test_bad_geofence_moves_change_nothing(app, world):
    before = len(outbox_rows(app))
    path = f"/v1/communities/{world.community_id}/geofence"

    unknown_kind = world.client.put(
        f"/v1/haulers/{world.hauler_id}/geofence",
        json={"lat": 1, "lon": 1, "radius_m": 10},
        headers=world.headers["admin"],
    )
    unknown_id = world.client.put(
        "/v1/depots/nope/geofence",
        json={"lat": 1, "lon": 1, "radius_m": 10},
        headers=world.headers["admin"],
    )
    no_fence = world.client.put(
        path, json={"lat": 1, "lon": 1}, headers=world.headers["admin"]
    )
    not_admin = world.client.put(
        path,
        json={"lat": 1, "lon": 1, "radius_m": 10},
        headers=world.headers["pm"],
    )

    assert unknown_kind.status_code == 422
    assert unknown_id.status_code == 404
    assert no_fence.status_code == 422
    assert not_admin.status_code == 403
    for response in (unknown_kind, unknown_id, no_fence, not_admin):
        assert response.headers["content-type"] == "application/problem+json"
    assert len(outbox_rows(app)) == before
    community = world.get(f"/v1/communities/{world.community_id}").json()
    assert (community["lat"], community["radius_m"]) == (29.87, 120)
