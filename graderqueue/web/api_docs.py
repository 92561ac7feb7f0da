"""``/api/v1/docs``: a page to read and try the JSON API, drawn from its OpenAPI document.

Not part of the API itself (it is not in openapi.json): an HTML page and its
two static files, readable without credentials, like the document they show.
Everything comes from this package: the page's script reads
``/api/v1/openapi.json`` from the same origin, and its Content-Security-Policy
lets it load or call nothing else (no CDN, no inline script or style, no eval).
The bearer token a visitor types stays in the browser (sessionStorage) and is
sent only on the requests "Try it" makes.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, render_template, send_from_directory, url_for

STATIC = Path(__file__).resolve().parent / "static"
# The only files served here; anything else under static/ belongs to its own page.
ASSETS = frozenset({"api-docs.js", "api-docs.css"})

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

bp = Blueprint("api_docs", __name__, url_prefix="/api/v1/docs")


@bp.get("")
def page() -> Response:
    """The page: an empty frame its script fills from the OpenAPI document."""
    html = render_template(
        "api_docs.html",
        spec_url=url_for("api_v1.openapi_json"),
        script_url=url_for("api_docs.asset", name="api-docs.js"),
        style_url=url_for("api_docs.asset", name="api-docs.css"),
    )
    response = Response(html, mimetype="text/html")
    # Small, and must follow the API it describes as soon as the queue is upgraded.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/<name>")
def asset(name: str) -> Response:
    """The page's script and stylesheet (revalidated by ETag, never another file)."""
    if name not in ASSETS:
        abort(404)
    return send_from_directory(STATIC, name, max_age=0)


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
