"""Run a recipe: cache the frozen LMM's features (distributed), then train the head on them.

flmm train configs/llava-1.5-7b.json
accelerate launch -m flmm.train configs/llava-1.5-7b.json       # many GPUs / nodes
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import torch

from flmm.assets_path import resolve
from flmm.errors import ConfigError
from flmm.recipes.config import RecipeConfig
from flmm.recipes.datasets import build_dataset, dataset_name
from flmm.train import TrainResult

log = logging.getLogger("flmm.recipes")


def _dtype(name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ConfigError(f"dtype must be bfloat16, float16 or float32, got {name!r}") from None


def _load_lmm(cfg: RecipeConfig, device):
    from flmm.lmm.frozen import FrozenLMM

    return FrozenLMM.from_pretrained(
        resolve(cfg.lmm["name"]),
        dtype=_dtype(cfg.lmm.get("dtype")),
        device=device,
        trust_remote_code=bool(cfg.lmm.get("trust_remote_code", False)),
    )


def run_recipe(cfg: RecipeConfig, resume: bool = False) -> TrainResult:
    """Build (or complete) every dataset's cache, then train the head; returns the trainer's result."""
    from accelerate import PartialState
    from transformers import SamModel

    from flmm.features import build_cache
    from flmm.head.config import HeadConfig
    from flmm.head.model import FLMMHead
    from flmm.recipes.head import train_head

    # as the trainer does: without a GPU, `cpu=True` turns a torchrun-style launch into a gloo run
    has_device = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    state = PartialState(cpu=not has_device)
    device = state.device
    lmm = _load_lmm(cfg, device)
    sam = None
    if cfg.sam:
        sam = SamModel.from_pretrained(resolve(cfg.sam["name"])).to(device).eval()
    head = FLMMHead(HeadConfig.create(lmm.identity, sam, **cfg.head), sam_model=sam).to(device)
    roots = []
    for spec in cfg.data:
        root = Path(cfg.cache_dir) / dataset_name(spec)
        data = build_dataset(spec, question=head.config.question)
        counts = build_cache(
            lmm,
            data,
            root,
            merge=head.config.merge,
            embed_image=head.embed_image if sam is not None else None,
            batch_size=cfg.cache_batch_size,
            rank=state.process_index,
            world_size=state.num_processes,
            info={"dataset": spec},
        )
        log.info("cache %s: %s", root, dict(counts))
        roots.append(root)
        state.wait_for_everyone()
    del lmm  # the device is the head's while it trains
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    result = train_head(head, roots, cfg.train_config(), resume=resume, selector_fit=cfg.selector_config())
    if cfg.calibration is not None and not result.interrupted and state.is_main_process:
        calibrate(cfg.calibration, _load_lmm(cfg, device), head, Path(cfg.train_config().output_dir) / "head")
    state.wait_for_everyone()
    return result


def calibrate(spec: dict, lmm, head, head_dir: Path) -> float:
    """Choose the keyword threshold on the held-out dataset ``spec`` and store it in ``head_dir``'s
    config (see :mod:`flmm.head.calibrate`); returns the threshold."""
    from flmm.head.calibrate import calibrate_keyword_threshold

    spec = dict(spec)
    limit = int(spec.pop("max_samples", 200))
    data = build_dataset(spec, question=head.config.question)
    samples = [s for s in (data.get_or_skip(i) for i in range(min(limit, len(data)))) if s is not None]
    threshold, table = calibrate_keyword_threshold(lmm, head.eval(), samples)
    head.config.keyword_threshold = threshold
    head.config.save(head_dir / "config.json")
    log.info("keyword threshold %.2f chosen on %d held-out samples: %s", threshold, len(samples), table)
    return threshold


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="flmm train", description=__doc__)
    p.add_argument("config", help="recipe JSON (see configs/)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_recipe(RecipeConfig.load(args.config), resume=args.resume)
    print(result)
    return 0
