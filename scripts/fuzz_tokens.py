"""Fuzz the queue's parsers of untrusted input with hypothesis.

Targets (each gets random and mutated inputs):

- ``compact_header``: tokens.compact_header on random text and dotted base64;
- ``decrypt``: tokens.decrypt on random tokens, tokens made with other
  algorithms, and mutations of real request tokens;
- ``verify``: tokens.verify on random and mutated signed payloads, and
  signatures made with other algorithms or keys;
- ``submissions``: submissions.parse on random sendjob/sendsolution requests;
- ``identities``: certificates.normalize_serial / normalize_dn / cert_key on random text;
- ``results``: results.parse_result, stats.extract and routing.parse_tags on
  random JSON and text.

Each input must give either the function's documented refusal (TokenError,
BadRequest, ValueError) or a well-formed value; a mutated token that still
opens must open to exactly the original content. Anything else is a failure.

    python scripts/fuzz_tokens.py                 # 10,000 cases per target
    python scripts/fuzz_tokens.py -n 500 -t decrypt -t verify

Prints the number of cases run and the failures (grouped by kind, with the
smallest example seen) per target; exits 1 if any target failed. The test
suite runs the same targets with fewer cases (tests/integration/test_fuzz_tokens.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import string
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jwcrypto import jwe, jwk, jws  # noqa: E402

from graderqueue.config import Settings  # noqa: E402
from graderqueue.errors import BadRequest, TokenError  # noqa: E402
from graderqueue.identity import certificates  # noqa: E402
from graderqueue.protocol import (  # noqa: E402
    keys,
    results,
    submissions,
    tokens,
)
from graderqueue.queue import routing, stats  # noqa: E402

DEFAULT_EXAMPLES = 10_000
MAX_BYTES = tokens.DEFAULT_MAX_BYTES


# -- running a target ---------------------------------------------------------


@dataclass(frozen=True)
class KnownIssue:
    """A failure these fuzzers found in code outside this script's reach, reported, not fixed.

    Counted apart from new failures, so a run still shows it, and a
    regression test in tests/integration/test_fuzz_tokens.py (expected to
    fail while the bug is there) says when it is gone: then delete the entry.
    """

    exception: str  # exception class name
    where: str  # "graderqueue/<module>.py:<function>", the last frame in the package
    what: str
    message: str = ""  # for failed checks (AssertionError): a part of their message


# Failures found earlier were fixed at their source (deep JSON nesting, huge
# integers, non-finite and oversized times, a refused fresh getjob using up its
# jti); anything new found by a run is listed here until fixed.
KNOWN_ISSUES: list[KnownIssue] = []


def failure_site(exc: BaseException) -> str:
    """``path:function`` of the last frame in graderqueue/ (or scripts/, harness/), for grouping."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        for top in ("graderqueue", "scripts", "harness"):
            if path.is_relative_to(ROOT / top):
                return f"{path.relative_to(ROOT)}:{frame.name}"
    return f"{Path(frames[-1].filename).name}:{frames[-1].name}" if frames else "?"


def known_issue(exc: BaseException) -> KnownIssue | None:
    site = failure_site(exc)
    for issue in KNOWN_ISSUES:
        if (
            type(exc).__name__ == issue.exception
            and site == issue.where
            and issue.message in str(exc)
        ):
            return issue
    return None


@dataclass
class Report:
    """What one target did: cases run, failures by kind (with their smallest input)."""

    name: str
    cases: int = 0
    seconds: float = 0.0
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    # What the inputs led to (e.g. each errorcode and message), to see what was reached.
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(count for count, _ in self.failures.values())

    def record(self, value: Any, exc: BaseException) -> None:
        issue = known_issue(exc)
        if issue is not None:
            key = f"{issue.where}: {issue.what}"
            self.known[key] = self.known.get(key, 0) + 1
            return
        message = str(exc).splitlines()[0][:160] if str(exc) else ""
        kind = f"{type(exc).__name__} in {failure_site(exc)}: {message}"
        example = repr(value)
        count, smallest = self.failures.get(kind, (0, example))
        if len(example) < len(smallest):
            smallest = example
        self.failures[kind] = (count + 1, smallest)

    def lines(self) -> list[str]:
        known = sum(self.known.values())
        head = (
            f"{self.name}: {self.cases} cases, {self.failed} failures, "
            f"{known} known issues ({self.seconds:.1f} s)"
        )
        out = [head]
        for kind, (count, example) in sorted(self.failures.items()):
            out.append(f"  FAIL {count} x {kind}")
            out.append(f"      smallest input: {example[:400]}")
        for kind, count in sorted(self.known.items()):
            out.append(f"  known {count} x {kind}")
        return out

    def outcome_lines(self, limit: int = 25) -> list[str]:
        return [f"    {count:6d}  {what}" for what, count in self.outcomes.most_common(limit)]


#: The report of the target running now: checks count their outcomes in it.
CURRENT = Report("-")


def outcome(what: str) -> None:
    CURRENT.outcomes[what] += 1


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


def run(
    target: Target, examples: int, *, stop_on_failure: bool = False, seed: int | None = None
) -> Report:
    """Run ``target`` on ``examples`` generated inputs.

    With ``stop_on_failure`` (the test suite), the first failure propagates
    and hypothesis shrinks it to a minimal example; otherwise every failure
    is recorded and the run goes on to the full count.
    """
    report = Report(target.name)
    global CURRENT
    CURRENT = report

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(target.strategy)
    def case(value: Any) -> None:
        report.cases += 1
        try:
            target.check(value)
        except Exception as exc:
            if stop_on_failure and known_issue(exc) is None:
                raise
            report.record(value, exc)

    if seed is not None:
        case = hypothesis_seed(seed)(case)
    began = time.monotonic()
    case()
    report.seconds = time.monotonic() - began
    return report


# -- keys and real tokens to mutate --------------------------------------------


def _jwk(pem: bytes) -> jwk.JWK:
    return jwk.JWK.from_pem(pem)


_queue_private_pem, _queue_public_pem = keys.generate_rsa_pem()
_platform_private_pem, _platform_public_pem = keys.generate_rsa_pem()
_other_private_pem, _ = keys.generate_rsa_pem()
QUEUE_KEY = _jwk(_queue_private_pem)
QUEUE_PUBLIC = _jwk(_queue_public_pem)
PLATFORM_KEY = _jwk(_platform_private_pem)
PLATFORM_PUBLIC = _jwk(_platform_public_pem)
OTHER_KEY = _jwk(_other_private_pem)

PAYLOADS = [
    {"request": "test"},
    {"request": "sendjob", "jobdata": json.dumps({"taskPath": "/t"}), "tags": "c", "priority": 3},
    {"request": "getjob", "jobid": "12", "iat": 1700000000, "jti": "abc"},
]


def _jws(payload: dict[str, Any], key: jwk.JWK, header: dict[str, Any]) -> str:
    signer = jws.JWS(json.dumps(payload).encode())
    signer.allowed_algs = [header["alg"]]
    signer.add_signature(key, None, json.dumps(header), None)
    return signer.serialize(compact=True)


def _jwe(plaintext: str, header: dict[str, Any], key: jwk.JWK) -> str:
    outer = jwe.JWE(plaintext.encode(), json.dumps(header), algs=[header["alg"], header["enc"]])
    outer.add_recipient(key)
    return outer.serialize(compact=True)


PROTOCOL_JWE = {"alg": tokens.JWE_ALG, "enc": tokens.JWE_ENC, "zip": "DEF", "kid": "graderqueue"}
INNER = [_jws(p, PLATFORM_KEY, {"alg": "RS512", "kid": "platform1"}) for p in PAYLOADS]
SEALED = [
    tokens.seal(PAYLOADS[0], PLATFORM_KEY, "platform1", QUEUE_PUBLIC, "graderqueue"),
    tokens.seal(PAYLOADS[1], PLATFORM_KEY, "platform1", QUEUE_PUBLIC, "graderqueue"),
    _jwe(INNER[2], {k: v for k, v in PROTOCOL_JWE.items() if k != "zip"}, QUEUE_PUBLIC),
]
SEALED_PLAINTEXT = [INNER[0], INNER[1], INNER[2]]
# The first two were made by tokens.seal, which makes its own JWS: read them back.
SEALED_PLAINTEXT[0] = tokens.decrypt(SEALED[0], QUEUE_KEY, MAX_BYTES)
SEALED_PLAINTEXT[1] = tokens.decrypt(SEALED[1], QUEUE_KEY, MAX_BYTES)


def _foreign_tokens() -> list[str]:
    """Tokens the queue must refuse: other algorithms, or not encrypted to it."""
    made = []
    for alg, enc in [
        ("RSA-OAEP", "A256CBC-HS512"),
        ("RSA-OAEP-256", "A128CBC-HS256"),
        ("RSA-OAEP-256", "A256GCM"),
        ("RSA1_5", "A256CBC-HS512"),
    ]:
        made.append(_jwe(INNER[0], {"alg": alg, "enc": enc, "kid": "graderqueue"}, QUEUE_PUBLIC))
    made.append(_jwe(INNER[0], PROTOCOL_JWE, _jwk(keys.generate_rsa_pem()[1])))
    return made


def _foreign_signatures() -> list[str]:
    """Signed payloads the queue must refuse: other algorithms or keys, or none."""
    made = [
        _jws(PAYLOADS[0], PLATFORM_KEY, {"alg": alg, "kid": "platform1"})
        for alg in ("RS256", "RS384", "PS512")
    ]
    made.append(_jws(PAYLOADS[0], OTHER_KEY, {"alg": "RS512", "kid": "platform1"}))
    # HS512 keyed with the platform's public key: the classic algorithm confusion.
    secret = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(_platform_public_pem).decode())
    made.append(_jws(PAYLOADS[0], secret, {"alg": "HS512", "kid": "platform1"}))
    unsigned = {"alg": "none", "kid": "platform1"}
    made.append(f"{_b64(json.dumps(unsigned).encode())}.{_b64(json.dumps(PAYLOADS[0]).encode())}.")
    return made


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


FOREIGN_TOKENS = _foreign_tokens()
FOREIGN_SIGNATURES = _foreign_signatures()


# -- strategies -----------------------------------------------------------------

NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "\ud7ff",
    "\U0001f600",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1" * 5000,
    "[" * 5000,
    "{" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    "[" * 3000 + "]" * 3000,
    '"\\ud800"',
    "\\",
    "%00",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "a" * 70000,
    # Digits to str.isdigit(), not all of them to int().
    "\u00b9",
    "\u2460",
    "\u0663",
    "\uff11",
    "-\u00b2",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(NASTY_TEXT),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=20,
)
texts = st.one_of(
    st.text(max_size=200),
    st.sampled_from(NASTY_TEXT),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)
b64_parts = st.one_of(
    st.binary(max_size=300).map(_b64),
    st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=200),
    texts,
)
header_values = st.one_of(
    st.sampled_from(
        [
            "RSA-OAEP-256",
            "A256CBC-HS512",
            "RS512",
            "DEF",
            "none",
            "RSA1_5",
            "dir",
            "HS512",
            "graderqueue",
            "platform1",
        ]
    ),
    json_values,
)
headers = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "alg": header_values,
            "enc": header_values,
            "zip": header_values,
            "kid": header_values,
            "crit": header_values,
            "jku": header_values,
        },
    ),
    json_values,
)
encoded_headers = st.one_of(
    headers.map(lambda h: _b64(json.dumps(h).encode())),
    st.sampled_from(NASTY_TEXT).map(lambda t: _b64(t.encode("utf-8", "surrogatepass"))),
    b64_parts,
)


def dotted(nparts: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    return nparts.flatmap(
        lambda n: st.tuples(encoded_headers, st.lists(b64_parts, min_size=n, max_size=n)).map(
            lambda t: ".".join([t[0], *t[1]])
        )
    )


random_tokens = st.one_of(texts, dotted(st.integers(0, 7)), dotted(st.just(4)), dotted(st.just(2)))

MUTATIONS = ("flip", "delete", "insert", "replace_part", "swap_parts", "header", "truncate")


@dataclass(frozen=True)
class Mutation:
    base: int
    op: str
    i: int
    j: int
    text: str

    def apply(self, token: str) -> str:
        n = max(len(token), 1)
        i, j = self.i % n, self.j % n
        parts = token.split(".")
        if self.op == "flip":
            alphabet = string.ascii_letters + string.digits + "-_."
            new = alphabet[(alphabet.find(token[i]) + 1 + self.j) % len(alphabet)]
            return token[:i] + new + token[i + 1 :]
        if self.op == "delete":
            lo, hi = sorted((i, j))
            return token[:lo] + token[hi + 1 :]
        if self.op == "insert":
            return token[:i] + self.text + token[i:]
        if self.op == "replace_part":
            parts[self.i % len(parts)] = self.text
            return ".".join(parts)
        if self.op == "swap_parts":
            a, b = self.i % len(parts), self.j % len(parts)
            parts[a], parts[b] = parts[b], parts[a]
            return ".".join(parts)
        if self.op == "header":
            parts[0] = self.text
            return ".".join(parts)
        return token[:i]  # truncate


def mutations(count: int) -> st.SearchStrategy[Mutation]:
    return st.builds(
        Mutation,
        base=st.integers(0, count - 1),
        op=st.sampled_from(MUTATIONS),
        i=st.integers(0, 10**6),
        j=st.integers(0, 10**6),
        text=st.one_of(encoded_headers, b64_parts),
    )


# -- targets -------------------------------------------------------------------


def check_compact_header(value: tuple[str, int]) -> None:
    token, nparts = value
    try:
        header = tokens.compact_header(token, nparts)
    except TokenError as exc:
        outcome(exc.message)
        return
    outcome("parsed")
    assert isinstance(header, dict)
    assert len(token.split(".")) == nparts


def _opened(token: str) -> str | None:
    try:
        plaintext = tokens.decrypt(token, QUEUE_KEY, MAX_BYTES)
    except TokenError as exc:
        assert exc.message.startswith("Invalid token"), exc.message
        outcome(exc.message)
        return None
    outcome("decrypted")
    assert isinstance(plaintext, str)
    return plaintext


def check_decrypt(value: Any) -> None:
    kind, item = value
    if kind == "random":
        assert _opened(item) is None, "a random token decrypted"
    elif kind == "foreign":
        assert _opened(FOREIGN_TOKENS[item]) is None, "a token with other algorithms decrypted"
    else:
        token = item.apply(SEALED[item.base])
        opened = _opened(token)
        assert opened is None or opened == SEALED_PLAINTEXT[item.base], "tampered token opened"


def _verified(inner: str) -> dict[str, Any] | None:
    try:
        payload = tokens.verify(inner, [PLATFORM_PUBLIC])
    except TokenError as exc:
        assert exc.message.startswith("Invalid token"), exc.message
        outcome(exc.message)
        return None
    outcome("verified")
    assert isinstance(payload, dict)
    return payload


def check_verify(value: Any) -> None:
    kind, item = value
    if kind == "random":
        assert _verified(item) is None, "a random signature verified"
    elif kind == "foreign":
        assert _verified(FOREIGN_SIGNATURES[item]) is None, "a foreign signature verified"
    else:
        payload = _verified(item.apply(INNER[item.base]))
        assert payload is None or payload == PAYLOADS[item.base], "tampered payload verified"


SUBMISSION_KEYS = [
    "request",
    "jobdata",
    "jobname",
    "priority",
    "tags",
    "jobusertaskid",
    "taskrevision",
    "timeout",
    "taskpath",
    "memlimit",
    "timelimit",
    "lang",
    "solpath",
    "solcontent",
    "jti",
    "iat",
    "date",
]
field_values = st.one_of(
    json_values,
    texts,
    st.integers().map(str),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(json.dumps),
)
random_requests = st.fixed_dictionaries(
    {"request": st.one_of(st.sampled_from(["sendjob", "sendsolution"]), json_values)},
    optional={key: field_values for key in SUBMISSION_KEYS[1:]},
).flatmap(
    lambda d: st.dictionaries(st.text(max_size=8), field_values, max_size=3).map(
        lambda extra: {**extra, **d}
    )
)
# Requests that are mostly right, to get past the first checks and reach the rest.
# Every Unicode digit and number: str.isdigit() says yes to more than int() reads.
unicode_digits = st.text(
    alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=6
).map(lambda text: text if len(text) % 3 else "-" + text)
small_ints = st.one_of(
    st.integers(-5, 2**33), st.integers(0, 100).map(str), st.just(""), unicode_digits
)
plausible_jobs = st.one_of(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(json.dumps),
    st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    st.sampled_from(NASTY_TEXT),
)
plausible_sendjob = st.fixed_dictionaries(
    {"request": st.just("sendjob"), "jobdata": plausible_jobs},
    optional={
        "jobname": st.text(max_size=300),
        "priority": small_ints,
        "tags": st.sampled_from(["c", "java", "c,java", " c , ", "gpu", "nope", "", "c,,c"]),
        "jobusertaskid": st.text(max_size=300),
        "taskrevision": st.text(max_size=300),
        "timeout": small_ints,
    },
)
plausible_sendsolution = st.fixed_dictionaries(
    {
        "request": st.just("sendsolution"),
        "taskpath": st.text(max_size=100),
        "memlimit": small_ints,
        "timelimit": small_ints,
        "lang": st.sampled_from(["c", "cpp", "py", "java", "ocaml", "x", ""]),
    },
    optional={
        "solpath": st.text(max_size=100),
        "solcontent": st.one_of(st.text(max_size=300), json_values),
        "tags": st.sampled_from(["c", "java", ""]),
        "jobusertaskid": st.text(max_size=30),
    },
)
requests_ = st.one_of(random_requests, plausible_sendjob, plausible_sendsolution)
uploads = st.one_of(
    st.none(), st.builds(submissions.Upload, filename=texts, content=st.text(max_size=300))
)
SETTINGS = Settings()


def check_submission(value: Any) -> None:
    request, upload, restrict = value
    try:
        sub = submissions.parse(request, SETTINGS, restrict_paths=restrict, upload=upload)
    except BadRequest as exc:
        outcome(re.sub(r"(: |`).*", "", exc.message))
        return
    outcome(f"accepted {request.get('request')}")
    assert isinstance(sub.job, dict)
    json.dumps(sub.job)  # it is stored as JSON
    assert isinstance(sub.name, str) and 0 < len(sub.name) <= submissions.NAME_MAX, sub.name
    assert isinstance(sub.jobusertaskid, str) and 0 < len(sub.jobusertaskid) <= 255
    assert isinstance(sub.taskrevision, str) and len(sub.taskrevision) <= 255
    assert isinstance(sub.priority, int) and 0 <= sub.priority <= submissions.INT_MAX
    assert isinstance(sub.timeout_sec, int) and 1 <= sub.timeout_sec <= submissions.INT_MAX
    assert all(isinstance(t, str) and t for t in sub.tag_names)
    if any(path.strip() for path in restrict.split(",")):
        assert isinstance(sub.job["restrictToPaths"], list)


ATTRS = ["C", "ST", "L", "O", "OU", "CN", "emailAddress", "DC", "street"]
plain_values = (
    st.text(alphabet=string.ascii_letters + string.digits + " -.'", min_size=1)
    .map(str.strip)
    .filter(bool)
)
components = st.lists(st.tuples(st.sampled_from(ATTRS), plain_values), min_size=1, max_size=5)
dn_like = st.one_of(
    texts,
    components.map(lambda c: ",".join(f"{a}={v}" for a, v in reversed(c))),
    components.map(lambda c: "/" + "/".join(f"{a}={v}" for a, v in c)),
    st.lists(st.one_of(texts, st.sampled_from(["=", ",", "/", "\\", "+", "\\2C", "\\C3"]))).map(
        "".join
    ),
)
serial_like = st.one_of(
    texts,
    st.text(alphabet="0123456789abcdefABCDEF:x ", max_size=80),
    st.integers(0, 2**160).map(lambda n: f"{n:X}"),
)


def check_identities(value: Any) -> None:
    serial, dn, comps = value
    try:
        normal = certificates.normalize_serial(serial)
    except ValueError:
        normal = None
    if normal is not None:
        assert re.fullmatch(r"0|[1-9a-f][0-9a-f]*", normal), normal
        assert certificates.normalize_serial(serial.upper()) == normal
        assert certificates.normalize_serial("0" + normal.upper()) == normal
    try:
        canonical = certificates.normalize_dn(dn)
    except ValueError:
        canonical = None
    if canonical is not None:
        assert canonical.startswith("/"), canonical
    try:
        key = certificates.cert_key(serial, dn)
    except ValueError:
        assert normal is None or canonical is None
    else:
        assert re.fullmatch(r"[0-9a-f]{64}", key)
    rfc = ",".join(f"{a}={v}" for a, v in reversed(comps))
    slash = "/" + "/".join(f"{a}={v}" for a, v in comps)
    assert certificates.normalize_dn(rfc) == certificates.normalize_dn(slash), (rfc, slash)


numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.sampled_from(["1e999", "-1e999", "nan", "inf", " 12 ", "100", "100.0", "0x10"]),
    json_scalars,
)
reports = st.fixed_dictionaries(
    {},
    optional={
        part: st.fixed_dictionaries(
            {},
            optional={
                "timeTakenMs": numbers,
                "realTimeTakenMs": numbers,
                "stdout": st.one_of(json_values, st.fixed_dictionaries({"data": numbers})),
            },
        )
        for part in ("execution", "checker", "sanitizer")
    },
)
taskgrader_results = st.fixed_dictionaries(
    {
        "errorcode": st.one_of(st.sampled_from([0, 1, 2, 3, "0"]), json_scalars, unicode_digits),
        "jobdata": st.fixed_dictionaries(
            {
                "executions": st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"testsReports": st.lists(reports, max_size=4)}),
                        json_values,
                    ),
                    max_size=3,
                )
            }
        ),
    }
)


def check_results(value: Any) -> None:
    raw, jobdata, result, tags = value
    try:
        parsed = results.parse_result(raw)
    except BadRequest:
        parsed = None
    if parsed is not None:
        assert isinstance(parsed, dict)
        stats.extract(jobdata, parsed)
    figures = stats.extract(jobdata, result)  # never an error (PROTOCOL.md)
    for name, number in figures.as_dict().items():
        if name not in ("task_path", "task_name", "language", "is_success"):
            # Stored in BIGINT columns.
            assert isinstance(number, int) and -(2**63) <= number < 2**63, (name, number)
    try:
        names = routing.parse_tags(tags)
    except BadRequest:
        return
    assert all(isinstance(n, str) and n == n.strip() and n for n in names)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "compact_header",
            st.sampled_from([3, 5]).flatmap(
                lambda n: st.tuples(
                    st.one_of(
                        dotted(st.just(n - 1)), random_tokens, st.sampled_from(SEALED + INNER)
                    ),
                    st.just(n),
                )
            ),
            check_compact_header,
        ),
        Target(
            "decrypt",
            st.one_of(
                st.tuples(st.just("random"), random_tokens),
                st.tuples(st.just("foreign"), st.integers(0, len(FOREIGN_TOKENS) - 1)),
                st.tuples(st.just("mutated"), mutations(len(SEALED))),
            ),
            check_decrypt,
        ),
        Target(
            "verify",
            st.one_of(
                st.tuples(st.just("random"), random_tokens),
                st.tuples(st.just("foreign"), st.integers(0, len(FOREIGN_SIGNATURES) - 1)),
                st.tuples(st.just("mutated"), mutations(len(INNER))),
            ),
            check_verify,
        ),
        Target(
            "submissions",
            st.tuples(requests_, uploads, st.one_of(st.just(""), texts)),
            check_submission,
        ),
        Target("identities", st.tuples(serial_like, dn_like, components), check_identities),
        Target(
            "results",
            st.tuples(
                st.one_of(
                    texts,
                    json_values.map(json.dumps),
                    taskgrader_results.map(json.dumps),
                    st.none(),
                ),
                json_values,
                st.one_of(json_values, taskgrader_results),
                json_values,
            ),
            check_results,
        ),
    ]
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--examples", type=int, default=DEFAULT_EXAMPLES)
    parser.add_argument("-t", "--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="show what inputs led to")
    args = parser.parse_args(argv)
    reports = []
    for name in args.target or TARGETS:
        reports.append(run(TARGETS[name], args.examples, seed=args.seed))
        print("\n".join(reports[-1].lines()), flush=True)
        if args.verbose:
            print("\n".join(reports[-1].outcome_lines()), flush=True)
    return totals(reports)


def totals(reports: list[Report]) -> int:
    """Print the totals; the exit status (1 if anything new failed)."""
    cases = sum(r.cases for r in reports)
    failures = sum(r.failed for r in reports)
    known = sum(sum(r.known.values()) for r in reports)
    print(
        f"total: {cases} cases in {len(reports)} targets, {failures} failures, {known} known issues"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
