"""An async cache of aidlc-auth's published signing keys (its JWKS)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from .errors import AuthUnavailable, InvalidToken

log = logging.getLogger("aidlc_auth_verifier")

FetchJwks = Callable[[], Awaitable[Any]]
"""Returns the parsed JWKS document; raises anything when it cannot."""


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The Ed25519 signing keys of a JWKS document, by kid.

    Keys of any other type or use are skipped rather than refused: a key we would never
    accept a signature from must not make the whole set unusable.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if (
            not isinstance(kid, str)
            or jwk.get("kty") != "OKP"
            or jwk.get("crv") != "Ed25519"
            or jwk.get("use", "sig") != "sig"
            or jwk.get("alg", "EdDSA") != "EdDSA"
            or "d" in jwk  # a private key published by mistake is not ours to use
        ):
            continue
        try:
            keys[kid] = jwt.PyJWK(jwk, algorithm="EdDSA")
        except jwt.PyJWTError:
            log.warning("skipping an unreadable key in the JWKS", extra={"kid": kid})
    return keys


class JwksCache:
    """Keeps the key set for `lifetime` seconds, re-fetches early on an unknown kid (a
    rotation) at most once per `cooldown`, and keeps the last good set, up to `max_stale`
    seconds old, while fetches fail.
    """

    def __init__(
        self,
        fetch: FetchJwks,
        *,
        lifetime: float = 60,
        cooldown: float = 10,
        max_stale: float = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._lifetime = lifetime
        self._cooldown = cooldown
        self._max_stale = max_stale
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._last_fetch_failed = False
        self._fetching = False
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def kids(self) -> list[str]:
        """The kids of the set held now (for tests and diagnostics)."""
        return sorted(self._keys or {})

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named `kid`.

        Raises InvalidToken when the service, reached just now, does not publish it, and
        AuthUnavailable when we hold no usable set and could not fetch one.
        """
        # A fetch already under way (started by a concurrent request) is awaited, not skipped.
        if self._fetching or self._needs_fetch(kid):
            await self._refresh(kid)
        keys = self._keys
        if keys is None:
            raise AuthUnavailable("the signing keys could not be fetched")
        if self._last_fetch_failed and self._clock() - self._fetched_at > self._max_stale:
            raise AuthUnavailable("the signing keys could not be refreshed for too long")
        found = keys.get(kid)
        if found is not None:
            return found
        if self._last_fetch_failed:
            # It may be a key published after our last good fetch: not the caller's fault.
            raise AuthUnavailable("unknown key id and the signing keys could not be refreshed")
        raise InvalidToken("the token's signing key is not published")

    def _needs_fetch(self, kid: str) -> bool:
        now = self._clock()
        due = (
            self._keys is None
            or now - self._fetched_at >= self._lifetime
            or kid not in self._keys
        )
        return due and now - self._attempted_at >= self._cooldown

    def _loop_lock(self) -> asyncio.Lock:
        # One lock per event loop: a verifier built at import time may serve several loops
        # (tests, reloaders), and an asyncio.Lock belongs to the first loop that waits on it.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _refresh(self, kid: str) -> None:
        async with self._loop_lock():
            # Another request may have fetched while we waited for the lock.
            if not self._needs_fetch(kid):
                return
            self._attempted_at = self._clock()
            self._fetching = True
            try:
                keys = parse_jwks(await self._fetch())
            except Exception as e:  # noqa: BLE001 - any failure means "keep what we have"
                self._last_fetch_failed = True
                log.warning("JWKS fetch failed; keeping the last good key set: %s: %s", type(e).__name__, e)
                return
            finally:
                self._fetching = False
            self._keys = keys
            self._fetched_at = self._attempted_at
            self._last_fetch_failed = False
