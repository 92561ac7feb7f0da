"""The admin web interface: a blueprint mounted at ``/admin``.

Server-side rendered pages over the plain functions of
:mod:`graderqueue.admin` (every database query lives there: views only
read the request, call them and render); templates in
``web/templates/admin/``, the stylesheet and one small script in
``web/static/admin/`` (nothing is loaded from elsewhere).
"""

from __future__ import annotations

from flask import Flask

from graderqueue.runtime import Runtime
from graderqueue.web.admin import security, templating
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.admin.cache import AdminState

URL_PREFIX = "/admin"


def init_admin(app: Flask, rt: Runtime) -> None:
    """Mount the interface on ``app`` (called by ``create_app`` when admin_enabled)."""
    security.configure(app, rt.settings)
    # Importing the view modules adds their routes to the blueprint.
    from graderqueue.web.admin import (  # noqa: F401
        views_accounts,
        views_auth,
        views_deliveries,
        views_fleet,
        views_jobs,
        views_pages,
        views_platforms,
        views_registry,
        views_send,
        views_types,
    )

    templating.install(app)
    app.extensions[AdminState.KEY] = AdminState()
    app.register_blueprint(bp, url_prefix=URL_PREFIX)
