"""Party keys kept in step with the ledger, and the tokens intake issues."""

import jwt

from shared.crypto import generate_key, key_id, public_key_b64

from .conftest import outbox_rows


def ledger_messages(app) -> list:
    return [row for row in outbox_rows(app) if row.target == "ledger"]


def test_registered_keys_are_sent_to_the_ledger_with_their_kinds(app, world):
    sent = {row.path: row for row in ledger_messages(app)}

    plant_put = sent[f"/v1/keys/{key_id(world.plant_key)}"]
    assert plant_put.method == "PUT"
    assert plant_put.ordering_key == "ledger"
    assert plant_put.body == {
        "public_key": public_key_b64(world.plant_key),
        "party_kind": "plant",
        "party_id": world.plant_id,
        "kinds": ["custody.delivery", "custody.processing"],
    }
    device_put = sent[f"/v1/keys/{key_id(world.device_key)}"]
    assert device_put.body["kinds"] == ["custody.pickup"]
    assert sent[f"/v1/keys/{key_id(world.pm_key)}"].body["party_kind"] == (
        "property_manager"
    )


def test_registering_the_same_key_again_is_a_no_op(app, world):
    before = len(outbox_rows(app))
    response = world.post(
        "/v1/parties/keys",
        {
            "party_kind": "plant",
            "party_id": world.plant_id,
            "public_key": public_key_b64(world.plant_key),
        },
    )

    assert response.status_code == 200
    assert response.json()["key_id"] == key_id(world.plant_key)
    assert len(outbox_rows(app)) == before


def test_a_key_of_an_unknown_party_is_refused(world):
    response = world.post(
        "/v1/parties/keys",
        {
            "party_kind": "device",
            "party_id": "no-such-truck",
            "public_key": public_key_b64(generate_key()),
        },
    )
    assert response.status_code == 404
    assert response.json()["type"] == "urn:salvage:problem:party-not-found"


def test_revocation_reaches_the_ledger(app, world):
    ident = key_id(world.device_key)

    response = world.post(f"/v1/parties/keys/{ident}/revoke", {"reason": "lost"})

    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    revoke = [row for row in ledger_messages(app) if row.path.endswith("/revoke")]
    assert revoke[0].path == f"/v1/keys/{ident}/revoke"
    assert revoke[0].body == {"reason": "lost"}
    again = world.post(f"/v1/parties/keys/{ident}/revoke", {"reason": "lost"})
    assert again.status_code == 409


def test_rotation_registers_the_new_key_and_revokes_the_old(app, world):
    new = generate_key()
    old_id = key_id(world.pm_key)

    response = world.post(
        f"/v1/parties/keys/{old_id}/rotate", {"public_key": public_key_b64(new)}
    )

    assert response.status_code == 201, response.text
    assert response.json()["party_id"] == world.pm_id
    keys = {
        k["key_id"]: k
        for k in world.get("/v1/parties/keys?party_id=pm-lakeside").json()
    }
    assert keys[old_id]["revoked_at"] is not None
    assert keys[key_id(new)]["revoked_at"] is None
    paths = [row.path for row in ledger_messages(app)]
    assert paths.index(f"/v1/keys/{key_id(new)}") < paths.index(
        f"/v1/keys/{old_id}/revoke"
    )


def test_tokens_are_minted_for_registered_principals(app, world):
    response = world.post(
        "/v1/tokens", {"role": "hauler", "sub": "dispatcher-2", "org": world.hauler_id}
    )

    assert response.status_code == 201, response.text
    token = response.json()["token"]
    claims = jwt.decode(
        token, app.state.auth_public_key, algorithms=["EdDSA"], issuer="salvage"
    )
    assert (claims["role"], claims["sub"], claims["org"]) == (
        "hauler",
        "dispatcher-2",
        world.hauler_id,
    )
    vehicles = world.client.get(
        "/v1/vehicles", headers={"Authorization": f"Bearer {token}"}
    )
    assert [v["id"] for v in vehicles.json()] == [world.vehicle_id]


def test_a_device_token_acts_for_its_vehicles_hauler(world):
    response = world.post("/v1/tokens", {"role": "device", "sub": "truck-304"})
    assert response.status_code == 201
    assert response.json()["org"] == world.hauler_id


def test_tokens_for_unregistered_principals_are_refused(world):
    assert (
        world.post("/v1/tokens", {"role": "device", "sub": "ghost"}).status_code == 404
    )
    plant = world.post("/v1/tokens", {"role": "plant", "sub": "x", "org": "nope"})
    assert plant.status_code == 404
    manager = world.post("/v1/tokens", {"role": "property_manager", "sub": "x"})
    assert manager.status_code == 404


def test_only_admins_mint_tokens(world):
    response = world.post("/v1/tokens", {"role": "admin", "sub": "me"}, "inspector")
    assert response.status_code == 403
