"""Command-line flags shared by the shapes-world pre-training stages (LMM and SAM) and the
:class:`~flmm.train.TrainConfig` they map to, so both stages expose the same loop options."""

from __future__ import annotations

import argparse

from flmm.train import TrainConfig


def add_loop_args(
    p: argparse.ArgumentParser,
    *,
    steps: int,
    batch_size: int,
    precision: str,
    eval_every: int = 0,
    lr: float = 1e-3,
    batch_help: str | None = None,
) -> None:
    """Add ``--out --steps --batch-size --lr --warmup --minutes --eval-every --precision --threads --seed
    --resume`` with the stage's own defaults (the settings of its shipped run)."""
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--batch-size", type=int, default=batch_size, help=batch_help)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=float, default=0.03, help="warm-up fraction of the steps")
    p.add_argument(
        "--minutes", type=float, default=0.0, help="wall-clock budget: checkpoint and stop when hit"
    )
    p.add_argument("--eval-every", type=int, default=eval_every, help="held-out check every N steps (0: off)")
    p.add_argument("--precision", default=precision, choices=("no", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")


def loop_config(a: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed :func:`add_loop_args` flags (checkpoint every 250 steps, log
    every 25)."""
    return TrainConfig(
        output_dir=a.out,
        seed=a.seed,
        max_steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        warmup_ratio=a.warmup,
        mixed_precision=a.precision,
        save_every_steps=250,
        eval_every_steps=a.eval_every,
        log_every_steps=25,
        max_minutes=a.minutes,
    )
