"""Stage 1 of the shapes-world defaults: pre-train the tiny LMM on captions and QA (no grounding data).

Everything is trained from scratch. First the vision tower warms up on the caption words of single-thing
scenes, then of whole scenes (:mod:`flmm.shapes.vision_warmup`, ``<out>/vision/``); then the Llama
alone reads scenes told in words and answers about them (:mod:`flmm.shapes.text_pretrain`,
``<out>/text/``); then the tower is frozen (as LLaVA keeps its CLIP tower), the projector alone learns
captions and QA on images with the Llama frozen (:mod:`flmm.shapes.align`, ``<out>/align/``), and then
the projector and the Llama learn them together. The whole LMM is frozen later, by F-LMM.
The run folder gets the training config, a JSONL log, checkpoints (resumable) and, at the end, the
Hugging Face folder ``<out>/hf`` plus ``<out>/eval.json`` (QA accuracy and the grounding probe on
held-out ``val`` scenes).

    python -m flmm.shapes.train_lmm --out runs/shapes_lmm   # the shipped settings are the defaults
"""

from __future__ import annotations

import os

# Must precede the first torch import: on a shared CPU, OpenMP threads that spin-wait make 2 threads
# ~10x slower than 1 (measured on the 2-core box); passive waiting avoids it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from flmm.errors import ConfigError  # noqa: E402
from flmm.shapes.align import align_projector  # noqa: E402
from flmm.shapes.lmm import build_lmm, save_lmm, set_language_attention  # noqa: E402
from flmm.shapes.lmm_args import parse_args  # noqa: E402
from flmm.shapes.lmm_data import ChatCollator, ShapesChatDataset  # noqa: E402
from flmm.shapes.lmm_eval import grounding_probe, qa_accuracy  # noqa: E402
from flmm.shapes.lmm_objective import CausalLMObjective  # noqa: E402
from flmm.shapes.lmm_stage_config import ATTENTIONS, PHASES, LMMStageConfig  # noqa: E402
from flmm.shapes.stage import (  # noqa: E402
    finish_run,
    folder_size_mb,
    main_process_alone,
    split_batch,
    start_run,
    train_timed,
)
from flmm.shapes.text_pretrain import pretrain_text  # noqa: E402
from flmm.shapes.vision_warmup import warm_up_vision  # noqa: E402
from flmm.train import Trainer  # noqa: E402
from flmm.world import split_seeds  # noqa: E402

#: re-exported: the stage's config, its command line and its phases live in their own modules
__all__ = [
    "ATTENTIONS",
    "PHASES",
    "LMMStageConfig",
    "evaluate",
    "lm_stage_trainer",
    "main",
    "parse_args",
    "train_lmm",
]


def evaluate(
    lmm: nn.Module, processor, cfg: LMMStageConfig, eval_scenes: int | None = None
) -> dict[str, float]:
    """QA exact match and grounding probes on held-out ``val`` scenes."""
    n_eval = cfg.eval_scenes if eval_scenes is None else eval_scenes
    was_training = lmm.training
    lmm.eval()
    # questions about a thing named by its place ("located") are reported on their own: qa_acc is unchanged
    results = qa_accuracy(lmm, processor, split_seeds("val", n_eval), located=2)
    probe_seeds = split_seeds("val", n_eval + cfg.probe_scenes)[n_eval:]
    results.update(grounding_probe(lmm, processor, probe_seeds, text="caption"))
    results.update(
        grounding_probe(lmm, processor, probe_seeds[: max(1, len(probe_seeds) // 2)], text="refexp")
    )
    lmm.train(was_training)
    return results


def lm_stage_trainer(lmm: nn.Module, processor, cfg: LMMStageConfig, dataset: ShapesChatDataset) -> Trainer:
    """The LMM stage's :class:`~flmm.train.Trainer` of ``lmm`` on ``dataset`` (next-token loss plus the
    configured aids; a held-out check on ``val`` scenes every ``cfg.train.eval_every_steps``)."""
    objective = CausalLMObjective(lmm, concept_weight=cfg.concept_weight, address_weight=cfg.address_weight)

    def periodic_eval(model: nn.Module) -> dict[str, float]:
        return evaluate(model.lmm, processor, cfg, eval_scenes=max(10, cfg.eval_scenes // 4))  # type: ignore[arg-type]

    eval_fn = periodic_eval if cfg.train.eval_every_steps else None
    collate = ChatCollator(processor.tokenizer.pad_token_id)
    return Trainer(objective, dataset, collate, split_batch(cfg.train), eval_fn=eval_fn)


def train_lmm(cfg: LMMStageConfig, resume: bool = False, stop_after: str = "lmm") -> dict[str, float]:
    """Train, export ``<out>/hf`` and return the final evaluation (also written to ``<out>/eval.json``;
    ``{}`` in the other processes of a multi-process launch).

    ``stop_after`` (one of :data:`PHASES`) ends the call once that phase's file is written (returns
    ``{"stopped_after": k}``, ``k`` its index in :data:`PHASES`); a later call with ``resume=True``
    reloads the finished phases and goes on, so that the phases can run under different launches or
    settings (``benchmarks.stage_processes`` times the text and alignment phases alone this way)."""
    if stop_after not in PHASES:
        raise ConfigError(f"stop_after must be one of {PHASES}, got {stop_after!r}")
    out = cfg.train.output_dir
    start_run(cfg.to_dict(), out, cfg.export_dtype, cfg.threads)
    lmm, processor = build_lmm(cfg.model, seed=cfg.init_seed)
    set_language_attention(lmm, cfg.attention)
    seeds = split_seeds("train", cfg.train_scenes)
    start = time.time()
    warm = warm_up_vision(
        lmm, processor, cfg.vision, seeds, out,
        seed=cfg.train.seed, resume=resume, mixed_precision=cfg.train.mixed_precision,
    )  # fmt: skip
    if warm is None:
        return _interrupted("vision warm-up")
    warm_minutes = (time.time() - start) / 60
    if stop_after == "vision":
        return _stopped(stop_after)
    start = time.time()
    text = pretrain_text(lmm, processor, cfg.text, seeds, out, cfg.train, resume=resume)
    if text is None:
        return _interrupted("text phase")
    text_minutes = (time.time() - start) / 60
    if stop_after == "text":
        return _stopped(stop_after)
    if cfg.freeze_vision:
        lmm.model.vision_tower.requires_grad_(False)
    dataset = ShapesChatDataset(seeds, processor, cfg.data)
    start = time.time()
    aligned: dict[str, float] = {}
    if cfg.align_steps:
        folder = os.path.join(out, "align")
        loop = replace(
            cfg.train, output_dir=folder, max_steps=cfg.align_steps, eval_every_steps=cfg.align_steps
        )
        got = align_projector(
            lmm, lambda: lm_stage_trainer(lmm, processor, replace(cfg, train=loop), dataset), folder, resume
        )
        if got is None:
            return _interrupted("alignment phase")
        aligned = got
    align_minutes = (time.time() - start) / 60
    if stop_after == "align":
        return _stopped(stop_after)
    trainer = lm_stage_trainer(lmm, processor, cfg, dataset)
    result, train_minutes = train_timed("train_lmm", trainer, resume)
    if result.interrupted:
        return {"interrupted": 1.0, "step": float(result.state.global_step)}
    if not main_process_alone():  # it exports and evaluates the same weights, with every core
        return {}
    folder = os.path.join(out, "hf")
    save_lmm(lmm, processor, folder, dtype=getattr(torch, cfg.export_dtype))
    final = evaluate(lmm, processor, cfg)
    final.update({f"vision_warmup_{k}": v for k, v in warm.items()})
    final.update({f"text_phase_{k}": v for k, v in text.items()})
    final.update({f"align_{k}": v for k, v in aligned.items()})
    final.update(
        vision_warmup_minutes_this_call=warm_minutes,
        text_phase_minutes_this_call=text_minutes,
        align_minutes_this_call=align_minutes,
        train_minutes_this_call=train_minutes,
        train_seconds_total=result.state.elapsed_seconds,
        steps=float(result.state.global_step),
        params_millions=sum(p.numel() for p in lmm.parameters()) / 1e6,
        size_mb=folder_size_mb(folder),
    )
    return finish_run(out, final)


def _stopped(phase: str) -> dict[str, float]:
    print(f"[train_lmm] stopped after the {phase} phase; go on with --resume")
    return {"stopped_after": float(PHASES.index(phase))}


def _interrupted(phase: str) -> dict[str, float]:
    print(f"[train_lmm] interrupted in the {phase}; resume with --resume")
    return {"interrupted": 1.0, "step": 0.0}


def main(argv: list[str] | None = None) -> int:
    cfg, resume, stop_after = parse_args(argv)
    results = train_lmm(cfg, resume=resume, stop_after=stop_after)
    return 130 if results.get("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
