"""examples/continue_lmm.py: more LM steps on a finished shapes LMM, tower frozen, exported for a head."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from flmm.assets_path import resolve
from flmm.errors import ConfigError
from flmm.lmm import FrozenLMM
from tests.examples_loader import load_example


def test_continuing_trains_the_language_side_only_and_exports_a_loadable_lmm(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = load_example("continue_lmm")
    out = tmp_path / "lm"
    argv = ["--out", str(out), "--steps", "2", "--batch-size", "2", "--seeds", "60000:60008",
            "--eval-scenes", "2"]  # fmt: skip
    assert module.main(argv) == 0
    qa = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= qa["qa_acc"] <= 100.0 and "qa_acc_color" in qa
    before = load_file(os.path.join(resolve("flmm:shapes/lmm"), "model.safetensors"))
    after = load_file(str(out / "hf" / "model.safetensors"))
    assert before.keys() == after.keys()
    tower = [k for k in before if "vision_tower" in k]
    language = [k for k in before if "language_model" in k or "projector" in k]
    assert tower and language
    assert all(torch.equal(before[k], after[k]) for k in tower)  # frozen
    assert any(not torch.equal(before[k], after[k]) for k in language)  # trained
    assert (out / "hf" / "stage_config.json").is_file()
    added = json.loads((out / "hf" / "continuation.json").read_text())
    assert added["seeds"] == [60000, 60008] and added["train"]["max_steps"] == 2
    assert FrozenLMM.from_pretrained(str(out / "hf")).identity.family == "llava"

    # a second run continues from the first one's last (fp32) checkpoint
    second = tmp_path / "lm2"
    argv = ["--out", str(second), "--steps", "1", "--batch-size", "2", "--seeds", "60008:60012",
            "--eval-scenes", "0", "--previous", str(out)]  # fmt: skip
    assert module.main(argv) == 0
    assert (second / "hf" / "model.safetensors").is_file()
    assert json.loads((second / "hf" / "continuation.json").read_text())["previous"] == str(out)


@pytest.mark.parametrize("seeds", ["80000", "9:3", "a:b"])
def test_a_bad_seed_range_is_refused_with_the_form_it_needs(seeds):
    module = load_example("continue_lmm")
    with pytest.raises(ConfigError, match="START"):
        module.seed_range(seeds)


def test_a_previous_run_without_checkpoints_is_refused_before_training(tmp_path):
    module = load_example("continue_lmm")
    with pytest.raises(ConfigError, match="no checkpoint"):
        module.continue_lmm("flmm:shapes/lmm", str(tmp_path / "out"), 1, (0, 4), previous=str(tmp_path / "x"))
