"""Warm-up of the tiny LMM's vision tower on single-thing scenes, before the LMM stage.

Why: a from-scratch CLIP ViT with 8-pixel patches does not learn SHAPE words in the CPU budget of the
LMM stage (docs/training-log.md). Measured on 5-way shape classification of single things: with the
thing centred (one fixed sub-patch offset) the ViT reaches 99 % in 400 steps x 32; with the thing
anywhere on the patch grid but at whole-patch positions, 96 % in 500 steps; with a random sub-patch
offset (as in the world) it stays at chance (0.18-0.21 after 600 steps, even with the thing within
+-16 px of the centre). The 8x8 linear patch embedding sees a shape differently at each of its 64
offsets within a patch, and the tower must learn all of them at once. A curriculum fixes most of it:
learn shapes at whole-patch positions first, then let the offset vary.

The data are ordinary shapes-world scenes cut to their first thing, which the data generator places at
patch-aligned positions (phase ``aligned``), near them (``jitter``: +-``jitter_px``), or where the
world put it (``random``). The labels are the colour, shape and size WORDS of the scene's caption (text
only; the size is ignored when the caption does not say it). A linear probe on the mean of the tower's
patch tokens (the tokens LLaVA's projector reads) predicts each word class (softmax cross-entropy per
group). The model is never given a mask, box or coordinate; the probe is dropped afterwards.

Last, phase ``scenes`` teaches the tower to BIND a thing's colour to its shape where several things
share the image: half of each batch are whole scenes, labelled with the caption's concepts (colours,
shapes, sizes, stuff and colour-shape pairs such as "red circle", :mod:`flmm.shapes.concepts`); a second
linear probe reads every patch token and is max-pooled over them (multiple-instance learning, BCE), so a
pair is found only if one token carries both words. The other half are single things where the world
put them, with the words' loss above, so that single-thing recognition is kept.

Phase ``relations`` is phase ``scenes`` plus two terms of :mod:`flmm.shapes.relations` that keep WHERE
in the tokens, which the pooled losses above let the tower forget: every token names its own grid
address (``address_weight``; the same target for every image) and a probe answers the scenes' relation
questions from the tokens (``relation_weight``; read from the question's text and its yes / no).

Phase ``bind`` is phase ``scenes`` plus :func:`flmm.shapes.binding_loss.colour_gated_shape_loss`
(``bind_weight``): every token that shows a colour the caption pairs with one shape must name that shape,
so that the shape is said where the thing is, not only somewhere in the image.

Each phase is a run of :class:`flmm.train.Trainer` in ``<out>/vision/<k>-<phase>``, resumable, and writes
``warmup.safetensors`` (the tower as ``tower.*`` and both probes) when done; with ``resume`` a finished
phase is loaded instead of re-run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F

from flmm.errors import ConfigError
from flmm.shapes.binding_loss import colour_gated_shape_loss
from flmm.shapes.concepts import CONCEPTS, SINGLE_CONCEPTS
from flmm.shapes.lmm import feature_layers, token_grid, world_patch
from flmm.shapes.relations import RelationProbe, TokenAddress
from flmm.shapes.stage import save_part, split_batch
from flmm.shapes.warmup_data import (
    GROUPS,
    SINGLE_PLACEMENTS,
    SceneImages,
    SingleThingImages,
    collate_batch,
    word_labels,
)
from flmm.train import TrainConfig, Trainer
from flmm.world import COLORS, SHAPES, split_seeds

SCENE_PLACEMENTS = ("scenes", "relations", "bind")  # whole-scene phases (SceneImages)
PLACEMENTS = (*SINGLE_PLACEMENTS, *SCENE_PLACEMENTS)
WORD_POOLS = ("mean", "max")  # how the word probe reads the patch tokens (VisionWarmupConfig.word_pool)
_PAIRS = slice(len(SINGLE_CONCEPTS), len(CONCEPTS))  # the colour-shape pairs within CONCEPTS (colour-major)
_COLOURS = slice(0, len(COLORS))  # the colours within CONCEPTS, and within the word probe's outputs
_SHAPES = slice(len(COLORS), len(COLORS) + len(SHAPES))  # the shapes within the word probe's outputs


@dataclass
class VisionWarmupConfig:
    """The warm-up's phases (run in order) and their settings; ``phases=()`` turns it off. The shipped
    warm-up is :func:`shipped_warmup` (the LMM stage's default).

    Attributes:
        phases: placements, each in :data:`PLACEMENTS` (one may repeat, e.g. at a lower learning rate).
        steps: optimizer steps per phase (same length as ``phases``).
        lr: peak learning rate per phase (same length as ``phases``), or one value for all.
        jitter_px: half-width of the uniform offset around a patch-aligned position (``jitter``).
        batch_size: per phase (AdamW, warm-up 3 % + cosine, clip 1.0, fp32).
        scenes: training scenes (seeds ``split_seeds("train", scenes)``, shared with the LMM stage).
        concept_weight: weight of the whole-scene concept loss (phase ``scenes``) against the word loss.
        relation_weight: weight of the relation-question loss (phase ``relations``).
        address_weight: weight of the token-address loss (phase ``relations``).
        bind_weight: weight of the colour-gated shape loss (phase ``bind``).
        word_pool: how the word probe reads the patch tokens: ``"mean"`` (the probe sees the mean
            token) or ``"max"`` (the shipped warm-up: it scores every token and keeps each word's best,
            so that one token must show the thing's shape on its own).
    """

    phases: tuple[str, ...] = ("aligned", "jitter", "random")
    steps: tuple[int, ...] = (400, 300, 700)
    lr: float | tuple[float, ...] = 1e-3
    jitter_px: float = 2.0
    batch_size: int = 32
    scenes: int = 20_000
    concept_weight: float = 0.1
    relation_weight: float = 1.0
    address_weight: float = 1.0
    bind_weight: float = 1.0
    word_pool: str = "mean"

    def __post_init__(self) -> None:
        self.phases, self.steps = tuple(self.phases), tuple(self.steps)
        if len(self.phases) != len(self.steps):
            raise ConfigError(f"vision warm-up: {len(self.phases)} phases but {len(self.steps)} step counts")
        bad = [p for p in self.phases if p not in PLACEMENTS]
        if bad:
            raise ConfigError(f"vision warm-up: unknown placement(s) {bad}; choose from {PLACEMENTS}")
        if self.word_pool not in WORD_POOLS:
            raise ConfigError(
                f"vision warm-up: word_pool must be one of {WORD_POOLS}, got {self.word_pool!r}"
            )
        if any(n < 1 for n in self.steps):
            raise ConfigError(f"vision warm-up: step counts must be positive, got {self.steps}")
        weights = (self.concept_weight, self.relation_weight, self.address_weight, self.bind_weight)
        if min(weights) < 0:
            raise ConfigError(
                f"vision warm-up: loss weights must be >= 0, got {weights} (concept, relation, address, bind)"
            )
        if not self.phases:  # off: nothing to check
            return
        lrs = (self.lr,) * len(self.phases) if isinstance(self.lr, (int, float)) else tuple(self.lr)
        if len(lrs) != len(self.phases) or any(not lr > 0 for lr in lrs):
            raise ConfigError(
                f"vision warm-up: give one positive learning rate, or one per phase ({len(self.phases)}); got {self.lr}"
            )
        self.lr = lrs if len(set(lrs)) > 1 else float(lrs[0])  # one value when all phases share it

    def phase_lrs(self) -> tuple[float, ...]:
        """The learning rate of each phase."""
        if not self.phases:
            return ()
        return tuple(self.lr) if isinstance(self.lr, tuple) else (float(self.lr),) * len(self.phases)

    def to_dict(self) -> dict:
        return asdict(self)


def shipped_warmup() -> VisionWarmupConfig:
    """The warm-up of the shipped tiny LMM (run ``t1MA9``, docs/training-log.md): single things at
    patch-aligned positions, +-2 px, anywhere (twice: lr 1e-3 then 3e-4), then whole scenes; the word
    probe reads each word's best token (``word_pool="max"``)."""
    return VisionWarmupConfig(
        phases=("aligned", "jitter", "random", "random", "scenes"),
        steps=(400, 300, 700, 1000, 800),
        lr=(1e-3, 1e-3, 1e-3, 3e-4, 5e-4),
        word_pool="max",
    )


class VisionWarmupObjective(nn.Module):
    """The warm-up's losses on the tower's patch tokens (LLaVA's "default" features: CLS dropped).

    * ``labels (B, 3)``: softmax cross-entropy per word group (colour, shape, size) from ``probe``, a
      linear layer on the MEAN patch token (``word_pool="max"``: on every token, each word's logit the
      largest over tokens); rows or groups at -100 are ignored.
    * ``concepts (B, C)``, when in the batch: ``concept_weight`` x BCE (summed over concepts, averaged
      over rows) from ``concept_probe``, a linear layer on EVERY patch token max-pooled over tokens;
      rows whose first entry is negative are ignored.
    * ``relations (B, R, FIELDS)``, when in the batch: ``relation_weight`` x the BCE of
      ``relation_probe`` (:class:`flmm.shapes.relations.RelationProbe`) on the patch tokens, plus
      ``address_weight`` x the token-address loss of ``address_probe`` (:class:`~flmm.shapes.relations.TokenAddress`).
    * with ``bind`` set (phase ``bind``) and ``concepts`` in the batch: ``bind_weight`` x
      :func:`flmm.shapes.binding_loss.colour_gated_shape_loss`, the concept probe's per-token colours
      weighing the word probe's per-token shapes.

    Args:
        tower: the LLaVA model's ``vision_tower`` (a ``CLIPVisionModel``), trained in place.
        feature_layer: LLaVA's ``vision_feature_layer`` (the hidden state its projector reads).
        concept_weight: weight of the concept loss.
        relation_weight, address_weight, bind_weight: weights of the relation, token-address and
            colour-gated shape losses.
        word_pool: ``"mean"`` or ``"max"`` (see :class:`VisionWarmupConfig`).
    """

    def __init__(
        self,
        tower: Any,
        feature_layer: int = -1,
        concept_weight: float = 0.1,
        relation_weight: float = 1.0,
        address_weight: float = 1.0,
        word_pool: str = "mean",
        bind_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if word_pool not in WORD_POOLS:
            raise ConfigError(f"word_pool must be one of {WORD_POOLS}, got {word_pool!r}")
        self.tower, self.feature_layer, self.word_pool = tower, feature_layer, word_pool
        self.weights = {
            "concept": concept_weight,
            "relation": relation_weight,
            "address": address_weight,
            "bind": bind_weight,
        }
        self.bind = False  # phase "bind": the colour-gated shape loss is on
        hidden = int(tower.config.hidden_size)
        self.probe = nn.Linear(hidden, sum(len(g) for g in GROUPS))
        self.concept_probe = nn.Linear(hidden, len(CONCEPTS))
        self.relation_probe = RelationProbe(hidden)
        self.address_probe = TokenAddress(hidden, token_grid(tower.config))
        # the fresh relation probe learns at 30x the tower's rate (measured: at the tower's 3e-4 it stays
        # at chance for 400 steps; alone on fixed tokens it needs ~1e-2); read by flmm.train.Trainer
        self.lr_scales = {"relation_probe.": 30.0}

    def load_phase(self, path: str) -> None:
        """Load a finished phase's ``warmup.safetensors``; files written before the relation and address
        probes existed lack only their weights, which then keep their initial values."""
        missing, unexpected = self.load_state_dict(load_file(path), strict=False)
        bad = [k for k in missing if not k.startswith(("relation_probe.", "address_probe."))] + list(
            unexpected
        )
        if bad:
            raise ConfigError(
                f"{path} does not fit this warm-up (keys {bad[:4]}); re-run the phase without --resume"
            )

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states = self.tower(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states
        tokens = states[self.feature_layer][:, 1:]  # (B, N, hidden)
        # (B, N, words) per-token word logits, when the max pool or phase "bind" reads them
        per_token_words = self.probe(tokens) if self.word_pool == "max" or self.bind else None
        if per_token_words is not None and self.word_pool == "max":
            logits = per_token_words.amax(1)  # (B, words): each word's best token
        else:
            logits = self.probe(tokens.mean(1))
        losses, out, start = [], {}, 0
        for name, group, target in zip(("colour", "shape", "size"), GROUPS, batch["labels"].T):
            part = logits[:, start : start + len(group)].float()
            start += len(group)
            valid = target >= 0
            if valid.any():
                losses.append(F.cross_entropy(part[valid], target[valid]))
                out[f"{name}_acc"] = (part[valid].argmax(-1) == target[valid]).float().mean()
        if "concepts" in batch:
            rows = batch["concepts"][:, 0] >= 0
            if rows.any():
                per_token = self.concept_probe(tokens[rows])  # (b, N, C)
                scores = per_token.amax(1).float()  # (b, C): "some token shows it"
                target = batch["concepts"][rows]
                # summed over concepts (a mean over ~70 mostly-absent concepts would leave it no weight)
                bce = F.binary_cross_entropy_with_logits(scores, target, reduction="sum") / len(target)
                losses.append(self.weights["concept"] * bce)
                out["pair_f1"] = _f1(scores[:, _PAIRS] > 0, target[:, _PAIRS] > 0.5)
                if self.bind and per_token_words is not None:
                    pairs = target[:, _PAIRS].reshape(len(target), len(COLORS), len(SHAPES))
                    shapes = per_token_words[rows][..., _SHAPES]
                    gated = colour_gated_shape_loss(per_token[..., _COLOURS], shapes, pairs)
                    if gated is not None:
                        losses.append(self.weights["bind"] * gated[0])
                        out["gated_shape_acc"] = gated[1]
        if "relations" in batch:
            answered = self.relation_probe(tokens, batch["relations"])
            if answered is not None:
                losses.append(self.weights["relation"] * answered[0])
                out["relation_acc"] = answered[1]
            address, out["address_row_acc"], out["address_col_acc"] = self.address_probe(tokens)
            losses.append(self.weights["address"] * address)
        return {"loss": torch.stack(losses).sum(), **out}


def _f1(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Micro F1 of boolean ``pred`` against ``gold`` (same shape)."""
    hit = (pred & gold).sum()
    return 2 * hit / (pred.sum() + gold.sum()).clamp_min(1)


@torch.no_grad()
def held_out_accuracy(
    objective: VisionWarmupObjective, *datasets: SingleThingImages | SceneImages, batch_size: int = 50
) -> dict[str, float]:
    """The objective's metrics on each dataset (eval mode, restored afterwards), as ``val_<metric>``:
    colour / shape / size accuracy on single things, colour-shape pair F1 (``val_pair_f1``, the mean over
    batches of ``batch_size`` scenes) on whole scenes. A metric is averaged over the items that have it."""
    was = objective.training
    objective.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for data in datasets:
        for i in range(0, len(data), batch_size):
            idx = range(i, min(i + batch_size, len(data)))
            out = objective(collate_batch([data[j] for j in idx]))
            for k, v in out.items():
                if k != "loss":
                    sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
                    counts[k] = counts.get(k, 0) + len(idx)
    objective.train(was)
    return {f"val_{k}": v / counts[k] for k, v in sums.items()}


def warm_up_vision(
    lmm,
    processor,
    cfg: VisionWarmupConfig,
    seeds: list[int],
    out: str,
    seed: int = 0,
    resume: bool = False,
    mixed_precision: str = "auto",
) -> dict[str, float] | None:
    """Run ``cfg.phases`` on ``lmm.model.vision_tower`` (in place); phase runs go to ``<out>/vision/<k>-<phase>``.

    Returns the held-out metrics after the last phase (see :func:`held_out_accuracy`: 200 ``val`` single
    things where the world puts them, and 100 whole ``val`` scenes), ``{}`` when there are no phases, or
    None when a phase was interrupted (its checkpoint is written; ``resume=True`` continues it and skips
    finished phases). ``mixed_precision``: the phases' autocast (see :class:`flmm.train.TrainConfig`).
    """
    tower = lmm.model.vision_tower
    patch = world_patch(tower.config)
    layer = feature_layers(lmm.config)[-1]  # the deepest layer the projector reads
    val_seeds = split_seeds("val", 300)
    relations = "relations" in cfg.phases
    held_out = (
        SingleThingImages(val_seeds[:200], processor.image_processor, patch, "random"),
        SceneImages(val_seeds[200:], processor.image_processor, patch, mix=False, relations=relations),
    )
    seeds = seeds[: cfg.scenes]
    objective = VisionWarmupObjective(
        tower,
        layer,
        concept_weight=cfg.concept_weight,
        relation_weight=cfg.relation_weight,
        address_weight=cfg.address_weight,
        word_pool=cfg.word_pool,
        bind_weight=cfg.bind_weight,
    )
    accuracy: dict[str, float] | None = {} if not cfg.phases else None
    for k, (placement, steps, lr) in enumerate(zip(cfg.phases, cfg.steps, cfg.phase_lrs())):
        folder = os.path.join(out, "vision", f"{k}-{placement}")
        done = os.path.join(folder, "warmup.safetensors")
        if resume and os.path.isfile(done):  # finished earlier: reuse it (tower and probes)
            objective.load_phase(done)
            accuracy = None
            continue
        objective.bind = placement == "bind"
        if placement in SCENE_PLACEMENTS:
            data: SingleThingImages | SceneImages = SceneImages(
                seeds, processor.image_processor, patch, relations=placement == "relations"
            )
        else:
            data = SingleThingImages(seeds, processor.image_processor, patch, placement, cfg.jitter_px)
        train = split_batch(TrainConfig(
            output_dir=folder, max_steps=steps, batch_size=cfg.batch_size, lr=lr,
            seed=seed + k, save_every_steps=200, log_every_steps=25, mixed_precision=mixed_precision,
        ))  # fmt: skip
        # the loop evaluates once, at the end of the phase (logged as the phase's "eval" record)
        trainer = Trainer(
            objective, data, collate_batch, train, eval_fn=lambda _m: held_out_accuracy(objective, *held_out)
        )
        result = trainer.train(resume=resume)
        if result.interrupted:
            return None
        save_part(objective, lambda _name: True, done)  # tower and probes, written by the main process
        accuracy = dict(result.last_eval)
    return accuracy if accuracy is not None else held_out_accuracy(objective, *held_out)


__all__ = [
    "GROUPS",
    "PLACEMENTS",
    "SINGLE_PLACEMENTS",
    "SceneImages",
    "SingleThingImages",
    "VisionWarmupConfig",
    "VisionWarmupObjective",
    "collate_batch",
    "held_out_accuracy",
    "shipped_warmup",
    "warm_up_vision",
    "word_labels",
]
