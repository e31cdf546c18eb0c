#!/usr/bin/env python3
"""Parse our RFC 8414 authorization-server metadata with Authlib, as a client would.

Usage: check_metadata_with_authlib.py BASE_URL ISSUER

Builds the metadata URL from ISSUER the way RFC 8414 section 3.1 says (Authlib's
get_well_known_url), fetches it from BASE_URL (the instance under test), and runs Authlib's
validator for every member the document publishes. Prints JSON
{"issuer", "validated": [...], "extensions": [...]} and exits 0; prints the complaint to
stderr and exits 1 when a member is invalid.
Needs: pip install authlib
"""

import json
import sys
import urllib.request

from authlib.oauth2.rfc8414 import AuthorizationServerMetadata, get_well_known_url


def main() -> int:
    base_url, issuer = sys.argv[1], sys.argv[2]
    url = base_url.rstrip("/") + get_well_known_url(issuer)
    # Never through a proxy: the instance listens on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        document = json.load(response)

    metadata = AuthorizationServerMetadata(document)
    validated, extensions = [], []
    try:
        for member in sorted(document):
            validator = getattr(metadata, f"validate_{member}", None)
            if validator is None:
                extensions.append(member)
            else:
                validator()
                validated.append(member)
    except ValueError as e:
        print(f"invalid metadata: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"issuer": metadata["issuer"], "validated": validated, "extensions": extensions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
