"""benchmarks/head_selector.py runs end to end on the shipped head (one tiny round) and reports both heads."""

import json

import pytest

from flmm.errors import ConfigError


def test_head_selector_benchmark_reports_both_heads(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from benchmarks.head_selector import main

    assert main(["--scenes", "1", "--repeats", "1", "--steps", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predict_calls_per_round"] > 0 and out["train_parts_per_object"] > 0
    for key in (
        "predict_ms_with_selector",
        "predict_ms_without",
        "train_step_s_with_selector",
        "train_step_s_without",
    ):
        assert out[key] > 0, key


def test_head_selector_benchmark_needs_a_head_with_a_selector(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from benchmarks.head_selector import main
    from flmm.assets_path import resolve
    from flmm.head import FLMMHead

    head = FLMMHead.from_pretrained(resolve("flmm:shapes/head"))
    head.config.part_selector = False
    head.config.part_check = None  # it checks the selector's parts
    head.part_selector = None
    head.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="no part selector"):
        main(["--model", str(tmp_path), "--scenes", "1"])
