"""The PHP queue's registry carried over: tags, types, platforms, tokens, servers, remote users.

Ids are kept (jobs, the log and platforms' stored ids name them). A row
whose id is already here was imported by an earlier run and is left as it
is. Names are unique here but were not in the PHP queue: the lowest id keeps
the name, the others get ``-<old id>`` appended (printed, docs/MIGRATING.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from graderqueue.identity import certificates, passwords
from graderqueue.identity.servers import hash_token
from graderqueue.legacy.progress import Report
from graderqueue.legacy.source import LegacyDatabase, to_utc
from graderqueue.protocol import keys
from graderqueue.store.models import (
    Platform,
    PlatformKey,
    RemoteUser,
    Server,
    ServerToken,
    ServerType,
    Tag,
    TypeTag,
    utcnow,
)

_SERVER_COLUMNS = (
    "id", "name", "ssl_serial", "ssl_dn", "wakeup_url", "wakeup_fails", "type",
    "max_concurrent_jobs", "last_poll_time", "token_id", "ip",
)  # fmt: skip
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass
class Known:
    """Ids present here after the registry step (imported now or before)."""

    tags: set[int] = field(default_factory=set)
    types: set[int] = field(default_factory=set)
    platforms: set[int] = field(default_factory=set)
    tokens: set[int] = field(default_factory=set)
    servers: set[int] = field(default_factory=set)
    #: remote user id -> its name here (jobs are recorded as "remote:<name>").
    users: dict[int, str] = field(default_factory=dict)


def name_key(name: str) -> str:
    """When two names are one for the database's unique index: MariaDB's
    collation ignores case, accents and trailing spaces."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return bare.casefold().rstrip(" ")


class Names:
    """Unique names for one table: those here, and those given during this run."""

    def __init__(self, kind: str, taken: Iterable[str], report: Report) -> None:
        self.kind, self.report = kind, report
        self.taken = {name_key(n) for n in taken}

    def give(self, old_id: int, name: str | None) -> str:
        wanted = (name or "").strip() or f"{self.kind}-{old_id}"
        candidate, n = wanted[:255], 0
        while name_key(candidate) in self.taken:
            n += 1
            suffix = f"-{old_id}" if n == 1 else f"-{old_id}-{n}"
            candidate = wanted[: 255 - len(suffix)] + suffix
        self.taken.add(name_key(candidate))
        if candidate != wanted:
            self.report.renamed.append(f"{self.kind} {wanted!r} #{old_id} -> {candidate!r}")
        return candidate


class RegistryImport:
    def __init__(self, source: LegacyDatabase, report: Report, tz: Any) -> None:
        self.source, self.report, self.tz = source, report, tz
        self.known = Known()

    def run(self, session: Session, write: bool) -> Known:
        """Every registry table, in one transaction; ``write`` False: count only."""
        self.session, self.write = session, write
        self._tags()
        self._types()
        self._type_tags()
        self._platforms()
        self._tokens()
        self._servers()
        self._remote_users()
        return self.known

    # -- helpers ----------------------------------------------------------------

    def _new_rows(self, table: str, model: type, rows: list[dict[str, Any]]) -> list[dict]:
        """Rows whose id is not here yet; counts the others as present."""
        tally = self.report.tally(table)
        here = set(self.session.scalars(select(model.id)))  # type: ignore[attr-defined]
        tally.read += len(rows)
        fresh = [r for r in rows if r["id"] not in here]
        tally.present += len(rows) - len(fresh)
        return fresh

    def _insert(self, table: str, model: type, rows: list[dict[str, Any]]) -> None:
        self.report.tally(table).imported += len(rows)
        if self.write and rows:
            self.session.execute(insert(model.__table__), rows)  # type: ignore[attr-defined]

    def _skip(self, table: str, note: str) -> None:
        self.report.tally(table).skipped += 1
        self.report.notes.append(note)

    def _names(self, kind: str, column: Any) -> Names:
        return Names(kind, self.session.scalars(select(column)), self.report)

    def _ids(self, model: type) -> set[int]:
        return set(self.session.scalars(select(model.id)))  # type: ignore[attr-defined]

    # -- tables -----------------------------------------------------------------

    def _tags(self) -> None:
        rows = self.source.rows("SELECT id, name FROM tags ORDER BY id")
        names = self._names("tag", Tag.name)
        new = [
            {"id": r["id"], "name": names.give(r["id"], r["name"])}
            for r in self._new_rows("tags", Tag, rows)
        ]
        self._insert("tags", Tag, new)
        self.known.tags = self._ids(Tag) | {r["id"] for r in new}

    def _types(self) -> None:
        rows = self.source.rows("SELECT id, name FROM server_types ORDER BY id")
        names = self._names("type", ServerType.name)
        new = [
            {"id": r["id"], "name": names.give(r["id"], r["name"]), "paused": False}
            for r in self._new_rows("server_types", ServerType, rows)
        ]
        self._insert("server_types", ServerType, new)
        self.known.types = self._ids(ServerType) | {r["id"] for r in new}

    def _type_tags(self) -> None:
        rows = self.source.rows("SELECT typeid, tagid FROM type_tags ORDER BY typeid, tagid")
        tally = self.report.tally("type_tags")
        tally.read += len(rows)
        here = set(self.session.execute(select(TypeTag.type_id, TypeTag.tag_id)).tuples())
        new = []
        for r in rows:
            pair = (r["typeid"], r["tagid"])
            if pair in here:
                tally.present += 1
            elif r["typeid"] in self.known.types and r["tagid"] in self.known.tags:
                new.append({"type_id": pair[0], "tag_id": pair[1]})
            else:
                tally.skipped += 1  # a type or tag deleted in the PHP queue
        self._insert("type_tags", TypeTag, new)

    def _platforms(self) -> None:
        rows = self.source.rows(
            "SELECT id, name, public_key, restrict_paths, force_tag, return_url"
            " FROM platforms ORDER BY id"
        )
        names = self._names("platform", Platform.name)
        new, new_keys, now = [], [], utcnow()
        for r in self._new_rows("platforms", Platform, rows):
            force = r["force_tag"] if r["force_tag"] in self.known.tags else None
            if r["force_tag"] not in (None, -1) and force is None:
                self.report.notes.append(
                    f"platform #{r['id']}: forced tag #{r['force_tag']} no longer exists; none kept"
                )
            name = names.give(r["id"], r["name"])
            new.append(
                {
                    "id": r["id"],
                    "name": name,
                    "return_url": (r["return_url"] or "").strip(),
                    "restrict_paths": r["restrict_paths"] or "",
                    "force_tag_id": force,
                    "created_at": now,
                }
            )
            key = _public_key(r["public_key"] or "")
            if key is None:
                self.report.notes.append(
                    f"platform {name!r}: its public key cannot be read; add one with"
                    f" `graderqueue platform key add {name}`"
                )
            else:
                new_keys.append(
                    {
                        "platform_id": r["id"],
                        "public_key": key[0],
                        "fingerprint": key[1],
                        "created_at": now,
                    }
                )
        self._insert("platforms", Platform, new)
        if self.write and new_keys:
            self.session.execute(insert(PlatformKey.__table__), new_keys)
        self.known.platforms = self._ids(Platform) | {r["id"] for r in new}

    def _tokens(self) -> None:
        if not self.source.has("server_tokens"):
            return  # an installation without the 2022-02-20 migration
        rows = self.source.rows(
            "SELECT id, name, token, type, max_concurrent_jobs FROM server_tokens ORDER BY id"
        )
        names = self._names("server token", ServerToken.name)
        hashes = set(self.session.scalars(select(ServerToken.token_hash)))
        new, now = [], utcnow()
        for r in self._new_rows("server_tokens", ServerToken, rows):
            digest = hash_token(r["token"] or "")
            if not r["token"] or r["type"] not in self.known.types or digest in hashes:
                why = (
                    "empty"
                    if not r["token"]
                    else "type gone"
                    if r["type"] not in self.known.types
                    else "same token as another"
                )
                self._skip(
                    "server_tokens", f"server token #{r['id']} {r['name']!r} left out: {why}"
                )
                continue
            hashes.add(digest)
            new.append(
                {
                    "id": r["id"],
                    "name": names.give(r["id"], r["name"]),
                    "token_hash": digest,
                    "type_id": r["type"],
                    "max_concurrent_jobs": r["max_concurrent_jobs"] or 0,
                    "wakeup_secret": "",
                    "created_at": now,
                }
            )
        self._insert("server_tokens", ServerToken, new)
        self.known.tokens = self._ids(ServerToken) | {r["id"] for r in new}

    def _servers(self) -> None:
        # token_id and ip came with the 2022-02-20 migration.
        columns = self.source.pick("servers", *_SERVER_COLUMNS)
        rows = self.source.rows(f"SELECT {columns} FROM servers ORDER BY id")
        names = self._names("server", Server.name)
        cert_keys = set(
            self.session.scalars(select(Server.ssl_key).where(Server.ssl_key.is_not(None)))
        )
        token_ips = set(self.session.execute(select(Server.token_id, Server.ip)).tuples())
        new, now = [], utcnow()
        for r in self._new_rows("servers", Server, rows):
            if r["type"] not in self.known.types:
                self._skip("servers", f"server #{r['id']} {r['name']!r} left out: its type is gone")
                continue
            row = {
                "id": r["id"],
                "name": names.give(r["id"], r["name"]),
                "type_id": r["type"],
                "wakeup_url": (r["wakeup_url"] or "").strip(),
                "wakeup_secret": "",
                "wakeup_fails": r["wakeup_fails"] or 0,
                "max_concurrent_jobs": r["max_concurrent_jobs"] or 0,
                "last_poll_time": to_utc(r["last_poll_time"], self.tz),
                "created_at": now,
                **self._certificate(r, cert_keys),
                **self._registered_by(r, token_ips),
            }
            new.append(row)
        self._insert("servers", Server, new)
        self.known.servers = self._ids(Server) | {r["id"] for r in new}

    def _certificate(self, r: dict[str, Any], taken: set[str]) -> dict[str, Any]:
        serial, dn = (r["ssl_serial"] or "").strip(), (r["ssl_dn"] or "").strip()
        none = {"ssl_serial": None, "ssl_dn": None, "ssl_key": None}
        if not serial or not dn:
            return none  # registered by a token: '' in the PHP queue
        try:
            key = certificates.cert_key(serial, dn)
            cert = {
                "ssl_serial": certificates.normalize_serial(serial),
                "ssl_dn": certificates.normalize_dn(dn),
                "ssl_key": key,
            }
        except ValueError as exc:
            self.report.notes.append(f"server #{r['id']}: certificate not kept ({exc})")
            return none
        if key in taken:
            self.report.notes.append(f"server #{r['id']}: certificate of another server; not kept")
            return none
        taken.add(key)
        return cert

    def _registered_by(self, r: dict[str, Any], taken: set[tuple]) -> dict[str, Any]:
        token_id, ip = r["token_id"] or 0, (r["ip"] or "").strip()
        if token_id <= 0:
            return {"token_id": None, "ip": ip}
        if token_id not in self.known.tokens or (token_id, ip) in taken:
            self.report.notes.append(
                f"server #{r['id']}: its token #{token_id} is gone or registered it twice;"
                " kept as a server of no token"
            )
            return {"token_id": None, "ip": ip}
        taken.add((token_id, ip))
        return {"token_id": token_id, "ip": ip}

    def _remote_users(self) -> None:
        if not self.source.has("remote_users"):
            return  # before 2016-05
        rows = self.source.rows("SELECT id, username, password FROM remote_users ORDER BY id")
        names = self._names("remote user", RemoteUser.username)
        new, now = [], utcnow()
        for r in self._new_rows("remote_users", RemoteUser, rows):
            if not _MD5.match(r["password"] or ""):
                self._skip(
                    "remote_users", f"remote user #{r['id']} left out: its password is not an md5"
                )
                continue
            username = names.give(r["id"], r["username"])
            new.append(
                {
                    "id": r["id"],
                    "username": username,
                    # Kept until the first log-in replaces it (identity/remote_users.py).
                    "password_hash": passwords.legacy_md5_hash(
                        r["password"], r["username"], username
                    ),
                    "created_at": now,
                }
            )
        self._insert("remote_users", RemoteUser, new)
        here = dict(self.session.execute(select(RemoteUser.id, RemoteUser.username)).tuples().all())
        self.known.users = {**here, **{r["id"]: r["username"] for r in new}}


def _public_key(pem: str) -> tuple[str, str] | None:
    pem = pem.strip().replace("\r\n", "\n") + "\n"
    try:
        keys.parse_public_key(pem)
        return pem, keys.fingerprint(pem)
    except (keys.KeyProblem, ValueError):
        return None
