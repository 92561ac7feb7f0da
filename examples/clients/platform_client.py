"""A platform's side of graderqueue with jwcrypto alone: send a job, read it back,
and open the result token that arrives at the return URL.

    python platform_client.py QUEUE_URL PLATFORM PLATFORM.pem QUEUE.pub.pem QUEUE_KEY_NAME [PORT]

With PORT, it also listens on 127.0.0.1:PORT for the result
(register the platform with --return-url http://127.0.0.1:PORT/) and
prints it. Needs: pip install jwcrypto requests.
"""

from __future__ import annotations

import http.server
import json
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import requests
from jwcrypto import jwe, jwk, jws


def request_token(
    request: dict, platform: str, platform_key: jwk.JWK, queue_key: jwk.JWK, queue_kid: str
) -> str:
    """Sign the request (JWS RS512), then encrypt that JWS to the queue (JWE)."""
    signed = jws.JWS(json.dumps(request).encode())
    signed.add_signature(platform_key, alg="RS512", protected={"alg": "RS512", "kid": platform})
    header = {"alg": "RSA-OAEP-256", "enc": "A256CBC-HS512", "zip": "DEF", "kid": queue_kid}
    sealed = jwe.JWE(signed.serialize(compact=True).encode(), protected=header)
    sealed.add_recipient(queue_key)
    return sealed.serialize(compact=True)


def open_result(token: str, platform_key: jwk.JWK, queue_key: jwk.JWK) -> dict:
    """A result token: decrypt with the platform's key, verify with the queue's."""
    sealed = jwe.JWE()
    sealed.deserialize(token, key=platform_key)
    signed = jws.JWS()
    signed.deserialize(sealed.payload.decode())
    signed.verify(queue_key, alg="RS512")
    return json.loads(signed.payload)


def call(url: str, platform: str, token: str) -> dict:
    answer = requests.post(f"{url}/api.php", data={"sToken": token, "sPlatform": platform})
    answer.raise_for_status()  # the queue always answers HTTP 200; anything else is a proxy
    return answer.json()


def main() -> int:
    url, platform, key_file, queue_pub_file, queue_kid, *rest = sys.argv[1:]
    platform_key = jwk.JWK.from_pem(Path(key_file).read_bytes())
    queue_key = jwk.JWK.from_pem(Path(queue_pub_file).read_bytes())

    def send(request: dict) -> dict:
        # iat/exp/jti make the token fresh: a replay is refused (needed when
        # the platform is registered with --require-fresh, harmless otherwise).
        now = int(time.time())
        request = {**request, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        answer = call(
            url, platform, request_token(request, platform, platform_key, queue_key, queue_kid)
        )
        print(f"{request['request']}: errorcode {answer['errorcode']}: {answer['errormsg']}")
        return answer

    job = {"taskPath": "$ROOT_PATH/tasks/sum", "extraParams": {"solutionContent": "1+1"}}
    queued = send(
        {
            "request": "sendjob",
            "jobdata": json.dumps(job),
            "tags": "c",
            "priority": 5,
            "jobusertaskid": "example-1",
        }
    )
    if queued["errorcode"] != 0:
        return 1
    row = send({"request": "getjob", "jobid": str(queued["jobid"])})["data"]
    print(f"job #{row['id']}: status {row['status']}, priority {row['priority']}")

    if rest:
        results: list[dict] = []

        class ReturnURL(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                token = urllib.parse.parse_qs(body.decode())["sToken"][0]
                results.append(open_result(token, platform_key, queue_key))
                reply = json.dumps({"bSuccess": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        server = http.server.HTTPServer(("127.0.0.1", int(rest[0])), ReturnURL)
        server.timeout = 60
        server.handle_request()  # one result, then stop
        result = results[0]
        print(
            f"result of {result['sTaskName']} ({result['date']}): "
            f"{json.dumps(result['sResultData'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
