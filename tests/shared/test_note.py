"""C2SP signed notes and checkpoints: round trips and every way to break one."""

import base64

import pytest

from shared.crypto import generate_key
from shared.note import (
    Checkpoint,
    NoteError,
    parse_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)

ORIGIN = "salvage.test/ledger"


@pytest.fixture
def key():
    return generate_key()


def test_signed_checkpoint_round_trips(key):
    checkpoint = Checkpoint(ORIGIN, 42, bytes(range(32)))
    note = sign_checkpoint(checkpoint, ORIGIN, key)

    verified = verify_checkpoint(note, parse_verifier_key(verifier_key(ORIGIN, key)))

    assert verified == checkpoint
    assert note.startswith(
        f"{ORIGIN}\n42\n{base64.b64encode(bytes(range(32))).decode()}\n\n"
    )
    assert note.split("\n")[4].startswith("\u2014 " + ORIGIN + " ")


def test_verifier_key_has_name_hex_id_and_algorithm_byte(key):
    name, key_id, encoded = verifier_key(ORIGIN, key).split("+", 2)

    assert name == ORIGIN
    assert len(key_id) == 8 and int(key_id, 16) >= 0
    assert base64.b64decode(encoded)[0] == 1 and len(base64.b64decode(encoded)) == 33


def test_another_key_does_not_verify(key):
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), ORIGIN, key)
    other = parse_verifier_key(verifier_key(ORIGIN, generate_key()))

    with pytest.raises(NoteError):
        verify_checkpoint(note, other)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda n: n.replace("\n42\n", "\n43\n"),
        lambda n: n.replace(ORIGIN + "\n", "evil.test/ledger\n", 1),
        lambda n: n[:-20] + ("A" if n[-20] != "A" else "B") + n[-19:],
        lambda n: n.replace("\n\n", "\n"),
        lambda n: n + "junk",
    ],
)
def test_any_change_to_a_note_is_refused(key, tamper):
    note = sign_checkpoint(Checkpoint(ORIGIN, 42, bytes(32)), ORIGIN, key)
    verifier = parse_verifier_key(verifier_key(ORIGIN, key))

    with pytest.raises(NoteError):
        verify_checkpoint(tamper(note), verifier)


def test_wrong_origin_is_refused(key):
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), ORIGIN, key)
    verifier = parse_verifier_key(verifier_key(ORIGIN, key))

    with pytest.raises(NoteError, match="origin"):
        verify_checkpoint(note, verifier, origin="other.test/log")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n",
        "origin\n01\nAAAA\n",
        "origin\n-1\n" + "A" * 44 + "\n",
        "o\n1\n!!\n",
    ],
)
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(NoteError):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "text",
    ["", "a+b", "name+zz+AAAA", "bad name+00000000+" + "A" * 44],
)
def test_malformed_verifier_keys_are_refused(text):
    with pytest.raises(NoteError):
        parse_verifier_key(text)


def test_verifier_key_with_wrong_id_is_refused(key):
    name, _, encoded = verifier_key(ORIGIN, key).split("+", 2)

    with pytest.raises(NoteError, match="does not match"):
        parse_verifier_key(f"{name}+00000000+{encoded}")


def test_note_text_must_end_with_newline(key):
    with pytest.raises(NoteError):
        sign_note("no newline", ORIGIN, key)
