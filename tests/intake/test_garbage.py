"""Bad input gets a problem+json 4xx and leaves every stored row as it was."""

import pytest
from sqlalchemy import func, select

from services.intake.models import Base
from shared.crypto import key_id, sign_statement

from .conftest import at


def snapshot(app) -> dict[str, int]:
    with app.state.engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table)).scalar()
            for name, table in Base.metadata.tables.items()
        }


def assert_problem(response, status: int | None = None) -> None:
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].startswith("urn:salvage:problem:")
    assert body["status"] == response.status_code


@pytest.fixture
def batch(world):
    batch_id, request_id = world.dispatched_batch()
    world.pickup(batch_id, request_id)
    return batch_id


def raw_post(world, path: str, content: bytes, who: str = "admin"):
    headers = {**world.headers[who], "Content-Type": "application/json"}
    return world.client.post(path, content=content, headers=headers)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/communities", b'{"name": "x",'),
        ("/v1/communities", b"[1, 2, 3]"),
        ("/v1/haulers", b'{"name": 5, "licence_no": [], "valid_from": "yesterday"}'),
        (
            "/v1/plants",
            b'{"name":"p","permit_no":"q","lat":1e400,"lon":0,"radius_m":1,'
            b'"accepted_ewc":["17 01 01"]}',
        ),
        ("/v1/depots", b'{"name":"d","lat":0,"lon":0,"radius_m":-5}'),
        (
            "/v1/depots",
            b'{"name":"d","lat":0,"lon":0,"polygon":{"type":"Polygon",'
            b'"coordinates":[[[0,0],[1,1]]]}}',
        ),
        (
            "/v1/vehicles",
            b'{"plate":"x","capacity_kg":1e30,"hauler_id":"h","device_id":"d"}',
        ),
        (
            "/v1/parties/keys",
            b'{"party_kind":"device","party_id":"truck-304",'
            b'"public_key":"not base64!!"}',
        ),
        (
            "/v1/parties/keys",
            b'{"party_kind":"device","party_id":"truck-304",'
            b'"public_key":"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}',
        ),
        (
            "/v1/parties/keys",
            b'{"party_kind":"wizard","party_id":"x","public_key":"AA=="}',
        ),
        ("/v1/tokens", b'{"role":"emperor","sub":"x"}'),
        (
            "/v1/haulers",
            b'{"name":"h","licence_no":"L","valid_from":"2026-01-01T00:00:00",'
            b'"valid_until":"2027-01-01T00:00:00"}',
        ),
    ],
)
def test_garbage_registry_input_changes_nothing(app, world, path, content):
    before = snapshot(app)
    response = raw_post(world, path, content)
    assert_problem(response)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {"unit": "1", "materials": ["20 03 01"], "bags": 2},
        {"unit": "1", "materials": ["17 01 07"], "bags": -2},
        {"unit": "1", "materials": ["17 01 07"], "bags": 10**40},
        {"unit": "1", "materials": [], "bags": 2},
        {"unit": "1", "materials": ["17 01 07", "17 01 07"], "bags": 2},
        {"unit": "1", "materials": "17 01 07", "bags": 2},
        {"unit": "1", "materials": ["17 01 07"], "bags": 2, "volume_l": 3},
        {"unit": "", "materials": ["17 01 07"], "volume_l": 3},
    ],
)
def test_garbage_pickup_requests_change_nothing(app, world, body):
    full = {
        "community_id": world.community_id,
        "preferred_start": at(0),
        "preferred_end": at(60),
        **body,
    }
    before = snapshot(app)
    response = world.post("/v1/pickup-requests", full, "resident")
    assert_problem(response, 422)
    assert snapshot(app) == before


def test_unknown_community_is_a_404(app, world):
    before = snapshot(app)
    response = world.post(
        "/v1/pickup-requests",
        {
            "community_id": "nope",
            "unit": "1",
            "materials": ["17 01 07"],
            "bags": 1,
            "preferred_start": at(0),
            "preferred_end": at(60),
        },
        "resident",
    )
    assert_problem(response, 404)
    assert snapshot(app) == before


@pytest.mark.parametrize("amount", ["-30.00", "NaN", "1e30", "30.001", "abc", None])
def test_garbage_payments_change_nothing(app, world, amount):
    request = world.request_pickup()
    before = snapshot(app)
    response = world.post(
        f"/v1/pickup-requests/{request['id']}/payment",
        {"amount": amount, "method": "card"},
        headers={**world.headers["resident"], "Idempotency-Key": "g"},
    )
    assert_problem(response, 422)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "body",
    [
        {"ticket_no": "T", "gross_kg": -5, "tare_kg": 1},
        {"ticket_no": "T", "gross_kg": 10**30, "tare_kg": 1},
        {"ticket_no": "T", "gross_kg": 100, "tare_kg": 200},
        {"ticket_no": "T", "gross_kg": "100", "tare_kg": 1},
        {"ticket_no": "T", "gross_kg": 100.5, "tare_kg": 1},
        {"ticket_no": "T", "gross_kg": True, "tare_kg": 0},
        {"ticket_no": "", "gross_kg": 100, "tare_kg": 1},
        {"ticket_no": "T", "gross_kg": 100},
        {"ticket_no": "T", "gross_kg": 100, "tare_kg": 1, "bonus": 1},
    ],
)
def test_garbage_delivery_fields_are_refused(app, world, batch, body):
    before = snapshot(app)
    response = world.post(
        f"/v1/batches/{batch}/statements",
        {"kind": "custody.delivery", "at": at(60), "body": body},
        "plant",
    )
    assert_problem(response, 422)
    assert snapshot(app) == before


def test_garbage_signed_entries_change_nothing(app, world, batch):
    statement = world.statement(
        batch,
        "custody.delivery",
        at(60),
        {"ticket_no": "T-9", "gross_kg": 11_300, "tare_kg": 11_000},
        "plant",
    )
    good = sign_statement(world.plant_key, statement)
    path = f"/v1/batches/{batch}/custody"
    before = snapshot(app)
    attempts = [
        {"statement": statement, "signatures": [{**good, "signature": "@@@"}]},
        {"statement": statement, "signatures": [{**good, "signature": "é" * 10}]},
        {"statement": statement, "signatures": [{**good, "key_id": "XYZ"}]},
        {"statement": statement, "signatures": []},
        {"statement": statement, "signatures": "none"},
        {"statement": "text", "signatures": [good]},
        {"statement": {**statement, "kind": "custody.teleport"}, "signatures": [good]},
        {"statement": {**statement, "at": "tomorrow"}, "signatures": [good]},
        {"statement": {**statement, "at": "2026-01-01T00:00:00"}, "signatures": [good]},
        {"statement": {**statement, "v": 2}, "signatures": [good]},
        {
            "statement": {**statement, "body": {**statement["body"], "net_kg": -1}},
            "signatures": [good],
        },
        {
            "statement": {
                **statement,
                "body": {**statement["body"], "gross_kg": 2**80},
            },
            "signatures": [good],
        },
        {"statement": {**statement, "prev": "not-a-hash"}, "signatures": [good]},
        {"statement": statement, "signatures": [good, good]},
    ]
    for attempt in attempts:
        assert_problem(world.post(path, attempt, "plant"))
    nan = raw_post(
        world,
        path,
        b'{"statement": {"v": NaN, "kind": "custody.delivery"}, "signatures": [{'
        + f'"key_id": "{key_id(world.plant_key)}", "signature": "AA=="}}]}}'.encode(),
        "plant",
    )
    assert_problem(nan)
    assert snapshot(app) == before
    accepted = world.post(path, {"statement": statement, "signatures": [good]}, "plant")
    assert accepted.status_code == 201


def test_unknown_ids_are_404s(app, world):
    before = snapshot(app)
    for response in [
        world.get("/v1/batches/no-such-batch"),
        world.get("/v1/pickup-requests/no-such-request"),
        world.get("/v1/communities/nope/qr.png"),
        world.client.patch(
            "/v1/haulers/nope",
            json={"status": "revoked"},
            headers=world.headers["admin"],
        ),
        world.post("/v1/parties/keys/" + "0" * 32 + "/revoke", {"reason": "x"}),
        world.post(
            "/v1/batches/nope/custody",
            {
                "statement": {},
                "signatures": [{"key_id": "0" * 32, "signature": "AA=="}],
            },
            "plant",
        ),
        world.dispatch("nope"),
    ]:
        assert_problem(response, 404)
    assert snapshot(app) == before


def test_writes_need_a_token(app, world):
    response = world.client.post("/v1/communities", json={})
    assert_problem(response, 401)


def test_text_no_store_can_keep_is_refused(app, world, batch):
    before = snapshot(app)
    responses = [
        world.post(
            "/v1/depots", {"name": "nul\x00depot", "lat": 0, "lon": 0, "radius_m": 5}
        ),
        raw_post(
            world,
            "/v1/depots",
            b'{"name": "lone\\ud800", "lat": 0, "lon": 0, "radius_m": 5}',
        ),
        world.get("/v1/batches/nul%00id"),
        world.get("/v1/pickup-requests/%ED%A0%80"),
        world.post(
            f"/v1/batches/{batch}/statements",
            {
                "kind": "custody.pickup",
                "at": at(20),
                "body": {
                    "request_id": "x\x00y",
                    "declared_volume_l": 1,
                    "estimated_mass_kg": 1,
                },
            },
            "device",
        ),
    ]
    for response in responses:
        assert_problem(response)
    assert snapshot(app) == before


def test_times_beyond_the_calendar_are_refused(app, world):
    before = snapshot(app)
    response = world.post(
        "/v1/haulers",
        {
            "name": "Far Future",
            "licence_no": "FF-1",
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "9999-12-31T23:59:59-05:00",
        },
    )
    assert_problem(response, 422)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T01:00:00Z"),
        ("9999-12-31T00:00:00Z", "9999-12-31T01:00:00Z"),
        ("2026-12-01T00:00:00Z", "2027-12-01T00:00:00Z"),
    ],
)
def test_preferred_windows_out_of_any_plausible_span_change_nothing(
    app, world, start, end
):
    before = snapshot(app)
    response = world.post(
        "/v1/pickup-requests",
        {
            "community_id": world.community_id,
            "unit": "1",
            "materials": ["17 01 07"],
            "bags": 1,
            "preferred_start": start,
            "preferred_end": end,
        },
        "resident",
    )
    assert_problem(response, 422)
    assert snapshot(app) == before
