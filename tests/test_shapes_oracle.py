"""flmm.shapes.oracle (ground-truth visual tokens) and examples/oracle_lmm.py on a tiny LLaVA."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from flmm.errors import InputError
from flmm.shapes.lmm import build_lmm
from flmm.shapes.lmm_data import ChatCollator, ChatDataConfig
from flmm.shapes.oracle import OracleChatDataset, OracleTower, oracle_tokens, remember_scenes
from flmm.world import COLORS, SHAPES, render, sample_scene, split_seeds
from flmm.world.spec import SceneSpec, Thing
from tests.examples_loader import load_example
from tests.tiny.shapes_lmm import TINY_SHAPES_LMM

ORACLE_LMM = replace(TINY_SHAPES_LMM, vision_hidden=128)  # 4x4 grid of 128-wide tokens


def test_tokens_name_what_covers_each_cell_and_where_it_is():
    spec = SceneSpec(
        things=[Thing("circle", "red", "big", (24.0, 24.0)), Thing("square", "blue", "big", (96.0, 100.0))],
        stuff_top="sky",
        stuff_bottom="grass",
        horizon=64.0,
    )
    tok = oracle_tokens(render(spec)).reshape(16, 16, 128)
    assert tok.shape == (16, 16, 128)
    red, circle = COLORS.index("red"), 16 + SHAPES.index("circle")
    blue, square = COLORS.index("blue"), 16 + SHAPES.index("square")
    assert tok[3, 3, red] == 1 and tok[3, 3, circle] == 1 and tok[3, 3, :16].sum() == 1  # pixel (28, 28)
    assert tok[12, 12, blue] == 1 and tok[12, 12, square] == 1  # pixel (100, 100)
    assert tok[0, 15, :32].sum() == 0  # top-right corner: sky only
    assert tok[5, 9, 48 + 5] == 1 and tok[5, 9, 64 + 9] == 1 and tok[5, 9, 48:80].sum() == 2
    with pytest.raises(InputError, match="grid"):
        oracle_tokens(render(spec), grid=12)


def test_tower_reads_dataset_items_and_remembered_scenes_only():
    lmm, processor = build_lmm(ORACLE_LMM, seed=0)
    tower = OracleTower(lmm.model.vision_tower.config)
    seeds = split_seeds("train", 3)
    data = OracleChatDataset(seeds, processor, ChatDataConfig(p_caption=1.0), grid=4, hidden=128)
    batch = ChatCollator(processor.tokenizer.pad_token_id)([data[i] for i in range(3)])
    out = tower(batch["pixel_values"])
    assert out.hidden_states[-1].shape == (3, 17, 128)
    assert torch.equal(out.hidden_states[-1][0, 1:], oracle_tokens(sample_scene(seeds[0]), 4, 128))
    val = split_seeds("val", 2)
    pixels = processor.image_processor(images=sample_scene(val[0]).image, return_tensors="pt")["pixel_values"]
    with pytest.raises(InputError, match="remember"):
        tower(pixels)
    remember_scenes(tower, processor, val)
    assert torch.equal(tower(pixels).hidden_states[0][0, 1:], oracle_tokens(sample_scene(val[0]), 4, 128))
    # the LLaVA model runs on it: the projector reads the oracle tokens, gradients reach it
    lmm.model.vision_tower = tower
    loss = lmm(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")}).loss
    loss.backward()
    assert lmm.model.multi_modal_projector.linear_1.weight.grad.abs().sum() > 0


def test_example_trains_the_lm_stage_on_oracle_tokens_and_writes_its_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = load_example("oracle_lmm")
    dims = ["--vision-hidden", "128", "--vision-layers", "1", "--vision-heads", "2", "--text-hidden", "32"]
    dims += ["--text-layers", "1", "--text-heads", "2", "--text-intermediate", "64", "--patch-size", "32"]
    run = ["--steps", "50", "--batch-size", "4", "--train-scenes", "200", "--eval-scenes", "2"]
    run += ["--probe-scenes", "2", "--eval-every", "0", "--lr", "1e-2", "--precision", "no", "--workers", "1"]
    run += ["--text-steps", "4", "--text-batch-size", "2"]
    assert module.main(["--out", str(tmp_path / "run"), *dims, *run]) == 0
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["steps"] == 50 and result["qa_n"] > 0 and 0.0 <= result["qa_acc"] <= 1.0
    assert result["probe_caption_n"] > 0 and 0.0 <= result["text_phase_text_token_acc"] <= 1.0
    losses = [json.loads(x)["lm_loss"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
              if '"train"' in x]  # fmt: skip
    assert len(losses) == 2 and losses[1] < losses[0]  # logged at steps 25 and 50
