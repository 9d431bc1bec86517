"""The QR code round trip: decode the image, follow it, request a pickup."""

import io
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from services.intake.models import PickupRequest

from .conftest import PUBLIC_URL

# The decoder reads the PNG the way a phone camera would (test extra).
zxingcpp = pytest.importorskip("zxingcpp")
Image = pytest.importorskip("PIL.Image")


def decode_png(content: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(content)))
    assert len(results) == 1
    return results[0].text


def test_png_decodes_to_the_community_page(world):
    response = world.client.get(f"/v1/communities/{world.community_id}/qr.png")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    url = decode_png(response.content)
    assert url == f"{PUBLIC_URL}/r/{world.community_code}"

    page = world.client.get(urlsplit(url).path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Lakeside Gardens" in page.text
    assert f'action="/r/{world.community_code}"' in page.text
    assert 'name="viewport"' in page.text


def test_svg_is_served_for_print(world):
    response = world.client.get(f"/v1/communities/{world.community_id}/qr.svg")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.text.lstrip().startswith("<?xml") or "<svg" in response.text


def test_the_page_form_creates_the_same_request(app, world, token_for):
    token = token_for("resident", "resident-9")
    page = world.client.get(f"/r/{world.community_code}", params={"token": token})
    assert f'value="{token}"' in page.text

    response = world.client.post(
        f"/r/{world.community_code}",
        data={
            "token": token,
            "unit": "7-1101",
            "materials": ["17 01 07", "17 08 02"],
            "quantity": "120",
            "quantity_unit": "litres",
            "preferred_start": "2026-12-05T09:00",
            "preferred_end": "2026-12-05T12:00",
        },
    )

    assert response.status_code == 201, response.text
    assert "Pickup requested" in response.text
    with app.state.sessions() as session:
        stored = session.scalars(select(PickupRequest)).one()
    assert stored.resident_sub == "resident-9"
    assert stored.volume_l == 120
    assert stored.materials == ["17 01 07", "17 08 02"]
    assert stored.status == "quoted"
    assert stored.preferred_start.hour == 1
    assert stored.id in response.text


def test_the_page_form_without_a_token_is_refused(app, world):
    response = world.client.post(
        f"/r/{world.community_code}",
        data={"unit": "1", "materials": ["17 01 07"], "quantity": "2"},
    )
    assert response.status_code == 401
    assert "Sign in" in response.text


def test_the_page_form_reports_bad_input(world, token_for):
    response = world.client.post(
        f"/r/{world.community_code}",
        data={
            "token": token_for("resident"),
            "unit": "1",
            "materials": ["99 99 99"],
            "quantity": "2",
            "preferred_start": "2026-12-05T09:00",
            "preferred_end": "2026-12-05T12:00",
        },
    )
    assert response.status_code == 422
    assert "chapter 17" in response.text


def test_an_unknown_code_is_a_404_page(world):
    response = world.client.get("/r/NOPE1234")
    assert response.status_code == 404


def test_requests_can_name_the_community_by_its_code(world):
    request = world.request_pickup(
        community_id=None, community_code=world.community_code
    )
    assert request["community_id"] == world.community_id


def page_form(token: str | None = None) -> dict:
    form = {
        "unit": "2-301",
        "materials": ["17 01 07"],
        "quantity": "3",
        "preferred_start": "2026-12-05T09:00",
        "preferred_end": "2026-12-05T12:00",
    }
    return form if token is None else {**form, "token": token}


def test_the_phone_stays_signed_in_for_the_next_scan(app, world, token_for):
    path = f"/r/{world.community_code}"
    first = world.client.post(path, data=page_form(token_for("resident", "r-7")))

    cookie = first.cookies.get("salvage_token")
    header = first.headers["set-cookie"].lower()
    page = world.client.get(path)
    second = world.client.post(path, data=page_form())

    assert first.status_code == 201
    assert cookie is not None
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "path=/r/" in header
    assert 'name="token"' not in page.text
    assert second.status_code == 201, second.text
    with app.state.sessions() as session:
        owners = session.scalars(select(PickupRequest.resident_sub)).all()
    assert owners == ["r-7", "r-7"]


def test_a_stale_cookie_is_dropped_so_the_page_asks_again(world):
    path = f"/r/{world.community_code}"
    world.client.cookies.set("salvage_token", "not-a-token", path="/r/")

    response = world.client.post(path, data=page_form())

    assert response.status_code == 401
    assert 'salvage_token=""' in response.headers["set-cookie"]
    world.client.cookies.clear()
    assert 'name="token"' in world.client.get(path).text


@pytest.mark.parametrize("field", ["preferred_start", "unit", "quantity"])
def test_a_file_where_text_belongs_is_a_422_page(world, token_for, field):
    fields = {
        "token": token_for("resident"),
        "unit": "1",
        "materials": "17 01 07",
        "quantity": "2",
        "preferred_start": "2026-12-05T09:00",
        "preferred_end": "2026-12-05T12:00",
    }
    fields.pop(field)
    response = world.client.post(
        f"/r/{world.community_code}",
        data=fields,
        files={field: ("x.bin", b"\x00\x01binary", "application/octet-stream")},
    )

    assert response.status_code == 422, response.text
    assert "Check the form" in response.text
