"""Ed25519 keys, key IDs and signatures over canonical JSON statements."""

import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.bindings import crypto_core_ed25519_is_valid_point

from shared.canonical import b64, canonical_json, unb64

RAW = serialization.Encoding.Raw
RAW_PUBLIC = serialization.PublicFormat.Raw
RAW_PRIVATE = serialization.PrivateFormat.Raw


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_b64(seed: str) -> Ed25519PrivateKey:
    """Loads a private key from the base64 of its 32-byte seed."""
    return Ed25519PrivateKey.from_private_bytes(unb64(seed.strip()))


def private_key_to_b64(key: Ed25519PrivateKey) -> str:
    return b64(key.private_bytes(RAW, RAW_PRIVATE, serialization.NoEncryption()))


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(RAW, RAW_PUBLIC)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return b64(public_key_bytes(key))


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """Parses the base64 of a raw 32-byte Ed25519 public key.

    Keys of small order, or not canonically encoded, are refused: under such a
    key a signature can be forged for any message.
    """
    raw = unb64(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    if not crypto_core_ed25519_is_valid_point(raw):
        raise ValueError(
            "not a valid Ed25519 public key (small order or non-canonical)"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey | bytes) -> str:
    """Names a party key: hex of the first 16 bytes of SHA-256(raw public key)."""
    raw = key if isinstance(key, bytes) else public_key_bytes(key)
    return hashlib.sha256(raw).hexdigest()[:32]


def sign_bytes(key: Ed25519PrivateKey, message: bytes) -> str:
    return b64(key.sign(message))


def verify_bytes(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(unb64(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_statement(key: Ed25519PrivateKey, statement: dict[str, Any]) -> dict:
    """Signs the canonical JSON of a statement; returns a signature object."""
    return {
        "key_id": key_id(key),
        "signature": sign_bytes(key, canonical_json(statement)),
    }


def verify_statement(
    public: Ed25519PublicKey, statement: dict[str, Any], signature: str
) -> bool:
    return verify_bytes(public, canonical_json(statement), signature)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """Reads a base64 seed file, creating it (mode 0600) when it is missing."""
    if path.exists():
        return private_key_from_b64(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_to_b64(key) + "\n")
    try:
        os.link(staging, path)
    except FileExistsError:
        key = private_key_from_b64(path.read_text())
    finally:
        staging.unlink()
    return key
