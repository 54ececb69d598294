"""benchmarks/selector_fit.py runs end to end on the shipped head (a tiny cache, one round)."""

import json


def test_selector_fit_benchmark_reports_both_sides(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from benchmarks.selector_fit import main

    assert main(["--scenes", "3", "--rounds", "1", "--steps", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] > 0 and out["objects"] > 0
    for key in (
        "collect_ms_per_sample_unet_only",
        "collect_ms_per_sample_with_refiner",
        "fit_step_ms_cache_reads",
        "fit_step_ms_copied_hidden",
    ):
        assert out[key] > 0, key
    # records carry no hidden states: far smaller than a copy of them
    assert 0 < out["memory_ratio"] < 0.5
    assert out["llava_7b_copied_hidden_bytes_per_object"] > 100 * out["record_bytes_per_object"]
