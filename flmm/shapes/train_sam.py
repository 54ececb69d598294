"""Stage 2 of the shapes-world defaults: pre-train the tiny SAM for promptable segmentation.

Everything is trained from scratch (ViT, prompt encoder, mask decoder, IoU head) on shapes-world scenes
rendered on the fly, with box, point (multimask, SAM's min-over-masks loss) and box+mask prompts on every
visible thing and both stuff regions (see :mod:`flmm.shapes.sam_data`). Only SAM's random Fourier
positional features stay frozen, as in SAM. The run folder gets the training config, a JSONL log,
checkpoints (resumable) and at the end the Hugging Face folder ``<out>/hf`` plus ``<out>/eval.json``
(IoU per prompt kind on held-out ``test`` scenes).

    python -m flmm.shapes.train_sam --out runs/shapes_sam --export flmm/assets/shapes/sam
"""

from __future__ import annotations

import os

# Must precede the first torch import: on a shared CPU, OpenMP threads that spin-wait slow everyone down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from flmm.shapes.sam import ShapesSamConfig, build_sam, decode, save_sam  # noqa: E402
from flmm.shapes.sam_data import (  # noqa: E402
    BOX_MASK,
    POINT,
    PROMPT_KINDS,
    PromptCollator,
    SamDataConfig,
    ShapesSegDataset,
)
from flmm.shapes.sam_eval import evaluate_sam, mask_iou, upsample_logits  # noqa: E402
from flmm.shapes.stage import (  # noqa: E402
    add_loop_args,
    finish_run,
    folder_size_mb,
    loop_config,
    main_process_alone,
    split_batch,
    start_run,
    train_timed,
)
from flmm.train import TrainConfig, Trainer  # noqa: E402
from flmm.world import split_seeds  # noqa: E402


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask sigmoid BCE (pixel mean) and soft Dice of ``(N, M, S, S)`` logits against ``(N, S, S)`` 0/1
    targets -> two ``(N, M)`` float32 tensors."""
    t = target[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").flatten(2).mean(-1)
    p = logits.sigmoid()
    inter = (p * t).flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1) / (p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + 1)
    return bce, dice


class SamObjective(nn.Module):
    """Wraps a ``SamModel`` for :class:`~flmm.train.Trainer`: BCE + Dice of every prompt's mask (the best
    of three for point prompts, as SAM) + ``iou_weight`` x MSE of the IoU head against the true IoU.

    The positional Fourier features (tied between the image and the prompts) are frozen, as SAM keeps them
    as a fixed buffer; every other parameter trains.
    """

    sam: Any  # transformers SamModel (typed loosely: its submodules are reached by attribute)

    def __init__(self, sam: nn.Module, iou_weight: float = 1.0) -> None:
        super().__init__()
        self.sam = sam
        self.iou_weight = iou_weight
        self.sam.shared_image_embedding.positional_embedding.requires_grad_(False)
        self.sam.prompt_encoder.shared_embedding.positional_embedding.requires_grad_(False)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch`` from :class:`~flmm.shapes.sam_data.PromptCollator`; returns the loss and per-kind
        training IoUs (``iou_box``, ``iou_point``, ``iou_box+mask``)."""
        targets, kinds = batch["targets"], batch["kind"]
        size = targets.shape[-1]
        emb = self.sam.vision_encoder(batch["pixel_values"]).last_hidden_state
        seg_sum = targets.new_zeros(())
        iou_sum = targets.new_zeros(())
        logs: dict[str, torch.Tensor] = {}
        for kind, name in enumerate(PROMPT_KINDS):
            idx = torch.nonzero(kinds == kind).flatten()
            if len(idx) == 0:
                continue
            prompts: dict[str, torch.Tensor] = {}
            if kind == POINT:
                prompts["points"] = batch["points"][idx]
            else:
                prompts["boxes"] = batch["boxes"][idx]
            if kind == BOX_MASK:
                prompts["mask_prompts"] = batch["mask_prompts"][idx]
            low, iou_pred = decode(
                self.sam, emb, batch["image_index"][idx], multimask_output=kind == POINT, **prompts
            )
            logits = upsample_logits(low, size)
            bce, dice = mask_losses(logits, targets[idx])
            seg = bce + dice
            best = seg.detach().argmin(dim=1, keepdim=True)
            with torch.no_grad():
                true_iou = mask_iou(logits, targets[idx])
            seg_sum = seg_sum + seg.gather(1, best).sum()
            iou_sum = iou_sum + F.mse_loss(iou_pred.float(), true_iou, reduction="none").mean(dim=1).sum()
            logs[f"iou_{name}"] = true_iou.gather(1, best).mean()
        n = max(1, len(kinds))
        loss = (seg_sum + self.iou_weight * iou_sum) / n
        return {"loss": loss, "seg_loss": seg_sum.detach() / n, "iou_mse": iou_sum.detach() / n, **logs}


@dataclass
class SamStageConfig:
    """SAM-stage settings (saved as ``stage_config.json`` in the run folder).

    Attributes:
        model: sizes of the tiny SAM.
        data: prompt sampling.
        train: the loop's config (``train.output_dir`` is the run folder).
        train_scenes: training scenes, seeds ``split_seeds("train", n)`` (each step renders its batch).
        eval_scenes: held-out ``test`` scenes of the final report; ``val_scenes``: ``val`` scenes of the
            periodic evaluation (``train.eval_every_steps``).
        iou_weight: weight of the IoU-head MSE.
        init_seed: model initialisation seed.
        export_dtype: ``"float32"`` or ``"float16"`` weights in the exported folder.
        threads: torch intra-op threads (0: torch's default).
    """

    model: ShapesSamConfig = field(default_factory=ShapesSamConfig)
    data: SamDataConfig = field(default_factory=SamDataConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            output_dir="runs/shapes_sam",
            max_steps=1500,
            batch_size=8,
            lr=1e-3,
            warmup_ratio=0.03,
            mixed_precision="no",
            save_every_steps=250,
            log_every_steps=25,
        )
    )
    train_scenes: int = 50_000
    eval_scenes: int = 200
    val_scenes: int = 32
    iou_weight: float = 1.0
    init_seed: int = 0
    export_dtype: str = "float32"
    threads: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def train_sam(cfg: SamStageConfig, resume: bool = False, export: str | None = None) -> dict[str, float]:
    """Train, write ``<out>/hf`` (and ``export`` if given) and return the final evaluation (also written to
    ``<out>/eval.json``; ``{}`` in the other processes of a multi-process launch)."""
    out = cfg.train.output_dir
    start_run(cfg.to_dict(), out, cfg.export_dtype, cfg.threads)
    sam, processor = build_sam(cfg.model, seed=cfg.init_seed)
    dataset = ShapesSegDataset(split_seeds("train", cfg.train_scenes))
    collate = PromptCollator(cfg.data, cfg.model.image_size, cfg.model.mask_size)
    objective = SamObjective(sam, iou_weight=cfg.iou_weight)

    def periodic_eval(model: Any) -> dict[str, float]:
        return evaluate_sam(model.sam, split_seeds("val", cfg.val_scenes), cfg.data, progress=False)

    eval_fn = periodic_eval if cfg.train.eval_every_steps else None
    trainer = Trainer(objective, dataset, collate, split_batch(cfg.train), eval_fn=eval_fn)
    load_before = os.getloadavg()
    result, train_minutes = train_timed("train_sam", trainer, resume)
    load_after = os.getloadavg()
    if result.interrupted:
        return {"interrupted": 1.0, "step": float(result.state.global_step)}
    if not main_process_alone():  # it exports and evaluates the same weights, with every core
        return {}
    folder = save_sam(sam, processor, os.path.join(out, "hf"), dtype=getattr(torch, cfg.export_dtype))
    if export:
        save_sam(sam, processor, export, dtype=getattr(torch, cfg.export_dtype))
    eval_start = time.time()
    final = evaluate_sam(sam, split_seeds("test", cfg.eval_scenes), cfg.data)
    final.update(
        train_minutes_this_call=round(train_minutes, 2),
        train_seconds_total=result.state.elapsed_seconds,
        eval_minutes=round((time.time() - eval_start) / 60, 2),
        steps=float(result.state.global_step),
        scenes_seen=float(result.state.global_step * cfg.train.batch_size * cfg.train.grad_accum_steps),
        params_millions=round(sum(p.numel() for p in sam.parameters()) / 1e6, 4),
        size_mb=round(folder_size_mb(folder), 3),
        load_1min_before=round(load_before[0], 2),
        load_15min_after=round(load_after[2], 2),
    )
    return finish_run(out, final)


def parse_args(argv: list[str] | None = None) -> tuple[SamStageConfig, bool, str | None]:
    p = argparse.ArgumentParser(description="Pre-train the tiny shapes-world SAM (box/point/mask prompts).")
    d = SamStageConfig()
    add_loop_args(p, d.train, batch_help="scenes per step (each with all its targets)")
    p.add_argument("--export", default=None, help="also write the Hugging Face folder here")
    p.add_argument("--train-scenes", type=int, default=d.train_scenes)
    p.add_argument("--eval-scenes", type=int, default=d.eval_scenes)
    p.add_argument("--val-scenes", type=int, default=d.val_scenes)
    p.add_argument("--iou-weight", type=float, default=d.iou_weight)
    for name in ("p_box", "p_point", "p_box_mask"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d.data, name))
    for name in (
        "vision_hidden",
        "vision_layers",
        "vision_heads",
        "prompt_hidden",
        "decoder_mlp",
        "patch_size",
    ):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d.model, name))
    p.add_argument(
        "--pos-scale", type=float, default=d.model.pos_scale, help="std of SAM's Fourier positional features"
    )
    p.add_argument("--export-dtype", default=d.export_dtype, choices=("float32", "float16"))
    a = p.parse_args(argv)
    model = replace(
        d.model,
        patch_size=a.patch_size,
        vision_hidden=a.vision_hidden,
        vision_layers=a.vision_layers,
        vision_heads=a.vision_heads,
        prompt_hidden=a.prompt_hidden,
        decoder_mlp=a.decoder_mlp,
        pos_scale=a.pos_scale,
    )
    cfg = SamStageConfig(
        model=model,
        data=replace(d.data, p_box=a.p_box, p_point=a.p_point, p_box_mask=a.p_box_mask),
        train=loop_config(a, d.train, p),
        train_scenes=a.train_scenes,
        eval_scenes=a.eval_scenes,
        val_scenes=a.val_scenes,
        iou_weight=a.iou_weight,
        init_seed=a.seed,
        export_dtype=a.export_dtype,
        threads=a.threads,
    )
    return cfg, a.resume, a.export


def main(argv: list[str] | None = None) -> int:
    cfg, resume, export = parse_args(argv)
    results = train_sam(cfg, resume=resume, export=export)
    return 130 if results.get("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
