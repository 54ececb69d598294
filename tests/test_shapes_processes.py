"""The shapes-world stages as several data-parallel processes (``train_all --processes N``): the global
batch is split over the processes, and one process writes the run's files."""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import pytest
import torch

from flmm.errors import ConfigError
from flmm.shapes import stage
from flmm.shapes import train_sam as train_sam_module
from flmm.shapes.train_all import main as train_all_main
from flmm.shapes.train_all import run_stage
from flmm.train import TrainConfig, read_log
from flmm.train.cores import claim_idle_cores, idle_cores_lent, machine_cores

TINY_SAM = ["--vision-hidden", "32", "--vision-layers", "2", "--vision-heads", "2", "--prompt-hidden", "32"]
TINY_SAM += ["--decoder-mlp", "64", "--train-scenes", "32", "--eval-scenes", "2", "--val-scenes", "2"]


def test_one_process_keeps_the_batch():
    cfg = TrainConfig(output_dir="x", batch_size=8)
    assert stage.split_batch(cfg) is cfg
    assert stage.is_main_process()


def test_the_global_batch_is_split_over_the_processes(monkeypatch):
    monkeypatch.setattr(
        stage, "process_state", lambda: SimpleNamespace(num_processes=2, is_main_process=False)
    )
    split = stage.split_batch(TrainConfig(output_dir="x", batch_size=32))
    assert split.batch_size == 16 and split.find_unused_parameters
    assert not stage.is_main_process()
    monkeypatch.setattr(
        stage, "process_state", lambda: SimpleNamespace(num_processes=3, is_main_process=True)
    )
    with pytest.raises(ConfigError, match="batch size 32 does not split over 3 processes"):
        stage.split_batch(TrainConfig(output_dir="x", batch_size=32))


def test_train_all_wants_a_positive_number_of_processes(capsys):
    with pytest.raises(SystemExit):
        train_all_main(["--out", "x", "--processes", "0"])
    assert "--processes must be >= 1" in capsys.readouterr().err


def test_the_main_process_borrows_the_idle_cores_only_in_a_multi_process_cpu_launch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with idle_cores_lent(2, "cpu"):
            assert torch.get_num_threads() == max(1, machine_cores())
        assert torch.get_num_threads() == 1  # its own share again for training
        with idle_cores_lent(1, "cpu"), idle_cores_lent(2, "cuda"):
            assert torch.get_num_threads() == 1  # one process, or a GPU run: nothing to borrow
        with pytest.raises(RuntimeError), idle_cores_lent(2, "cpu"):
            raise RuntimeError("an evaluation failed")
        assert torch.get_num_threads() == 1  # restored after an error too
        assert claim_idle_cores(2, "cpu") == 1 and torch.get_num_threads() == max(1, machine_cores())
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(sys.platform == "win32", reason="gloo launch on POSIX only")
def test_two_processes_train_one_sam_on_the_global_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "sam"
    argv = ["--out", str(out), "--steps", "4", "--eval-every", "0", "--batch-size", "4", *TINY_SAM]
    assert run_stage("flmm.shapes.train_sam", train_sam_module.main, argv, processes=2) == 0
    # the stage's batch is the global one; each of the two processes trained on half of it
    assert json.loads((out / "stage_config.json").read_text())["train"]["batch_size"] == 4
    assert json.loads((out / "train_config.json").read_text())["batch_size"] == 2
    rows = read_log(str(out), "train")
    assert [r["step"] for r in rows] == [4]  # one log, written once
    assert os.path.isfile(out / "hf" / "model.safetensors")
    final = json.loads((out / "eval.json").read_text())
    assert final["steps"] == 4.0
