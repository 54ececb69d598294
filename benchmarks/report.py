"""Printing a benchmark's flat result: one JSON object, or one ``name: value`` line per entry."""

from __future__ import annotations

import json
from typing import Any


def print_flat(result: dict[str, Any], as_json: bool) -> None:
    """Print ``result`` as indented JSON (``as_json``) or as right-aligned ``name: value`` lines."""
    if as_json:
        print(json.dumps(result, indent=2))
        return
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:>{width}}: {v}")
