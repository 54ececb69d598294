"""Datasets named in a recipe config: ``{"type": ..., ...kwargs}`` -> a grounding dataset.

Types: ``refcoco`` (kwargs of :func:`flmm.data.load_refcoco`: ``root``, ``dataset``, ``split``, ``mode``),
``png`` (``root``, ``split``), ``shapes-ref``, ``shapes-narrative``, ``shapes-res`` (``split``, ``n``).
"""

from __future__ import annotations

from typing import Any

from flmm.errors import ConfigError


def build_dataset(spec: dict[str, Any], question: str | None = None):
    """The dataset a config entry names; ``question`` (the head's training question) is passed on."""
    from flmm.data import load_png, load_refcoco
    from flmm.data.shapes import ShapesNarratives, ShapesRefNarratives, ShapesRES

    kw = {k: v for k, v in spec.items() if k not in ("type", "name")}
    if question is not None:
        kw.setdefault("question", question)
    kind = spec.get("type")
    if kind == "refcoco":
        return load_refcoco(kw.pop("root"), **kw)
    if kind == "png":
        return load_png(kw.pop("root"), **kw)
    if kind == "shapes-ref":
        return ShapesRefNarratives(kw.pop("split", "train"), kw.pop("n"), **kw)
    if kind == "shapes-narrative":
        return ShapesNarratives(kw.pop("split", "train"), kw.pop("n"), **kw)
    if kind == "shapes-res":
        return ShapesRES(kw.pop("split", "train"), kw.pop("n"), **kw)
    raise ConfigError(
        f"unknown dataset type {kind!r}; use refcoco, png, shapes-ref, shapes-narrative or shapes-res"
    )


def dataset_name(spec: dict[str, Any]) -> str:
    """A folder-safe name for the dataset's cache."""
    if spec.get("name"):
        return str(spec["name"])
    parts = [
        str(spec.get("type")),
        str(spec.get("dataset", "")),
        str(spec.get("split", "")),
        str(spec.get("n", "")),
    ]
    return "-".join(p for p in parts if p).replace("+", "plus").replace("/", "_")
