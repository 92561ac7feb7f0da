"""A client certificate's identity as the TLS proxy reports it: serial and issuer DN.

One certificate has many spellings (hex case, colons, leading zeros; the
issuer DN as RFC 2253 or as ``/C=../O=..``); :func:`cert_key` maps them all to
the one key stored with a server.
"""

from __future__ import annotations

import hashlib
import re


def normalize_serial(serial: str) -> str:
    """Hex serial, case-, colon- and leading-zero-insensitive."""
    text = serial.strip().lower().replace(":", "").replace(" ", "")
    if text.startswith("0x"):
        text = text[2:]
    if not text or not re.fullmatch(r"[0-9a-f]+", text):
        raise ValueError(f"not a hexadecimal serial: {serial!r}")
    return text.lstrip("0") or "0"


_ATTR_ALIASES = {"e": "emailaddress", "email": "emailaddress", "street": "street"}


def _split_rfc2253(dn: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in dn:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char in ",;":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    """Undo RFC 2253 escaping; ``\\C3\\9C`` hex pairs are UTF-8 bytes."""
    value = value.strip()
    out = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if re.fullmatch(r"[0-9a-fA-F]{2}", pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(char.encode())
        i += 1
    return out.decode("utf-8", errors="replace")


def normalize_dn(dn: str) -> str:
    """Issuer DN in one form, whether given as RFC 2253 or as ``/C=../O=..``.

    RFC 2253 lists the most specific part first, the slash form the root
    first; both become the slash form with lower-case attribute names.
    """
    text = dn.strip()
    if not text:
        raise ValueError("empty DN")
    if text.startswith("/"):
        # A "/" inside a value is not a separator: split only before "attr=".
        rdns = [part for part in re.split(r"/(?=[A-Za-z][A-Za-z0-9.-]*=)", text[1:]) if part]
    else:
        rdns = list(reversed([part for part in _split_rfc2253(text) if part.strip()]))
    canonical = []
    for rdn in rdns:
        if "=" not in rdn:
            raise ValueError(f"not a DN: {dn!r}")
        attr, value = rdn.split("=", 1)
        attr = attr.strip().lower()
        attr = _ATTR_ALIASES.get(attr, attr)
        canonical.append(f"{attr}={_unescape(value)}")
    return "/" + "/".join(canonical)


def cert_key(serial: str, dn: str) -> str:
    """The servers.ssl_key of a certificate identity (unique, fits an index)."""
    ident = normalize_serial(serial) + "\n" + normalize_dn(dn)
    return hashlib.sha256(ident.encode()).hexdigest()
