"""The read-only registry page: every platform, tag, type (with its servers), server token
and the queue's own key, on one page.

Built from the rows the platforms, types and servers pages already read
(registry_pages, fleet, server_states); only names and public parts are
shown: never a token, a secret or a private key.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from graderqueue.admin.registry_pages import (
    PlatformRow,
    TagRow,
    TypeRow,
    platform_rows,
    tag_rows,
    type_rows,
)
from graderqueue.admin.server_states import ServerView, servers
from graderqueue.config import Settings
from graderqueue.protocol.keys import QueueKeys, fingerprint
from graderqueue.registry.fleet import TokenRow, token_rows


@dataclass(frozen=True)
class QueueKeyView:
    name: str  # the ``kid`` platforms encrypt to
    public_pem: str
    fingerprint: str
    others: list[str]  # older keys still accepted for tokens naming them


@dataclass(frozen=True)
class Registry:
    platforms: list[PlatformRow]
    tags: list[TagRow]
    types: list[TypeRow]
    servers_by_type: dict[str, list[ServerView]]
    tokens: list[TokenRow]
    key: QueueKeyView


def queue_key(keys: QueueKeys) -> QueueKeyView:
    """The queue's active public key and its name; the private part never leaves ``keys``."""
    active = keys.active
    return QueueKeyView(
        name=active.name,
        public_pem=active.public_pem,
        fingerprint=fingerprint(active.public_pem),
        others=[name for name in keys.names() if name != active.name],
    )


def registry(session: Session, settings: Settings, keys: QueueKeys) -> Registry:
    by_type: dict[str, list[ServerView]] = {}
    for view in servers(session, settings):
        by_type.setdefault(view.type_name, []).append(view)
    return Registry(
        platforms=platform_rows(session),
        tags=tag_rows(session),
        types=type_rows(session),
        servers_by_type=by_type,
        tokens=token_rows(session),
        key=queue_key(keys),
    )
