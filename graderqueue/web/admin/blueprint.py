"""The admin blueprint object, shared by the view modules that add routes to it."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

STATIC = Path(__file__).resolve().parent.parent / "static" / "admin"

bp = Blueprint("admin", __name__, static_folder=str(STATIC), static_url_path="/static")
