"""The verifier against the real aidlc-auth binary: tokens it issues, keys it rotates and
revokes, and what happens when it is down."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI

from aidlc_auth_verifier import AidlcAuth, AuthUnavailable, Caller, InvalidToken
from aidlc_auth_verifier.testing import TokenFactory

from .conftest import settings_for, verifier_for
from .service import Service


def bearer(token: str) -> str:
    return f"Bearer {token}"


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def sleep_until_past_exp(token: str) -> None:
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    # exp is whole seconds; a second more so "now > exp" holds on any rounding.
    time.sleep(max(0.0, exp + 1.1 - time.time()))


def app_with(auth: AidlcAuth) -> FastAPI:
    app = FastAPI()

    @app.get("/me")
    async def me(caller: Caller = Depends(auth.caller)) -> dict[str, str]:
        return {"user_id": caller.user_id}

    @app.get("/strict")
    async def strict(caller: Caller = Depends(auth.caller_strict)) -> dict[str, str]:
        return {"user_id": caller.user_id}

    return app


async def get(app: FastAPI, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": bearer(token)} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://unit") as client:
        return await client.get(path, headers=headers)


async def test_a_fresh_token_from_the_service_passes_and_names_the_caller(service: Service) -> None:
    pair = service.register_user()
    caller = await verifier_for(service).verify(bearer(pair["access_token"]))
    assert caller.user_id == pair["user"]["id"]
    assert caller.session_id == pair["session_id"]
    assert caller.email == pair["user"]["email"]
    assert caller.email_verified is True
    assert abs(caller.expires_at.timestamp() - (time.time() + pair["expires_in"])) < 30


async def test_the_fastapi_dependency_answers_200_for_a_fresh_token_and_401_with_a_challenge_otherwise(
    service: Service,
) -> None:
    app = app_with(AidlcAuth.from_settings(settings_for(service)))
    pair = service.register_user()

    ok = await get(app, "/me", pair["access_token"])
    assert ok.status_code == 200 and ok.json() == {"user_id": pair["user"]["id"]}

    missing = await get(app, "/me", None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="aidlc"'

    garbage = await get(app, "/me", "not-a-jwt")
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["www-authenticate"]


async def test_a_token_with_a_changed_payload_is_refused(service: Service) -> None:
    token = service.register_user()["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "00000000-0000-0000-0000-000000000000"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        await verifier_for(service).verify(bearer(f"{header}.{forged_payload}.{signature}"))


async def test_a_token_signed_by_another_key_under_the_services_kid_is_refused(service: Service) -> None:
    real = service.register_user()["access_token"]
    claims = jwt.decode(real, options={"verify_signature": False})
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                        headers={"typ": "at+jwt", "kid": kid_of(real)})
    with pytest.raises(InvalidToken, match="signature"):
        await verifier_for(service).verify(bearer(forged))


async def test_a_token_for_another_audience_is_refused(service: Service) -> None:
    token = service.register_user()["access_token"]
    with pytest.raises(InvalidToken, match="audience"):
        await verifier_for(service, audience="orders-unit").verify(bearer(token))


async def test_a_token_from_another_issuer_is_refused(service: Service) -> None:
    token = service.register_user()["access_token"]
    # The metadata cross-check would already refuse this verifier; skip it to reach the claim check.
    verifier = verifier_for(service, issuer="https://auth.example")
    verifier._metadata_checked = True
    with pytest.raises(InvalidToken, match="issuer"):
        await verifier.verify(bearer(token))


async def test_alg_confused_tokens_are_refused_before_any_key_is_used(service: Service) -> None:
    real = service.register_user()["access_token"]
    claims = jwt.decode(real, options={"verify_signature": False})
    jwk = service.http.get("/.well-known/jwks.json").json()["keys"][0]
    public_bytes = base64.urlsafe_b64decode(jwk["x"] + "==")
    hs256 = jwt.encode(claims, public_bytes, algorithm="HS256", headers={"typ": "at+jwt", "kid": jwk["kid"]})
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"typ": "at+jwt", "kid": jwk["kid"]})
    verifier = verifier_for(service)
    with pytest.raises(InvalidToken, match="EdDSA"):
        await verifier.verify(bearer(hs256))
    # alg none has an empty signature part: refused before its header is even read.
    with pytest.raises(InvalidToken):
        await verifier.verify(bearer(unsigned))
    with pytest.raises(InvalidToken, match="EdDSA"):
        await verifier.verify(bearer(unsigned + "AAAA"))


async def test_a_token_whose_typ_is_not_at_jwt_is_refused(service: Service) -> None:
    real = service.register_user()["access_token"]
    header, payload, signature = real.split(".")
    parsed = json.loads(base64.urlsafe_b64decode(header + "=="))
    parsed["typ"] = "JWT"
    other_header = base64.urlsafe_b64encode(json.dumps(parsed).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="at\\+jwt"):
        await verifier_for(service).verify(bearer(f"{other_header}.{payload}.{signature}"))


async def test_an_expired_token_from_the_service_is_refused(start_service: Callable[..., Service]) -> None:
    short = start_service(AIDLC_ACCESS_TOKEN_TTL_SECONDS="3")
    token = short.register_user()["access_token"]
    verifier = verifier_for(short, leeway_seconds=0)
    await verifier.verify(bearer(token))  # valid for a second or two yet
    sleep_until_past_exp(token)
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify(bearer(token))


async def test_strict_mode_passes_a_live_session_and_refuses_it_after_logout(service: Service) -> None:
    pair = service.register_user()
    verifier = verifier_for(service)
    caller = await verifier.verify_strict(bearer(pair["access_token"]))
    assert caller.session_id == pair["session_id"]

    service.logout(pair["access_token"])
    # The signature still holds, so local verification cannot know; introspection does.
    await verifier.verify(bearer(pair["access_token"]))
    with pytest.raises(InvalidToken, match="session has ended"):
        await verifier.verify_strict(bearer(pair["access_token"]))


async def test_strict_mode_with_a_wrong_introspection_secret_is_a_503_not_a_401(service: Service) -> None:
    token = service.register_user()["access_token"]
    app = app_with(AidlcAuth.from_settings(settings_for(service, introspection_secret="wrong-secret-wrong-secret")))
    answer = await get(app, "/strict", token)
    assert answer.status_code == 503, answer.text
    assert "www-authenticate" not in answer.headers


async def test_a_verifier_whose_issuer_contradicts_the_metadata_answers_503(service: Service) -> None:
    token = service.register_user()["access_token"]
    with pytest.raises(AuthUnavailable, match="announces issuer"):
        await verifier_for(service, issuer="https://auth.example").verify(bearer(token))


async def test_after_keys_revoke_the_new_kid_is_fetched_at_once_and_the_revoked_one_refused_once_the_cache_expires(
    start_service: Callable[..., Service],
) -> None:
    svc = start_service()
    pair = svc.register_user()
    leaked_token = pair["access_token"]
    leaked = kid_of(leaked_token)
    verifier = verifier_for(svc, jwks_cache_seconds=3, jwks_refetch_cooldown_seconds=0.2)
    await verifier.verify(bearer(leaked_token))
    assert verifier.jwks.kids == [leaked]

    svc.keys("revoke", leaked)
    # The running instance signs with the new key after its next reload (1 s here).
    deadline = time.monotonic() + 10
    while True:
        new_token = svc.login(pair["user"]["email"])["access_token"]
        if kid_of(new_token) != leaked or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert kid_of(new_token) != leaked

    # A kid the cache has not seen makes it re-fetch, with no restart.
    await verifier.verify(bearer(new_token))
    assert leaked not in verifier.jwks.kids

    with pytest.raises(InvalidToken, match="not published"):
        await verifier.verify(bearer(leaked_token))


async def test_a_revoked_key_still_verifies_until_the_cache_expires_then_is_refused(
    start_service: Callable[..., Service],
) -> None:
    svc = start_service()
    leaked_token = svc.register_user()["access_token"]
    verifier = verifier_for(svc, jwks_cache_seconds=2, jwks_refetch_cooldown_seconds=0.2)
    await verifier.verify(bearer(leaked_token))
    svc.keys("revoke", kid_of(leaked_token))

    # Within the cache lifetime the verifier cannot know (this is what the lifetime trades).
    await verifier.verify(bearer(leaked_token))
    time.sleep(2.2)
    with pytest.raises(InvalidToken, match="not published"):
        await verifier.verify(bearer(leaked_token))


@pytest.mark.slow
async def test_after_keys_rotate_tokens_signed_by_the_new_key_pass_without_a_restart(
    start_service: Callable[..., Service],
) -> None:
    svc = start_service()
    pair = svc.register_user()
    old = kid_of(pair["access_token"])
    # The default cache lifetime: rotation publishes the key a full cache lifetime before it signs.
    verifier = verifier_for(svc)
    await verifier.verify(bearer(pair["access_token"]))

    svc.keys("rotate")
    # The running instance publishes it at its next key reload (1 s here).
    deadline = time.monotonic() + 10
    while len(svc.jwks_kids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    (new,) = [kid for kid in svc.jwks_kids() if kid != old]
    # Rotation signs only after reload + 60 s; wait for it.
    deadline = time.monotonic() + 90
    token = pair["access_token"]
    while kid_of(token) != new and time.monotonic() < deadline:
        time.sleep(1)
        token = svc.login(pair["user"]["email"])["access_token"]
    assert kid_of(token) == new, "the rotated key did not start signing within 90 s"

    caller = await verifier.verify(bearer(token))
    assert caller.user_id == pair["user"]["id"]
    assert new in verifier.jwks.kids
    # Tokens of the key it replaced stay valid until they expire.
    await verifier.verify(bearer(pair["access_token"]))


async def test_with_the_service_stopped_cached_keys_still_verify_and_strict_mode_answers_503(
    start_service: Callable[..., Service],
) -> None:
    svc = start_service()
    token = svc.register_user()["access_token"]
    settings = settings_for(svc, jwks_cache_seconds=0.5, jwks_refetch_cooldown_seconds=0.2)
    auth = AidlcAuth.from_settings(settings)
    app = app_with(auth)
    assert (await get(app, "/me", token)).status_code == 200

    svc.stop()
    time.sleep(0.7)  # past the cache lifetime: the verifier tries, fails, keeps the last good set

    assert (await get(app, "/me", token)).status_code == 200
    strict = await get(app, "/strict", token)
    assert strict.status_code == 503, strict.text
    assert "www-authenticate" not in strict.headers

    # A kid we have never seen may be a key published during the outage: 503, not 401.
    unseen = TokenFactory(issuer=svc.issuer).valid()
    assert (await get(app, "/me", unseen)).status_code == 503

    # A verifier that never held the keys cannot verify anything.
    cold = app_with(AidlcAuth.from_settings(settings))
    assert (await get(cold, "/me", token)).status_code == 503


# Introspection is inactive from exp on (RFC 7662 §2.2), whatever leeway the unit allows.
async def test_strict_mode_refuses_a_token_past_exp_even_within_the_local_leeway(
    start_service: Callable[..., Service],
) -> None:
    short = start_service(AIDLC_ACCESS_TOKEN_TTL_SECONDS="1")
    token = short.register_user()["access_token"]
    verifier = verifier_for(short, leeway_seconds=60)
    sleep_until_past_exp(token)
    await verifier.verify(bearer(token))  # the leeway still covers it locally
    with pytest.raises(InvalidToken, match="session has ended"):
        await verifier.verify_strict(bearer(token))
