"""Hyper-parameters of the training loop, saved as JSON in every run folder.

The defaults are the paper's recipe (F-LMM, Sec. 4.1): AdamW lr 1e-4, weight decay 0.01, betas
(0.9, 0.999), linear warm-up over 3 % of the steps then cosine decay, gradient clipping 1.0, bf16
(``"auto"``: bf16 where the hardware computes it natively, fp32 elsewhere).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from flmm.errors import ConfigError
from flmm.train.precision import PRECISIONS

CONFIG_NAME = "train_config.json"


@dataclass
class TrainConfig:
    """Everything the :class:`~flmm.train.loop.Trainer` needs besides the model and the data.

    Attributes:
        output_dir: run folder (``train_config.json``, ``log.jsonl``, ``checkpoints/``).
        seed: seeds the data order (a permutation per ``(seed, epoch)``) and the per-process RNGs.
        epochs: passes over the data; ignored when ``max_steps`` > 0.
        max_steps: optimizer steps to run (0: ``epochs`` full passes).
        batch_size: samples per micro-batch *per process*.
        grad_accum_steps: micro-batches per optimizer step; the global batch is
            ``batch_size * grad_accum_steps * num_processes``.
        lr, weight_decay, betas, eps: AdamW.
        warmup_ratio: fraction of the steps with a linear warm-up from 0.
        schedule: ``"cosine"`` (to ``min_lr_ratio * lr``), ``"linear"`` or ``"constant"`` after warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        max_grad_norm: gradient clipping by global L2 norm (0 disables it).
        mixed_precision: ``"auto"`` (bf16 where the hardware computes it natively, else fp32; see
            :mod:`flmm.train.precision`), ``"no"``, ``"bf16"`` or ``"fp16"`` (autocast; weights stay fp32).
        save_every_steps: checkpoint period in optimizer steps (0: only at the end / on interrupt).
        keep_last: complete checkpoints kept on disk (older ones are deleted).
        log_every_steps: period of loss logging (JSONL, TensorBoard when installed).
        eval_every_steps: period of ``eval_fn`` calls (0: only at the end).
        max_minutes: wall-clock budget; when exceeded the run checkpoints and stops like an interrupt
            (0: no budget).
        num_workers: DataLoader workers (datasets must then be deterministic per index for an exact
            resume).
        find_unused_parameters: forwarded to DDP, for models whose trainable parameters are not all
            used by every forward.
        progress_bar: show tqdm on the main process.
    """

    output_dir: str = "runs/default"
    seed: int = 0
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 8
    grad_accum_steps: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_ratio: float = 0.03
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    save_every_steps: int = 500
    keep_last: int = 2
    log_every_steps: int = 10
    eval_every_steps: int = 0
    max_minutes: float = 0.0
    num_workers: int = 0
    find_unused_parameters: bool = False
    progress_bar: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes saved with the run

    def __post_init__(self) -> None:
        b0, b1 = self.betas  # JSON gives a list back
        self.betas = (float(b0), float(b1))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` on values the loop cannot run with."""
        checks = [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum_steps >= 1, "grad_accum_steps must be >= 1"),
            (self.epochs >= 1 or self.max_steps >= 1, "set epochs >= 1 or max_steps >= 1"),
            (self.max_steps >= 0, "max_steps must be >= 0 (0 means: run `epochs` passes)"),
            (self.lr > 0, "lr must be > 0"),
            (0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)"),
            (self.schedule in ("cosine", "linear", "constant"), "schedule: cosine | linear | constant"),
            (0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio must be in [0, 1]"),
            (self.mixed_precision in PRECISIONS, f"mixed_precision: {' | '.join(PRECISIONS)}"),
            (self.max_grad_norm >= 0, "max_grad_norm must be >= 0 (0 disables clipping)"),
            (self.keep_last >= 1, "keep_last must be >= 1"),
            (len(self.betas) == 2, "betas must be two floats"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"TrainConfig: {message}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**d)

    def save(self, folder: str) -> str:
        """Write ``folder/train_config.json`` atomically and return its path."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, CONFIG_NAME)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        """Read a ``train_config.json`` file (or the one inside a run folder)."""
        if os.path.isdir(path):
            path = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(path):
            raise ConfigError(f"no training config at {path!r}")
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def differences(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ: ``{name: (self_value, other_value)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}
