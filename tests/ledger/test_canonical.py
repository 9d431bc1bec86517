"""The fast path of canonical_json gives exactly the RFC 8785 bytes."""

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.canonical import canonical_json

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def _jcs(value):
    try:
        return rfc8785.dumps(value)
    except Exception as exc:  # the error class is what must match
        return type(exc)


def _ours(value):
    try:
        return canonical_json(value)
    except Exception as exc:
        return type(exc)


@settings(max_examples=600, deadline=None)
@given(values)
def test_canonical_json_matches_rfc8785_byte_for_byte(value):
    assert _ours(value) == _jcs(value)


def test_the_awkward_cases_match_rfc8785():
    for value in (
        {"\u00e9": 1, "e": 2, "\U0001f600": 3, "\ufb33": 4},
        ['\x00\x1f\x7f\u2028"\\/', "\ud800"],
        {"n": 2**53, "m": -(2**53), "k": 2**53 - 1, "f": 1.5},
        {"b": True, "a": None, "c": [False, 0]},
    ):
        assert _ours(value) == _jcs(value)
