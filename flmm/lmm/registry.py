"""The table of LMM families. Adding a family = one adapter file + one import line in
``flmm/lmm/families/__init__.py``."""

from __future__ import annotations

from typing import Any

from flmm.errors import UnsupportedModelError
from flmm.lmm.adapter import LMMAdapter

_FAMILIES: dict[str, type[LMMAdapter]] = {}


def register_family(cls: type[LMMAdapter]) -> type[LMMAdapter]:
    """Class decorator: register an adapter under ``cls.family`` for each of ``cls.model_types``."""
    if not cls.family or not cls.model_types:
        raise TypeError(f"{cls.__name__} must set `family` and `model_types`")
    _FAMILIES[cls.family] = cls
    return cls


def families() -> dict[str, type[LMMAdapter]]:
    """Registered families by name (imports the built-in ones)."""
    import flmm.lmm.families  # noqa: F401  (registers the built-in families)

    return dict(_FAMILIES)


def adapter_class_for(model: Any, family: str | None = None) -> type[LMMAdapter]:
    """The adapter for a loaded transformers model (by ``config.model_type``), or the named family."""
    table = families()
    if family is not None:
        if family not in table:
            raise UnsupportedModelError(f"unknown family {family!r}; registered: {sorted(table)}")
        return table[family]
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for cls in table.values():
        if model_type in cls.model_types:
            return cls
    supported = ", ".join(f"{n} ({'/'.join(c.model_types)})" for n, c in sorted(table.items()))
    raise UnsupportedModelError(
        f"{type(model).__name__} (model_type={model_type!r}) is not a supported LMM family. "
        f"Supported: {supported}. Adding one is a new adapter file in flmm/lmm/families/."
    )
