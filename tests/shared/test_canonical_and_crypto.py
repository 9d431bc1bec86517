"""Canonical JSON, key IDs and statement signatures."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.canonical import canonical_json, unb64
from shared.crypto import (
    generate_key,
    key_id,
    load_or_create_key,
    public_key_b64,
    public_key_from_b64,
    sign_statement,
    verify_statement,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def test_canonical_json_sorts_keys_and_drops_whitespace():
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == (
        b'{"a":[true,null,"\xc3\xa9"],"b":1}'
    )


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_canonical_json_ignores_key_order(value):
    reordered = dict(reversed(list(value.items())))
    assert canonical_json(value) == canonical_json(reordered)


def test_integers_beyond_the_json_safe_range_are_refused():
    with pytest.raises(ValueError):
        canonical_json({"net_kg": 2**53})


def test_statement_signature_verifies_and_binds_content():
    key = generate_key()
    statement = {"kind": "custody.delivery", "body": {"net_kg": 7840}}
    signature = sign_statement(key, statement)

    assert signature["key_id"] == key_id(key)
    assert verify_statement(key.public_key(), statement, signature["signature"])
    changed = {"kind": "custody.delivery", "body": {"net_kg": 7841}}
    assert not verify_statement(key.public_key(), changed, signature["signature"])


def test_signature_garbage_is_false_not_an_error():
    key = generate_key()
    assert not verify_statement(key.public_key(), {}, "not base64!")
    assert not verify_statement(key.public_key(), {}, "AAAA")


def test_public_key_parsing_refuses_wrong_lengths():
    with pytest.raises(ValueError):
        public_key_from_b64("AAAA")
    key = generate_key()
    assert len(unb64(public_key_b64(key))) == 32


def test_key_file_is_created_once_and_reused(tmp_path):
    path = tmp_path / "keys" / "ledger.key"
    first = load_or_create_key(path)
    second = load_or_create_key(path)

    assert key_id(first) == key_id(second)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "encoded",
    [
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "7P///////////////////////////////////////38=",
    ],
)
def test_small_order_and_non_canonical_keys_are_refused(encoded):
    with pytest.raises(ValueError, match="small order or non-canonical"):
        public_key_from_b64(encoded)
