"""graderserver configuration files, as tests and benchmarks write them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["toml_text"]


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """``{section: {key: value}}`` as TOML text.

    Values are written as JSON: JSON strings, numbers, booleans and lists of
    them are valid TOML too, so no TOML writer is needed (tomllib only reads).
    """
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        for name, values in sections.items()
    )
