"""Real certificates for tests, made by the certs/ scripts with real openssl.

Tests use the very scripts an operator runs, so a test that passes through
nginx with these certificates also proves the scripts: that their
certificates verify, and that the serial and issuer DN they print are what
nginx hands to the app.

:func:`make_pki` builds the queue's CA, a server certificate for
``localhost``/``127.0.0.1``/``::1``, N client certificates, and a second,
foreign CA (by default with the very same name as ours, the hardest case)
with one client certificate of its own.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT

__all__ = [
    "CERTS_DIR",
    "PKI",
    "ClientCert",
    "ScriptError",
    "make_pki",
    "parse_server_add_args",
    "run_script",
]

CERTS_DIR = ROOT / "certs"

#: Default common name of the test CA; the issuer DN is ``CN=<it>,O=graderqueue``.
TEST_CA_CN = "graderqueue test CA"


class ScriptError(RuntimeError):
    """A certs/ script failed; the message carries its output."""


@dataclass(frozen=True)
class ClientCert:
    """A grading server's certificate and what the script printed for it."""

    name: str
    crt: Path
    key: Path
    pem: Path
    #: ``--ssl-serial`` value as printed (nginx's ``$ssl_client_serial`` form).
    serial: str
    #: ``--ssl-dn`` value as printed (nginx's ``$ssl_client_i_dn`` form).
    issuer_dn: str
    #: The exact last line the script printed.
    server_add_args: str

    @property
    def requests_cert(self) -> tuple[str, str]:
        """``cert=`` argument for requests."""
        return (str(self.crt), str(self.key))


@dataclass(frozen=True)
class PKI:
    """Paths of one test PKI: ours, and a foreign one nginx must not trust."""

    dir: Path
    ca_crt: Path
    ca_key: Path
    server_crt: Path
    server_key: Path
    clients: list[ClientCert]
    foreign_dir: Path
    foreign_ca_crt: Path
    foreign_client: ClientCert

    def client(self, name: str) -> ClientCert:
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(name)


def run_script(
    script: str, *args: str | os.PathLike[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``certs/<script>`` and return the completed process; raise on failure."""
    if shutil.which("openssl") is None:
        raise ScriptError("the openssl command is needed to make test certificates")
    result = subprocess.run(
        ["bash", str(CERTS_DIR / script), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise ScriptError(
            f"certs/{script} {' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


_ARGS_RE = re.compile(r"^--ssl-serial [0-9A-F]+ --ssl-dn '.*'$")


def parse_server_add_args(stdout: str) -> tuple[str, str, str]:
    """(serial, issuer DN, the line) from make-client-cert.sh's last output line."""
    line = stdout.rstrip("\n").rsplit("\n", 1)[-1]
    if not _ARGS_RE.match(line):
        raise ScriptError(f"unexpected last line from make-client-cert.sh: {line!r}")
    words = shlex.split(line)
    if len(words) != 4 or words[0] != "--ssl-serial" or words[2] != "--ssl-dn":
        raise ScriptError(f"unexpected last line from make-client-cert.sh: {line!r}")
    return words[1], words[3], line


def make_client(ca_dir: Path, name: str) -> ClientCert:
    """Run make-client-cert.sh for ``name`` in ``ca_dir``."""
    result = run_script("make-client-cert.sh", ca_dir, name)
    serial, issuer_dn, line = parse_server_add_args(result.stdout)
    out = ca_dir / "clients"
    return ClientCert(
        name=name,
        crt=out / f"{name}.crt",
        key=out / f"{name}.key",
        pem=out / f"{name}.pem",
        serial=serial,
        issuer_dn=issuer_dn,
        server_add_args=line,
    )


def make_pki(
    tmpdir: os.PathLike[str] | str,
    n_clients: int = 2,
    *,
    ca_cn: str = TEST_CA_CN,
    foreign_ca_cn: str | None = None,
) -> PKI:
    """Make a complete test PKI under ``tmpdir`` with the certs/ scripts.

    Clients are named ``grader-1`` .. ``grader-N``; the foreign CA's client
    is ``intruder``. The foreign CA has the same CN as ours unless
    ``foreign_ca_cn`` says otherwise, so only the signature tells them apart.
    """
    base = Path(tmpdir)
    ours = base / "ca"
    foreign = base / "foreign-ca"
    ours.mkdir(parents=True)
    foreign.mkdir(parents=True)

    run_script("make-ca.sh", ours, ca_cn)
    run_script("make-server-cert.sh", ours, "localhost", "127.0.0.1", "::1")
    clients = [make_client(ours, f"grader-{i}") for i in range(1, n_clients + 1)]

    run_script("make-ca.sh", foreign, foreign_ca_cn if foreign_ca_cn is not None else ca_cn)
    foreign_client = make_client(foreign, "intruder")

    return PKI(
        dir=ours,
        ca_crt=ours / "ca.crt",
        ca_key=ours / "ca.key",
        server_crt=ours / "server.crt",
        server_key=ours / "server.key",
        clients=clients,
        foreign_dir=foreign,
        foreign_ca_crt=foreign / "ca.crt",
        foreign_client=foreign_client,
    )
