"""flmm.shapes.text_pretrain: the LMM's text-only phase on scenes told in words, on a tiny LLaVA."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from flmm.errors import ConfigError
from flmm.shapes.lmm import build_lmm
from flmm.shapes.lmm_data import IGNORE_INDEX, ChatDataConfig, ShapesChatDataset
from flmm.shapes.text_pretrain import TextChatDataset, TextPretrainConfig, pretrain_text, scene_in_words
from flmm.train import TrainConfig, read_log
from flmm.world import SceneSpec, Thing, render, split_seeds
from tests.tiny.shapes_lmm import TINY_SHAPES_LMM as TINY


def test_scene_in_words_lists_every_thing_left_to_right_with_its_region():
    spec = SceneSpec(
        things=[
            Thing("square", "blue", "small", (100.0, 30.0)),
            Thing("circle", "red", "big", (20.0, 100.0)),
            Thing("star", "green", "small", (60.0, 64.0)),  # on the horizon: no region
        ],
        stuff_top="sky",
        stuff_bottom="water",
        horizon=64.0,
    )
    assert scene_in_words(render(spec)) == (
        "a big red circle on the water . a small green star . a small blue square in the sky . "
        "the sky above the water ."
    )


def test_items_are_the_image_conversations_told_in_words():
    _, processor = build_lmm(TINY, seed=0)
    seeds = split_seeds("train", 6)
    cfg = ChatDataConfig(p_caption=0.25, p_packed=0.5, p_simple=0.25)
    told, seen = TextChatDataset(seeds, processor, cfg), ShapesChatDataset(seeds, processor, cfg)
    tok = processor.tokenizer
    for i in range(len(seeds)):
        item, image_item = told[i], seen[i]
        assert set(item) == {"input_ids", "labels"}  # no image reaches the model
        assert tok.unk_token_id not in item["input_ids"].tolist()
        # the same answers, word for word, as the image conversation of the same index
        answers = item["labels"][item["labels"] != IGNORE_INDEX].tolist()
        assert answers == image_item["labels"][image_item["labels"] != IGNORE_INDEX].tolist()
        text = tok.decode(item["input_ids"])
        assert "<image>" not in text and text.split("USER:")[1].strip().startswith(("a ", "an "))
    again = TextChatDataset(seeds, processor, cfg)[3]
    assert torch.equal(again["input_ids"], told[3]["input_ids"])


def test_phase_trains_the_language_side_only_and_resumes_from_its_file(tmp_path):
    lmm, processor = build_lmm(TINY, seed=1)
    before = {k: v.clone() for k, v in lmm.state_dict().items()}
    loop = TrainConfig(output_dir=str(tmp_path), mixed_precision="no", progress_bar=False)
    cfg = TextPretrainConfig(
        steps=40,
        batch_size=4,
        lr=1e-2,
        val_conversations=8,
        data=ChatDataConfig(p_caption=0.0, max_questions=3),
    )
    seeds = split_seeds("train", 4)  # 4 conversations seen over and over: a working phase learns them
    acc = pretrain_text(lmm, processor, cfg, seeds, str(tmp_path), loop)
    assert acc is not None and 0.0 <= acc["text_token_acc"] <= 1.0 and 0.0 <= acc["text_exact"] <= 1.0
    losses = [r["loss"] for r in read_log(os.path.join(tmp_path, "text"), "train")]
    assert len(losses) == 2 and losses[1] < 0.6 * losses[0]  # logged at steps 25 and 40
    after = lmm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("model.language_model.", "lm_head.")) for k in changed)
    assert all(p.requires_grad for p in lmm.parameters())  # the tower and projector are given back
    saved = load_file(os.path.join(tmp_path, "text", "text.safetensors"))
    assert changed <= set(saved) and not any(k.startswith("model.vision_tower.") for k in saved)
    fresh, _ = build_lmm(TINY, seed=1)
    again = pretrain_text(fresh, processor, cfg, seeds, str(tmp_path), loop, resume=True)
    assert again == pytest.approx(acc)
    assert all(torch.equal(fresh.state_dict()[k], after[k]) for k in after)
    assert pretrain_text(fresh, processor, replace(cfg, steps=0), seeds, str(tmp_path / "off"), loop) == {}
    assert not os.path.exists(tmp_path / "off")
    # a finished phase of another model is refused, not half-loaded
    other, _ = build_lmm(replace(TINY, text_hidden=64, text_intermediate=128), seed=1)
    with pytest.raises(ConfigError, match="does not fit"):
        pretrain_text(other, processor, cfg, seeds, str(tmp_path), loop, resume=True)


def test_stage_flags_and_validation(capsys):
    from flmm.shapes.train_lmm import LMMStageConfig, parse_args

    assert parse_args(["--out", "x"])[0].text == LMMStageConfig().text  # CLI defaults = shipped settings
    cfg = parse_args(["--out", "x", "--text-steps", "300", "--text-lr", "3e-3", "--p-caption", "0.5"])[0]
    assert (cfg.text.steps, cfg.text.lr, cfg.text.data.p_caption) == (300, 3e-3, 0.5)
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--text-steps", "-5"])
    assert "--text-steps" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="lr > 0"):
        TextPretrainConfig(steps=10, lr=0.0)
