"""Helpers for the tests of services that use this package: a signing key of your own and
tokens made with it (valid, expired, for another audience, forged, alg-confused), and a
Verifier/AidlcAuth that trusts that key without any network.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .settings import Settings
from .verifier import Caller, Verifier

if TYPE_CHECKING:
    from .fastapi import AidlcAuth

TEST_ISSUER = "http://aidlc-auth.test"
TEST_AUDIENCE = "aidlc"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_caller(**fields: Any) -> Caller:
    """A Caller for dependency overrides; any field may be given."""
    values: dict[str, Any] = {
        "user_id": str(uuid.uuid4()),
        "session_id": str(uuid.uuid4()),
        "email": "user@example.com",
        "email_verified": True,
        "expires_at": datetime.now(timezone.utc) + timedelta(minutes=15),
        "token_id": str(uuid.uuid4()),
    }
    values.update(fields)
    return Caller(**values)


class TokenFactory:
    """An Ed25519 key like aidlc-auth's, and access tokens signed with it."""

    def __init__(self, issuer: str = TEST_ISSUER, audience: str = TEST_AUDIENCE, kid: str | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.kid = kid or f"test-{uuid.uuid4().hex[:16]}"
        self.private_key = Ed25519PrivateKey.generate()

    def public_jwk(self) -> dict[str, str]:
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """The claims aidlc-auth puts in a fresh token; an override of None drops a claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(uuid.uuid4()),
            "sid": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": str(uuid.uuid4()),
            "email": "user@example.com",
            "email_verified": True,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], *, header: dict[str, Any] | None = None,
             key: Ed25519PrivateKey | None = None) -> str:
        """`claims` signed with EdDSA (with `key`, default ours) under a header like ours."""
        headers = {"typ": "at+jwt", "kid": self.kid, **(header or {})}
        headers = {name: value for name, value in headers.items() if value is not None}
        return jwt.encode(claims, key or self.private_key, algorithm="EdDSA", headers=headers)

    def valid(self, **claims: Any) -> str:
        return self.sign(self.claims(**claims))

    def expired(self, **claims: Any) -> str:
        # Well past any leeway a verifier allows (60 s at most).
        now = int(time.time())
        return self.sign(self.claims(iat=now - 1000, nbf=now - 1000, exp=now - 100, **claims))

    def wrong_audience(self, audience: str = "another-unit") -> str:
        return self.valid(aud=audience)

    def forged(self, **claims: Any) -> str:
        """Our header and claims, signed by a key that is not ours."""
        return self.sign(self.claims(**claims), key=Ed25519PrivateKey.generate())

    def alg_confused(self) -> str:
        """HS256 keyed with our public key's bytes: accepted by a verifier that lets the
        token's header choose the algorithm."""
        secret = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return jwt.encode(self.claims(), secret, algorithm="HS256", headers={"typ": "at+jwt", "kid": self.kid})

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"url": "http://aidlc-auth.test", "issuer": self.issuer, "audience": self.audience}
        values.update(overrides)
        return Settings(**values)

    def verifier(self, **settings: Any) -> Verifier:
        """A Verifier that trusts this factory's key and never touches the network."""
        document = self.jwks()

        async def fetch() -> Any:
            return document

        return Verifier(self.settings(**settings), fetch_jwks=fetch)

    def auth(self, **settings: Any) -> AidlcAuth:
        """An AidlcAuth that trusts this factory's key (strict mode still needs a service)."""
        from .fastapi import AidlcAuth

        return AidlcAuth(self.verifier(**settings))
