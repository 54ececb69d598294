"""Names of the weights shipped inside the package: ``flmm:shapes/lmm`` -> its folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from flmm.errors import FlmmError

PREFIX = "flmm:"


def resolve(name: str) -> str:
    """``"flmm:<path>"`` -> the folder ``flmm/assets/<path>`` inside the installed package; other names
    (hub ids, local folders) are returned unchanged."""
    if not str(name).startswith(PREFIX):
        return str(name)
    path = Path(str(resources.files("flmm"))) / "assets" / str(name)[len(PREFIX) :]
    if not path.is_dir():
        raise FlmmError(
            f"{name} is not shipped in this installation ({path} is missing); "
            "train it with `python -m flmm.shapes.train_all` or reinstall flmm"
        )
    return str(path)
