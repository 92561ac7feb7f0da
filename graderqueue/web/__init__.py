"""The queue's web application (Flask application factory)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from graderqueue import logs
from graderqueue.config import Settings, load_settings
from graderqueue.errors import NotInitialized
from graderqueue.runtime import Runtime
from graderqueue.store import migrate
from graderqueue.web.answers import register_error_handlers
from graderqueue.web.request_size import ChunkedBodyLimit


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the app. ``settings`` default to :func:`load_settings` (file + environment)."""
    settings = settings or load_settings(overrides or None)
    # Time, level, pid and request id on every line, also inside gunicorn workers.
    logs.setup(log_format=settings.log_format)
    rt = Runtime.create(settings)
    if not migrate.is_up_to_date(rt.db):
        raise NotInitialized()

    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config.update(
        # Bounds every request body; tokens have their own, smaller bound.
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
    )
    # MAX_CONTENT_LENGTH only refuses a body that declares its length.
    app.wsgi_app = ChunkedBodyLimit(  # type: ignore[method-assign]
        app.wsgi_app, settings.max_request_bytes, lambda env: _upload_limit(env, settings)
    )
    # Outermost: every answer, refusals of the layers inside too, carries its id.
    app.wsgi_app = logs.RequestIds(app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["graderqueue"] = rt
    register_error_handlers(app)

    from graderqueue.web import api_docs, api_v1, metrics_api, platform_api, server_api

    app.register_blueprint(platform_api.bp)
    app.register_blueprint(server_api.bp)
    app.register_blueprint(api_v1.bp)
    app.register_blueprint(api_docs.bp)  # a page about the API, not part of it
    app.register_blueprint(metrics_api.bp)  # /metrics and /readyz, beside /healthz below
    _register_optional_blueprints(app, rt)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    return app


def _upload_limit(environ: dict[str, Any], settings: Settings) -> int | None:
    """A lab file upload's body limit (file_max_bytes); None for any other request."""
    if environ.get("REQUEST_METHOD") == "PUT" and environ.get("PATH_INFO", "").startswith(
        "/api/v1/labs/"
    ):
        return settings.file_max_bytes
    return None


def _register_optional_blueprints(app: Flask, rt: Runtime) -> None:
    """The admin interface (when enabled) and the in-process delivery worker.

    Imported plainly: a broken import must stop the app at start, not
    silently turn off result delivery or the admin pages.
    """
    from graderqueue.delivery.in_app import start_in_app
    from graderqueue.web.admin import init_admin

    if rt.settings.admin_enabled:
        init_admin(app, rt)
    start_in_app(app, rt)
