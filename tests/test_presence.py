"""Expressions that denote nothing: the world's generator, the datasets, the metric and the eval task."""

from __future__ import annotations

import numpy as np
import pytest

from flmm.data.shapes import ShapesPresence, ShapesRefNarratives, ShapesRES
from flmm.errors import ConfigError, InputError
from flmm.evaluation import SpanGrounding, build_tasks, evaluate, markdown_table
from flmm.metrics import PresenceAccumulator, auroc
from flmm.world import (
    ABSENT,
    COLORS,
    SHAPES,
    SIZES,
    absent_expressions,
    referring_expressions,
    sample_scene,
)
from flmm.world.describe import LOCATIONS


def _descriptor(text: str) -> tuple[str | None, str | None, str | None]:
    """(size, colour, shape) of ``"the [location] [size] [colour] shape"``; fails on any other form."""
    words = text.split()
    assert words[0] == "the"
    words = words[2:] if words[1] in LOCATIONS else words[1:]
    size = words.pop(0) if words[0] in SIZES else None
    color = words.pop(0) if words[0] in COLORS else None
    (shape,) = words
    assert shape in SHAPES and color is not None
    return size, color, shape


def test_absent_expressions_denote_nothing_and_are_near_misses():
    forms = set()
    for seed in range(60):
        scene = sample_scene(seed)
        things = scene.spec.things
        exprs = absent_expressions(scene)
        assert exprs == absent_expressions(scene)  # deterministic by the scene's seed
        assert 1 <= len(exprs) <= 4 and len({e.text for e in exprs}) == len(exprs)
        present = {e.text for e in referring_expressions(scene)}
        for e in exprs:
            size, color, shape = _descriptor(e.text)
            assert e.kind == ABSENT and e.thing_ids == () and e.text not in present
            assert not any(t.color == color and t.shape == shape for t in things), e.text
            assert any(t.color == color or t.shape == shape for t in things), e.text  # a near miss
            assert not e.mask(scene).any() and e.mask(scene).shape == scene.image.shape[:2]
            forms.add((e.text.split()[1] in LOCATIONS, size is not None))
    assert forms == {(False, False), (False, True), (True, False), (True, True)}


def test_presence_dataset_holds_the_res_expressions_and_absent_ones():
    ds = ShapesPresence("val", 3, absent=2)
    res = {(s.meta["seed"], s.answer): s.objects[0].get_mask() for s in ShapesRES("val", 3)}
    samples = list(ds)
    assert len(samples) == len(ds) and not ds.skipped  # empty masks are kept, not skipped
    absent = [s for s in samples if s.meta["kind"] == ABSENT]
    present = [s for s in samples if s.meta["kind"] != ABSENT]
    assert len(absent) == 6 and len(present) == len(res)
    for s in present:
        assert np.array_equal(s.objects[0].get_mask(), res[(s.meta["seed"], s.answer)])
    for s in absent:
        assert not s.objects[0].get_mask().any() and s.objects[0].spans == [(0, len(s.answer))]
    assert len({s.sample_id for s in samples}) == len(samples)
    with pytest.raises(ConfigError, match="absent"):
        ShapesPresence("val", 1, absent=0)


def test_ref_narratives_mix_in_absent_expressions_only_when_asked():
    plain, mixed = ShapesRefNarratives("train", 4), ShapesRefNarratives("train", 4, absent=2)
    # absent=0 keeps the samples of earlier versions (the shipped head's training data)
    assert [s.answer for s in plain] == [s.answer for s in ShapesRefNarratives("train", 4, absent=0)]
    absent = {
        (seed, e.text)
        for seed in mixed.seeds
        for e in absent_expressions(sample_scene(seed), np.random.default_rng([seed, 4]), 2)
    }
    empty = {
        (s.meta["seed"], o.texts(s.answer)[0]) for s in mixed for o in s.objects if not o.get_mask().any()
    }
    assert empty == absent and len(empty) > 4
    assert sum(len(s.objects) for s in mixed) == sum(len(s.objects) for s in plain) + len(empty)
    with pytest.raises(ConfigError, match="absent"):
        ShapesRefNarratives("train", 1, absent=-1)


def test_auroc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    p, a = rng.integers(0, 5, 30) / 4, rng.integers(0, 5, 20) / 4  # many ties
    pairs = [(x > y) + 0.5 * (x == y) for x in p for y in a]
    assert auroc(p, a) == pytest.approx(np.mean(pairs))
    assert auroc([0.9, 0.8], [0.1]) == 1.0 and auroc([0.1], [0.9, 0.8]) == 0.0
    assert np.isnan(auroc([], [0.3]))


def test_presence_accumulator_counts_failures_against_the_method_and_merges():
    acc = PresenceAccumulator()
    acc.update(0.9, True, sample_id="a")
    acc.update(0.2, False, sample_id="b")
    acc.update(None, False, sample_id="c")  # failed: counted as shown
    other = PresenceAccumulator()
    other.update(None, True, sample_id="d")  # failed: counted as not shown
    acc.merge(other.state_dict())
    m = acc.compute()
    assert (m["present"], m["absent"], m["missing"], m["count"]) == (2, 2, 2, 4)
    assert m["absent_shown"] == 0.5 and m["present_shown"] == 0.5
    assert m["auroc"] == pytest.approx(0.25)  # of 4 pairs only 0.9 > 0.2 (failures: 0.0 and 1.0)
    with pytest.raises(InputError, match="duplicate"):
        acc.update(0.5, True, sample_id="a")
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        acc.update(float("nan"), True)
    with pytest.raises(InputError, match="thresholds"):
        PresenceAccumulator(0.7).merge(PresenceAccumulator().state_dict())


class ScoreByText:
    """Full masks scored 1 for the expressions in ``present`` and 0 for the others (or the reverse)."""

    name, question = "score-by-text", None

    def __init__(self, present: set[str], reverse: bool = False) -> None:
        self.present, self.reverse = present, reverse

    def set_image(self, image) -> None:
        self.hw = np.asarray(image).shape[:2]

    def ground_spans(self, question, answer, spans_per_object):
        score = float((answer in self.present) != self.reverse)
        masks = np.ones((len(spans_per_object), *self.hw), dtype=bool)
        return SpanGrounding(masks, np.full(len(masks), score, np.float32), {})


def test_eval_task_separates_what_the_score_says():
    (spec,) = build_tasks("shapes", n=1, tasks="absent")  # one scene: a text is present or absent
    assert spec.kind == "presence"
    present = {s.answer for s in spec.dataset if s.meta["kind"] != ABSENT}
    absent = [s for s in spec.dataset if s.meta["kind"] == ABSENT]
    assert absent and not present & {s.answer for s in absent}
    for reverse, expected in ((False, 1.0), (True, 0.0)):
        g = ScoreByText(present, reverse)
        res = evaluate("shapes", g, n=1, tasks="absent", progress=False)
        (task,) = res["tasks"].values()
        m = task["metrics"]["score"]
        assert m["auroc"] == expected and m["absent"] == len(absent) and m["missing"] == 0
        assert m["absent_shown"] == 1.0 - expected and m["present_shown"] == expected
    assert "Expressions that denote nothing" in markdown_table(res)


def test_a_grounder_giving_a_bad_score_fails_that_sample_only():
    class NanOnAbsent(ScoreByText):
        def ground_spans(self, question, answer, spans_per_object):
            out = super().ground_spans(question, answer, spans_per_object)
            bad = np.full(len(out.scores), np.nan, np.float32)
            return SpanGrounding(out.masks, out.scores if answer in self.present else bad, {})

    (spec,) = build_tasks("shapes", n=1, tasks="absent")
    present = {s.answer for s in spec.dataset if s.meta["kind"] != ABSENT}
    res = evaluate("shapes", NanOnAbsent(present), n=1, tasks="absent", progress=False)
    (task,) = res["tasks"].values()
    m = task["metrics"]["score"]
    assert task["failed"] == m["absent"] == m["missing"] > 0  # failed, scored the worst way, not dropped
    assert m["absent_shown"] == 1.0 and "in [0, 1]" in task["failures"][0]["error"]
