"""Verifies aidlc-auth access tokens: locally against the cached JWKS, and on request also
by asking the service's introspection endpoint (to see a logout before the token expires).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import jwt

from .errors import AuthUnavailable, InvalidToken
from .jwks import FetchJwks, JwksCache
from .settings import Settings

log = logging.getLogger("aidlc_auth_verifier")

# RFC 9068 section 4: a resource server must check typ; both spellings are allowed.
ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "sub", "sid", "jti"]
# Far above any token we issue (about 600 bytes); stops megabyte headers from costing a parse.
MAX_TOKEN_LENGTH = 8192
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Caller:
    """Who is calling, as an aidlc-auth access token proves it."""

    user_id: str
    session_id: str
    email: str | None
    email_verified: bool
    expires_at: datetime
    token_id: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Caller:
        email = claims.get("email")
        return cls(
            user_id=claims["sub"],
            session_id=claims["sid"],
            email=email if isinstance(email, str) else None,
            email_verified=claims.get("email_verified") is True,
            expires_at=datetime.fromtimestamp(claims["exp"], tz=timezone.utc),
            token_id=claims["jti"],
            claims=dict(claims),
        )


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header value."""
    if authorization is None or authorization.strip() == "":
        raise InvalidToken("a bearer token is required", code=None)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidToken("a bearer token is required", code=None)
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH or not _JWS_COMPACT.fullmatch(token):
        raise InvalidToken("the token is not a signed JWT")
    return token


class _HttpClients:
    """One httpx client per event loop (a client's connections belong to the loop that
    opened them), so one verifier built at import time serves any loop."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # trust_env=False: aidlc-auth is an internal service; an HTTP(S)_PROXY meant for
            # the internet must not see our introspection secret.
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


class Verifier:
    """Checks tokens in the order that keeps untrusted input away from the crypto:
    header (`alg` EdDSA only, `typ` at+jwt, `kid` present; `jku`/`jwk`/`x5u` never read),
    then the key by kid from the cached JWKS, then signature, `iss`, `aud`, `exp`, `nbf`,
    `iat` (with the leeway), `exp - iat` and the required `sub`/`sid`/`jti`.
    """

    def __init__(self, settings: Settings, *, fetch_jwks: FetchJwks | None = None) -> None:
        self.settings = settings
        self._http = _HttpClients(settings.http_timeout_seconds)
        self.jwks = JwksCache(
            fetch_jwks or self._fetch_jwks,
            lifetime=settings.jwks_cache_seconds,
            cooldown=settings.jwks_refetch_cooldown_seconds,
            max_stale=settings.jwks_max_stale_seconds,
        )
        # Static key sets (tests) have no metadata to cross-check.
        self._metadata_checked = fetch_jwks is not None
        self._metadata_problem: str | None = None
        self._metadata_attempted_at = float("-inf")

    @classmethod
    def from_env(cls) -> Verifier:
        return cls(Settings.from_env())

    async def verify(self, authorization: str | None) -> Caller:
        """The caller of an `Authorization` header value, checked locally."""
        return await self.verify_token(bearer_token(authorization))

    async def verify_token(self, token: str) -> Caller:
        kid = self._check_header(token)
        if not self._metadata_checked and (
            time.monotonic() - self._metadata_attempted_at >= self.settings.jwks_refetch_cooldown_seconds
        ):
            await self._check_metadata()
        if self._metadata_problem is not None:
            raise AuthUnavailable(self._metadata_problem)
        key = await self.jwks.key(kid)
        return Caller.from_claims(self._check_claims(token, key))

    async def verify_strict(self, authorization: str | None) -> Caller:
        """Like `verify`, and also asks aidlc-auth whether the session is still live, so a
        logout counts at once. Costs one request to the service."""
        token = bearer_token(authorization)
        caller = await self.verify_token(token)
        await self._introspect(token, caller)
        return caller

    async def aclose(self) -> None:
        await self._http.aclose()

    def _check_header(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            # PyJWT already refuses unknown `crit` extensions here.
            message = "the token has critical header extensions" if "critical" in str(e) else "the token is not a signed JWT"
            raise InvalidToken(message) from None
        if header.get("alg") != "EdDSA":
            raise InvalidToken("the token is not signed with EdDSA")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
            raise InvalidToken("the token is not an access token (typ at+jwt)")
        if header.get("crit") is not None:
            # RFC 7515 4.1.11: extensions we do not understand make the token invalid (PyJWT
            # lets through the ones it knows, such as b64; we use none of them).
            raise InvalidToken("the token has critical header extensions")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid == "":
            raise InvalidToken("the token names no signing key (kid)")
        return kid

    def _check_claims(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=["EdDSA"],
                issuer=s.issuer,
                audience=s.audience,
                leeway=s.leeway_seconds,
                options={"require": REQUIRED_CLAIMS, "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.MissingRequiredClaimError as e:
            raise InvalidToken(f"the token has no {e.claim} claim") from None
        except jwt.exceptions.InvalidSubjectError:
            raise InvalidToken("the token's sub claim is not a string") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature is invalid") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token is invalid") from None
        for name in ("sub", "sid", "jti"):
            if not isinstance(claims[name], str) or claims[name] == "":
                raise InvalidToken(f"the token's {name} claim is not a string")
        lifetime = int(claims["exp"]) - int(claims["iat"])
        if lifetime > s.max_token_lifetime_seconds:
            raise InvalidToken("the token lives longer than an access token does")
        return claims

    async def _check_metadata(self) -> None:
        """Cross-checks the RFC 8414 metadata with our pinned settings, once it is read.

        An unreachable metadata document is only logged (the JWKS decides availability); a
        contradicting one is a deployment error that makes every request a 503 until fixed.
        """
        self._metadata_attempted_at = time.monotonic()
        try:
            response = await self._http.get().get(self.settings.metadata_url)
            response.raise_for_status()
            metadata = response.json()
        except (httpx.HTTPError, ValueError) as e:
            log.warning("could not read aidlc-auth's metadata to cross-check: %s", e)
            return
        problem = None
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.settings.issuer:
            issuer = metadata.get("issuer") if isinstance(metadata, dict) else None
            problem = (
                f"aidlc-auth announces issuer {issuer!r}, but AIDLC_AUTH_ISSUER "
                f"is {self.settings.issuer!r}"
            )
        elif "EdDSA" not in (metadata.get("access_token_signing_alg_values_supported") or []):
            problem = "aidlc-auth's metadata does not list EdDSA for access tokens"
        if problem is not None:
            log.error("%s", problem)
        self._metadata_problem = problem
        self._metadata_checked = problem is None

    async def _fetch_jwks(self) -> Any:
        response = await self._http.get().get(self.settings.jwks_url)
        response.raise_for_status()
        return response.json()

    async def _introspect(self, token: str, caller: Caller) -> None:
        secret = self.settings.introspection_secret
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        try:
            response = await self._http.get().post(
                self.settings.introspection_url, json={"token": token}, headers=headers
            )
        except httpx.HTTPError as e:
            raise AuthUnavailable(f"introspection could not be reached: {type(e).__name__}") from None
        if response.status_code != 200:
            # 401 invalid_client is our missing or wrong secret: a deployment error, not the
            # caller's; anything else is the service failing.
            log.error("introspection answered %s", response.status_code)
            raise AuthUnavailable(f"introspection answered {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise AuthUnavailable("introspection answered something that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise InvalidToken("the session has ended")
        if answer.get("sub") != caller.user_id or answer.get("sid") != caller.session_id:
            raise InvalidToken("the token does not belong to this session")
