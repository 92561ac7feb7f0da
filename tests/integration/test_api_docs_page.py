"""GET /api/v1/docs: the API's page, readable without credentials, loading nothing from
elsewhere, under a Content-Security-Policy with no inline script or style and no eval.
(What it shows, and "Try it", are checked in a real browser: tests/browser/.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

DOCS = "/api/v1/docs"
URL = re.compile(r"https?://[^\s\"'<>)]*", re.IGNORECASE)


class Assets(HTMLParser):
    """The page's scripts, stylesheets and anything inline that the CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "style" in found or any(name.startswith("on") for name in found):
            self.inline.append(f"<{tag}> with {sorted(found)}")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            if found.get("src"):
                self.scripts.append(found["src"] or "")
            else:
                self.inline.append("<script> without src")
        if tag == "link" and found.get("rel") == "stylesheet":
            self.styles.append(found.get("href") or "")


def directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.fixture
def client(sqlite_queue):  # type: ignore[no-untyped-def]
    # The page reads no database: one backend is enough.
    return sqlite_queue.app.test_client()


def page_and_assets(client) -> tuple[str, Assets]:  # type: ignore[no-untyped-def]
    answer = client.get(DOCS)
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assets = Assets()
    assets.feed(html)
    return html, assets


def test_the_page_answers_without_credentials(client):
    for headers in ({}, {"Authorization": "Bearer gqa_not-a-token"}):
        answer = client.get(DOCS, headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.mimetype == "text/html"
        html = answer.get_data(as_text=True)
        assert 'data-spec="/api/v1/openapi.json"' in html
        assert 'id="token"' in html


def test_the_policy_allows_only_this_origin_and_no_inline_code(client):
    answer = client.get(DOCS)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    policy = directives(answer.headers["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"], "Try it may call this queue only"
    assert policy["default-src"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["img-src"] == ["'self'", "data:"]  # nothing runs from a data: image
    for name, sources in policy.items():
        loose = {"'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:"} & set(sources)
        assert not loose, f"{name}: {loose}"

    _, assets = page_and_assets(client)
    assert assets.inline == []
    assert len(assets.scripts) == 1 and len(assets.styles) == 1


def test_its_script_and_stylesheet_are_served_with_the_same_headers(client):
    _, assets = page_and_assets(client)
    served = {}
    for path, mimetype in ((assets.scripts[0], "text/javascript"), (assets.styles[0], "text/css")):
        assert path.startswith(DOCS + "/"), path
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.mimetype == mimetype
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
        served[mimetype] = answer.get_data(as_text=True)
    script = served["text/javascript"]
    assert "openapi" in script.lower() and "sessionStorage" in script
    # What the policy forbids must not be needed: no eval, no markup from strings.
    forbidden = ("eval(", "new Function", ".innerHTML", ".outerHTML", "AdjacentHTML", ".write(")
    assert [word for word in forbidden if word in script] == []


@pytest.mark.parametrize(
    "name", ["admin.js", "admin/admin.js", "..%2fapi-docs.js", "api_docs.html", "nothing.css"]
)
def test_nothing_else_is_served_from_there(client, name):
    answer = client.get(f"{DOCS}/{name}")
    assert answer.status_code == 404
    assert answer.mimetype == "application/problem+json"


def test_no_address_of_another_host_is_written_anywhere(client):
    html, assets = page_and_assets(client)
    texts = {DOCS: html}
    for path in assets.scripts + assets.styles:
        texts[path] = client.get(path).get_data(as_text=True)
    found = {path: URL.findall(text) for path, text in texts.items()}
    assert found == {path: [] for path in texts}
    # And what it loads, it loads by path from this same origin.
    assert all(p.startswith("/") and not p.startswith("//") for p in assets.scripts + assets.styles)


def test_the_page_is_not_part_of_the_api_document(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert not any(path.startswith("/docs") for path in doc["paths"])
