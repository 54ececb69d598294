"""The LMM stage on ORACLE visual tokens: what the projector and the Llama learn when vision is perfect.

    python examples/oracle_lmm.py --out runs/oracle                 # the shipped LMM-stage settings
    python examples/oracle_lmm.py --out runs/oracle_lr --lr 3e-3    # any flmm.shapes.train_lmm flag

The tiny LLaVA's vision tower is replaced by :class:`flmm.shapes.oracle.OracleTower` (each 8-px cell's
token is the one-hot colour, shape, size and stuff of what covers it, plus its row and column), there is
no warm-up, and the rest is the LMM stage of ``flmm.shapes.train_lmm`` with the same flags, loop and
evaluation (the text-only phase first, ``--text-steps 0`` to skip it; val QA exact match by kind,
attention pointing of caption phrases and referring expressions). Results go to ``<out>/eval.json``.
Nothing is exported: the tower is not a model.
"""

from __future__ import annotations

import sys

from flmm.shapes.lmm import build_lmm, token_grid
from flmm.shapes.oracle import OracleChatDataset, OracleTower, remember_scenes
from flmm.shapes.stage import finish_run, start_run, train_timed
from flmm.shapes.text_pretrain import pretrain_text
from flmm.shapes.train_lmm import evaluate, lm_stage_trainer, parse_args
from flmm.world import split_seeds


def main(argv: list[str] | None = None) -> int:
    cfg, resume, stop_after = parse_args(argv)
    if stop_after != "lmm":
        raise SystemExit("oracle_lmm runs the text phase and the LMM stage together; drop --stop-after")
    start_run(cfg.to_dict(), cfg.train.output_dir, cfg.export_dtype, cfg.threads)
    lmm, processor = build_lmm(cfg.model, seed=cfg.init_seed)
    vision = lmm.model.vision_tower.config
    tower = OracleTower(vision)
    lmm.model.vision_tower = tower
    remember_scenes(tower, processor, split_seeds("val", cfg.eval_scenes + cfg.probe_scenes))
    seeds = split_seeds("train", cfg.train_scenes)
    text = pretrain_text(lmm, processor, cfg.text, seeds, cfg.train.output_dir, cfg.train, resume=resume)
    if text is None:
        print("[oracle_lmm] interrupted in the text phase; resume with --resume")
        return 130
    data = OracleChatDataset(seeds, processor, cfg.data, grid=token_grid(vision), hidden=vision.hidden_size)
    result, minutes = train_timed("oracle_lmm", lm_stage_trainer(lmm, processor, cfg, data), resume)
    if result.interrupted:  # train_timed said how to resume
        return 130
    final = evaluate(lmm, processor, cfg)
    final.update({f"text_phase_{k}": v for k, v in text.items()})
    final.update(train_minutes_this_call=minutes, steps=float(result.state.global_step))
    finish_run(cfg.train.output_dir, final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
