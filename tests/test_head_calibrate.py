"""Keyword-threshold calibration on held-out narratives (shipped shapes-world LMM and head)."""

from pathlib import Path

import pytest

from flmm.assets_path import resolve
from flmm.data.shapes import ShapesNarratives
from flmm.errors import InputError
from flmm.head.calibrate import calibrate_keyword_threshold
from flmm.head.model import FLMMHead
from flmm.lmm.frozen import FrozenLMM
from flmm.shapes.train_head import SHAPES_QUESTION

SHIPPED_HEAD_CONFIG = Path(resolve("flmm:shapes/head")) / "config.json"


@pytest.fixture(scope="module")
def shipped():
    return FrozenLMM.from_pretrained(resolve("flmm:shapes/lmm")), FLMMHead.from_pretrained(
        resolve("flmm:shapes/head")
    )


def test_calibration_picks_the_best_exact_span_f1(shipped):
    lmm, head = shipped
    val = ShapesNarratives("val", 4, question=SHAPES_QUESTION)
    before = head.config.keyword_threshold
    best, table = calibrate_keyword_threshold(lmm, head, [val[i] for i in range(len(val))], (0.2, 0.5, 0.85))
    assert [row["threshold"] for row in table] == [0.2, 0.5, 0.85]
    chosen = next(row for row in table if row["threshold"] == best)
    assert all(chosen["span_exact_f1"] >= row["span_exact_f1"] for row in table)
    assert all(row["gold_spans"] == table[0]["gold_spans"] > 0 for row in table)
    assert head.config.keyword_threshold == before  # the caller decides whether to store it


def test_calibration_rejects_empty_input(shipped):
    lmm, head = shipped
    with pytest.raises(InputError, match="at least one"):
        calibrate_keyword_threshold(lmm, head, [])
    val = ShapesNarratives("val", 1, question=SHAPES_QUESTION)
    with pytest.raises(InputError, match="thresholds"):
        calibrate_keyword_threshold(lmm, head, [val[0]], (0.0, 1.5))


def test_head_stage_stores_the_calibrated_threshold(tmp_path):
    import json

    from flmm.shapes.train_head import HeadStageConfig, train_head_stage

    cfg = HeadStageConfig(
        out=str(tmp_path / "stage"),
        ref_scenes=2,
        narrative_scenes=2,
        epochs=1,
        calibration_scenes=2,
        batch_size=2,
        decoder_width=8,
        decoder_cue_width=4,
        canvas_size=32,
        selector_ref_scenes=3,
    )
    summary = train_head_stage(cfg)
    # the selector phase fits on its own, larger set of referring expressions
    assert summary["cache"]["ref-selector"]["written"] > summary["cache"]["ref"]["written"]
    assert summary["selector_fit"]["step"] > 0
    saved = json.loads((tmp_path / "stage" / "run" / "head" / "config.json").read_text())
    assert saved["keyword_threshold"] == summary["keyword_threshold"]
    assert len(summary["keyword_sweep"]) > 1
    best = max(row["span_exact_f1"] for row in summary["keyword_sweep"])
    chosen = next(r for r in summary["keyword_sweep"] if r["threshold"] == summary["keyword_threshold"])
    assert chosen["span_exact_f1"] == best
    assert saved["lmm"]["name"] == "flmm:shapes/lmm"  # portable names, not resolved paths
    # the presence check is stored with the bias calibrated on val phrases that are and are not there
    assert saved["presence"]["question"] == "is there {indefinite} ?"
    assert saved["presence"]["bias"] == summary["presence"]["bias"]
    assert summary["presence"]["absent"] > 0 and summary["presence"]["present"] > 0
    # the stage's sizes reach the head
    assert (saved["decoder_width"], saved["decoder_cue_width"], saved["canvas_size"]) == (8, 4, 32)
    shipped = json.loads(SHIPPED_HEAD_CONFIG.read_text())
    defaults = HeadStageConfig()
    for key in ("decoder_width", "decoder_cue_width", "part_selector", "canvas_size"):  # = the shipped head
        assert getattr(defaults, key) == shipped[key], key
    assert defaults.presence_question == shipped["presence"]["question"]


@pytest.mark.parametrize("flag", [["--decoder-cue-width", "-1"], ["--decoder-width", "0"]])
def test_head_stage_rejects_bad_sizes_as_usage_errors(flag, capsys):
    from flmm.shapes.train_head import main

    with pytest.raises(SystemExit) as e:
        main(flag)
    assert e.value.code == 2 and "--decoder-cue-width" in capsys.readouterr().err


def test_part_threshold_is_chosen_by_the_cious_of_the_masks(shipped):
    """Each candidate cut grounds every expression; the best cIoU wins and the head is given back as it was."""
    import torch

    from flmm.data.shapes import ShapesRES
    from flmm.head.calibrate import calibrate_part_threshold
    from flmm.head.selector import kept_parts

    lmm, head = shipped
    val = ShapesRES("val", 2, question=SHAPES_QUESTION)
    before = head.config.part_threshold
    best, table = calibrate_part_threshold(
        lmm, head.eval(), [val[i] for i in range(len(val))], (-50.0, 0.0, 50.0)
    )
    assert [row["threshold"] for row in table] == [-50.0, 0.0, 50.0]
    assert all(row["expressions"] == len(val) and 0 <= row["ciou"] <= 1 for row in table)
    chosen = next(row for row in table if row["threshold"] == best)
    assert all(chosen["ciou"] >= row["ciou"] for row in table)
    # keeping every part and keeping only the best one ground differently
    assert table[0]["ciou"] != table[2]["ciou"]
    assert head.config.part_threshold == before
    assert kept_parts(torch.tensor([-0.5, 0.5, 1.5]), 1.0).tolist() == [False, False, True]
    assert kept_parts(torch.tensor([-0.5, 0.5]), 2.0).tolist() == [False, True]  # none above: the best


def test_part_threshold_needs_a_selector_and_a_finite_cut(shipped):
    from flmm.errors import ConfigError
    from flmm.head.calibrate import calibrate_part_threshold
    from flmm.head.config import HeadConfig

    lmm, head = shipped
    plain = FLMMHead(HeadConfig.create(lmm.identity, None, use_refiner=False))
    with pytest.raises(InputError, match="part selector"):
        calibrate_part_threshold(lmm, plain, [])
    with pytest.raises(ConfigError, match="part_threshold"):
        HeadConfig.create(lmm.identity, None, use_refiner=False, part_threshold=float("nan"))
