"""Garbage in gets a problem+json 4xx and changes nothing."""

import pytest

PROBLEM = "application/problem+json"


@pytest.fixture
def trading(make_trading):
    with make_trading(buffer_permille=0) as client:
        yield client


@pytest.fixture
def stock(trading, sealed_log, desk, auth_header):
    """The operator holds 35 t and lists 10 at 50.00 CNY; a buyer has an account."""
    operator = desk.account("operator")
    sealed_log.write_batch(
        "B1",
        net_kg=26000,
        outputs={"metals": 25000, "residue_landfill": 1000},
        distance_m=5000,
    )
    desk.issue(operator)
    listing = trading.post(
        "/v1/listings",
        json={"account_id": operator, "quantity_t": 10, "price_cny": "50.00"},
        headers=auth_header("admin"),
    ).json()
    return {
        "operator": operator,
        "buyer": desk.account("stationery"),
        "listing": listing["id"],
    }


def snapshot(trading, auth_header, stock):
    admin = auth_header("admin")
    return {
        "accounts": trading.get("/v1/accounts", headers=admin).json(),
        "listing": trading.get(f"/v1/listings/{stock['listing']}").json(),
        "reports": trading.get("/v1/reports").json(),
        "retirements": trading.get("/v1/registry/retirements").json(),
    }


def buyer(auth_header):
    return auth_header("buyer", sub="pens", org="stationery")


GARBAGE_PURCHASES = [
    {"listing_id": "L", "quantity_t": -1},
    {"listing_id": "L", "quantity_t": 0},
    {"listing_id": "L", "quantity_t": 1.5},
    {"listing_id": "L", "quantity_t": "3"},
    {"listing_id": "L", "quantity_t": 10**12},
    {"listing_id": "L", "quantity_t": True},
    {"listing_id": "L"},
    {"listing_id": "L", "quantity_t": 1, "price": 0},
    {"listing_id": "", "quantity_t": 1},
    [],
    "buy",
]


def test_garbage_purchases_are_refused_and_change_nothing(trading, stock, auth_header):
    before = snapshot(trading, auth_header, stock)

    for n, body in enumerate(GARBAGE_PURCHASES):
        if isinstance(body, dict) and body.get("listing_id") == "L":
            body = {**body, "listing_id": stock["listing"]}
        response = trading.post(
            "/v1/purchases",
            json=body,
            headers={**buyer(auth_header), "Idempotency-Key": f"g-{n}"},
        )
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == PROBLEM
    raw = trading.post(
        "/v1/purchases",
        content=b"{not json",
        headers={
            **buyer(auth_header),
            "Idempotency-Key": "raw",
            "content-type": "application/json",
        },
    )
    assert raw.status_code == 422

    assert snapshot(trading, auth_header, stock) == before


BAD_REQUESTS = [
    (
        "post",
        "/v1/purchases",
        {"listing_id": "nope", "quantity_t": 1},
        "buyer",
        404,
    ),
    ("post", "/v1/purchases", {"listing_id": "L", "quantity_t": 11}, "buyer", 409),
    ("post", "/v1/purchases", {"listing_id": "L", "quantity_t": 1}, None, 401),
    (
        "post",
        "/v1/purchases",
        {"listing_id": "L", "quantity_t": 1},
        "verifier",
        403,
    ),
    (
        "post",
        "/v1/listings",
        {"account_id": "OP", "quantity_t": 1, "price_cny": "1.001"},
        "admin",
        422,
    ),
    (
        "post",
        "/v1/listings",
        {"account_id": "OP", "quantity_t": 1, "price_cny": "-3"},
        "admin",
        422,
    ),
    (
        "post",
        "/v1/listings",
        {"account_id": "OP", "quantity_t": 1, "price_cny": "NaN"},
        "admin",
        422,
    ),
    (
        "post",
        "/v1/listings",
        {"account_id": "OP", "quantity_t": 26, "price_cny": "3"},
        "admin",
        409,
    ),
    (
        "post",
        "/v1/reports",
        {
            "period_start": "2026-12-01T00:00:00",
            "period_end": "2026-12-02T00:00:00Z",
            "account_id": "OP",
        },
        "service",
        422,
    ),
    (
        "post",
        "/v1/reports",
        {
            "period_start": "2026-12-02T00:00:00Z",
            "period_end": "2026-12-01T00:00:00Z",
            "account_id": "OP",
        },
        "service",
        422,
    ),
    (
        "post",
        "/v1/reports",
        {
            "period_start": "2026-12-01T00:00:00Z",
            "period_end": "2027-02-01T00:00:00Z",
            "account_id": "OP",
        },
        "service",
        422,
    ),
    (
        "post",
        "/v1/reports",
        {
            "period_start": "2026-12-01T00:00:00Z",
            "period_end": "2026-12-02T00:00:00Z",
            "account_id": "OP",
        },
        "buyer",
        403,
    ),
    ("post", "/v1/reports/nope/decision", {"decision": "maybe"}, "verifier", 422),
    ("post", "/v1/reports/nope/decision", {"decision": "approve"}, "verifier", 404),
    (
        "post",
        "/v1/retirements",
        {"account_id": "BUY", "quantity_t": 1, "beneficiary": "", "purpose": "p"},
        "buyer",
        422,
    ),
    (
        "post",
        "/v1/retirements",
        {"account_id": "BUY", "quantity_t": 1, "beneficiary": "b", "purpose": "p"},
        "buyer",
        409,
    ),
    (
        "post",
        "/v1/retirements",
        {"account_id": "OP", "quantity_t": 1, "beneficiary": "b", "purpose": "p"},
        "buyer",
        404,
    ),
    (
        "post",
        "/v1/transfers",
        {"from_account_id": "OP", "to_account_id": "OP", "quantity_t": 1},
        "admin",
        422,
    ),
    ("post", "/v1/accounts", {"org_id": "x y", "name": "n"}, "admin", 422),
    ("post", "/v1/accounts", {"org_id": "x", "name": "n"}, "buyer", 403),
    ("post", "/v1/quantifications", {"batch_id": "B1", "x": 1}, "service", 422),
    ("post", "/v1/quotes", {"listing_id": "L", "quantity_t": 0}, None, 422),
    ("get", "/v1/credits/SALV-TEST-2026-9-1/provenance", None, None, 422),
    ("get", "/v1/credits/not-a-serial/provenance", None, None, 422),
    ("get", "/v1/credits/SALV-TEST-2026-900-901/provenance", None, None, 404),
    ("get", "/v1/methodology?version=v99", None, None, 404),
    ("get", "/v1/methodology?version=../../x", None, None, 404),
    ("get", "/v1/accounts", None, None, 401),
]


def test_bad_requests_get_problems_and_change_nothing(trading, stock, auth_header):
    before = snapshot(trading, auth_header, stock)

    for request in BAD_REQUESTS:
        response = send(trading, stock, auth_header, *request[:4])

        assert response.status_code == request[4], (request, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == request[4]
        assert snapshot(trading, auth_header, stock) == before, request


def send(trading, stock, auth_header, method, path, body, role):
    names = {"L": stock["listing"], "OP": stock["operator"], "BUY": stock["buyer"]}
    if isinstance(body, dict):
        body = {
            k: names.get(v, v) if isinstance(v, str) else v for k, v in body.items()
        }
    headers = {"Idempotency-Key": "k"}
    if role == "buyer":
        headers |= buyer(auth_header)
    elif role is not None:
        headers |= auth_header(role, sub=f"{role}-x")
    return trading.request(method, path, json=body, headers=headers)


def test_a_purchase_too_dear_to_record_is_refused(trading, stock, auth_header):
    dear = trading.post(
        "/v1/listings",
        json={
            "account_id": stock["operator"],
            "quantity_t": 5,
            "price_cny": "999999999999.99",
        },
        headers=auth_header("admin"),
    )
    assert dear.status_code == 201, dear.text
    before = snapshot(trading, auth_header, stock)

    quote = trading.post(
        "/v1/quotes", json={"listing_id": dear.json()["id"], "quantity_t": 2}
    )
    bought = trading.post(
        "/v1/purchases",
        json={"listing_id": dear.json()["id"], "quantity_t": 2},
        headers={**buyer(auth_header), "Idempotency-Key": "dear"},
    )

    for response in (quote, bought):
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("total-too-large")
    assert snapshot(trading, auth_header, stock) == before
    one = trading.post(
        "/v1/purchases",
        json={"listing_id": dear.json()["id"], "quantity_t": 1},
        headers={**buyer(auth_header), "Idempotency-Key": "one"},
    )
    assert one.status_code == 201, one.text
    assert one.json()["total_cny"] == "999999999999.99"


def test_a_period_in_the_last_representable_year_is_not_a_server_error(
    trading, stock, auth_header
):
    response = trading.post(
        "/v1/reports",
        json={
            "period_start": "9999-12-01T00:00:00Z",
            "period_end": "9999-12-31T00:00:00Z",
            "account_id": stock["operator"],
        },
        headers=auth_header("service", sub="service:operator"),
    )

    assert response.status_code < 500, response.text


def test_an_unknown_listing_status_is_refused(trading, stock):
    assert trading.get("/v1/listings", params={"status": "open"}).json()["items"]
    refused = trading.get("/v1/listings", params={"status": "bogus"})

    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
