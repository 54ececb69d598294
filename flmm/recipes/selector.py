"""The part selector's own phase: fitted on the trained U-Net's parts after the head's training.

Why (measured on the shapes world, session 20): inside the head's training the selector sees each object
about three times, on the parts of a U-Net that is still changing, and ends close to its base rate (BCE
0.50 against 0.60). On the parts of the *trained* U-Net of the same cache, the same module trained for
twelve passes over the objects picks the referred part far more often; refined RES cIoU on 30 `val`
scenes: location 30.3 -> 47.6, relation 40.9 -> 51.2, attribute 60.2 -> 64.0 (docs/training-log.md).

The phase is cheap because nothing but the selector runs in it: the U-Net's parts and their targets
are computed once (:func:`collect_part_samples`, no refiner) and the selector (about 60 k parameters)
is trained on them by the same :class:`flmm.train.Trainer` as every other stage.
Each process of a multi-process launch computes its share of the objects and reads the others' from
``output_dir`` (``parts-r{rank}.pt``, loaded with ``weights_only=True``). Those records hold the parts'
features and targets and where the object is in the cache; the phrase's hidden states are read from
the cache when a step needs them, so a 7B LMM's hidden states are never copied.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset
from tqdm.auto import tqdm

from flmm.errors import ConfigError
from flmm.features.cache import FeatureCache
from flmm.head.losses import canvas_targets, object_masks
from flmm.head.model import FLMMHead
from flmm.head.selector import PartSelector, part_targets
from flmm.train import TrainConfig, Trainer, TrainResult
from flmm.train.accel import process_state


@dataclass
class SelectorFit:
    """Attributes:
    epochs: passes over the objects whose U-Net mask has two or more parts (0: no fitting phase).
    lr: peak learning rate (warm-up + cosine, as every stage).
    batch_size: objects per optimizer step, over all processes.
    """

    epochs: int = 12
    lr: float = 3e-3
    batch_size: int = 32

    def validate(self) -> None:
        if self.epochs < 0 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError(
                f"selector fit needs epochs >= 0, lr > 0 and batch_size >= 1, got {self.epochs}, {self.lr}, "
                f"{self.batch_size}"
            )


@dataclass
class PartSample:
    """One object's choice: its U-Net mask's parts and what the selector should say of each.

    Attributes:
        features: ``(n, PART_FEATURES)`` float32 part descriptions (:func:`flmm.head.selector.find_parts`), ``n >= 2``.
        targets: ``(n,)`` float 0/1: does the ground truth cover more than half of the part?
        sample, obj: where the object is in the cached dataset (its hidden states are read from there).
        hidden: ``(T, M, d)`` the phrase's hidden states, filled in by :class:`PartSamples`.
    """

    features: torch.Tensor
    targets: torch.Tensor
    sample: int
    obj: int
    hidden: torch.Tensor | None = None


@torch.no_grad()  # not inference_mode: the records are trained on afterwards
def collect_part_samples(
    head: FLMMHead, dataset: Dataset, indices: Sequence[int], batch_size: int = 16, progress: bool = True
) -> list[PartSample]:
    """The :class:`PartSample` (without hidden states) of every object of ``dataset[i]`` (cached samples,
    :mod:`flmm.features`) for ``i`` in ``indices`` whose U-Net mask has two or more parts; the head runs
    without its refiner."""
    if head.part_selector is None:
        raise ConfigError("this head has no part selector (HeadConfig.part_selector) to fit")
    was_training = head.training
    head.eval()
    found: list[PartSample] = []
    indices = list(indices)
    for start in tqdm(range(0, len(indices), batch_size), desc="selector parts", disable=not progress):
        chunk = indices[start : start + batch_size]
        batch = [dataset[i] for i in chunk]
        out = head([s.to_query() for s in batch], refine=False)
        if out.canvas is None or out.parts is None:
            continue  # no objects in these samples
        per_obj = object_masks([s.masks for s in batch], out.query_index, len(batch))
        targets, _ = canvas_targets(out.canvas, per_obj, out.decoder_logits.device)
        where = [(i, o) for i, s in zip(chunk, batch) for o in range(len(s.objects))]  # forward's order
        for parts, t, (i, o) in zip(out.parts, part_targets(out.parts, targets), where):
            if parts.count >= 2:
                found.append(PartSample(parts.features.cpu(), t.cpu(), i, o))
    head.train(was_training)
    return found


def object_hidden(data: Dataset, i: int, o: int) -> torch.Tensor:
    """Hidden states ``(T, M, d)`` of object ``o`` of ``data[i]``; from a :class:`FeatureCache` (or a
    ``ConcatDataset`` of them) only that tensor is read."""
    if isinstance(data, ConcatDataset):
        c = bisect.bisect_right(data.cumulative_sizes, i)
        return object_hidden(data.datasets[c], i - (data.cumulative_sizes[c - 1] if c else 0), o)
    if isinstance(data, FeatureCache):
        return data.object_hidden(i, o)
    return data[i].objects[o].hidden_states


class PartSamples(Dataset):
    """:class:`PartSample` records as a map-style dataset; each item gets its hidden states from ``data``
    when it is read, so the records stay small however large the LMM."""

    def __init__(self, data: Dataset, samples: Sequence[PartSample]) -> None:
        self.data = data
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> PartSample:
        s = self.samples[i]
        return replace(s, hidden=object_hidden(self.data, s.sample, s.obj))


class SelectorObjective(nn.Module):
    """``forward(list[PartSample]) -> {"loss", "selector_bce", "parts"}``: the mean BCE over every part of
    the batch, as the head's ``selector_bce`` term."""

    def __init__(self, selector: PartSelector) -> None:
        super().__init__()
        self.selector = selector

    def forward(self, batch: Sequence[PartSample]) -> dict[str, torch.Tensor]:
        dev = next(self.selector.parameters()).device
        scores = []
        for s in batch:
            if s.hidden is None:
                raise ConfigError("a PartSample without hidden states: read it through PartSamples")
            scores.append(self.selector.score(s.features.to(dev), s.hidden.to(dev)))
        logits = torch.cat(scores)
        labels = torch.cat([s.targets.to(dev) for s in batch])
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return {"loss": loss, "selector_bce": loss.detach(), "parts": torch.tensor(float(len(labels)))}


def _share_samples(head: FLMMHead, data: Dataset, out_dir: Path, progress: bool) -> list[PartSample]:
    """Every process computes its share and writes it; all then read every share, in rank order."""
    state = process_state()
    rank, world = state.process_index, state.num_processes
    indices = range(rank, len(data), world)  # type: ignore[arg-type]  # map-style datasets are sized
    mine = collect_part_samples(head, data, indices, progress=progress and rank == 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"features": s.features, "targets": s.targets, "sample": s.sample, "obj": s.obj} for s in mine]
    tmp = out_dir / f".parts-r{rank}.pt.tmp"
    torch.save(rows, tmp)
    os.replace(tmp, out_dir / f"parts-r{rank}.pt")
    state.wait_for_everyone()
    samples = []
    for r in range(world):
        samples += [PartSample(**d) for d in torch.load(out_dir / f"parts-r{r}.pt", weights_only=True)]
    return samples


def fit_selector(
    head: FLMMHead,
    data: Dataset,
    fit: SelectorFit,
    train: TrainConfig,
    resume: bool = False,
) -> TrainResult | None:
    """Train ``head.part_selector`` in place on the parts of ``head``'s (trained, frozen) U-Net.

    Args:
        head: a trained head with a part selector; only the selector changes.
        data: the cached training samples the head was trained on.
        fit: the phase's epochs, learning rate and global batch of objects.
        train: the head's loop settings; its ``output_dir`` gets a ``selector`` sub-folder for this
            phase's checkpoints and log, and its seed, precision and schedule are kept.
        resume: continue the phase from its latest checkpoint.

    Returns:
        the phase's :class:`TrainResult`, or None when ``fit.epochs == 0`` or no object has two parts.
    """
    fit.validate()
    if head.part_selector is None:
        raise ConfigError("this head has no part selector (HeadConfig.part_selector) to fit")
    if fit.epochs == 0:
        return None
    processes = process_state().num_processes
    if fit.batch_size % processes:
        raise ConfigError(
            f"selector batch size {fit.batch_size} does not split over {processes} processes; "
            f"launch a number of processes that divides it"
        )
    out_dir = Path(train.output_dir) / "selector"
    samples = _share_samples(head, data, out_dir, train.progress_bar)
    if len(samples) < processes:
        return None  # no object whose mask has two parts (or fewer than one per process)
    batch = min(fit.batch_size, len(samples) - len(samples) % processes)  # a small dataset: one batch
    cfg = replace(
        train,
        output_dir=str(out_dir),
        epochs=fit.epochs,
        max_steps=0,
        lr=fit.lr,
        batch_size=batch // processes,
        grad_accum_steps=1,
        eval_every_steps=0,
        save_every_steps=max(train.save_every_steps, 200),
        max_minutes=0.0,
    )
    trainer = Trainer(SelectorObjective(head.part_selector), PartSamples(data, samples), list, cfg)
    return trainer.train(resume=resume)
