"""Asking the frozen LMM whether a phrase's referent is there (flmm.lmm.presence) on the shipped LMM."""

from __future__ import annotations

import numpy as np
import pytest

from flmm.assets_path import resolve
from flmm.data.shapes import ShapesPresence
from flmm.errors import ConfigError, InputError
from flmm.head.calibrate import calibrate_presence
from flmm.head.config import HeadConfig
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.presence import (
    PresenceCheck,
    calibrate_bias,
    cap_scores,
    presence_probability,
    yes_logits,
)
from flmm.world import sample_scene

CHECK = PresenceCheck("is there {indefinite} ?")


@pytest.fixture(scope="module")
def lmm():
    return FrozenLMM.from_pretrained(resolve("flmm:shapes/lmm"))


def test_questions_from_phrases():
    assert CHECK.ask("the red circle") == "is there a red circle ?"
    assert CHECK.ask("the orange star") == "is there an orange star ?"
    assert CHECK.ask("the two red squares") == "is there two red squares ?"
    assert CHECK.ask("a red circle") == "is there a red circle ?"
    verbatim = PresenceCheck("Is there {expression} in the image? Answer yes or no.", "Yes", "No")
    assert verbatim.ask(" the red circle ") == "Is there the red circle in the image? Answer yes or no."


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"question": "is there anything ?"}, "needs"),
        ({"question": "is there {expression} ?", "no": "yes"}, "different"),
        ({"question": "is there {expression} ?", "bias": float("nan")}, "finite"),
        ({"question": "is there {expression} ?", "nouns": "circle"}, "list of words"),
        ({"question": "is there {expression} ?", "yes": 1}, "strings"),
    ],
)
def test_bad_checks_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PresenceCheck(**kwargs)


def test_only_phrases_with_a_covered_noun_are_asked_about(lmm):
    check = PresenceCheck("is there {indefinite} ?", nouns=("circle", "circles"))
    assert check.covers("the left-most Circle") and not check.covers("the sky")
    p = presence_probability(lmm, sample_scene(20_000_001).image, ["the sky", "the red circle"], check)
    assert np.isnan(p[0]) and 0.0 <= p[1] <= 1.0
    capped = cap_scores(np.array([0.9, 0.9]), p)
    assert capped[0] == np.float32(0.9) and capped[1] == min(np.float32(0.9), p[1])


def test_head_config_keeps_the_check_and_reads_old_configs():
    cfg = HeadConfig.load(resolve("flmm:shapes/head") + "/config.json")
    assert isinstance(cfg.presence, PresenceCheck)
    d = cfg.to_dict()
    assert HeadConfig.from_dict(d).presence == cfg.presence
    d.pop("presence")
    with pytest.raises(ConfigError, match="part_check"):  # the part check asks the presence question
        HeadConfig.from_dict(d)
    d.pop("part_check")
    assert HeadConfig.from_dict(d).presence is None  # a head saved before the check: not asked
    # a recipe's "head" overrides may name one as plain JSON
    recipe = {"question": "Is there {expression} in the image? Answer yes or no.", "yes": "Yes", "no": "No"}
    made = HeadConfig.create(cfg.lmm, presence=recipe, use_refiner=False)
    assert made.presence == PresenceCheck(**recipe)
    with pytest.raises(ConfigError, match="needs"):
        HeadConfig.create(cfg.lmm, presence={"question": "Is it there?"}, use_refiner=False)
    with pytest.raises(ConfigError, match="presence must be"):
        HeadConfig.create(cfg.lmm, presence="is there {expression} ?", use_refiner=False)


def test_batched_questions_equal_one_at_a_time(lmm):
    image = sample_scene(20_000_001).image
    phrases = ["the red circle", "the big blue object left of the green star", "the squares"]
    batched = yes_logits(lmm, image, phrases, CHECK)
    alone = np.array([yes_logits(lmm, image, [p], CHECK)[0] for p in phrases])
    np.testing.assert_allclose(batched, alone, atol=1e-4)  # padding does not move the answer
    p = presence_probability(lmm, image, phrases, CHECK)
    assert p.shape == (3,) and p.dtype == np.float32 and ((0 <= p) & (p <= 1)).all()
    assert yes_logits(lmm, image, [], CHECK).shape == (0,)
    with pytest.raises(InputError, match="non-empty"):
        yes_logits(lmm, image, ["the red circle", " "], CHECK)
    with pytest.raises(ConfigError, match="no token"):
        yes_logits(lmm, image, ["the red circle"], PresenceCheck("is there {indefinite} ?", yes="perhaps"))


def test_calibrated_bias_maximises_youden_j():
    present, absent = np.array([2.0, 1.0, 0.5, -0.2]), np.array([-1.0, -0.5, 0.3])
    bias = calibrate_bias(present, absent)
    j = ((present + bias) >= 0).mean() - ((absent + bias) >= 0).mean()
    for cut in np.linspace(-3, 3, 121):  # no cut does better
        assert (present >= cut).mean() - (absent >= cut).mean() <= j + 1e-12
    assert calibrate_bias(np.array([1.0]), np.array([-1.0])) == 0.0  # already separated at 0: left alone
    assert calibrate_bias(np.array([3.0]), np.array([-1.0])) == 0.0
    with pytest.raises(InputError, match="there and"):
        calibrate_bias(np.array([1.0]), np.array([]))


def test_calibration_on_held_out_phrases_separates_them(lmm):
    samples = list(ShapesPresence("val", 6))
    check, summary = calibrate_presence(lmm, CHECK, samples)
    assert check.question == CHECK.question and check.bias == summary["bias"]
    assert summary["absent"] > 0 and summary["present"] > summary["absent"]
    assert summary["present_shown"] - summary["absent_shown"] > 0.3 and summary["auroc"] > 0.7


def test_grounding_refuses_presence_of_another_length():
    from flmm.pipeline.types import Grounding

    masks, scores = np.zeros((2, 4, 4), dtype=bool), np.array([0.9, 0.1])
    with pytest.raises(InputError, match="presence"):
        Grounding.build("a ; b", ["a", "b"], [(0, 1), (4, 5)], masks, scores, 0.5, "f-lmm", presence=[0.5])
    g = Grounding.build(
        "a ; b", ["a", "b"], [(0, 1), (4, 5)], masks, scores, 0.5, "f-lmm", presence=[0.9, 0.1]
    )
    assert g.presence is not None and g.presence.dtype == np.float32 and g.presence.shape == (2,)
