"""The registry at a glance (read-only): platforms, tags, types and servers, tokens, key."""

from __future__ import annotations

from flask import render_template

from graderqueue.admin.registry_overview import registry
from graderqueue.web.admin.blueprint import bp
from graderqueue.web.answers import runtime


@bp.get("/registry", endpoint="registry")
def registry_page() -> str:
    rt = runtime()
    with rt.db.reading() as session:
        reg = registry(session, rt.settings, rt.keys)
    return render_template("admin/registry.html", reg=reg)
