"""Signed login: the message a client signs, and how a signature is made and checked.

A signed ``rpc.login`` proves that the client holds the key's secret (HMAC-SHA256) or private key
(Ed25519) without sending it. The client signs the UTF-8 bytes of::

    "tradews-login-v1\\n" + apiKey + "\\n" + str(timestamp) + "\\n" + nonce

with ``timestamp`` its clock in integer milliseconds since the epoch and ``nonce`` 8-64 characters
of ``[A-Za-z0-9_-]`` never used before with this key. The signature is lowercase hex: 64 digits
(HMAC-SHA256 keyed with the UTF-8 bytes of the API secret) or 128 (Ed25519). The server accepts
a timestamp within its receive window and each (key, nonce) pair once, so a captured login cannot
be replayed. This module is pure: the client signs with it and the server verifies with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LOGIN_CONTEXT = "tradews-login-v1"
KEY_TYPES = ("hmac", "ed25519")
NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")
SIGNATURE = re.compile(r"[0-9a-f]{64}|[0-9a-f]{128}")  # HMAC-SHA256 or Ed25519, lowercase hex
ED25519_RAW_BYTES = 32


class KeyFormatError(ValueError):
    """A key given as text (base64 or PEM) that is not an Ed25519 key; the message says why."""


def login_message(api_key: str, timestamp: int, nonce: str) -> bytes:
    """The bytes a signed login signs."""
    return f"{LOGIN_CONTEXT}\n{api_key}\n{timestamp}\n{nonce}".encode()


def new_nonce() -> str:
    """A fresh random nonce (128 bits, 22 characters of the allowed alphabet)."""
    return secrets.token_urlsafe(16)


# HMAC-SHA256 ------------------------------------------------------------------------------------


def hmac_signature(secret: str | bytes, message: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed with the secret (its UTF-8 bytes)."""
    key = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_hmac(secret: str | bytes, message: bytes, signature: str) -> bool:
    """Whether ``signature`` is the HMAC of ``message`` under ``secret``; constant time."""
    expected = hmac_signature(secret, message).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))


# Ed25519 ----------------------------------------------------------------------------------------


def ed25519_signature(private_key: Ed25519PrivateKey | str, message: bytes) -> str:
    """Lowercase hex of the 64-byte Ed25519 signature; ``private_key`` as a key object or as
    text (base64 of the raw 32-byte seed, or PEM)."""
    key = (
        private_key
        if isinstance(private_key, Ed25519PrivateKey)
        else parse_private_key(private_key)
    )
    return key.sign(message).hex()


def verify_ed25519(public_key: bytes, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (hex) is a valid Ed25519 signature of ``message`` by the raw
    32-byte ``public_key``."""
    try:
        sig = bytes.fromhex(signature)
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, message)
    except (ValueError, InvalidSignature):
        return False
    return True


def generate_ed25519() -> tuple[str, bytes]:
    """A new key pair: (base64 of the raw private seed, raw 32-byte public key)."""
    key = Ed25519PrivateKey.generate()
    return private_key_text(key), public_key_bytes(key.public_key())


def private_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from base64 of its raw 32-byte seed, or from PEM (PKCS#8)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a readable unencrypted PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError("the PEM private key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_key(text, "private key"))


def parse_public_key(text: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as base64 of those bytes, or as PEM
    (SubjectPublicKeyInfo, what ``openssl pkey -pubout`` writes)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise KeyFormatError(f"not a readable PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError("the PEM public key is not an Ed25519 key")
        return public_key_bytes(key)
    raw = _raw_key(text, "public key")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise KeyFormatError(f"not an Ed25519 public key: {exc}") from None
    return raw


def _raw_key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"the {what} is neither base64 nor PEM") from None
    if len(raw) != ED25519_RAW_BYTES:
        raise KeyFormatError(
            f"the {what} must be {ED25519_RAW_BYTES} bytes (base64 of the raw key), got {len(raw)}"
        )
    return raw
