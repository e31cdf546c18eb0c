"""Verifier settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


@dataclass(frozen=True)
class Settings:
    """Where aidlc-auth is and what its tokens must say.

    `issuer` is pinned here and only cross-checked against the service's RFC 8414 metadata:
    trusting whatever issuer the network announces would let a spoofed metadata document
    choose it. `url` is how this unit reaches the service (often an internal address),
    which need not be the public issuer.
    """

    url: str
    issuer: str
    audience: str = "aidlc"
    introspection_secret: str | None = field(default=None, repr=False)
    # The README allows at most 60 s of clock skew.
    leeway_seconds: float = 60
    # aidlc-auth's AIDLC_ACCESS_TOKEN_TTL_SECONDS: a longer-lived token was not minted by it,
    # whatever its signature, so even a leaked key cannot mint long-lived tokens.
    max_token_lifetime_seconds: float = 900
    # The service sends `Cache-Control: max-age=60` with its JWKS, and rotation waits that
    # long before a new key signs.
    jwks_cache_seconds: float = 60
    # Least time between two JWKS fetches, so a flood of tokens with made-up kids (or an
    # outage) costs the service one request per cooldown, not one per request.
    jwks_refetch_cooldown_seconds: float = 10
    # How long the last good key set still verifies while the service cannot be reached.
    jwks_max_stale_seconds: float = 3600
    http_timeout_seconds: float = 2

    @property
    def jwks_url(self) -> str:
        return self.url.rstrip("/") + "/.well-known/jwks.json"

    @property
    def metadata_url(self) -> str:
        return self.url.rstrip("/") + "/.well-known/oauth-authorization-server"

    @property
    def introspection_url(self) -> str:
        return self.url.rstrip("/") + "/api/auth/introspect"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads the `AIDLC_AUTH_*` variables (see clients/python/README.md)."""
        env = os.environ if env is None else env
        url = env.get("AIDLC_AUTH_URL")
        issuer = env.get("AIDLC_AUTH_ISSUER")
        if not url:
            raise ValueError("AIDLC_AUTH_URL is not set (e.g. http://aidlc-auth.internal:8001)")
        if not issuer:
            raise ValueError("AIDLC_AUTH_ISSUER is not set (the service's AIDLC_JWT_ISSUER)")
        return cls(
            url=url,
            issuer=issuer,
            audience=env.get("AIDLC_AUTH_AUDIENCE") or "aidlc",
            introspection_secret=env.get("AIDLC_AUTH_INTROSPECTION_SECRET") or None,
            leeway_seconds=_float(env, "AIDLC_AUTH_LEEWAY_SECONDS", 60),
            max_token_lifetime_seconds=_float(env, "AIDLC_AUTH_MAX_TOKEN_LIFETIME_SECONDS", 900),
            jwks_cache_seconds=_float(env, "AIDLC_AUTH_JWKS_CACHE_SECONDS", 60),
            jwks_refetch_cooldown_seconds=_float(env, "AIDLC_AUTH_JWKS_REFETCH_COOLDOWN_SECONDS", 10),
            jwks_max_stale_seconds=_float(env, "AIDLC_AUTH_JWKS_MAX_STALE_SECONDS", 3600),
            http_timeout_seconds=_float(env, "AIDLC_AUTH_HTTP_TIMEOUT_SECONDS", 2),
        )
