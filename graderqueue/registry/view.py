"""What the hot paths need to know of the registry, read once and kept briefly.

Platforms with their parsed keys, tags and the server types that handle them
change rarely (with the CLI or the interface) but are needed by every
request. This process-wide view keeps them for ``registry_cache_sec``
seconds. A change is seen at once where it matters for availability: an
unknown tag, a token that fails to verify or a disabled platform makes it
look again before refusing. A removed key or tag, or a platform disabled,
stops working within the time-to-live.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from graderqueue.cache import TTLCache
from graderqueue.protocol.keys import parse_public_key
from graderqueue.store.db import Database
from graderqueue.store.models import Platform, PlatformKey, ServerType, Tag, TypeTag


@dataclass(frozen=True)
class PlatformInfo:
    id: int
    name: str
    restrict_paths: str
    force_tag_id: int | None
    require_fresh: bool
    keys: tuple[jwk.JWK, ...]
    # `platform disable`: its requests and bearer tokens are refused (identity/).
    disabled: bool = False
    # `platform update --lenient-integers` (protocol/numbers.php_intval).
    lenient_integers: bool = False
    # Where callback URLs may point (delivery/callbacks.py).
    return_url: str = ""
    callback_hosts: str = ""


class RegistryView:
    """Platforms, tags and server types as the hot paths read them (one per process)."""

    def __init__(self, db: Database | None, ttl: float, session: Session | None = None) -> None:
        self.db = db  # type: ignore[assignment]
        self._session = session
        self._cache = TTLCache(ttl=ttl)

    @classmethod
    def within(cls, session: Session) -> RegistryView:
        """An uncached view reading through an open session (inside a transaction)."""
        return cls(None, 0, session)

    def _reading(self) -> contextlib.AbstractContextManager[Session]:
        if self._session is not None:
            return contextlib.nullcontext(self._session)
        return self.db.reading()

    def _fresh(self, key: object, load):  # type: ignore[no-untyped-def]
        if self._cache.ttl <= 0:
            return load()
        return self._cache.get(key, load)

    def forget(self, key: object) -> None:
        self._cache.drop(key)

    # -- platforms -----------------------------------------------------------

    def platform(self, name: str, *, reload: bool = False) -> PlatformInfo | None:
        key = ("platform", name)
        if reload:
            self.forget(key)
        return self._fresh(key, lambda: self._load_platform(name))

    def _load_platform(self, name: str) -> PlatformInfo | None:
        with self._reading() as session:
            platform = session.scalars(select(Platform).where(Platform.name == name)).first()
            if platform is None:
                return None
            pems = session.scalars(
                select(PlatformKey.public_key)
                .where(PlatformKey.platform_id == platform.id, PlatformKey.active.is_(True))
                .order_by(PlatformKey.id.desc())
            ).all()
            return PlatformInfo(
                id=platform.id,
                name=platform.name,
                restrict_paths=platform.restrict_paths or "",
                force_tag_id=platform.force_tag_id,
                require_fresh=bool(platform.require_fresh),
                keys=tuple(parse_public_key(pem) for pem in pems),
                disabled=bool(platform.disabled),
                lenient_integers=bool(platform.lenient_integers),
                return_url=platform.return_url or "",
                callback_hosts=platform.callback_hosts or "",
            )

    # -- names by id (metrics labels) ------------------------------------------

    def type_name(self, type_id: int) -> str:
        return self._name("type_names", ServerType, type_id)

    def platform_name(self, platform_id: int | None) -> str:
        """The platform's name; "" for a job sent without one."""
        return "" if platform_id is None else self._name("platform_names", Platform, platform_id)

    def _name(self, key: str, model: Any, row_id: int) -> str:
        def load() -> dict[int, str]:
            with self._reading() as session:
                return dict(session.execute(select(model.id, model.name)).all())

        names = self._fresh(key, load)
        if row_id not in names:  # made since the cache was filled
            self.forget(key)
            names = self._fresh(key, load)
        return names.get(row_id, "")

    # -- tags and server types -------------------------------------------------

    def tags(self, *, reload: bool = False) -> dict[str, int]:
        """Tag name to id."""
        if reload:
            self.forget("tags")
        return self._fresh("tags", self._load_tags)

    def tag_names(self) -> dict[int, str]:
        return {tag_id: name for name, tag_id in self.tags().items()}

    def _load_tags(self) -> dict[str, int]:
        with self._reading() as session:
            return {name: tag_id for tag_id, name in session.execute(select(Tag.id, Tag.name))}

    def types_handling(self, tag_ids: Sequence[int]) -> list[int]:
        """Server types that handle every one of these tags (all types if none)."""
        key = ("types", tuple(sorted(set(tag_ids))))
        return self._fresh(key, lambda: self._load_types(key[1]))

    def _load_types(self, tag_ids: tuple[int, ...]) -> list[int]:
        with self._reading() as session:
            if not tag_ids:
                return list(session.scalars(select(ServerType.id).order_by(ServerType.id)))
            return list(
                session.scalars(
                    select(TypeTag.type_id)
                    .where(TypeTag.tag_id.in_(tag_ids))
                    .group_by(TypeTag.type_id)
                    .having(func.count(TypeTag.tag_id) == len(tag_ids))
                    .order_by(TypeTag.type_id)
                )
            )
