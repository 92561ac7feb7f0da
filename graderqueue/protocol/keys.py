"""The queue's RSA key pairs, kept as PEM files outside the database.

``<key_dir>/<name>.pem`` is a private key (mode 0600) and
``<key_dir>/<name>.pub.pem`` its public key. The key named by the
``key_name`` setting is the active one: platforms encrypt to it and the queue
signs results with it. Other private keys in the folder stay usable for
decryption, so a rotation never breaks a platform that has not yet switched.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwk

from graderqueue.errors import QueueError, TokenError
from graderqueue.store.private_files import private_dir, write_private

KEY_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyProblem(QueueError):
    """Queue key problem."""


@dataclass(frozen=True)
class QueueKey:
    name: str
    private: jwk.JWK
    public_pem: str


def generate_rsa_pem(bits: int = 2048) -> tuple[bytes, bytes]:
    """A new RSA key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def create_key(key_dir: Path, name: str, bits: int = 2048) -> bool:
    """Create the key pair ``name`` unless it exists. Returns True if created."""
    if not KEY_NAME_RE.match(name):
        raise KeyProblem(f"Invalid key name {name!r}: use letters, digits, '.', '_' or '-'.")
    private_dir(key_dir)
    private_path = key_dir / f"{name}.pem"
    if private_path.exists():
        return False
    private, public = generate_rsa_pem(bits)
    # Created 0600 from the start: the key is never readable by others. The
    # public half too: nothing in the instance folder is for other users.
    write_private(private_path, private)
    public_path = key_dir / f"{name}.pub.pem"
    public_path.unlink(missing_ok=True)
    write_private(public_path, public)
    return True


def public_pem_of(private_pem: bytes) -> str:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class QueueKeys:
    """All key pairs of the queue, parsed once."""

    def __init__(self, key_dir: Path, active_name: str) -> None:
        self.key_dir = key_dir
        self.active_name = active_name
        self._keys: dict[str, QueueKey] = {}
        if key_dir.is_dir():
            for path in sorted(key_dir.glob("*.pem")):
                if path.name.endswith(".pub.pem"):
                    continue
                name = path.name[: -len(".pem")]
                private_pem = path.read_bytes()
                self._keys[name] = QueueKey(
                    name=name,
                    private=jwk.JWK.from_pem(private_pem),
                    public_pem=public_pem_of(private_pem),
                )
        if active_name not in self._keys:
            raise KeyProblem(
                f"The queue's key {active_name!r} is missing from {key_dir}: "
                "run `graderqueue init`."
            )

    @property
    def active(self) -> QueueKey:
        return self._keys[self.active_name]

    def for_kid(self, kid: object) -> QueueKey:
        """The key a token's ``kid`` names; the active key when it names none.

        A ``kid`` naming a key the queue does not hold is refused: the token
        was made for another queue, or with an old key name.
        """
        if kid is None:
            return self.active
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        shown = str(kid)[:64]
        raise TokenError(
            f"Invalid token: encrypted to key `{shown}`, but the queue's key is "
            f"`{self.active_name}`."
        )

    def names(self) -> list[str]:
        return sorted(self._keys)


@functools.lru_cache(maxsize=1024)
def parse_public_key(pem: str) -> jwk.JWK:
    """Parse a PEM public key once; tokens are verified against cached keys."""
    try:
        key = jwk.JWK.from_pem(pem.encode())
    except Exception as exc:  # jwcrypto raises several kinds for bad PEM
        raise KeyProblem("Invalid public key.") from exc
    if key.has_private:
        raise KeyProblem("A private key was given where a public key was expected.")
    if key.get("kty") != "RSA":
        raise KeyProblem("The public key must be an RSA key.")
    return key


def fingerprint(pem: str) -> str:
    """SHA-256 of the key's DER form, in hex."""
    key = serialization.load_pem_public_key(pem.encode())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()
