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
