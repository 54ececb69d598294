"""One training loop for every flmm stage: :class:`Trainer` + :class:`TrainConfig`.

A model's ``forward(batch)`` returns ``{"loss": tensor, ...scalars}``; only parameters with
``requires_grad`` are optimised and checkpointed. Runs as a plain process or under
``accelerate launch`` (DDP, DeepSpeed, FSDP); checkpoints are atomic and ``train(resume=True)``
continues a run exactly.
"""

from flmm.train.checkpoint import TrainerState, latest_checkpoint, list_checkpoints
from flmm.train.config import TrainConfig
from flmm.train.logger import read_log
from flmm.train.loop import Trainer, TrainResult
from flmm.train.sampler import ShardedBatchSampler, epoch_permutation
from flmm.train.schedule import build_scheduler, warmup_decay_factor
from flmm.train.seeding import seed_everything

__all__ = [
    "ShardedBatchSampler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainerState",
    "build_scheduler",
    "epoch_permutation",
    "latest_checkpoint",
    "list_checkpoints",
    "read_log",
    "seed_everything",
    "warmup_decay_factor",
]
