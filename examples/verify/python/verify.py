#!/usr/bin/env python3
"""Verify wxgate's identity header in a Python app (PyJWT + cryptography).

    verify.py TOKEN JWKS_URL ISSUER AUDIENCE

Each argument may instead come from the environment: WXGATE_TOKEN, WXGATE_JWKS_URL,
WXGATE_ISSUER (public_url + "/_wxgate"), WXGATE_AUDIENCE (identity.audience).
Prints the claims as JSON and exits 0, or prints why not and exits 1.

In an app, make one PyJWKClient at start-up (it caches the keys) and call
verify() with the request's X-Wxgate-Jwt-Assertion header.
"""
import json
import os
import sys

import jwt

# Only asymmetric algorithms: the key set never holds a shared secret, and pinning the
# list stops a token from choosing "none" or HS256 with a public key as the secret.
ALGORITHMS = ["ES256", "EdDSA", "RS256"]


def verify(token, jwks_client, issuer, audience):
    key = jwks_client.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=ALGORITHMS,
        issuer=issuer,
        audience=audience,
        options={"require": ["exp", "iss", "aud", "sub"]},
        leeway=30,  # clock skew between wxgate and the app
    )


def main(argv):
    names = ["WXGATE_TOKEN", "WXGATE_JWKS_URL", "WXGATE_ISSUER", "WXGATE_AUDIENCE"]
    values = [argv[i] if len(argv) > i else os.environ.get(n, "") for i, n in enumerate(names, 1)]
    missing = [n for n, v in zip(names, values) if not v]
    if missing:
        print(__doc__, file=sys.stderr)
        print("missing: " + ", ".join(missing), file=sys.stderr)
        return 2
    token, jwks_url, issuer, audience = values
    try:
        claims = verify(token, jwt.PyJWKClient(jwks_url), issuer, audience)
    except jwt.PyJWTError as e:
        print(f"invalid identity token: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
