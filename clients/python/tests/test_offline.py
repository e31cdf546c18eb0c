"""The verifier's rules and the test helpers, with keys made here (no service needed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from aidlc_auth_verifier import AidlcAuth, AuthUnavailable, Caller, InvalidToken, JwksCache
from aidlc_auth_verifier.testing import TokenFactory


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def test_the_factorys_valid_token_passes_its_own_verifier(aidlc_tokens: TokenFactory) -> None:
    caller = await aidlc_tokens.verifier().verify(bearer(aidlc_tokens.valid(sub="u-1", email="a@b.example")))
    assert (caller.user_id, caller.email, caller.email_verified) == ("u-1", "a@b.example", True)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda f: f.expired(), "expired"),
        (lambda f: f.wrong_audience(), "audience"),
        (lambda f: f.forged(), "signature"),
        (lambda f: f.alg_confused(), "EdDSA"),
        (lambda f: f.valid(iss="https://elsewhere.example"), "issuer"),
        (lambda f: f.valid(sid=None), "sid"),
        (lambda f: f.valid(jti=None), "jti"),
        (lambda f: f.valid(sub=None), "sub"),
        (lambda f: f.valid(sub=42), "sub"),
        (lambda f: f.valid(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda f: f.valid(iat=int(time.time()) + 600, nbf=int(time.time())), "not valid yet"),
        (lambda f: f.valid(exp=int(time.time()) + 3600), "longer than an access token"),
        (lambda f: f.sign(f.claims(), header={"typ": "JWT"}), "at\\+jwt"),
        (lambda f: f.sign(f.claims(), header={"kid": None}), "kid"),
        (lambda f: f.sign(f.claims(), header={"crit": ["exp"]}), "critical"),
        (lambda f: f.sign(f.claims(), header={"kid": "some-other-kid"}), "not published"),
    ],
)
async def test_tokens_breaking_a_rule_are_refused_with_the_reason(
    aidlc_tokens: TokenFactory, make: Callable[[TokenFactory], str], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        await aidlc_tokens.verifier().verify(bearer(make(aidlc_tokens)))


async def test_keys_named_in_the_tokens_own_header_are_never_used(aidlc_tokens: TokenFactory) -> None:
    attacker = TokenFactory(issuer=aidlc_tokens.issuer, kid=aidlc_tokens.kid)
    token = attacker.sign(attacker.claims(), header={
        "jwk": attacker.public_jwk(), "jku": "http://attacker.example/jwks.json", "x5u": "http://attacker.example/x"})
    with pytest.raises(InvalidToken, match="signature"):
        await aidlc_tokens.verifier().verify(bearer(token))


async def test_clock_skew_within_the_leeway_is_allowed(aidlc_tokens: TokenFactory) -> None:
    now = int(time.time())
    just_expired = aidlc_tokens.valid(iat=now - 920, nbf=now - 920, exp=now - 20)
    await aidlc_tokens.verifier(leeway_seconds=30).verify(bearer(just_expired))
    with pytest.raises(InvalidToken, match="expired"):
        await aidlc_tokens.verifier(leeway_seconds=10).verify(bearer(just_expired))


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b", "Bearer a b.c.d"])
async def test_a_missing_or_malformed_authorization_header_is_refused(aidlc_tokens: TokenFactory, header: str | None) -> None:
    with pytest.raises(InvalidToken):
        await aidlc_tokens.verifier().verify(header)


class FlakyJwks:
    def __init__(self, factory: TokenFactory) -> None:
        self.document: Any = factory.jwks()
        self.failing = False
        self.fetches = 0

    async def __call__(self) -> Any:
        self.fetches += 1
        await asyncio.sleep(0.01)  # a real fetch yields, letting concurrent requests in
        if self.failing:
            raise httpx.ConnectError("refused")
        return self.document


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_refetches_an_unknown_kid_at_most_once_per_cooldown(aidlc_tokens: TokenFactory) -> None:
    fetch, clock = FlakyJwks(aidlc_tokens), Clock()
    cache = JwksCache(fetch, lifetime=60, cooldown=10, clock=clock)
    await cache.key(aidlc_tokens.kid)
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await cache.key("made-up")
    assert fetch.fetches == 1, "a flood of unknown kids must not become a flood of fetches"
    clock.now += 10
    with pytest.raises(InvalidToken):
        await cache.key("made-up")
    assert fetch.fetches == 2


async def test_concurrent_misses_share_one_fetch(aidlc_tokens: TokenFactory) -> None:
    fetch = FlakyJwks(aidlc_tokens)
    cache = JwksCache(fetch)
    await asyncio.gather(*(cache.key(aidlc_tokens.kid) for _ in range(20)))
    assert fetch.fetches == 1


async def test_the_cache_keeps_the_last_good_set_while_fetches_fail_until_max_stale(aidlc_tokens: TokenFactory) -> None:
    fetch, clock = FlakyJwks(aidlc_tokens), Clock()
    cache = JwksCache(fetch, lifetime=60, cooldown=10, max_stale=600, clock=clock)
    await cache.key(aidlc_tokens.kid)
    fetch.failing = True
    clock.now += 61
    await cache.key(aidlc_tokens.kid)
    with pytest.raises(AuthUnavailable):
        await cache.key("published-during-the-outage")
    clock.now += 600
    with pytest.raises(AuthUnavailable, match="too long"):
        await cache.key(aidlc_tokens.kid)
    fetch.failing = False
    clock.now += 10
    await cache.key(aidlc_tokens.kid)


async def test_the_cache_with_no_keys_and_no_service_is_unavailable(aidlc_tokens: TokenFactory) -> None:
    fetch = FlakyJwks(aidlc_tokens)
    fetch.failing = True
    with pytest.raises(AuthUnavailable):
        await JwksCache(fetch).key(aidlc_tokens.kid)


async def test_keys_that_are_not_ed25519_signing_keys_are_skipped(aidlc_tokens: TokenFactory) -> None:
    fetch = FlakyJwks(aidlc_tokens)
    fetch.document = {"keys": [
        {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        {**aidlc_tokens.public_jwk(), "kid": "enc", "use": "enc"},
        {**aidlc_tokens.public_jwk(), "kid": "hs", "alg": "HS256"},
        aidlc_tokens.public_jwk(),
    ]}
    cache = JwksCache(fetch)
    await cache.key(aidlc_tokens.kid)
    assert cache.kids == [aidlc_tokens.kid]


async def test_the_dependency_override_fixture_replaces_both_dependencies(
    aidlc_tokens: TokenFactory, aidlc_override_caller: Callable[..., Caller]
) -> None:
    auth: AidlcAuth = aidlc_tokens.auth()
    app = FastAPI()

    @app.get("/who")
    async def who(caller: Caller = Depends(auth.caller)) -> str:
        return caller.user_id

    @app.get("/who-strict")
    async def who_strict(caller: Caller = Depends(auth.caller_strict)) -> str:
        return caller.user_id

    aidlc_override_caller(app, auth, user_id="user-7")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://unit") as client:
        assert (await client.get("/who")).json() == "user-7"
        assert (await client.get("/who-strict")).json() == "user-7"


async def test_a_unit_can_test_its_routes_with_real_tokens_from_the_factory(aidlc_tokens: TokenFactory) -> None:
    auth = aidlc_tokens.auth()
    app = FastAPI()

    @app.get("/who")
    async def who(caller: Caller = Depends(auth.caller)) -> str:
        return caller.user_id

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://unit") as client:
        ok = await client.get("/who", headers={"Authorization": bearer(aidlc_tokens.valid(sub="u-9"))})
        expired = await client.get("/who", headers={"Authorization": bearer(aidlc_tokens.expired())})
    assert ok.json() == "u-9"
    assert expired.status_code == 401
    assert 'error="invalid_token", error_description="the token has expired"' in expired.headers["www-authenticate"]


def test_settings_come_from_the_aidlc_auth_variables() -> None:
    from aidlc_auth_verifier import Settings

    s = Settings.from_env({"AIDLC_AUTH_URL": "http://a:8001", "AIDLC_AUTH_ISSUER": "https://auth.example",
                           "AIDLC_AUTH_JWKS_CACHE_SECONDS": "5", "AIDLC_AUTH_INTROSPECTION_SECRET": "s" * 20})
    assert (s.audience, s.jwks_cache_seconds, s.leeway_seconds) == ("aidlc", 5, 60)
    assert s.jwks_url == "http://a:8001/.well-known/jwks.json"
    assert "s" * 20 not in repr(s), "the secret stays out of logs"
    with pytest.raises(ValueError, match="AIDLC_AUTH_ISSUER"):
        Settings.from_env({"AIDLC_AUTH_URL": "http://a:8001"})
    with pytest.raises(ValueError, match="LEEWAY"):
        Settings.from_env({"AIDLC_AUTH_URL": "http://a", "AIDLC_AUTH_ISSUER": "x", "AIDLC_AUTH_LEEWAY_SECONDS": "soon"})


def test_the_units_openapi_document_shows_the_bearer_scheme(aidlc_tokens: TokenFactory) -> None:
    auth = aidlc_tokens.auth()
    app = FastAPI()

    @app.get("/who")
    async def who(caller: Caller = Depends(auth.caller)) -> str:
        return caller.user_id

    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/who"]["get"]["security"] == [{"HTTPBearer": []}]
