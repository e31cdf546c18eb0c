"""Verify aidlc-auth access tokens in another service.

    from aidlc_auth_verifier import AidlcAuth, Caller
    auth = AidlcAuth.from_env()

    @app.get("/orders")
    async def orders(caller: Caller = Depends(auth.caller)): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import AuthError, AuthUnavailable, InvalidToken
from .jwks import JwksCache, parse_jwks
from .settings import Settings
from .verifier import Caller, Verifier, bearer_token

if TYPE_CHECKING:
    from .fastapi import AidlcAuth

__all__ = [
    "AidlcAuth",
    "AuthError",
    "AuthUnavailable",
    "Caller",
    "InvalidToken",
    "JwksCache",
    "Settings",
    "Verifier",
    "bearer_token",
    "parse_jwks",
]


def __getattr__(name: str) -> Any:
    # AidlcAuth needs FastAPI, which only FastAPI units have; the rest of the package does not.
    if name == "AidlcAuth":
        from .fastapi import AidlcAuth

        return AidlcAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
