"""Schemathesis hook (loaded through SCHEMATHESIS_HOOKS): a platform's bearer token,
a new RS512 JWS for every request, since each token is used once."""

from __future__ import annotations

import json
import os
import time
import uuid

import schemathesis
from jwcrypto import jwk, jws


@schemathesis.auth()
class PlatformBearer:
    def get(self, case, ctx):  # type: ignore[no-untyped-def]
        return None  # nothing to cache: set() signs a new token each time

    def set(self, case, data, ctx):  # type: ignore[no-untyped-def]
        name = os.environ["GQ_PLATFORM_NAME"]
        with open(os.environ["GQ_PLATFORM_KEY"], "rb") as pem:
            key = jwk.JWK.from_pem(pem.read())
        now = int(time.time())
        claims = {
            "iss": name,
            "aud": os.environ["GQ_AUDIENCE"],
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        token = jws.JWS(json.dumps(claims).encode())
        token.add_signature(key, None, protected=json.dumps({"alg": "RS512", "kid": name}))
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token.serialize(compact=True)}"
