"""Stage 3 of the shapes-world default: the F-LMM head on the frozen tiny LMM and the tiny SAM.

    python -m flmm.shapes.train_head --lmm flmm:shapes/lmm --sam flmm:shapes/sam --out runs/shapes-head

The RefCOCO + PNG recipe in miniature, through the same code as the real recipes
(:func:`flmm.features.build_cache` + :func:`flmm.recipes.head.train_head`): referring expressions
of a scene joined into one answer (each with its mask) and narratives whose noun phrases (things,
plural groups and stuff) carry their masks; the keyword selector learns the narratives' phrase spans.
Only training-split seeds are used; evaluation uses the test split.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # shared CPUs: spinning OpenMP threads stall

import argparse
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flmm.assets_path import resolve
from flmm.data.shapes import ShapesNarratives, ShapesPresence, ShapesRefNarratives
from flmm.features import build_cache
from flmm.head.calibrate import calibrate_keyword_threshold, calibrate_presence
from flmm.head.config import HeadConfig
from flmm.head.model import FLMMHead
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.part_check import PartCheck
from flmm.lmm.presence import PresenceCheck
from flmm.recipes.head import train_head
from flmm.recipes.selector import SelectorFit
from flmm.shapes.stage import STAGE_PRECISIONS, main_process_alone, process_state, split_batch
from flmm.train import TrainConfig
from flmm.train.logger import read_log
from flmm.world import SHAPES
from flmm.world.describe import LOCATIONS, RELATIONS

log = logging.getLogger("flmm.shapes")

#: the user turn of the shapes LMM's caption conversations (its word-level vocabulary has these words)
SHAPES_QUESTION = "please give me a description of the image ."
#: the shapes LMM's own existence question ("is there a red circle ?"), asked of every phrase to ground
PRESENCE_QUESTION = "is there {indefinite} ?"
#: the nouns that question was trained on: phrases without one ("the sky") are not asked about
PRESENCE_NOUNS = (*SHAPES, *(s + "s" for s in SHAPES), "object", "objects")
#: each part of a mask shown alone to the LMM and asked that question, without the phrase's place
#: ("left-most") and its relation to another thing ("left of the blue square"); docs/results.md, session 28
PART_CHECK = PartCheck(place_words=LOCATIONS, relation_words=tuple(r.split()[0] for r in RELATIONS))


@dataclass
class HeadStageConfig:
    """Attributes: see ``--help``; sizes are numbers of training scenes."""

    lmm: str = "flmm:shapes/lmm"
    sam: str = "flmm:shapes/sam"
    out: str = "runs/shapes-head"
    ref_scenes: int = 800
    absent_expressions: int = 0
    narrative_scenes: int = 1200
    decoder_width: int = 16
    decoder_cue_width: int = 64
    part_selector: bool = True
    selector_epochs: int = 12
    selector_lr: float = 3e-3
    selector_ref_scenes: int = 2400
    canvas_size: int = 64
    epochs: int = 3
    calibration_scenes: int = 60
    presence_question: str = PRESENCE_QUESTION
    part_check: bool = True
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    minutes: float = 0.0
    mixed_precision: str = "no"
    export: str | None = None


def train_head_stage(cfg: HeadStageConfig, resume: bool = False) -> dict:
    """Cache features, train, and (with ``export``) copy the head folder there. Returns a summary (``{}``
    in the other processes of a multi-process launch: each caches and trains on its share, the main
    process calibrates, writes and exports)."""
    from transformers import SamModel

    # a bad presence question fails here, not after training
    check = PresenceCheck(cfg.presence_question, nouns=PRESENCE_NOUNS) if cfg.presence_question else None
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    out = Path(cfg.out)
    lmm = FrozenLMM.from_pretrained(resolve(cfg.lmm))
    sam = SamModel.from_pretrained(resolve(cfg.sam)).eval()
    head = FLMMHead(
        HeadConfig.create(
            lmm.identity,
            sam,
            decoder_width=cfg.decoder_width,
            decoder_cue_width=cfg.decoder_cue_width,
            part_selector=cfg.part_selector,
            canvas_size=cfg.canvas_size,
            question=SHAPES_QUESTION,
            phrase_separator=" ; ",
        ),
        sam_model=sam,
    )
    # the names as given (e.g. flmm:shapes/lmm), portable, not this machine's resolved paths
    head.config.lmm.name = cfg.lmm
    if head.config.sam is not None:
        head.config.sam.name = cfg.sam
    datasets = {
        "ref": ShapesRefNarratives(
            "train", cfg.ref_scenes, absent=cfg.absent_expressions, question=SHAPES_QUESTION
        ),
        "narrative": ShapesNarratives("train", cfg.narrative_scenes, question=SHAPES_QUESTION),
    }
    # the selector phase fits on more referring expressions than the head trains on; it needs no SAM
    selector_data = bool(cfg.part_selector and cfg.selector_epochs and cfg.selector_ref_scenes)
    caches: dict[str, tuple[Any, Any]] = {n: (data, head.embed_image) for n, data in datasets.items()}
    if selector_data:
        more = ShapesRefNarratives("train", cfg.selector_ref_scenes, question=SHAPES_QUESTION)
        caches["ref-selector"] = (more, None)
    state = process_state()
    counts = {}
    for name, (data, embed) in caches.items():
        counts[name] = dict(
            build_cache(
                lmm,
                data,
                out / "cache" / name,
                head.config.merge,
                embed,
                batch_size=16,
                rank=state.process_index,
                world_size=state.num_processes,
                info={"dataset": name},
            )
        )
        state.wait_for_everyone()  # every share is written before anyone trains on the whole cache
    t_cache = time.time() - t0
    tc = split_batch(
        TrainConfig(
            output_dir=str(out / "run"),
            seed=cfg.seed,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            mixed_precision=cfg.mixed_precision,
            save_every_steps=200,
            log_every_steps=20,
            max_minutes=cfg.minutes,
        )
    )
    fit = SelectorFit(epochs=cfg.selector_epochs, lr=cfg.selector_lr)
    selector_roots = [out / "cache" / n for n in ("ref-selector", "narrative")] if selector_data else None
    result = train_head(
        head,
        [out / "cache" / n for n in datasets],
        tc,
        resume=resume,
        selector_fit=fit,
        selector_cache_roots=selector_roots,
    )
    if not main_process_alone():  # it calibrates and writes, with every core
        return {}
    threshold, sweep = head.config.keyword_threshold, list[dict]()
    presence: dict[str, Any] = {}
    final_config = out / "run" / "head" / "config.json"
    if not result.interrupted and final_config.is_file():
        # the keyword cut-off is chosen on validation narratives (never test) and stored with the head
        val = ShapesNarratives("val", cfg.calibration_scenes, question=SHAPES_QUESTION)
        threshold, sweep = calibrate_keyword_threshold(lmm, head.eval(), [val[i] for i in range(len(val))])
        head.config.keyword_threshold = threshold
        head.config.save(final_config)
        if check is not None:  # the LMM's yes/no bias, on validation phrases that are and are not there
            held_out = ShapesPresence("val", cfg.calibration_scenes, question=SHAPES_QUESTION)
            head.config.presence, presence = calibrate_presence(lmm, check, list(held_out))
            if cfg.part_check and cfg.part_selector:
                head.config.part_check = PART_CHECK
            head.config.save(final_config)
    summary = {
        "samples": {n: len(d) for n, d in datasets.items()},
        "cache": counts,  # this (the main) process's share when several processes cached
        "cache_minutes": round(t_cache / 60, 2),
        "train_minutes": round((time.time() - t0 - t_cache) / 60, 2),
        "steps": result.state.global_step,
        "last_train": result.last_train,
        "selector_fit": (read_log(str(out / "run" / "selector"), "train") or [{}])[-1],
        "head_parameters": sum(p.numel() for p in head.trainable_parameters()),
        "keyword_threshold": threshold,
        "keyword_sweep": sweep,
        "presence": presence,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if cfg.export:
        dst = Path(cfg.export)
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(out / "run" / "head", dst)
    return summary


def main(argv: list[str] | None = None) -> int:
    d = HeadStageConfig()
    p = argparse.ArgumentParser(prog="python -m flmm.shapes.train_head", description=__doc__)
    p.add_argument("--lmm", default=d.lmm, help="frozen LMM folder or flmm:shapes/lmm")
    p.add_argument("--sam", default=d.sam, help="SamModel folder or flmm:shapes/sam")
    p.add_argument("--out", default=d.out)
    p.add_argument("--ref-scenes", type=int, default=d.ref_scenes)
    p.add_argument(
        "--absent-expressions",
        type=int,
        default=d.absent_expressions,
        help="per referring-expression scene, this many expressions that denote nothing (empty masks), so "
        "that the head learns to say so with a low score",
    )
    p.add_argument("--narrative-scenes", type=int, default=d.narrative_scenes)
    p.add_argument("--decoder-width", type=int, default=d.decoder_width)
    p.add_argument(
        "--decoder-cue-width",
        type=int,
        default=d.decoder_cue_width,
        help="condition the U-Net on the phrase's hidden states with a cue this wide (0: the paper's plain U-Net)",
    )
    p.add_argument(
        "--part-selector",
        action=argparse.BooleanOptionalAction,
        default=d.part_selector,
        help="learn which parts of the U-Net's mask the phrase asks for before refining (--no-part-selector: the paper's head)",
    )
    p.add_argument(
        "--selector-epochs",
        type=int,
        default=d.selector_epochs,
        help="after training, fit the part selector on the trained U-Net's parts for this many passes (0: no)",
    )
    p.add_argument("--selector-lr", type=float, default=d.selector_lr)
    p.add_argument(
        "--selector-ref-scenes",
        type=int,
        default=d.selector_ref_scenes,
        help="train scenes whose referring expressions the selector phase fits on (0: the head's own data)",
    )
    p.add_argument(
        "--canvas-size",
        type=int,
        default=d.canvas_size,
        help="decoder canvas side in cells (16x16 token grids: 64 is 4x up)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument(
        "--calibration-scenes",
        type=int,
        default=d.calibration_scenes,
        help="val narratives for the keyword cut-off",
    )
    p.add_argument(
        "--presence-question",
        default=d.presence_question,
        help="yes/no question the frozen LMM is asked about every phrase to ground, with {indefinite} or "
        "{expression}; its bias is calibrated on the val scenes ('': no presence check)",
    )
    p.add_argument(
        "--no-part-check",
        dest="part_check",
        action="store_false",
        help="do not ask the LMM about each part of a mask at inference (flmm.lmm.part_check)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--minutes", type=float, default=d.minutes, help="wall-clock budget for training (0: none)"
    )
    p.add_argument(
        "--precision",
        choices=STAGE_PRECISIONS,
        default=d.mixed_precision,
        help="autocast of the head's training steps: auto = bf16 where the CPU/GPU computes it natively",
    )
    p.add_argument(
        "--export", default=None, help="copy the trained head folder here (e.g. flmm/assets/shapes/head)"
    )
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    if a.decoder_width < 1 or a.decoder_cue_width < 0:
        p.error(
            f"--decoder-width must be >= 1 and --decoder-cue-width >= 0 (0: off), got {a.decoder_width}, "
            f"{a.decoder_cue_width}"
        )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = HeadStageConfig(
        lmm=a.lmm,
        sam=a.sam,
        out=a.out,
        ref_scenes=a.ref_scenes,
        absent_expressions=a.absent_expressions,
        narrative_scenes=a.narrative_scenes,
        decoder_width=a.decoder_width,
        decoder_cue_width=a.decoder_cue_width,
        part_selector=a.part_selector,
        selector_epochs=a.selector_epochs,
        selector_lr=a.selector_lr,
        selector_ref_scenes=a.selector_ref_scenes,
        canvas_size=a.canvas_size,
        epochs=a.epochs,
        calibration_scenes=a.calibration_scenes,
        presence_question=a.presence_question,
        part_check=a.part_check,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        minutes=a.minutes,
        mixed_precision=a.precision,
        export=a.export,
    )
    print(json.dumps(train_head_stage(cfg, resume=a.resume), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
