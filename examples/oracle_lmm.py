"""The LMM stage on ORACLE visual tokens: what the projector and the Llama learn when vision is perfect.

    python examples/oracle_lmm.py --out runs/oracle                 # the shipped LMM-stage settings
    python examples/oracle_lmm.py --out runs/oracle_lr --lr 3e-3    # any flmm.shapes.train_lmm flag

The tiny LLaVA's vision tower is replaced by :class:`flmm.shapes.oracle.OracleTower` (each 8-px cell's
token is the one-hot colour, shape, size and stuff of what covers it, plus its row and column), there is
no warm-up, and the rest is the LMM stage of ``flmm.shapes.train_lmm`` with the same flags, loop and
evaluation (val QA exact match by kind, attention pointing of caption phrases and referring
expressions). Results go to ``<out>/eval.json``. Nothing is exported: the tower is not a model.
"""

from __future__ import annotations

import json
import os
import sys
import time

from flmm.shapes.lmm import build_lmm, token_grid
from flmm.shapes.lmm_data import ChatCollator
from flmm.shapes.lmm_objective import CausalLMObjective
from flmm.shapes.oracle import OracleChatDataset, OracleTower, remember_scenes
from flmm.shapes.stage import start_run
from flmm.shapes.train_lmm import evaluate, parse_args
from flmm.train import Trainer
from flmm.world import split_seeds


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_args(argv)
    start_run(cfg.to_dict(), cfg.train.output_dir, cfg.export_dtype, cfg.threads)
    lmm, processor = build_lmm(cfg.model, seed=cfg.init_seed)
    vision = lmm.model.vision_tower.config
    tower = OracleTower(vision)
    lmm.model.vision_tower = tower
    remember_scenes(tower, processor, split_seeds("val", cfg.eval_scenes + cfg.probe_scenes))
    seeds = split_seeds("train", cfg.train_scenes)
    data = OracleChatDataset(seeds, processor, cfg.data, grid=token_grid(vision), hidden=vision.hidden_size)
    objective = CausalLMObjective(lmm, concept_weight=cfg.concept_weight, address_weight=cfg.address_weight)

    def periodic_eval(model) -> dict[str, float]:
        return evaluate(model.lmm, processor, cfg, eval_scenes=max(10, cfg.eval_scenes // 4))

    eval_fn = periodic_eval if cfg.train.eval_every_steps else None
    trainer = Trainer(
        objective, data, ChatCollator(processor.tokenizer.pad_token_id), cfg.train, eval_fn=eval_fn
    )
    start = time.time()
    result = trainer.train(resume=resume)
    if result.interrupted:
        print("[oracle_lmm] interrupted; resume with --resume")
        return 130
    final = evaluate(lmm, processor, cfg)
    final.update(train_minutes_this_call=(time.time() - start) / 60, steps=float(result.state.global_step))
    with open(os.path.join(cfg.train.output_dir, "eval.json"), "w") as f:
        json.dump(final, f, indent=2)
    print(json.dumps({k: round(v, 4) for k, v in final.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
