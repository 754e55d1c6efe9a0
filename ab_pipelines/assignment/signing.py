"""Ed25519 signing of the edge config: the publisher signs, clients verify with the public key only.

The signed file is a JSON envelope ``{"payload": "<canonical JSON text>", "signature": "<base64>",
"key_id": "..."}``; the signature covers the payload text's UTF-8 bytes exactly.

Keys: ``ABP_SIGNING_KEY`` (publisher; base64 of the raw 32-byte private key, or a path to a file
holding it) and ``ABP_PUBLIC_KEY`` (clients; base64 of the raw 32-byte public key, or a path).
Without them, and only when ``ABP_ENV`` is not ``prod``, the development key pair below is used,
and a warning says so. With ``ABP_ENV=prod`` the development key is refused on both sides.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ab_pipelines.contracts.payload import canonical_json

__all__ = [
    "DEV_KEY_ID",
    "SignatureError",
    "SigningKey",
    "canonical_json",
    "is_prod",
    "public_key",
    "sign_payload",
    "signing_key",
    "verify_envelope",
]

log = logging.getLogger("ab_pipelines.signing")

DEV_KEY_ID = "dev"
# The development key pair: public on purpose, never accepted when ABP_ENV=prod.
_DEV_PRIVATE = "oYsAbMXrZu7lSbj0po2PsIddDN3uuuWE23qVx+hRUKY="
_DEV_PUBLIC = "lYODfAV02iY1XFZMe9GWwHViA1WAQL3i+cbaoV6glCY="


class SignatureError(ValueError):
    """A payload whose envelope, signature or key cannot be trusted."""


_warned: set[str] = set()


def _warn_dev(what: str) -> None:
    """Say once per process that the development key is in use."""
    if what not in _warned:
        _warned.add(what)
        log.warning(f"{what} the edge config with the DEVELOPMENT key (ABP_ENV is not prod)")


def is_prod() -> bool:
    return os.environ.get("ABP_ENV", "dev").strip().lower() == "prod"


def _raw_key(value: str, what: str) -> bytes:
    text = value.strip()
    if os.path.exists(text):
        text = Path(text).read_text().strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise SignatureError(f"{what} is not base64 of a raw 32-byte Ed25519 key") from None
    if len(raw) != 32:
        raise SignatureError(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey

    @property
    def public_b64(self) -> str:
        from cryptography.hazmat.primitives import serialization

        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()


def signing_key() -> SigningKey:
    """The publisher's key: ABP_SIGNING_KEY, or the development key outside prod."""
    value = os.environ.get("ABP_SIGNING_KEY")
    if value:
        raw = _raw_key(value, "ABP_SIGNING_KEY")
        if base64.b64encode(raw).decode() == _DEV_PRIVATE and is_prod():
            raise SignatureError(
                "ABP_ENV=prod refuses the development signing key; set ABP_SIGNING_KEY"
            )
        key = Ed25519PrivateKey.from_private_bytes(raw)
        sk = SigningKey("prod" if is_prod() else "custom", key)
        return SigningKey(DEV_KEY_ID, key) if sk.public_b64 == _DEV_PUBLIC else sk
    if is_prod():
        raise SignatureError(
            "ABP_ENV=prod needs ABP_SIGNING_KEY (base64 of a raw Ed25519 private key)"
        )
    _warn_dev("signing")
    return SigningKey(
        DEV_KEY_ID, Ed25519PrivateKey.from_private_bytes(base64.b64decode(_DEV_PRIVATE))
    )


def public_key(value: str | None = None) -> Ed25519PublicKey:
    """The clients' key: ``value``, ABP_PUBLIC_KEY, or the development key outside prod."""
    value = value or os.environ.get("ABP_PUBLIC_KEY")
    if value:
        raw = _raw_key(value, "the public key")
        if base64.b64encode(raw).decode() == _DEV_PUBLIC and is_prod():
            raise SignatureError("ABP_ENV=prod refuses the development public key")
        return Ed25519PublicKey.from_public_bytes(raw)
    if is_prod():
        raise SignatureError(
            "ABP_ENV=prod needs ABP_PUBLIC_KEY (base64 of a raw Ed25519 public key)"
        )
    _warn_dev("verifying")
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(_DEV_PUBLIC))


def sign_payload(payload: dict, key: SigningKey | None = None) -> dict:
    """The signed envelope of a payload."""
    key = key or signing_key()
    text = canonical_json(payload)
    sig = key.private.sign(text.encode("utf-8"))
    return {"payload": text, "signature": base64.b64encode(sig).decode(), "key_id": key.key_id}


def verify_envelope(envelope: object, key: Ed25519PublicKey | None = None) -> dict:
    """The payload of a signed envelope, or SignatureError saying why it is not trusted."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("payload"), str):
        raise SignatureError("not a signed envelope (needs 'payload' text and 'signature')")
    if envelope.get("key_id") == DEV_KEY_ID and is_prod():
        raise SignatureError("signed with the development key, refused because ABP_ENV=prod")
    try:
        sig = base64.b64decode(str(envelope.get("signature", "")), validate=True)
    except ValueError:
        raise SignatureError("the signature is not base64") from None
    try:
        (key or public_key()).verify(sig, envelope["payload"].encode("utf-8"))
    except InvalidSignature:
        raise SignatureError("the signature does not match the payload") from None
    try:
        payload = json.loads(envelope["payload"])
    except ValueError:
        raise SignatureError("the signed payload is not JSON") from None
    if not isinstance(payload, dict):
        raise SignatureError("the signed payload is not a JSON object")
    return payload
