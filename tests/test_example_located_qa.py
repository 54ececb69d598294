"""examples/located_qa_by_kind.py: questions about things named by their place, split by expression kind."""

from __future__ import annotations

import numpy as np

from flmm.world import sample_scene, split_seeds
from flmm.world.describe import matches
from flmm.world.refer import located_expressions
from tests.examples_loader import load_example


def _example():
    return load_example("located_qa_by_kind")


def test_questions_ask_what_the_expression_leaves_open():
    module = _example()
    seeds = split_seeds("val", 12)
    kinds = set()
    for seed in seeds:
        scene = sample_scene(seed)
        items = module.located_questions(scene)
        assert items == module.located_questions(sample_scene(seed))  # deterministic
        things = scene.spec.things
        refs = {r.text: (r, d) for r, d in located_expressions(things, np.random.default_rng([seed, 77]))}
        for question, answer, key, baseline in items:
            kind, attribute = key.split("/")
            kinds.add(kind)
            words = question.split()
            assert words[:2] == ["what", attribute] and words[-1] == "?"
            ref, desc = refs[" ".join(words[3:-1])]  # the expression, as the world wrote it
            assert ref.kind == kind and getattr(things[ref.thing_ids[0]], attribute) == answer
            assert desc[("size", "color", "shape").index(attribute)] is None  # left open by the expression
            members = [getattr(t, attribute) for t in things if matches(t, desc)]
            assert baseline == members.count(answer) / len(members) and baseline > 0
        for kind in ("location", "relation"):
            assert sum(k.startswith(kind + "/") for _, _, k, _ in items) <= 2
    assert kinds == {"location", "relation"}


def test_accuracy_on_the_shipped_lmm(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _example().main(["--n", "3", "--json", "--show", "2"])
    out = capsys.readouterr().out
    assert "| gold " in out and '"location"' in out
    for kind in ("location", "relation"):
        parts = [n for k, (_, _, n) in result.items() if k.startswith(kind + "/")]
        if kind in result:
            assert sum(parts) == result[kind][2]
            assert 0.0 <= result[kind][0] <= 100.0 and 0.0 < result[kind][1] <= 100.0
