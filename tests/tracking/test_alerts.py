"""Alerts raised by other services, listing them, and their life cycle."""

import base64

import pytest

from tests.tracking.conftest import DEVICE

MASS = {
    "kind": "mass_discrepancy",
    "message": "Weighbridge net 3,900 kg against 2,400 kg declared.",
    "batch_id": "batch-1",
    "device_id": DEVICE,
    "start": "2026-12-01T10:00:00Z",
    "detail": {"declared_kg": 2400, "net_kg": 3900},
}


def raise_alert(client, headers, body=MASS, key="mass:batch-1"):
    return client.post(
        "/v1/alerts", json=body, headers={**headers, "Idempotency-Key": key}
    )


@pytest.fixture
def inspector(auth_header):
    return auth_header("inspector", "inspector-1")


def test_an_alert_from_intake_is_stored_and_linked_to_its_batch(
    client, device, service_auth
):
    response = raise_alert(client, service_auth)

    assert response.status_code == 201, response.text
    alert = response.json()
    assert alert["kind"] == "mass_discrepancy"
    assert alert["status"] == "open"
    assert alert["batch_ids"] == ["batch-1"]
    assert alert["vehicle_id"] == "veh-304"
    assert alert["raised_by"] == "service:intake"
    assert alert["detail"] == {"declared_kg": 2400, "net_kg": 3900}
    listed = client.get(
        "/v1/alerts", params={"batch_id": "batch-1"}, headers=service_auth
    ).json()["alerts"]
    assert [a["id"] for a in listed] == [alert["id"]]


def test_raising_is_idempotent_by_key(client, device, service_auth):
    first = raise_alert(client, service_auth)
    again = raise_alert(client, service_auth)
    changed = raise_alert(client, service_auth, body={**MASS, "message": "other"})

    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert changed.status_code == 409
    listed = client.get("/v1/alerts", headers=service_auth).json()["alerts"]
    assert len(listed) == 1


def test_raising_needs_a_key_a_known_kind_and_the_service_role(
    client, service_auth, inspector
):
    no_key = client.post("/v1/alerts", json=MASS, headers=service_auth)
    bad_kind = raise_alert(client, service_auth, body={**MASS, "kind": "whatever"})
    wrong_role = raise_alert(client, inspector)

    assert no_key.status_code == 422
    assert no_key.json()["type"] == "urn:salvage:problem:idempotency-key-missing"
    assert bad_kind.status_code == 422
    assert wrong_role.status_code == 403
    assert client.get("/v1/alerts", headers=service_auth).json()["alerts"] == []


def test_alerts_are_filtered_by_batch_device_status_and_day(
    client, device, service_auth
):
    raise_alert(client, service_auth)
    other = {
        **MASS,
        "batch_id": "batch-2",
        "device_id": None,
        "start": "2026-12-02T10:00:00Z",
    }
    raise_alert(client, service_auth, body=other, key="mass:batch-2")

    def ids(**params):
        response = client.get("/v1/alerts", params=params, headers=service_auth)
        assert response.status_code == 200, response.text
        return [a["batch_ids"][0] for a in response.json()["alerts"]]

    assert ids() == ["batch-1", "batch-2"]
    assert ids(batch_id="batch-2") == ["batch-2"]
    assert ids(device_id=DEVICE) == ["batch-1"]
    assert ids(day="2026-12-02") == ["batch-2"]
    assert ids(status="open") == ["batch-1", "batch-2"]
    assert ids(status="resolved") == []
    bad = client.get("/v1/alerts", params={"status": "gone"}, headers=service_auth)
    assert bad.status_code == 422


def test_an_inspector_acknowledges_then_resolves_with_a_reason(
    client, device, service_auth, inspector
):
    alert_id = raise_alert(client, service_auth).json()["id"]

    acknowledged = client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=inspector)
    no_reason = client.post(
        f"/v1/alerts/{alert_id}/resolve", json={}, headers=inspector
    )
    resolved = client.post(
        f"/v1/alerts/{alert_id}/resolve",
        json={"reason": "Second weighing confirmed the declared mass."},
        headers=inspector,
    )
    again = client.post(
        f"/v1/alerts/{alert_id}/resolve", json={"reason": "x"}, headers=inspector
    )

    assert acknowledged.json()["status"] == "acknowledged"
    assert acknowledged.json()["acknowledged_by"] == "inspector-1"
    assert no_reason.status_code == 422
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"] == "inspector-1"
    assert resolved.json()["resolution"].startswith("Second weighing")
    assert again.status_code == 409
    late_ack = client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=inspector)
    assert late_ack.status_code == 409
    listed = client.get(
        "/v1/alerts", params={"status": "resolved"}, headers=inspector
    ).json()["alerts"]
    assert [a["id"] for a in listed] == [alert_id]


def test_only_inspectors_resolve(client, device, service_auth, auth_header):
    alert_id = raise_alert(client, service_auth).json()["id"]

    for role in ("service", "hauler", "device", "auditor"):
        response = client.post(
            f"/v1/alerts/{alert_id}/resolve",
            json={"reason": "mine"},
            headers=auth_header(role),
        )
        assert response.status_code == 403, role
    one = client.get(f"/v1/alerts/{alert_id}", headers=service_auth).json()
    assert one["status"] == "open"


def test_reading_alerts_needs_a_reader_role(client, auth_header):
    assert client.get("/v1/alerts", headers=auth_header("auditor")).status_code == 200
    assert client.get("/v1/alerts", headers=auth_header("resident")).status_code == 403
    assert client.get("/v1/alerts").status_code == 401


def test_unknown_alert_is_404(client, inspector):
    response = client.post(
        "/v1/alerts/0123456789abcdef/resolve", json={"reason": "x"}, headers=inspector
    )

    assert response.status_code == 404
    assert response.json()["type"] == "urn:salvage:problem:unknown-alert"


@pytest.mark.parametrize("field", ["device_id", "batch_id"])
def test_a_nul_in_an_alert_filter_is_a_422(client, service_auth, field):
    response = client.get(f"/v1/alerts?{field}=B%001", headers=service_auth)

    assert response.status_code == 422
    assert response.json()["type"].endswith("nul-character")


def raise_several(
    client, headers, count: int, prefix: str = "b", start: str | None = None
) -> list[str]:
    """Raises alerts on batches prefix-0, prefix-1, ...; returns their ids."""
    ids = []
    for number in range(count):
        body = {**MASS, "batch_id": f"{prefix}-{number}", "start": start}
        response = raise_alert(client, headers, body=body, key=f"{prefix}:{number}")
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def page(client, headers, **params) -> dict:
    response = client.get("/v1/alerts", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_paging_meets_every_alert_once_in_the_order_raised(
    client, device, service_auth
):
    raised = raise_several(client, service_auth, 7)

    pages, cursor = [], None
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        body = page(client, service_auth, **params)
        pages.append([alert["id"] for alert in body["alerts"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert [len(ids) for ids in pages] == [3, 3, 1]
    assert [alert_id for ids in pages for alert_id in ids] == raised
    whole = page(client, service_auth)
    assert [a["id"] for a in whole["alerts"]] == raised
    assert whole["next_cursor"] is None


def test_an_alert_raised_during_a_walk_comes_on_a_later_page(
    client, device, service_auth
):
    first = raise_several(client, service_auth, 3)
    opening = page(client, service_auth, limit=2)

    # It concerns an event older than all the others, and still comes after.
    late = raise_several(client, service_auth, 1, "late", "2020-01-01T00:00:00Z")
    rest = page(client, service_auth, limit=2, cursor=opening["next_cursor"])

    assert [a["id"] for a in opening["alerts"]] == first[:2]
    assert [a["id"] for a in rest["alerts"]] == [first[2], *late]
    assert rest["next_cursor"] is None


def test_paging_walks_only_the_filtered_alerts(client, device, service_auth, inspector):
    raised = raise_several(client, service_auth, 5)
    for alert_id in raised[1::2]:
        resolved = client.post(
            f"/v1/alerts/{alert_id}/resolve", json={"reason": "ok"}, headers=inspector
        )
        assert resolved.status_code == 200, resolved.text

    first = page(client, service_auth, status="open", limit=2)
    second = page(
        client, service_auth, status="open", limit=2, cursor=first["next_cursor"]
    )

    listed = [a["id"] for a in first["alerts"] + second["alerts"]]
    assert listed == raised[0::2]
    assert second["next_cursor"] is None


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        "%%%",
        encoded("[]"),
        encoded("{}"),
        encoded('["2026-12-01T10:00:00Z"]'),
        encoded('["2026-12-01T10:00:00", "0123456789abcdef"]'),
        encoded('["yesterday", "0123456789abcdef"]'),
        encoded('[5, "0123456789abcdef"]'),
        encoded('["2026-12-01T10:00:00Z", 5]'),
        encoded('["2026-12-01T10:00:00Z", "a\\u0000b"]'),
        encoded('["0001-01-01T00:00:00+14:00", "0123456789abcdef"]'),
    ],
)
def test_a_malformed_cursor_is_a_422_problem(client, device, service_auth, cursor):
    raise_alert(client, service_auth)

    response = client.get("/v1/alerts", params={"cursor": cursor}, headers=service_auth)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:salvage:problem:invalid-cursor"


def test_an_overlong_cursor_is_a_422_problem(client, service_auth):
    response = client.get(
        "/v1/alerts", params={"cursor": "x" * 201}, headers=service_auth
    )

    assert response.status_code == 422
    assert response.json()["type"] == "urn:salvage:problem:validation-error"
