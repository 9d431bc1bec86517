"""C2SP signed notes with Ed25519 keys, and C2SP tlog-checkpoint bodies.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
of the form "— <name> <base64(4-byte key id || signature)>". The key id of an
Ed25519 key is the first four bytes of SHA-256(name || 0x0A || 0x01 || key),
and its verifier key string is "<name>+<hex key id>+<base64(0x01 || key)>".
"""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from shared.crypto import public_key_bytes

ED25519_ALG = b"\x01"
SIGNATURE_PREFIX = "\u2014 "


class NoteError(ValueError):
    """A note, checkpoint or verifier key that does not parse or verify."""


@dataclass(frozen=True)
class Verifier:
    name: str
    key_hash: bytes
    public_key: Ed25519PublicKey


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise NoteError("a key name is non-empty, with no spaces and no '+'")


def key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519_ALG + public).digest()[:4]


def verifier_key(name: str, key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The verifier key string that tools such as sumdb/note accept."""
    _check_name(name)
    public = public_key_bytes(key)
    encoded = base64.b64encode(ED25519_ALG + public).decode()
    return f"{name}+{key_hash(name, public).hex()}+{encoded}"


def parse_verifier_key(text: str) -> Verifier:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key is name+hexkeyid+base64key")
    name, hex_hash, encoded = parts
    _check_name(name)
    try:
        raw = base64.b64decode(encoded, validate=True)
        wanted = bytes.fromhex(hex_hash)
    except ValueError as exc:
        raise NoteError("verifier key is not hex and base64") from exc
    if len(raw) != 33 or raw[:1] != ED25519_ALG:
        raise NoteError("verifier key is not an Ed25519 key")
    if key_hash(name, raw[1:]) != wanted:
        raise NoteError("verifier key id does not match its key")
    return Verifier(name, wanted, Ed25519PublicKey.from_public_bytes(raw[1:]))


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """Signs note text (which must end in a newline) as a one-signature note."""
    _check_name(name)
    if not text.endswith("\n"):
        raise NoteError("note text ends with a newline")
    signature = key.sign(text.encode())
    blob = key_hash(name, public_key_bytes(key)) + signature
    return f"{text}\n{SIGNATURE_PREFIX}{name} {base64.b64encode(blob).decode()}\n"


def open_note(note: str, verifier: Verifier) -> str:
    """Returns the text of a note once a signature by verifier checks out."""
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise NoteError("malformed note: no signature block")
    text += "\n"
    for line in signatures[:-1].split("\n"):
        if _signature_matches(text, line, verifier):
            return text
    raise NoteError("no valid signature by " + verifier.name)


def _signature_matches(text: str, line: str, verifier: Verifier) -> bool:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError("malformed signature line")
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].rpartition(" ")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise NoteError("signature is not base64") from exc
    if name != verifier.name or blob[:4] != verifier.key_hash or len(blob) != 68:
        return False
    try:
        verifier.public_key.verify(blob[4:], text.encode())
    except InvalidSignature:
        return False
    return True


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has origin, size and root lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size.startswith("0") and size != "0"):
        raise NoteError("checkpoint size is not a decimal number")
    try:
        root_bytes = base64.b64decode(root, validate=True)
    except ValueError as exc:
        raise NoteError("checkpoint root is not base64") from exc
    if len(root_bytes) != 32 or not origin:
        raise NoteError("checkpoint root is not a SHA-256 hash")
    return Checkpoint(origin, int(size), root_bytes, tuple(lines[3:-1]))


def sign_checkpoint(checkpoint: Checkpoint, name: str, key: Ed25519PrivateKey) -> str:
    return sign_note(checkpoint.body(), name, key)


def verify_checkpoint(note: str, verifier: Verifier, origin: str | None = None):
    """Verifies a signed checkpoint note and returns the parsed checkpoint."""
    checkpoint = parse_checkpoint(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise NoteError("checkpoint origin is not " + origin)
    return checkpoint
