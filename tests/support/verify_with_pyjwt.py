#!/usr/bin/env python3
"""Verify an access token with PyJWT, fetching the signing key from a JWKS URL.

Usage: verify_with_pyjwt.py JWKS_URL TOKEN ISSUER AUDIENCE

Prints the claims as JSON and exits 0 if the token is valid; prints the reason
to stderr and exits 1 if it is not (2 for bad usage).
Needs: pip install 'pyjwt[crypto]'
"""

import argparse
import json
import sys

import jwt
from jwt import PyJWKClient

# Same clock-skew allowance as the Rust verifier's maximum.
LEEWAY_SECONDS = 60
# The access-token lifetime: a longer-lived token was not minted by us, whatever its signature.
MAX_LIFETIME_SECONDS = 900
ACCEPTED_TYPES = {"at+jwt", "application/at+jwt"}


def main() -> int:
    parser = argparse.ArgumentParser(description="Verify an EdDSA at+jwt access token against a JWKS URL.")
    parser.add_argument("jwks_url")
    parser.add_argument("token")
    parser.add_argument("issuer")
    parser.add_argument("audience")
    args = parser.parse_args()

    try:
        # PyJWT does not check typ; RFC 9068 section 4 says a resource server must.
        typ = jwt.get_unverified_header(args.token).get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
            raise jwt.InvalidTokenError(f"typ is {typ!r}, not at+jwt")
        # The key is picked by the token's kid from the fetched set only.
        signing_key = PyJWKClient(args.jwks_url, cache_keys=False, timeout=10).get_signing_key_from_jwt(args.token)
        claims = jwt.decode(
            args.token,
            key=signing_key.key,
            algorithms=["EdDSA"],
            issuer=args.issuer,
            audience=args.audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
        )
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS:
            raise jwt.InvalidTokenError("exp - iat is longer than an access token lives")
    except jwt.PyJWTError as e:
        print(f"invalid token: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    print(json.dumps(claims, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
