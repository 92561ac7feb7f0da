"""A platform written only from PROTOCOL.md, with another JOSE library (joserfc).

The queue and its own client use jwcrypto; this client uses joserfc and
``requests`` so that the acceptance tests check the wire format, not two
copies of the same code agreeing with each other. Besides well-formed
request tokens it makes every kind of bad token the protocol must refuse:
other algorithms, no compression, wrong keys, mismatched key ids, payloads
that are not a JSON object, and tokens over the size limit.

``running_queue`` starts a queue (a ``QueueSetup``) with one gunicorn in
front of it, for a whole test module: gunicorn takes seconds to start, far
too long to start one per test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests
from joserfc import jwe, jws
from joserfc.jwk import OctKey, RSAKey

JWS_ALG = "RS512"
JWE_ALG = "RSA-OAEP-256"
JWE_ENC = "A256CBC-HS512"
ONE_MIB = 1024 * 1024


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate_rsa_pem() -> tuple[str, str]:
    """A fresh RSA key pair as (private PEM, public PEM), made with joserfc."""
    key = RSAKey.generate_key(2048)
    return key.as_pem(private=True).decode(), key.as_pem(private=False).decode()


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


class ForeignPlatform:
    """A platform client: request tokens (good or deliberately bad) and form posts.

    *url* is the queue's base URL; *name* the platform name (``sPlatform``
    and the JWS ``kid``); *private_pem* the platform's signing key;
    *queue_public_pem* and *queue_key_name* the queue's encryption key and
    its name (the JWE ``kid``).
    """

    def __init__(
        self,
        url: str,
        name: str,
        private_pem: str,
        queue_public_pem: str,
        queue_key_name: str,
        session: requests.Session | None = None,
        id: int | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self.id = id
        self.private_key = RSAKey.import_key(private_pem)
        self.public_pem = self.private_key.as_pem(private=False).decode()
        self.queue_key = RSAKey.import_key(queue_public_pem)
        self.queue_key_name = queue_key_name
        self.http = session or requests.Session()

    # -- tokens ------------------------------------------------------------

    def sign(
        self,
        payload: Any,
        *,
        alg: str = JWS_ALG,
        kid: str | None = None,
        key_pem: str | None = None,
    ) -> str:
        """The inner JWS. *alg* may be any RSA algorithm, ``HS256`` (an HMAC
        keyed with the platform's *public* PEM: the classic key-confusion
        forgery) or ``none``."""
        header = {"alg": alg, "kid": self.name if kid is None else kid}
        data = _payload_bytes(payload)
        if alg == "none" or alg.startswith("HS"):
            signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(data)}"
            if alg == "none":
                return signing_input + "."
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
            secret = (key_pem or self.public_pem).encode()
            mac = hmac.new(secret, signing_input.encode(), digest[alg]).digest()
            return f"{signing_input}.{b64url(mac)}"
        key = RSAKey.import_key(key_pem) if key_pem else self.private_key
        return jws.serialize_compact(header, data, key, algorithms=[alg])

    def encrypt(
        self,
        plaintext: str | bytes,
        *,
        alg: str = JWE_ALG,
        enc: str = JWE_ENC,
        zip: bool = True,
        kid: str | None = None,
        public_pem: str | None = None,
    ) -> str:
        """The outer JWE, by default exactly as PROTOCOL.md says."""
        header: dict[str, Any] = {"alg": alg, "enc": enc}
        if zip:
            header["zip"] = "DEF"
        header["kid"] = self.queue_key_name if kid is None else kid
        key = RSAKey.import_key(public_pem) if public_pem else self.queue_key
        algorithms = [alg, enc, *(["DEF"] if zip else [])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns about RSA1_5: that is the point
            return jwe.encrypt_compact(header, plaintext, key, algorithms=algorithms)

    def token(
        self,
        payload: Any,
        *,
        jws_alg: str = JWS_ALG,
        jws_kid: str | None = None,
        sign_pem: str | None = None,
        jwe_alg: str = JWE_ALG,
        enc: str = JWE_ENC,
        zip: bool = True,
        jwe_kid: str | None = None,
        encrypt_pem: str | None = None,
    ) -> str:
        """``sToken`` for *payload* (a dict, or raw bytes/str to send as is)."""
        signed = self.sign(payload, alg=jws_alg, kid=jws_kid, key_pem=sign_pem)
        return self.encrypt(
            signed, alg=jwe_alg, enc=enc, zip=zip, kid=jwe_kid, public_pem=encrypt_pem
        )

    def oversized_token(self, size: int = ONE_MIB + 1024) -> str:
        """A correctly made token that is larger than *size* as sent.

        Its payload is incompressible, so even with zip DEF the token stays
        over the limit; without the limit it would be a valid ``test``.
        """
        filler = b64url(hashlib.shake_256(b"filler").digest(size))
        return self.token({"request": "test", "filler": filler})

    def zip_bomb_token(self, size: int = 2 * ONE_MIB) -> str:
        """A small token whose plaintext decompresses to more than *size*."""
        return self.token({"request": "test", "filler": " " * size})

    # -- HTTP --------------------------------------------------------------

    def post_form(
        self,
        path: str = "/api.php",
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST a form; every protocol answer must be HTTP 200 JSON with
        ``errorcode`` and ``errormsg``."""
        response = self.http.post(self.url + path, data=data or {}, files=files, timeout=60)
        return protocol_answer(response)

    def send_token(
        self,
        token: str,
        *,
        platform: str | None = None,
        path: str = "/api.php",
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = {"sToken": token, "sPlatform": self.name if platform is None else platform}
        return self.post_form(path, data, files)

    def request(
        self, request: str, *, files: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A well-formed request: ``{"request": request, **fields}``."""
        return self.send_token(self.token({"request": request, **fields}), files=files)

    def test(self) -> dict[str, Any]:
        return self.request("test")

    def sendjob(self, jobdata: Any, **fields: Any) -> dict[str, Any]:
        return self.request("sendjob", jobdata=jobdata, **fields)

    def sendsolution(self, **fields: Any) -> dict[str, Any]:
        return self.request("sendsolution", **fields)

    def getjob(self, jobid: Any) -> dict[str, Any]:
        return self.request("getjob", jobid=jobid)

    def queue_job(self, jobdata: Any, **fields: Any) -> int:
        """sendjob that must succeed; returns the job id."""
        answer = self.sendjob(jobdata, **fields)
        assert answer["errorcode"] == 0, answer
        assert answer["errormsg"] == f"Queued as job ID #{answer['jobid']}."
        return answer["jobid"]

    def job(self, jobid: int) -> dict[str, Any]:
        """getjob's row, which must succeed."""
        answer = self.getjob(jobid)
        assert answer["errorcode"] == 0, answer
        return answer["data"]


def protocol_answer(response: requests.Response) -> dict[str, Any]:
    """The JSON of a protocol answer, checking what every answer must be."""
    assert response.status_code == 200, (response.status_code, response.text[:500])
    answer = response.json()
    assert isinstance(answer, dict), answer
    assert isinstance(answer.get("errorcode"), int), answer
    assert isinstance(answer.get("errormsg"), str), answer
    return answer


def hs256_with_random_key(payload: Any, kid: str) -> str:
    """A JWS HS256 with a random secret (joserfc refuses a PEM as HMAC key)."""
    key = OctKey.generate_key(256)
    return jws.serialize_compact(
        {"alg": "HS256", "kid": kid}, _payload_bytes(payload), key, algorithms=["HS256"]
    )


# -- a queue behind gunicorn for a whole test module ---------------------------


class ServedQueue:
    """A ``QueueSetup`` and the URL of the gunicorn serving it, with helpers
    that register platforms, tags, types and server tokens under fresh names
    (tests share the queue, so each makes its own)."""

    def __init__(self, setup: Any, url: str) -> None:
        self.setup = setup
        self.url = url
        self._count = 0

    def unique(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def platform(self, name: str | None = None, **options: Any) -> ForeignPlatform:
        """Register a platform (``return_url``, ``restrict_paths``, ``force_tag``)
        and return a joserfc client for it."""
        identity = self.setup.platform(name or self.unique("plat"), **options)
        return ForeignPlatform(
            self.url,
            identity.name,
            identity.private_pem,
            queue_public_pem(self.setup),
            self.setup.settings.key_name,
            id=identity.id,
        )

    def tags(self, count: int = 1) -> list[str]:
        names = [self.unique("tag") for _ in range(count)]
        self.setup.tag(*names)
        return names

    def server_type(self, tags: list[str]) -> str:
        name = self.unique("type")
        self.setup.server_type(name, tags)
        return name

    def isolated_type(self) -> tuple[str, str]:
        """A fresh tag and a server type handling only it: jobs with that tag
        go to no other test's servers, and its servers see no other test's jobs."""
        (tag,) = self.tags()
        return tag, self.server_type([tag])

    def server(self, type_name: str, suffix: str = ".php", **options: Any):  # type: ignore[no-untyped-def]
        """A form-protocol grading server with a fresh token of *type_name*
        (``max_jobs``)."""
        from harness.form_server import FormServer

        token = self.setup.server_token(type_name, self.unique("tok"), **options)
        return FormServer(self.url, token, suffix=suffix)

    def snapshot(self) -> dict[str, list[tuple]]:
        return self.setup.snapshot()


@contextmanager
def served_queue(
    instance: Path, database_url: str = "", workers: int = 2, **settings: Any
) -> Iterator[ServedQueue]:
    """A queue set up as tests/conftest.py's ``queue`` fixture (tags c, java,
    gpu; types t-c [c] and t-java [c, java]; platform1), served by one gunicorn."""
    from harness.queue import QueueSetup

    settings.setdefault("poll_wait_sec", 1)
    setup = QueueSetup(instance, database_url, **settings)
    try:
        setup.tag("c", "java", "gpu")
        setup.server_type("t-c", ["c"])
        setup.server_type("t-java", ["c", "java"])
        setup.platform("platform1")
        server = setup.gunicorn(workers=workers)
        yield ServedQueue(setup, server.url)
    finally:
        setup.close()


@contextmanager
def served_queue_for(request: Any, tmp_path_factory: Any, **settings: Any) -> Iterator[ServedQueue]:
    """``served_queue`` on the backend named by ``request.param`` ("sqlite" or
    "mariadb"), for a module-scoped fixture."""
    from harness.mariadb import temporary_database

    with ExitStack() as stack:
        database_url = ""
        if request.param == "mariadb":
            base = request.getfixturevalue("mariadb_base")
            database_url = stack.enter_context(temporary_database(base))
        instance = tmp_path_factory.mktemp(f"queue-{request.param}") / "instance"
        with served_queue(instance, database_url, **settings) as served:
            yield served


def queue_public_pem(setup: Any) -> str:
    return (setup.settings.resolved_key_dir / f"{setup.settings.key_name}.pub.pem").read_text()
