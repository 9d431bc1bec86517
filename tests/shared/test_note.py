"""C2SP signed notes and checkpoints: round trips and every way to break one."""

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.crypto import generate_key
from shared.note import (
    Checkpoint,
    NoteError,
    open_note,
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


# An independent reading of the C2SP signed-note and tlog-checkpoint specs,
# written here from the spec text and sharing nothing with shared.note.


def spec_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def spec_key_id(name: str, public: bytes) -> bytes:
    """The first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public).digest()[:4]


def spec_verifier_key(name: str, public: bytes) -> str:
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{spec_key_id(name, public).hex()}+{encoded}"


def spec_sign(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """Text, a blank line, then "— name base64(key ID || signature)"."""
    blob = spec_key_id(name, spec_public(key)) + key.sign(text.encode())
    return text + "\n" + "\u2014 " + name + " " + base64.b64encode(blob).decode() + "\n"


def spec_open(note: str, name: str, public: bytes) -> str:
    """The note's text, if one signature line is a valid one by this key."""
    cut = note.rindex("\n\n") + 1
    text, lines = note[:cut], note[cut + 1 :].splitlines()
    for line in lines:
        assert line.startswith("\u2014 ")
        signer, encoded = line[2:].rsplit(" ", 1)
        blob = base64.b64decode(encoded)
        if signer != name or blob[:4] != spec_key_id(name, public):
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode())
        except InvalidSignature:
            continue
        return text
    raise AssertionError("no valid signature by " + name)


def spec_checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def test_our_checkpoint_notes_verify_by_the_spec(key):
    root = hashlib.sha256(b"root").digest()
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, root), ORIGIN, key)

    text = spec_open(note, ORIGIN, spec_public(key))

    assert text == spec_checkpoint_body(ORIGIN, 7, root)
    assert verifier_key(ORIGIN, key) == spec_verifier_key(ORIGIN, spec_public(key))
    assert note == spec_sign(text, ORIGIN, key)  # Ed25519 signing is deterministic


def test_notes_signed_by_the_spec_verify_with_our_code(key):
    root = hashlib.sha256(b"another root").digest()
    note = spec_sign(spec_checkpoint_body(ORIGIN, 12, root), ORIGIN, key)
    verifier = parse_verifier_key(spec_verifier_key(ORIGIN, spec_public(key)))

    assert verify_checkpoint(note, verifier, ORIGIN) == Checkpoint(ORIGIN, 12, root)
    stranger = spec_sign(spec_checkpoint_body(ORIGIN, 12, root), ORIGIN, generate_key())
    with pytest.raises(NoteError):
        verify_checkpoint(stranger, verifier)


def test_a_note_with_a_foreign_signature_first_still_verifies(key):
    text = spec_checkpoint_body(ORIGIN, 3, bytes(32))
    other = spec_sign(text, "witness.test/w1", generate_key())
    ours = spec_sign(text, ORIGIN, key)
    cosigned = other + ours[len(text) + 1 :]

    verifier = parse_verifier_key(verifier_key(ORIGIN, key))

    assert open_note(cosigned, verifier) == text
    assert spec_open(cosigned, ORIGIN, spec_public(key)) == text


# The example key and note of the golang.org/x/mod/sumdb/note documentation.
# Each part checks the others: the key ID is recomputed from the name and
# public key, the private seed yields that public key, and re-signing the text
# reproduces the published signature byte for byte.
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER = (
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
)
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZI"
    "nNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_example_key() -> tuple[Ed25519PrivateKey, bytes]:
    seed = base64.b64decode(GO_SIGNER.split("+", 4)[4])
    public = base64.b64decode(GO_VERIFIER.split("+", 2)[2])
    assert seed[0] == 1 and public[0] == 1
    return Ed25519PrivateKey.from_private_bytes(seed[1:]), public[1:]


def test_the_go_example_is_self_consistent_by_the_spec():
    key, public = go_example_key()

    assert spec_public(key) == public
    assert spec_verifier_key("PeterNeumann", public) == GO_VERIFIER
    assert spec_open(GO_NOTE, "PeterNeumann", public) == GO_TEXT
    assert spec_sign(GO_TEXT, "PeterNeumann", key) == GO_NOTE


def test_our_code_reproduces_and_verifies_the_go_example():
    key, _ = go_example_key()
    verifier = parse_verifier_key(GO_VERIFIER)

    assert verifier_key("PeterNeumann", key) == GO_VERIFIER
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert open_note(GO_NOTE, verifier) == GO_TEXT
    with pytest.raises(NoteError):
        open_note(GO_NOTE.replace("answer", "Answer"), verifier)
