"""signing.py: the Ed25519 envelope of the edge config."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ab_pipelines.assignment.signing import (
    DEV_KEY_ID,
    SignatureError,
    SigningKey,
    canonical_json,
    public_key,
    sign_payload,
    signing_key,
    verify_envelope,
)

PAYLOAD = {"schema": 1, "version": 3, "experiments": {"é": {"variants": ["a", "b"]}}}


@pytest.fixture(autouse=True)
def dev_env(monkeypatch):
    for name in ("ABP_ENV", "ABP_SIGNING_KEY", "ABP_PUBLIC_KEY"):
        monkeypatch.delenv(name, raising=False)


def _custom_key() -> SigningKey:
    return SigningKey("custom", Ed25519PrivateKey.generate())


def test_round_trip_with_the_dev_key():
    env = sign_payload(PAYLOAD)
    assert env["key_id"] == DEV_KEY_ID
    assert env["payload"] == canonical_json(PAYLOAD)
    assert verify_envelope(env) == PAYLOAD
    assert verify_envelope(json.loads(json.dumps(env))) == PAYLOAD


def test_round_trip_with_a_custom_key():
    key = _custom_key()
    env = sign_payload(PAYLOAD, key)
    assert verify_envelope(env, public_key(key.public_b64)) == PAYLOAD


def test_tampered_payload():
    env = sign_payload(PAYLOAD)
    env["payload"] = env["payload"].replace('"version":3', '"version":4')
    with pytest.raises(SignatureError, match="does not match"):
        verify_envelope(env)


def test_tampered_signature():
    env = sign_payload(PAYLOAD)
    sig = bytearray(base64.b64decode(env["signature"]))
    sig[0] ^= 1
    env["signature"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureError, match="does not match"):
        verify_envelope(env)
    env["signature"] = "not base64!"
    with pytest.raises(SignatureError, match="not base64"):
        verify_envelope(env)


def test_wrong_key():
    env = sign_payload(PAYLOAD, _custom_key())
    with pytest.raises(SignatureError):
        verify_envelope(env)  # the dev public key
    with pytest.raises(SignatureError):
        verify_envelope(env, public_key(_custom_key().public_b64))


def test_not_an_envelope():
    for bad in (None, [], {"signature": "x"}, {"payload": 3}):
        with pytest.raises(SignatureError, match="not a signed envelope"):
            verify_envelope(bad)


def test_dev_key_refused_in_prod(monkeypatch):
    env = sign_payload(PAYLOAD)
    dev_public = public_key()
    monkeypatch.setenv("ABP_ENV", "prod")
    with pytest.raises(SignatureError, match="development key"):
        verify_envelope(env, dev_public)
    from cryptography.hazmat.primitives import serialization

    raw = dev_public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with pytest.raises(SignatureError, match="development public key"):
        public_key(base64.b64encode(raw).decode())
    key = signing_key.__globals__["_DEV_PRIVATE"]
    monkeypatch.setenv("ABP_SIGNING_KEY", key)
    with pytest.raises(SignatureError, match="development signing key"):
        signing_key()


def test_missing_prod_keys(monkeypatch):
    monkeypatch.setenv("ABP_ENV", "prod")
    with pytest.raises(SignatureError, match="ABP_PUBLIC_KEY"):
        public_key()
    with pytest.raises(SignatureError, match="ABP_SIGNING_KEY"):
        signing_key()


def test_prod_keys_from_the_environment_and_a_file(monkeypatch, tmp_path):
    key = _custom_key()
    raw = key.private.private_bytes_raw()
    monkeypatch.setenv("ABP_ENV", "prod")
    monkeypatch.setenv("ABP_SIGNING_KEY", base64.b64encode(raw).decode())
    (tmp_path / "pub").write_text(key.public_b64)
    monkeypatch.setenv("ABP_PUBLIC_KEY", str(tmp_path / "pub"))
    env = sign_payload(PAYLOAD)
    assert env["key_id"] == "prod"
    assert verify_envelope(env) == PAYLOAD


def test_bad_key_text():
    with pytest.raises(SignatureError, match="32 bytes"):
        public_key(base64.b64encode(b"short").decode())
    with pytest.raises(SignatureError, match="base64"):
        public_key("!!!")
