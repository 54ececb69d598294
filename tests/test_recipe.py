"""The config-driven recipe: cache + head training from saved (tiny) checkpoints, 1 and 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flmm.errors import ConfigError
from flmm.features import FeatureCache
from flmm.head.model import FLMMHead
from flmm.head.tiny import tiny_sam_model
from flmm.recipes.config import RecipeConfig
from flmm.recipes.run import run_recipe
from flmm.train import read_log
from tests.tiny.llava import tiny_llava


def _write_recipe(tmp: Path, max_steps: int = 4) -> Path:
    model, proc = tiny_llava()
    model.save_pretrained(tmp / "lmm")
    proc.save_pretrained(tmp / "lmm")
    tiny_sam_model().save_pretrained(tmp / "sam")
    cfg = {
        "lmm": {"name": str(tmp / "lmm"), "dtype": "float32"},
        "sam": {"name": str(tmp / "sam")},
        "head": {"decoder_width": 8},
        "data": [{"type": "shapes-ref", "split": "train", "n": 4, "max_expressions": 2}],
        "cache_dir": str(tmp / "cache"),
        "cache_batch_size": 2,
        "train": {
            "output_dir": str(tmp / "run"),
            "max_steps": max_steps,
            "batch_size": 2,
            "lr": 1e-3,
            "mixed_precision": "no",
            "progress_bar": False,
            "log_every_steps": 1,
        },
    }
    path = tmp / "recipe.json"
    path.write_text(json.dumps(cfg))
    return path


def test_recipe_caches_and_trains(tmp_path):
    path = _write_recipe(tmp_path)
    run_recipe(RecipeConfig.load(path))
    cache = FeatureCache(tmp_path / "cache" / "shapes-ref-train-4")
    assert len(cache) >= 4 and cache.info["lmm"]["family"] == "llava"
    assert len([r for r in read_log(str(tmp_path / "run")) if "loss" in r]) == 4
    head = FLMMHead.from_pretrained(tmp_path / "run" / "head", sam_model=tiny_sam_model())
    assert head.config.lmm.num_layers == 2


def test_recipe_calibrates_the_keyword_threshold_on_held_out_data(tmp_path):
    path = _write_recipe(tmp_path, max_steps=2)
    cfg = json.loads(path.read_text())
    cfg["calibration"] = {"type": "shapes-narrative", "split": "val", "n": 3, "max_samples": 2}
    cfg["head"]["keyword_threshold"] = 0.33  # off the calibration grid: any grid value was chosen by it
    path.write_text(json.dumps(cfg))
    run_recipe(RecipeConfig.load(path))
    saved = json.loads((tmp_path / "run" / "head" / "config.json").read_text())
    from flmm.head.calibrate import DEFAULT_THRESHOLDS

    assert saved["keyword_threshold"] in DEFAULT_THRESHOLDS


def test_recipe_rejects_bad_configs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lmm": {"name": "x"}, "data": [], "cache_dir": "c", "typo": 1}))
    with pytest.raises(ConfigError, match="typo"):
        RecipeConfig.load(bad)
    bad.write_text(json.dumps({"lmm": {"name": "x"}, "data": [], "cache_dir": "c", "train": {"lr": -1}}))
    with pytest.raises(ConfigError):
        RecipeConfig.load(bad)


@pytest.mark.slow
def test_recipe_two_processes(tmp_path):
    """accelerate launch --num_processes 2 (gloo on CPU): both ranks cache their share, then train."""
    path = _write_recipe(tmp_path, max_steps=3)
    # `--cpu` alone starts ONE process; torchrun's launcher (`--multi_gpu`) + a CPU-only run = 2 gloo ranks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "flmm.train",
        str(path),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=600, cwd=Path(__file__).parents[1]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    shards = sorted(p.name for p in (tmp_path / "cache" / "shapes-ref-train-4").glob("shard-*.json"))
    assert any(s.startswith("shard-r0") for s in shards) and any(s.startswith("shard-r1") for s in shards)
    assert (tmp_path / "run" / "head" / "model.safetensors").exists()
    assert "world_size=2" in out.stdout


@pytest.mark.parametrize("name", ["llava-1.5-7b", "llava-next-7b", "qwen2.5-vl-7b"])
def test_shipped_recipes_load_and_calibrate_on_validation_data(name):
    cfg = RecipeConfig.load(Path(__file__).resolve().parents[1] / "configs" / f"{name}.json")
    assert cfg.sam is not None and cfg.train_config().mixed_precision == "bf16"
    assert cfg.calibration is not None and cfg.calibration["split"] == "val"
    assert all(d.get("split") == "train" for d in cfg.data)
