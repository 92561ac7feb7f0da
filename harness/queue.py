"""A ready-to-use queue for tests: instance folder, schema, keys, registry helpers.

``QueueSetup`` builds a real queue (SQLite file or a MariaDB test database),
registers tags, types, platforms and servers through the same functions the
CLI uses, and hands out platform clients that speak to it either in-process
(Flask test client) or over real HTTP (a gunicorn it starts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import inspect, select, text

from graderqueue.client import PlatformClient
from graderqueue.config import Settings, load_settings
from graderqueue.protocol import keys
from graderqueue.registry import actions as registry
from graderqueue.store.db import Database
from graderqueue.store.models import Base
from harness import schema_copy
from harness.processes import Gunicorn, documented_gunicorn


@dataclass
class PlatformIdentity:
    name: str
    private_pem: str
    public_pem: str
    id: int


class FlaskHTTP:
    """The slice of ``requests.Session`` the platform client uses, over a Flask test client."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def post(self, url: str, data=None, files=None, timeout=None):  # type: ignore[no-untyped-def]
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1]
        payload = dict(data or {})
        for name, value in (files or {}).items():
            filename, content = value[0], value[1]
            if isinstance(content, str):
                content = content.encode()
            import io

            payload[name] = (io.BytesIO(content), filename)
        response = self.client.post(path, data=payload)
        return _Response(response.status_code, response.get_data(as_text=True))


@dataclass
class _Response:
    status_code: int
    text: str

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.text[:200]}")

    def json(self) -> Any:
        return json.loads(self.text)


class QueueSetup:
    def __init__(self, instance: Path, database_url: str = "", **overrides: Any) -> None:
        self.instance = instance
        # Tests change the registry and use it at once: no cache unless asked.
        self.overrides = {
            "instance_path": str(instance),
            "database_url": database_url,
            "registry_cache_sec": 0,
            **overrides,
        }
        self.settings: Settings = load_settings(self.overrides, environ={})
        self.db = Database(self.settings)
        # The head schema and keys made once per process (harness/schema_copy.py).
        schema_copy.give_schema(self.db)
        self._keys_given = 0
        schema_copy.install_key(
            self.settings.resolved_key_dir, self.settings.key_name, self._next_key_pair()
        )
        self._app: Flask | None = None
        self._gunicorns: list[Gunicorn] = []

    # -- configuration as the environment of a subprocess -------------------

    @property
    def env(self) -> dict[str, str]:
        env = {"GRADERQUEUE_CONFIG": None}
        for key, value in self.overrides.items():
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            env[f"GRADERQUEUE_{key.upper()}"] = str(value)
        return env  # type: ignore[return-value]

    # -- registry ------------------------------------------------------------

    def tag(self, *names: str) -> None:
        with self.db.transaction() as session:
            for name in names:
                registry.add_tag(session, name)

    def server_type(self, name: str, tags: list[str]) -> int:
        with self.db.transaction() as session:
            return registry.add_type(session, name, tags).id

    def _next_key_pair(self) -> tuple[bytes, bytes]:
        """A key pair no other key of this queue has."""
        self._keys_given += 1
        return schema_copy.key_pair(self._keys_given - 1)

    def platform(self, name: str = "platform1", **options: Any) -> PlatformIdentity:
        private, public = self._next_key_pair()
        with self.db.transaction() as session:
            row = registry.add_platform(session, name, public.decode(), **options)
            return PlatformIdentity(name, private.decode(), public.decode(), row.id)

    def server_token(self, type_name: str, name: str | None = None, **options: Any) -> str:
        with self.db.transaction() as session:
            count = len(session.execute(text("SELECT id FROM server_tokens")).all())
            return registry.add_server_token(
                session, name or f"token{count + 1}", type_name, **options
            ).token

    def cert_server(self, name: str, type_name: str, serial: str, dn: str, **options: Any) -> int:
        with self.db.transaction() as session:
            return registry.add_server(
                session, name, type_name, ssl_serial=serial, ssl_dn=dn, **options
            ).id

    # -- ways in -------------------------------------------------------------

    @property
    def app(self) -> Flask:
        if self._app is None:
            from graderqueue.web import create_app

            self._app = create_app(self.settings)
        return self._app

    def client_for(self, platform: PlatformIdentity, url: str | None = None, **kw: Any):
        queue_key = keys.QueueKeys(self.settings.resolved_key_dir, self.settings.key_name).active
        http = None if url else FlaskHTTP(self.app)
        return PlatformClient(
            url or "http://queue.test",
            platform.name,
            platform.private_pem,
            queue_key.public_pem,
            self.settings.key_name,
            session=http,
            **kw,
        )

    def post(self, path: str, **form: Any) -> dict[str, Any]:
        """A form POST through the Flask test client; returns the JSON answer."""
        response = self.app.test_client().post(path, data=form)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def gunicorn(self, workers: int = 2, threads: int = 16, **env: str) -> Gunicorn:
        server = documented_gunicorn(
            "graderqueue.wsgi:app", {**self.env, **env}, workers=workers, threads=threads
        )
        server.start()
        self._gunicorns.append(server)
        return server

    # -- looking at the database --------------------------------------------

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table: to assert that a refused request changed nothing."""
        tables = inspect(self.db.engine).get_table_names()
        out: dict[str, list[tuple]] = {}
        with self.db.engine.connect() as conn:
            for table in sorted(tables):
                if table in ("alembic_version", "listeners"):
                    continue  # listeners come and go with worker processes
                rows = conn.execute(text(f"SELECT * FROM {table}")).all()
                out[table] = sorted((tuple(r) for r in rows), key=repr)
        return out

    def scalar(self, query: Any) -> Any:
        with self.db.reading() as session:
            return session.scalar(query)

    def rows(self, query: Any) -> list[Any]:
        with self.db.reading() as session:
            return list(session.execute(query).all())

    def close(self) -> None:
        for server in self._gunicorns:
            server.stop()
        if self._app is not None:
            delivery = self._app.extensions.get("graderqueue.delivery")
            if delivery is not None:  # its thread must not outlive the database
                delivery.stop(timeout=5)
            self._app.extensions["graderqueue"].hints.close()
            self._app.extensions["graderqueue"].db.dispose()
        self.db.dispose()


def select_all(model: type[Base]) -> Any:
    return select(model)


def environ_without_config() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")}
