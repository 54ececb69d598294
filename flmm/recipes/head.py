"""Training the F-LMM head: the same recipe for the shapes world and for RefCOCO/PNG on real LMMs.

Two steps, both distributed under ``accelerate launch``:

1. :func:`flmm.features.build_cache` runs the frozen LMM (and SAM's frozen encoder) once over the
   training samples and stores what the head reads;
2. :func:`train_head` trains the head on the cache with :class:`flmm.train.Trainer` (AdamW, warm-up +
   cosine, clipping, atomic resumable checkpoints): no LMM forward in any epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import ConcatDataset, Dataset

from flmm.errors import ConfigError
from flmm.features.cache import CachedSample, FeatureCache
from flmm.head.model import FLMMHead
from flmm.recipes.selector import SelectorFit, fit_selector
from flmm.train import TrainConfig, Trainer, TrainResult


class HeadObjective(nn.Module):
    """Wraps the head for the trainer: ``forward(list[CachedSample]) -> {"loss", terms...}``."""

    def __init__(self, head: FLMMHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, batch: Sequence[CachedSample]) -> dict[str, torch.Tensor]:
        queries = [s.to_query() for s in batch]
        masks = [s.masks for s in batch]
        out = self.head(queries, gt_masks=masks)
        labels = [s.keyword_labels for s in batch]
        terms = self.head.compute_losses(out, masks, labels)
        terms["objects"] = torch.tensor(float(out.num_objects))
        return terms


def collate_samples(batch: list[CachedSample]) -> list[CachedSample]:
    """Cached samples stay a list: objects per sample and grid sizes vary."""
    return batch


def open_caches(roots: Sequence[str | os.PathLike], merge: str) -> Dataset:
    """One dataset over several cache folders; checks they were built with the head's merge mode."""
    caches = []
    for r in roots:
        c = FeatureCache(r)
        built = c.info.get("merge")
        if built is not None and built != merge:
            raise ConfigError(f"cache {r} merged phrase tokens by {built!r}, the head merges by {merge!r}")
        if len(c) == 0:
            raise ConfigError(f"cache {r} holds no sample")
        caches.append(c)
    return caches[0] if len(caches) == 1 else ConcatDataset(caches)


def train_head(
    head: FLMMHead,
    cache_roots: Sequence[str | os.PathLike],
    config: TrainConfig,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    resume: bool | str = False,
    selector_fit: SelectorFit | None = None,
    selector_cache_roots: Sequence[str | os.PathLike] | None = None,
) -> TrainResult:
    """Train ``head``'s trainable parameters on cached features; save it to ``output_dir/head``.

    A head with a part selector then has the selector fitted on its trained U-Net's parts
    (:func:`flmm.recipes.selector.fit_selector`, ``output_dir/selector``) before it is saved; the returned
    result is the head's, marked interrupted when that phase was.

    Args:
        head: a fresh or partly trained :class:`FLMMHead` (SAM's vision encoder stays frozen).
        cache_roots: folders made by :func:`flmm.features.build_cache` for this head's LMM.
        config: the loop's hyper-parameters (the paper's defaults unless overridden).
        eval_fn: ``fn(head) -> scalars`` run on the main process every ``eval_every_steps``.
        resume: continue from the latest (or a given) checkpoint of ``config.output_dir``.
        selector_fit: the selector phase's settings (None: :class:`SelectorFit`'s defaults;
            ``SelectorFit(epochs=0)``: no such phase).
        selector_cache_roots: caches the selector phase fits on (default: ``cache_roots``); they need no
            SAM embeddings, so a larger set costs the phase little.
    """
    data = open_caches(cache_roots, head.config.merge)
    objective = HeadObjective(head)
    # SAM's prompt encoder has point embeddings the refiner never feeds (it prompts with boxes, masks
    # and text), so under DDP some trainable parameters get no gradient in a step
    config = replace(config, find_unused_parameters=True)

    def _eval(model: nn.Module) -> dict[str, float]:
        assert eval_fn is not None
        inner = model.head if isinstance(model, HeadObjective) else model
        return eval_fn(inner)

    trainer = Trainer(objective, data, collate_samples, config, eval_fn=_eval if eval_fn else None)
    result = trainer.train(resume=resume)
    if head.part_selector is not None and not result.interrupted:
        phase_data = open_caches(selector_cache_roots, head.config.merge) if selector_cache_roots else data
        phase = fit_selector(head, phase_data, selector_fit or SelectorFit(), config, resume=bool(resume))
        if phase is not None and phase.interrupted:
            result = replace(result, interrupted=True)
    if trainer.is_main_process:
        final = trainer.unwrapped_model()
        assert isinstance(final, HeadObjective)
        final.head.save_pretrained(Path(config.output_dir) / "head")
    return result
