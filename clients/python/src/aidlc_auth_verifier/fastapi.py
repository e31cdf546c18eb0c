"""FastAPI dependencies: `Depends(auth.caller)` and `Depends(auth.caller_strict)`."""

from __future__ import annotations

import logging

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import AuthUnavailable, InvalidToken
from .settings import Settings
from .verifier import Caller, Verifier

log = logging.getLogger("aidlc_auth_verifier")

# Only so the unit's OpenAPI document shows the bearer scheme; the header is read raw below,
# so that our own 401 (with its challenge) answers every failure, not FastAPI's 403.
_openapi_bearer = HTTPBearer(auto_error=False, description="An aidlc-auth access token")

# How soon a client may retry after a 503: about one JWKS re-fetch cooldown.
RETRY_AFTER_SECONDS = "5"


def _quoted(text: str) -> str:
    # RFC 6750 attribute values are quoted strings; our messages hold no quotes, but make sure.
    return text.replace("\\", "").replace('"', "'")


def unauthorized(error: InvalidToken, realm: str = "aidlc") -> HTTPException:
    """The 401 for `error`, with the RFC 6750 `WWW-Authenticate` challenge."""
    challenge = f'Bearer realm="{realm}"'
    if error.code is not None:
        challenge += f', error="{error.code}", error_description="{_quoted(str(error))}"'
    return HTTPException(
        status_code=401,
        detail={"code": "unauthorized", "message": str(error)},
        headers={"WWW-Authenticate": challenge},
    )


def unavailable(error: AuthUnavailable) -> HTTPException:
    """The 503 for an aidlc-auth we could not ask. The cause is logged, not shown."""
    log.warning("answering 503: %s", error)
    return HTTPException(
        status_code=503,
        detail={"code": "auth_unavailable", "message": "the authentication service cannot be reached"},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


class AidlcAuth:
    """A unit's link to aidlc-auth: `auth = AidlcAuth.from_env()` once, then
    `caller: Caller = Depends(auth.caller)` on each route (or `auth.caller_strict` where a
    logout must count at once)."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    @classmethod
    def from_env(cls) -> AidlcAuth:
        return cls(Verifier(Settings.from_env()))

    @classmethod
    def from_settings(cls, settings: Settings) -> AidlcAuth:
        return cls(Verifier(settings))

    async def caller(
        self, request: Request, _: HTTPAuthorizationCredentials | None = Depends(_openapi_bearer)
    ) -> Caller:
        """The verified caller (local check only); 401 or 503 otherwise."""
        try:
            return await self.verifier.verify(request.headers.get("authorization"))
        except InvalidToken as e:
            raise unauthorized(e) from None
        except AuthUnavailable as e:
            raise unavailable(e) from None

    async def caller_strict(
        self, request: Request, _: HTTPAuthorizationCredentials | None = Depends(_openapi_bearer)
    ) -> Caller:
        """Like `caller`, and the session must still be live at aidlc-auth (introspection)."""
        try:
            return await self.verifier.verify_strict(request.headers.get("authorization"))
        except InvalidToken as e:
            raise unauthorized(e) from None
        except AuthUnavailable as e:
            raise unavailable(e) from None

    async def aclose(self) -> None:
        await self.verifier.aclose()
