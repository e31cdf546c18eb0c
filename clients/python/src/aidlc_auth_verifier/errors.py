"""The two ways a verification can fail, kept apart so an outage never becomes a 401."""

from __future__ import annotations


class AuthError(Exception):
    """Base of every error this package raises while verifying a caller."""


class InvalidToken(AuthError):
    """The caller's credential is missing, malformed, forged, expired or revoked: answer 401.

    `code` is the RFC 6750 error code for `WWW-Authenticate` (None when no credential was
    sent at all, as RFC 6750 section 3.1 asks); the message is safe to show the caller.
    """

    def __init__(self, message: str, code: str | None = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class AuthUnavailable(AuthError):
    """aidlc-auth (its keys or its introspection) could not be asked: answer 503, never 401.

    Also raised when the service's metadata contradicts our settings, since no caller can
    fix that.
    """
