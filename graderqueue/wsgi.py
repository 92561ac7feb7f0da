"""WSGI entry point: ``gunicorn graderqueue.wsgi:app`` (settings from the environment)."""

from __future__ import annotations

from graderqueue.web import create_app

app = create_app()
