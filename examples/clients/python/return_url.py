#!/usr/bin/env python3
"""A platform's return URL: receive result tokens from a graderqueue (docs/PROTOCOL.md).

The queue POSTs form field sToken: a JWE (RSA-OAEP-256, A256CBC-HS512,
zip DEF) encrypted to the platform's public key, holding a JWS (RS512)
signed by the queue. Decrypt with the platform's private key, verify with
the queue's public key, store the result, then answer {"bSuccess": true}.
Anything else (another answer, an HTTP error, no answer) makes the queue
try again later, so storing must be idempotent (key it on the job).

    python3 return_url.py 8080 platform.pem queue.pub.pem --count 1

Prints each result payload as one JSON line; exits after --count results.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException

# jwcrypto inflates at most 256 KiB by default; the queue's results can be larger.
jwe.default_max_compressed_size = 16 * 1024 * 1024
jwe.default_max_plaintext_size = 16 * 1024 * 1024


def open_result(token: str, platform_key: jwk.JWK, queue_key: jwk.JWK) -> dict:
    outer = jwe.JWE(algs=["RSA-OAEP-256", "A256CBC-HS512"])
    outer.deserialize(token, key=platform_key)
    inner = jws.JWS()
    inner.allowed_algs = ["RS512"]
    inner.deserialize(outer.payload.decode("ascii"))
    inner.verify(queue_key, alg="RS512")
    # {"sTaskName": jobname, "sResultData": {...}, "date": "dd-mm-YYYY"}
    return json.loads(inner.payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("platform_key", help="the platform's private key (PEM)")
    parser.add_argument("queue_public_key", help="the queue's public key (PEM)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--count", type=int, default=0, help="exit after this many (0: never)")
    args = parser.parse_args()
    with open(args.platform_key, "rb") as f:
        platform_key = jwk.JWK.from_pem(f.read())
    with open(args.queue_public_key, "rb") as f:
        queue_key = jwk.JWK.from_pem(f.read())
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode("ascii"))
            try:
                result = open_result(form["sToken"][0], platform_key, queue_key)
            except (KeyError, ValueError, JWException) as exc:
                answer = {"bSuccess": False, "sError": f"bad token: {exc}"}
            else:
                print(json.dumps(result), flush=True)  # a real platform stores it here
                received.append(result)
                answer = {"bSuccess": True}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer((args.host, args.port), Handler)
    print(f"listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    while not args.count or len(received) < args.count:
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main()
