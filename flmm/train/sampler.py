"""Deterministic, resumable, sharded batch order.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)`` only, so it is the same whether a
run was interrupted or not and whatever process computes it. Global batch ``k`` of an epoch is
``perm[k*G : (k+1)*G]`` with ``G = batch_size * num_processes``; process ``r`` takes the ``r``-th
slice of ``batch_size`` of it. The tail that does not fill a global batch is dropped (a different
tail every epoch), so every process sees the same number of batches and DDP never waits forever.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from flmm.errors import ConfigError


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """``(num_samples,)`` int64 permutation of the dataset indices for one epoch."""
    g = torch.Generator()
    # Large odd multiplier keeps (seed, epoch) pairs from colliding for small values.
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
    return torch.randperm(num_samples, generator=g)


class ShardedBatchSampler(Sampler[list[int]]):
    """Yields this process's batches of one epoch, optionally starting at batch ``start_batch``.

    Args:
        num_samples: dataset length.
        batch_size: samples per batch per process.
        seed: data-order seed.
        rank, world_size: this process and the number of processes.
        shuffle: permute (True) or keep the dataset order (False, e.g. for evaluation).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is not in [0, world_size={world_size})")
        if num_samples < batch_size * world_size:
            raise ConfigError(
                f"the dataset has {num_samples} samples, fewer than one global batch "
                f"({batch_size} x {world_size} processes): lower batch_size or add data"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch and the first batch to yield (to continue a resumed epoch)."""
        if not 0 <= start_batch <= len(self):
            raise ConfigError(f"start_batch {start_batch} is outside the epoch's {len(self)} batches")
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        """Batches per epoch for this process (the full epoch, ignoring ``start_batch``)."""
        return self.num_samples // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = epoch_permutation(self.num_samples, self.seed, self.epoch).tolist()
        else:
            order = list(range(self.num_samples))
        global_batch = self.batch_size * self.world_size
        for k in range(self.start_batch, len(self)):
            start = k * global_batch + self.rank * self.batch_size
            yield order[start : start + self.batch_size]
