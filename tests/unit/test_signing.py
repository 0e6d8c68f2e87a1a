"""Signed login's message and signatures, against fixed vectors (checked with openssl too)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tradews.api import signing

# The worked example of docs/protocol.md (rpc.login). The signatures were also computed with
# `openssl dgst -sha256 -hmac SECRET` and `openssl pkeyutl -sign -rawin`.
API_KEY = "tw_5f1c2a9e8b7d6c5b4a392817"
SECRET = "7Lr0WmF1sQyB3nC8pZt5vHx2Ke9Dg4Ja6Uo1Ri7Ns0M"
TIMESTAMP = 1763779226123
NONCE = "5kR2pYt9QwLmZx4A"
MESSAGE = b"tradews-login-v1\ntw_5f1c2a9e8b7d6c5b4a392817\n1763779226123\n5kR2pYt9QwLmZx4A"
HMAC_SIGNATURE = "a9883eaded188f48ffa170fc3f19c120d2db453d44079ac6be017991fd680e0c"
ED25519_SEED = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # bytes 0..31
ED25519_PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
ED25519_SIGNATURE = (
    "5b97b8c7694afb9d0e0e6f8103c1eafd8b5390992831d617ad42fe99814c4d22"
    "ec9e6d9eeb503fcd2a3b226504169631d167b1a842ebceb6839f5dce43233208"
)
PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_the_signed_message() -> None:
    assert signing.login_message(API_KEY, TIMESTAMP, NONCE) == MESSAGE


def test_hmac_vector() -> None:
    assert signing.hmac_signature(SECRET, MESSAGE) == HMAC_SIGNATURE
    assert signing.verify_hmac(SECRET, MESSAGE, HMAC_SIGNATURE)


def test_ed25519_vector() -> None:
    key = signing.parse_private_key(ED25519_SEED)
    assert base64.b64encode(signing.public_key_bytes(key.public_key())).decode() == ED25519_PUBLIC
    assert signing.ed25519_signature(ED25519_SEED, MESSAGE) == ED25519_SIGNATURE  # deterministic
    public = signing.parse_public_key(ED25519_PUBLIC)
    assert signing.verify_ed25519(public, MESSAGE, ED25519_SIGNATURE)


@pytest.mark.parametrize(
    "field, value",
    [("apiKey", "tw_5f1c2a9e8b7d6c5b4a392818"), ("timestamp", TIMESTAMP + 1),
     ("nonce", "5kR2pYt9QwLmZx4B")],
)  # fmt: skip
def test_any_change_to_the_message_breaks_both_signatures(field: str, value: object) -> None:
    parts: dict[str, object] = {"apiKey": API_KEY, "timestamp": TIMESTAMP, "nonce": NONCE}
    parts[field] = value
    other = signing.login_message(str(parts["apiKey"]), int(str(parts["timestamp"])),
                                  str(parts["nonce"]))  # fmt: skip
    assert not signing.verify_hmac(SECRET, other, HMAC_SIGNATURE)
    public = signing.parse_public_key(ED25519_PUBLIC)
    assert not signing.verify_ed25519(public, other, ED25519_SIGNATURE)


def test_wrong_keys_and_malformed_signatures_fail_without_raising() -> None:
    public = signing.parse_public_key(ED25519_PUBLIC)
    other_public = signing.public_key_bytes(Ed25519PrivateKey.generate().public_key())
    assert not signing.verify_hmac(SECRET + "x", MESSAGE, HMAC_SIGNATURE)
    assert not signing.verify_hmac(SECRET, MESSAGE, HMAC_SIGNATURE.upper())
    assert not signing.verify_hmac(SECRET, MESSAGE, "é" * 64)
    assert not signing.verify_ed25519(other_public, MESSAGE, ED25519_SIGNATURE)
    assert not signing.verify_ed25519(public, MESSAGE, ED25519_SIGNATURE[:-2] + "00")
    assert not signing.verify_ed25519(public, MESSAGE, "zz" * 64)
    assert not signing.verify_ed25519(public, MESSAGE, HMAC_SIGNATURE)  # wrong length


def test_keys_as_pem_and_base64() -> None:
    key = signing.parse_private_key(ED25519_SEED)
    pem_private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    pem_public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert signing.ed25519_signature(pem_private, MESSAGE) == ED25519_SIGNATURE
    assert signing.parse_public_key(pem_public) == signing.parse_public_key(ED25519_PUBLIC)
    seed, public = signing.generate_ed25519()
    assert signing.verify_ed25519(public, MESSAGE, signing.ed25519_signature(seed, MESSAGE))


@pytest.mark.parametrize(
    "text, message",
    [("not base64!", "neither base64 nor PEM"), ("AAEC", "must be 32 bytes"),
     ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "PEM")],
)  # fmt: skip
def test_bad_key_text_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(signing.KeyFormatError, match=message):
        signing.parse_public_key(text)
    with pytest.raises(signing.KeyFormatError, match=message):
        signing.parse_private_key(text.replace("PUBLIC", "PRIVATE"))


def test_nonces_and_signature_formats() -> None:
    assert signing.NONCE.fullmatch(signing.new_nonce())
    assert signing.NONCE.fullmatch(NONCE)
    for bad in ("short", "x" * 65, "has space", "dot.ted-nonce"):
        assert not signing.NONCE.fullmatch(bad)
    assert signing.SIGNATURE.fullmatch(HMAC_SIGNATURE)
    assert signing.SIGNATURE.fullmatch(ED25519_SIGNATURE)
    assert not signing.SIGNATURE.fullmatch(HMAC_SIGNATURE.upper())
    assert not signing.SIGNATURE.fullmatch(HMAC_SIGNATURE[:-1])


def test_the_worked_example_in_the_protocol_document() -> None:
    """A reader who follows docs/protocol.md gets these exact values."""
    text = PROTOCOL.read_text()
    section = text[text.index("### `rpc.login`") :]
    section = section[: section.index("\n### ", 1)]
    for value in (API_KEY, SECRET, str(TIMESTAMP), NONCE, HMAC_SIGNATURE, ED25519_SEED,
                  ED25519_PUBLIC, ED25519_SIGNATURE):  # fmt: skip
        assert value in section, value
    assert re.search(r"tradews-login-v1\\ntw_5f1c2a9e8b7d6c5b4a392817\\n1763779226123\\n"
                     r"5kR2pYt9QwLmZx4A", section)  # fmt: skip
