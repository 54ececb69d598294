"""A whole training recipe in one JSON file: which LMM, which SAM, the head, the data, the loop."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from flmm.errors import ConfigError
from flmm.recipes.selector import SelectorFit
from flmm.train import TrainConfig


@dataclass
class RecipeConfig:
    """Attributes:
    lmm: ``{"name": hub id or folder, "dtype": "bfloat16" | "float32", "trust_remote_code": false}``.
    sam: ``{"name": hub id or folder}`` of a ``SamModel`` (``null`` = no refiner).
    head: overrides of :class:`flmm.head.config.HeadConfig` (e.g. ``decoder_width``, ``question``).
    data: dataset entries (see :mod:`flmm.recipes.datasets`).
    cache_dir: where the frozen-LMM feature cache goes (one sub-folder per dataset).
    cache_batch_size: samples per LMM forward while caching.
    train: :class:`flmm.train.TrainConfig` fields.
    selector_fit: :class:`flmm.recipes.selector.SelectorFit` fields for a head with a part selector
        (``{"epochs": 0}``: no selector phase).
    calibration: optional held-out dataset entry (same form as ``data``, plus ``"max_samples"``, default
        200) on which the keyword selector's threshold is chosen after training
        (:func:`flmm.head.calibrate.calibrate_keyword_threshold`); use a validation split, never test.
    """

    lmm: dict[str, Any]
    data: list[dict[str, Any]]
    cache_dir: str
    sam: dict[str, Any] | None = None
    head: dict[str, Any] = field(default_factory=dict)
    cache_batch_size: int = 8
    train: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    selector_fit: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RecipeConfig:
        try:
            d = json.loads(open(path).read())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read recipe {path}: {e}") from e
        unknown = set(d) - {f for f in cls.__dataclass_fields__} - {"comment"}
        if unknown:
            raise ConfigError(f"{path}: unknown recipe keys {sorted(unknown)}")
        d.pop("comment", None)
        for key in ("lmm", "data", "cache_dir"):
            if key not in d:
                raise ConfigError(f"{path}: the recipe needs {key!r}")
        cfg = cls(**d)
        cfg.train_config()  # validates early
        cfg.selector_config()
        return cfg

    def selector_config(self) -> SelectorFit:
        try:
            fit = SelectorFit(**self.selector_fit)
        except TypeError as e:
            raise ConfigError(f"bad selector_fit settings: {e}") from e
        fit.validate()
        return fit

    def train_config(self) -> TrainConfig:
        tc = dict(self.train)
        if "betas" in tc:
            tc["betas"] = tuple(tc["betas"])
        try:
            cfg = TrainConfig(**tc)
        except TypeError as e:
            raise ConfigError(f"bad train settings: {e}") from e
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
