"""`python -m graderserver`, the same as the `graderserver` command."""

from __future__ import annotations

from graderserver.cli import main

raise SystemExit(main())
