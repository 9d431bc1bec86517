"""Accounts, listings, quotes, purchases, transfers, retirements, provenance."""

import threading
from collections import Counter
from decimal import Decimal

import pytest

from services.trading import market
from shared.canonical import unb64
from shared.crypto import public_key_from_b64, verify_statement
from shared.merkle import verify_inclusion
from shared.note import parse_verifier_key, verify_checkpoint

# 25 t of metals in a 26 t load over 5 km: 37,500,000 g avoided - 37,180
# transport - 17,576 plant - 1,875,000 leakage = 35,570,244 g -> 35 t.
HELD_T = 35


@pytest.fixture
def trading(make_trading):
    with make_trading(buffer_permille=0) as client:
        yield client


@pytest.fixture
def operator(sealed_log, desk) -> str:
    """The operator's account, holding 35 t just issued."""
    account = desk.account("operator")
    sealed_log.write_batch(
        "B1",
        net_kg=26000,
        outputs={"metals": 25000, "residue_landfill": 1000},
        distance_m=5000,
    )
    issuance = desk.issue(account)["issuance"]
    assert issuance["tonnes"] == HELD_T
    return account


@pytest.fixture
def listing(trading, operator, auth_header) -> dict:
    response = trading.post(
        "/v1/listings",
        json={"account_id": operator, "quantity_t": 25, "price_cny": "88.50"},
        headers=auth_header("service", sub="service:operator"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def buyer(auth_header, org="stationery"):
    return auth_header("buyer", sub=f"{org}-user", org=org)


def balances(trading, account_id, auth_header):
    response = trading.get(f"/v1/accounts/{account_id}", headers=auth_header("admin"))
    return response.json()["balances"]


def buy(trading, headers, listing_id, quantity, key):
    return trading.post(
        "/v1/purchases",
        json={"listing_id": listing_id, "quantity_t": quantity},
        headers={**headers, "Idempotency-Key": key},
    )


def test_a_buyer_buys_from_a_listing_at_the_quoted_price(
    trading, desk, listing, operator, auth_header
):
    mine = desk.account("stationery")
    quote = trading.post(
        "/v1/quotes", json={"listing_id": listing["id"], "quantity_t": 10}
    ).json()
    assert quote["total_cny"] == "885.00"

    bought = buy(trading, buyer(auth_header), listing["id"], 10, "order-1")

    assert bought.status_code == 201, bought.text
    assert bought.json()["account_id"] == mine
    assert bought.json()["total_cny"] == quote["total_cny"]
    assert sum(_count(s) for s in bought.json()["serials"]) == 10
    assert balances(trading, mine, auth_header)["held"] == 10
    assert balances(trading, operator, auth_header) == {
        "held": 10,
        "listed": 15,
        "retired": 0,
        "cancelled": 0,
        "buffer": 0,
    }
    assert trading.get(f"/v1/listings/{listing['id']}").json()["available_t"] == 15


def _count(serial: str) -> int:
    start, end = serial.split("-")[-2:]
    return int(end) - int(start) + 1


def test_a_repeated_purchase_is_answered_once(trading, desk, listing, auth_header):
    mine = desk.account("stationery")
    first = buy(trading, buyer(auth_header), listing["id"], 4, "order-1")

    again = buy(trading, buyer(auth_header), listing["id"], 4, "order-1")
    other = buy(trading, buyer(auth_header), listing["id"], 5, "order-1")
    missing = trading.post(
        "/v1/purchases",
        json={"listing_id": listing["id"], "quantity_t": 4},
        headers=buyer(auth_header),
    )

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert other.status_code == 409
    assert other.json()["type"] == "urn:salvage:problem:idempotency-key-reused"
    assert missing.status_code == 422
    assert balances(trading, mine, auth_header)["held"] == 4


def test_many_buyers_at_once_never_oversell(trading, desk, listing, auth_header):
    orgs = [f"org{n}" for n in range(8)]
    for org in orgs:
        desk.account(org)
    results: list = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        response = buy(
            trading,
            buyer(auth_header, orgs[n % 8]),
            listing["id"],
            1 + n % 3,
            f"race-{n}",
        )
        with lock:
            results.append((1 + n % 3, response.status_code, response.json()))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {201, 409}
    sold = sum(quantity for quantity, status, _ in results if status == 201)
    left = trading.get(f"/v1/listings/{listing['id']}").json()["available_t"]
    assert sold + left == 25
    for n in range(left):
        response = buy(trading, buyer(auth_header), listing["id"], 1, f"rest-{n}")
        assert response.status_code == 201, response.text
        results.append((1, 201, response.json()))
    last = buy(trading, buyer(auth_header), listing["id"], 1, "one-too-many")
    assert last.status_code in (409, 422), last.text
    assert trading.get(f"/v1/listings/{listing['id']}").json()["status"] == "sold"
    serials = [
        s for _, status, body in results if status == 201 for s in body["serials"]
    ]
    tonnes = [
        n
        for s in serials
        for n in range(int(s.split("-")[-2]), int(s.split("-")[-1]) + 1)
    ]
    assert len(tonnes) == len(set(tonnes)) == 25


def test_a_buyer_sees_only_its_own_accounts(trading, desk, operator, auth_header):
    mine = desk.account("stationery")

    listed = trading.get("/v1/accounts", headers=buyer(auth_header)).json()["items"]
    other = trading.get(f"/v1/accounts/{operator}", headers=buyer(auth_header))

    assert [a["id"] for a in listed] == [mine]
    assert other.status_code == 404
    stolen = trading.post(
        "/v1/transfers",
        json={"from_account_id": operator, "to_account_id": mine, "quantity_t": 1},
        headers=buyer(auth_header),
    )
    assert stolen.status_code == 404
    assert balances(trading, operator, auth_header)["held"] == HELD_T


def test_retirement_is_certified_and_written_to_the_ledger(
    trading, desk, listing, auth_header, sealed_log
):
    mine = desk.account("stationery")
    insurer = desk.account("insurer")
    buy(trading, buyer(auth_header), listing["id"], 12, "order-1")
    moved = trading.post(
        "/v1/transfers",
        json={"from_account_id": mine, "to_account_id": insurer, "quantity_t": 2},
        headers=buyer(auth_header),
    )
    assert moved.status_code == 201

    retired = trading.post(
        "/v1/retirements",
        json={
            "account_id": mine,
            "quantity_t": 7,
            "beneficiary": "Pens Ltd",
            "purpose": "Carbon-neutral pens, 2026 line",
        },
        headers=buyer(auth_header),
    )

    assert retired.status_code == 201, retired.text
    body = retired.json()
    assert sum(_count(s) for s in body["serials"]) == 7
    assert balances(trading, mine, auth_header) | {} == {
        "held": 3,
        "listed": 0,
        "retired": 7,
        "cancelled": 0,
        "buffer": 0,
    }
    certificate = trading.get(f"/v1/retirements/{body['id']}/certificate").json()
    statement = certificate["statement"]
    assert statement["kind"] == "credit.retirement"
    assert statement["body"]["beneficiary"] == "Pens Ltd"
    public = public_key_from_b64(certificate["signer"]["public_key"])
    assert verify_statement(
        public, statement, certificate["signatures"][0]["signature"]
    )
    too_many = trading.post(
        "/v1/retirements",
        json={"account_id": mine, "quantity_t": 4, "beneficiary": "x", "purpose": "y"},
        headers=buyer(auth_header),
    )
    assert too_many.status_code == 409
    assert balances(trading, mine, auth_header)["retired"] == 7
    public_view = trading.get("/v1/registry/retirements").json()["items"]
    assert [r["beneficiary"] for r in public_view] == ["Pens Ltd"]

    trading.app.state.relay.deliver_due()
    kinds = Counter(
        e["statement"]["kind"]
        for kind in ("credit.issuance", "credit.transfer", "credit.retirement")
        for e in sealed_log.entries_of_kind(kind)
    )
    assert kinds == {"credit.issuance": 1, "credit.transfer": 3, "credit.retirement": 1}
    reasons = [
        e["statement"]["body"]["reason"]
        for e in sealed_log.entries_of_kind("credit.transfer")
    ]
    assert reasons == ["listing", "purchase", "transfer"]


def test_provenance_names_seals_an_auditor_can_prove(
    trading, desk, listing, auth_header, ledger
):
    desk.account("stationery")
    serial = buy(trading, buyer(auth_header), listing["id"], 3, "o").json()["serials"][
        0
    ]

    provenance = trading.get(f"/v1/credits/{serial}/provenance")

    assert provenance.status_code == 200
    body = provenance.json()
    assert body["report"]["status"] == "approved"
    assert [c["batch_id"] for c in body["calculations"]] == ["B1"]
    verifier = parse_verifier_key(ledger.get("/v1/key").text)
    checkpoint = verify_checkpoint(ledger.get("/v1/checkpoint").text, verifier)
    for seal in body["seals"]:
        proof = ledger.get(
            "/v1/proof/inclusion",
            params={"index": seal["index"], "size": checkpoint.size},
        ).json()
        assert verify_inclusion(
            unb64(seal["leaf_hash"]),
            seal["index"],
            checkpoint.size,
            [unb64(h) for h in proof["hashes"]],
            checkpoint.root,
        )
    issuances = trading.get("/v1/registry/issuances").json()["items"]
    assert issuances[0]["seals"] == body["seals"]


def test_a_closed_listing_returns_its_tonnes(trading, listing, operator, auth_header):
    closed = trading.post(
        f"/v1/listings/{listing['id']}/close",
        headers=auth_header("service", sub="service:operator"),
    )

    assert closed.json()["status"] == "closed"
    assert balances(trading, operator, auth_header)["held"] == HELD_T
    assert Decimal(closed.json()["price_cny"]) == Decimal("88.50")


def test_the_same_order_sent_at_once_is_bought_once(
    trading, desk, listing, auth_header
):
    mine = desk.account("stationery")
    answers: list = []

    def send() -> None:
        answers.append(buy(trading, buyer(auth_header), listing["id"], 3, "same"))

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert balances(trading, mine, auth_header)["held"] == 3
    assert trading.get(f"/v1/listings/{listing['id']}").json()["available_t"] == 22


def test_a_retried_retirement_retires_once(trading, desk, listing, auth_header):
    mine = desk.account("stationery")
    buy(trading, buyer(auth_header), listing["id"], 5, "order-1")
    request = {
        "account_id": mine,
        "quantity_t": 2,
        "beneficiary": "Insured Expo",
        "purpose": "Exhibition 2026",
    }
    headers = {**buyer(auth_header), "Idempotency-Key": "retire-1"}

    first = trading.post("/v1/retirements", json=request, headers=headers)
    again = trading.post("/v1/retirements", json=request, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert balances(trading, mine, auth_header)["retired"] == 2


def test_one_key_raced_with_two_bodies_is_refused_not_failed(
    trading, desk, listing, auth_header, monkeypatch
):
    """Both requests pass the replay check before either stores its answer."""
    mine = desk.account("stationery")
    monkeypatch.setattr(market, "_replayed", lambda *args: None)

    first = buy(trading, buyer(auth_header), listing["id"], 4, "raced")
    other = buy(trading, buyer(auth_header), listing["id"], 5, "raced")
    same = buy(trading, buyer(auth_header), listing["id"], 4, "raced")

    assert first.status_code == 201
    assert other.status_code == same.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["type"] == "urn:salvage:problem:idempotency-key-reused"
    assert same.json()["type"] == "urn:salvage:problem:idempotency-key-in-flight"
    assert balances(trading, mine, auth_header)["held"] == 4
    assert trading.get(f"/v1/listings/{listing['id']}").json()["available_t"] == 21


def test_one_key_sent_at_once_to_two_listings_buys_once(
    trading, desk, listing, operator, auth_header
):
    mine = desk.account("stationery")
    second = trading.post(
        "/v1/listings",
        json={"account_id": operator, "quantity_t": 10, "price_cny": "90"},
        headers=auth_header("service", sub="service:operator"),
    ).json()
    answers: list = []

    def send(listing_id: str) -> None:
        answers.append(buy(trading, buyer(auth_header), listing_id, 2, "two-lists"))

    threads = [
        threading.Thread(target=send, args=(listing_id,))
        for listing_id in (listing["id"], second["id"]) * 3
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = Counter(a.status_code for a in answers)
    assert codes[201] >= 1 and codes[201] + codes[409] == 6, codes
    assert len({a.json()["id"] for a in answers if a.status_code == 201}) == 1
    assert balances(trading, mine, auth_header)["held"] == 2
