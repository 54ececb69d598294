"""The tiny LMM's QA read-out (flmm.shapes.lmm_eval.qa_accuracy) without a trained model: the answers
are supplied, so every number it reports can be checked exactly."""

from __future__ import annotations

import numpy as np

import flmm.shapes.lmm_eval as lmm_eval
from flmm.world import sample_scene, split_seeds
from flmm.world.qa import LOCATED, qa_items


def test_qa_accuracy_splits_by_kind_and_by_how_many_things_the_scene_has(monkeypatch):
    seeds = split_seeds("val", 12)
    gold, crowd, kinds = [], [], []
    for seed in seeds:
        scene = sample_scene(seed)
        for item in qa_items(scene, located=1):
            gold.append(item.answer)
            crowd.append(len(scene.spec.things))
            kinds.append(item.kind)
    assert len(set(crowd)) >= 3  # the split has something to split

    # right on scenes of up to three things, wrong on the others (and always right on located questions)
    said = [a if n <= 3 or k == LOCATED else "?" for a, n, k in zip(gold, crowd, kinds)]
    monkeypatch.setattr(lmm_eval, "answer_questions", lambda model, processor, images, questions, bs: said)
    result = lmm_eval.qa_accuracy(None, None, seeds, located=1)

    for n in set(crowd):
        assert result[f"qa_acc_things_{n}"] == (1.0 if n <= 3 else 0.0)
    counted = [n for n, k in zip(crowd, kinds) if k != LOCATED]
    assert result["qa_n"] == len(counted) and result["qa_n_located"] == kinds.count(LOCATED)
    assert result["qa_acc"] == float(np.mean([n <= 3 for n in counted]))  # located questions left out
    assert result["qa_acc_located"] == 1.0


def test_binding_probe_reads_what_the_tokens_carry_and_nothing_else():
    from dataclasses import replace

    import pytest
    import torch

    from flmm.errors import ConfigError
    from flmm.shapes.lmm import build_lmm
    from tests.tiny.shapes_lmm import TINY_SHAPES_LMM

    # the world's 128-px scenes on the 16x16 grid, so that many tokens lie on things
    model, processor = build_lmm(
        replace(TINY_SHAPES_LMM, image_size=128, vision_hidden=64, max_positions=512)
    )
    model.eval()
    seeds = split_seeds("val", 30)
    acc = lmm_eval.binding_probe(model, processor, seeds[:20], seeds[20:])
    assert acc["binding_tokens"] > 100
    assert {k for k in acc if k.endswith("_acc")} == {
        f"binding_{layer}_{a}_acc" for layer in ("0", "1", "projector") for a in ("color", "shape", "size")
    }
    # even a random tower's tokens say the colour under them (its patch embedding is linear in the pixels)
    assert acc["binding_1_color_acc"] > 2 * acc["binding_color_majority"]
    with torch.no_grad():  # every token identical: a read-out can do no better than the most frequent value
        embeddings = model.model.vision_tower.embeddings
        embeddings.patch_embedding.weight.zero_()
        embeddings.position_embedding.weight.zero_()
    blind = lmm_eval.binding_probe(model, processor, seeds[:20], seeds[20:])
    for a in ("color", "shape", "size"):
        assert all(
            blind[f"binding_{layer}_{a}_acc"] <= blind[f"binding_{a}_majority"]
            for layer in ("0", "projector")
        )
    with pytest.raises(ConfigError, match="coverage"):
        lmm_eval.binding_probe(model, processor, seeds[:2], seeds[2:4], coverage=0.3)
