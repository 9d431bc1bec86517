"""RFC 8785 (JCS) canonical JSON and the hashes taken over it."""

import base64
import hashlib
from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """Returns the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value."""
    return rfc8785.dumps(value)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64(data: bytes) -> str:
    """Standard base64 with padding, the encoding used on every wire format."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decodes strict standard base64; raises ValueError on anything else."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def digest_of(value: Any) -> str:
    """Base64 SHA-256 of the canonical JSON of a value."""
    return b64(sha256(canonical_json(value)))
