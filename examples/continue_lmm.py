"""Train a finished shapes LMM's language side for more steps, on conversations its stage never used.

    python examples/continue_lmm.py --steps 800 --out runs/lm800
    python examples/continue_lmm.py --steps 800 --out runs/lm1600 --seeds 80000:100000 --previous runs/lm800

The LMM stage's own objective and trainer (:func:`flmm.shapes.train_lmm.lm_stage_trainer`: next-token
loss plus the concept aid), projector and Llama trainable, the vision tower frozen, one fresh cosine
cycle at ``--lr``. Conversations come from training scenes ``--seeds`` (the shipped stage used the
first 60,000; the default range comes after them). ``--previous`` continues from a previous run's last
checkpoint (fp32) instead of the folder's fp16 weights. Writes ``OUT/run`` (the trainer's
folder), ``OUT/hf`` (the LMM, fp16, with the base's ``stage_config.json`` and this run's
``continuation.json``; loadable by ``FrozenLMM.from_pretrained`` and ``train_head --lmm``)
and prints the held-out QA accuracy on ``--eval-scenes`` `val` scenes.

docs/training-log.md, sessions 23-25: the shipped LMM + 800 / 1600 steps (session 25: 1600 at --batch-size 8),
and the heads trained on them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace

import torch
from safetensors.torch import load_file

from flmm.assets_path import resolve
from flmm.errors import ConfigError
from flmm.shapes.lmm import load_lmm, save_lmm
from flmm.shapes.lmm_data import ShapesChatDataset
from flmm.shapes.lmm_eval import qa_accuracy
from flmm.shapes.lmm_stage_config import LMMStageConfig
from flmm.shapes.train_lmm import lm_stage_trainer
from flmm.train.checkpoint import latest_checkpoint, load_trainable_state_dict
from flmm.world import split_seeds


def seed_range(text: str) -> tuple[int, int]:
    """``"60000:80000"`` -> ``(60000, 80000)``: training-split scene indices, end excluded."""
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--seeds takes START:END (e.g. 60000:80000), got {text!r}") from None
    if not 0 <= lo < hi:
        raise ConfigError(f"--seeds needs 0 <= START < END, got {text!r}")
    return lo, hi


def load_previous(model: torch.nn.Module, previous: str) -> None:
    """Load the LMM tensors of the last checkpoint of a previous continuation (its ``OUT`` folder) into
    ``model``, whose trainable parameters (projector and Llama; the tower frozen) must match them."""
    step = latest_checkpoint(os.path.join(previous, "run"))
    if step is None:
        raise ConfigError(f"no checkpoint under {previous!r}/run: pass the OUT folder of a finished run")
    tensors = load_file(os.path.join(step, "trainable.safetensors"))
    load_trainable_state_dict(
        model, {k.removeprefix("lmm."): v for k, v in tensors.items() if k.startswith("lmm.")}
    )


def continue_lmm(
    lmm: str, out: str, steps: int, seeds: tuple[int, int], lr: float = 3e-4, batch_size: int = 16,
    previous: str | None = None, eval_scenes: int = 120, progress_bar: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Train ``steps`` more LM steps and export ``out/hf``; returns val QA (``qa_acc*``, in [0, 1])."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    folder = str(resolve(lmm))
    model, processor = load_lmm(folder, attn_implementation="eager")
    model.model.vision_tower.requires_grad_(False)
    if previous:
        load_previous(model, previous)
    cfg = LMMStageConfig()
    loop = replace(
        cfg.train, output_dir=os.path.join(out, "run"), max_steps=steps, lr=lr, batch_size=batch_size,
        eval_every_steps=0, save_every_steps=steps, num_workers=0, mixed_precision="auto",
        progress_bar=progress_bar,
    )  # fmt: skip
    cfg = replace(cfg, train=loop)
    lo, hi = seeds
    data = ShapesChatDataset(split_seeds("train", hi)[lo:], processor, cfg.data)
    model.train()
    lm_stage_trainer(model, processor, cfg, data).train()
    model.eval()
    hf = os.path.join(out, "hf")
    save_lmm(model, processor, hf, dtype=torch.float16)
    stage_config = os.path.join(folder, "stage_config.json")
    if os.path.isfile(stage_config):  # the base's recipe, and beside it what this run added
        shutil.copy(stage_config, hf)
    added = {"base": lmm, "previous": previous, "seeds": [lo, hi], "train": loop.to_dict()}
    with open(os.path.join(hf, "continuation.json"), "w") as f:
        json.dump(added, f, indent=2)
    if not eval_scenes:
        return {}
    got = qa_accuracy(model, processor, split_seeds("val", eval_scenes), located=2)
    return {k: v for k, v in got.items() if k.startswith("qa_acc") and "things" not in k}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lmm", default="flmm:shapes/lmm", help="LMM folder to continue (default: shipped)")
    p.add_argument("--out", required=True, help="writes OUT/run and OUT/hf")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--seeds", default="60000:80000", help="training scenes START:END of the conversations")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--previous", default=None, help="OUT of a previous run: continue from its last checkpoint"
    )
    p.add_argument("--eval-scenes", type=int, default=120, help="val scenes for QA (0: skip)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    start = time.time()
    qa = continue_lmm(
        a.lmm, a.out, a.steps, seed_range(a.seeds), lr=a.lr, batch_size=a.batch_size,
        previous=a.previous, eval_scenes=a.eval_scenes,
    )  # fmt: skip
    scores = {k: round(100 * v, 1) for k, v in qa.items()}
    print(json.dumps({"minutes": round((time.time() - start) / 60, 1), **scores}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
