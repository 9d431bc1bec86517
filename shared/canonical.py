"""RFC 8785 (JCS) canonical JSON and the hashes taken over it."""

import base64
import hashlib
import json
from typing import Any

import rfc8785

# Below this magnitude an integer's JCS form is its plain decimal digits.
SAFE_INTEGER = 2**53


def canonical_json(value: Any) -> bytes:
    """Returns the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value.

    Values made only of objects with ASCII keys, arrays, strings, booleans,
    null and integers below 2**53 have the same JCS bytes as sorted, compact
    json.dumps, which is far faster; anything else goes to rfc8785."""
    if _plain(value):
        try:
            return json.dumps(
                value, ensure_ascii=False, sort_keys=True, separators=(",", ":")
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str and key.isascii() for key in item):
                return False
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
        elif kind is int:
            if not -SAFE_INTEGER < item < SAFE_INTEGER:
                return False
        elif kind not in (str, bool) and item is not None:
            return False
    return True


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
