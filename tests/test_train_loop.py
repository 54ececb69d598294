"""Tests of flmm.train: loss decreases, exact resume, atomic checkpoints, schedule, sampler, 2 processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import flmm.train.checkpoint as ckpt_mod
from flmm.errors import ConfigError
from flmm.train import (
    ShardedBatchSampler,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    list_checkpoints,
    read_log,
    seed_everything,
    warmup_decay_factor,
)
from flmm.train.precision import resolve_precision

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NoisyRegression(torch.utils.data.Dataset):
    """y = x @ w + noise, where the noise is drawn from the *global* torch RNG at access time, so an
    exact resume also needs the RNG states restored."""

    def __init__(self, n: int = 40, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i] + 0.01 * torch.randn(4), "y": self.y[i]}


def collate(samples: list[dict]) -> dict:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, batch: dict) -> dict:
        pred = self.net(self.frozen(batch["x"]) * 0 + batch["x"]).squeeze(-1)
        loss = nn.functional.mse_loss(pred, batch["y"])
        return {"loss": loss, "mae": (pred - batch["y"]).abs().mean()}


def make_config(out: str, **kw) -> TrainConfig:
    base = dict(
        output_dir=out,
        seed=3,
        max_steps=8,
        batch_size=4,
        grad_accum_steps=2,
        lr=3e-2,
        mixed_precision="no",
        save_every_steps=2,
        keep_last=2,
        log_every_steps=1,
        progress_bar=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def fresh_model(seed: int = 0) -> TinyNet:
    seed_everything(seed)
    return TinyNet()


def test_loss_goes_down(tmp_path):
    cfg = make_config(str(tmp_path / "run"), max_steps=60, grad_accum_steps=1, save_every_steps=0)
    result = Trainer(fresh_model(), NoisyRegression(), collate, cfg).train()
    losses = [r["loss"] for r in read_log(cfg.output_dir, "train")]
    assert len(losses) == 60
    assert sum(losses[-5:]) / 5 < 0.2 * sum(losses[:5]) / 5
    assert not result.interrupted and result.state.global_step == 60
    # the run folder holds the config as JSON and a final checkpoint
    assert TrainConfig.load(cfg.output_dir) == cfg
    assert latest_checkpoint(cfg.output_dir).endswith("step_00000060")


def test_only_trainable_parameters_change_and_are_saved(tmp_path):
    model = fresh_model()
    frozen_before = model.frozen.weight.detach().clone()
    cfg = make_config(str(tmp_path / "run"), max_steps=3)
    Trainer(model, NoisyRegression(), collate, cfg).train()
    assert torch.equal(model.frozen.weight, frozen_before)
    from safetensors.torch import load_file

    saved = load_file(os.path.join(latest_checkpoint(cfg.output_dir), "trainable.safetensors"))
    assert set(saved) == {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"}
    assert torch.equal(saved["net.0.weight"], model.net[0].weight.detach())


def test_lr_scales_give_a_parameter_group_its_own_rate(tmp_path):
    model = fresh_model()
    model.lr_scales = {"net.3.": 10.0}  # the last layer learns 10x faster
    first = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = make_config(str(tmp_path / "run"), max_steps=1, grad_accum_steps=1, warmup_ratio=0.0)
    trainer = Trainer(model, NoisyRegression(), collate, cfg)
    assert sorted(g["lr"] for g in trainer.optimizer.param_groups) == pytest.approx([3e-2, 3e-1])
    trainer.train()
    # AdamW's first step moves every weight by ~lr (sign of the gradient): 10x further in net.3
    step = {
        n: (p.detach() - first[n]).abs().max().item() for n, p in model.named_parameters() if p.requires_grad
    }
    assert step["net.3.weight"] == pytest.approx(10 * step["net.0.weight"], rel=0.05)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_interrupt_and_resume_is_exact(tmp_path, precision):
    # 40 samples / (4 x 2 accumulation) = 5 optimizer steps per epoch: 12 steps cross epoch boundaries
    n_steps, stop_at = 12, 7
    straight = fresh_model()
    cfg_a = make_config(str(tmp_path / "a"), max_steps=n_steps, mixed_precision=precision)
    res_a = Trainer(straight, NoisyRegression(), collate, cfg_a).train()
    assert res_a.state.global_step == n_steps

    def send_sigterm(trainer, state):
        if state.global_step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, handled by the trainer

    cfg_b = make_config(str(tmp_path / "b"), max_steps=n_steps, mixed_precision=precision)
    first = fresh_model()
    res_b = Trainer(first, NoisyRegression(), collate, cfg_b, step_callback=send_sigterm).train()
    assert res_b.interrupted and res_b.state.global_step == stop_at
    assert res_b.checkpoint.endswith(f"step_{stop_at:08d}")
    assert not torch.equal(first.net[0].weight, straight.net[0].weight)

    # a new process would build a differently initialised model: the checkpoint must override it
    second = fresh_model(seed=123)
    res_c = Trainer(second, NoisyRegression(), collate, cfg_b).train(resume=True)
    assert not res_c.interrupted and res_c.state.global_step == n_steps
    # frozen weights are not checkpointed (a real run reloads them from the pretrained model)
    for (name, p), (_, q) in zip(straight.named_parameters(), second.named_parameters()):
        if p.requires_grad:
            assert torch.equal(p, q), name
    # the logged losses of the resumed run continue the straight run's exactly
    la = {r["step"]: r["loss"] for r in read_log(cfg_a.output_dir, "train")}
    lb = {r["step"]: r["loss"] for r in read_log(cfg_b.output_dir, "train")}
    assert la == lb


def test_resume_without_checkpoint_starts_fresh_and_rejects_other_world(tmp_path):
    cfg = make_config(str(tmp_path / "run"), max_steps=2)
    res = Trainer(fresh_model(), NoisyRegression(), collate, cfg).train(resume=True)
    assert res.state.global_step == 2
    path = latest_checkpoint(cfg.output_dir)
    state_file = os.path.join(path, "trainer_state.json")
    with open(state_file) as f:
        state = json.load(f)
    state["world_size"] = 4
    with open(state_file, "w") as f:
        json.dump(state, f)
    with pytest.raises(ConfigError, match="processes"):
        Trainer(fresh_model(), NoisyRegression(), collate, make_config(cfg.output_dir, max_steps=4)).train(
            resume=True
        )


def test_partial_checkpoints_are_never_latest(tmp_path, monkeypatch):
    cfg = make_config(str(tmp_path / "run"), max_steps=4, save_every_steps=2)
    Trainer(fresh_model(), NoisyRegression(), collate, cfg).train()
    assert [os.path.basename(p) for p in list_checkpoints(cfg.output_dir)] == [
        "step_00000002",
        "step_00000004",
    ]
    root = os.path.join(cfg.output_dir, "checkpoints")
    # a crash mid-write leaves a temporary folder; a hand-made folder without the marker is ignored too
    os.makedirs(os.path.join(root, ".tmp_step_00000099"))
    os.makedirs(os.path.join(root, "step_00000050"))
    assert latest_checkpoint(cfg.output_dir).endswith("step_00000004")

    # an exception while writing (disk full, kill) must not produce a step folder
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    cfg2 = make_config(cfg.output_dir, max_steps=6, save_every_steps=6)
    with pytest.raises(OSError):
        Trainer(fresh_model(), NoisyRegression(), collate, cfg2).train(resume=True)
    assert latest_checkpoint(cfg.output_dir).endswith("step_00000004")
    assert not os.path.exists(os.path.join(root, "step_00000006"))


def test_keep_last_deletes_old_checkpoints(tmp_path):
    cfg = make_config(str(tmp_path / "run"), max_steps=8, save_every_steps=1, keep_last=3)
    Trainer(fresh_model(), NoisyRegression(), collate, cfg).train()
    names = [os.path.basename(p) for p in list_checkpoints(cfg.output_dir)]
    assert names == ["step_00000006", "step_00000007", "step_00000008"]


def test_schedule_warmup_then_cosine():
    f = warmup_decay_factor(100, warmup_ratio=0.03, schedule="cosine")
    assert [round(f(s), 6) for s in range(3)] == [round(1 / 3, 6), round(2 / 3, 6), 1.0]
    assert f(3) == pytest.approx(1.0)
    assert f(3 + 97 // 2) == pytest.approx(0.5, abs=0.02)
    assert f(100) == pytest.approx(0.0, abs=1e-9)
    values = [f(s) for s in range(3, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    with pytest.raises(ConfigError):
        warmup_decay_factor(0)


def test_sampler_shards_are_disjoint_and_skip_matches_tail():
    shards = [ShardedBatchSampler(23, 3, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(1)
    batches = [list(s) for s in shards]
    assert len(batches[0]) == len(batches[1]) == 23 // 6
    flat = [i for b in batches for batch in b for i in batch]
    assert len(flat) == len(set(flat)) == 18
    shards[0].set_epoch(1, start_batch=2)
    assert list(shards[0]) == batches[0][2:]
    shards[0].set_epoch(2)
    assert list(shards[0]) != batches[0]  # another epoch, another order
    with pytest.raises(ConfigError):
        ShardedBatchSampler(5, 3, world_size=2)


def test_config_json_round_trip_and_validation(tmp_path):
    cfg = make_config(str(tmp_path / "run"), betas=(0.8, 0.95), extra={"note": "x"})
    cfg.save(str(tmp_path))
    assert TrainConfig.load(str(tmp_path)) == cfg
    defaults = TrainConfig()
    assert (defaults.lr, defaults.weight_decay, defaults.betas, defaults.warmup_ratio) == (
        1e-4,
        0.01,
        (0.9, 0.999),
        0.03,
    )
    assert (defaults.max_grad_norm, defaults.schedule, defaults.mixed_precision) == (1.0, "cosine", "auto")
    with pytest.raises(ConfigError, match="auto | no | bf16 | fp16"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ConfigError, match="unknown fields"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_model_without_trainable_parameters_or_loss_is_rejected(tmp_path):
    model = fresh_model()
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="requires_grad"):
        Trainer(model, NoisyRegression(), collate, make_config(str(tmp_path / "a")))

    class NoLoss(TinyNet):
        def forward(self, batch):
            return {"mae": super().forward(batch)["mae"]}

    with pytest.raises(ConfigError, match="loss"):
        Trainer(NoLoss(), NoisyRegression(), collate, make_config(str(tmp_path / "b"))).train()


DIST_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    sys.path.insert(0, {repo!r})
    from tests.test_train_loop import NoisyRegression, collate, fresh_model, make_config
    from flmm.train import Trainer
    from safetensors.torch import save_file

    out, mode = sys.argv[1], sys.argv[2]
    cfg = make_config(out, max_steps=6, batch_size=2, grad_accum_steps=1, save_every_steps=0)
    def stop_rank0(trainer, state):
        # only rank 0 asks to stop: the trainer must stop both ranks at the same step
        if state.global_step == 3 and trainer.accelerator.process_index == 0:
            trainer.request_stop("test")
    model = fresh_model(seed=1)
    trainer = Trainer(model, NoisyRegression(), collate, cfg, step_callback=stop_rank0 if mode == "stop" else None)
    result = trainer.train(resume=(mode == "resume"))
    rank = trainer.accelerator.process_index
    weights = {{k: v.detach().contiguous() for k, v in model.state_dict().items()}}
    save_file(weights, os.path.join(out, f"final_{{mode}}_rank{{rank}}.safetensors"))
    # one file per rank: the two processes share stdout and their prints can interleave
    with open(os.path.join(out, f"result_{{mode}}_rank{{rank}}.txt"), "w") as f:
        f.write(f"{{result.state.global_step}} {{result.interrupted}}")
    """
)


@pytest.mark.slow
def test_two_process_cpu_run_stays_in_sync_and_resumes(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "dist_train.py"
    script.write_text(DIST_SCRIPT.format(repo=REPO))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO, ACCELERATE_USE_CPU="true")

    def launch(out: str, mode: str) -> str:
        # `--cpu` alone makes accelerate's simple launcher start ONE process (multi-CPU needs mpirun);
        # the torchrun launcher of `--multi_gpu` + a CPU-only Accelerator gives a 2-process gloo run.
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        proc = subprocess.run(
            cmd + [str(script), out, mode], env=env, capture_output=True, text=True, timeout=120, cwd=REPO
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [open(os.path.join(out, f"result_{mode}_rank{r}.txt")).read() for r in (0, 1)]

    straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
    assert launch(straight, "straight") == ["6 False", "6 False"]
    w0 = load_file(os.path.join(straight, "final_straight_rank0.safetensors"))
    w1 = load_file(os.path.join(straight, "final_straight_rank1.safetensors"))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)

    assert launch(interrupted, "stop") == ["3 True", "3 True"]
    launch(interrupted, "resume")
    r0 = load_file(os.path.join(interrupted, "final_resume_rank0.safetensors"))
    r1 = load_file(os.path.join(interrupted, "final_resume_rank1.safetensors"))
    for k in w0:
        assert torch.equal(r0[k], r1[k]), k
        assert torch.equal(r0[k], w0[k]), k


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected", [(False, False, "no"), (True, False, "bf16"), (False, True, "bf16")]
)
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("no", "cpu") == "no"  # an explicit choice is kept


def test_explicit_bf16_on_emulating_hardware_is_kept_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="flmm.train"):
        assert resolve_precision("bf16", "cpu") == "bf16"
    assert "emulated" in caplog.text and "auto" in caplog.text


def test_trainer_runs_auto_precision_as_resolved(tmp_path):
    cfg = make_config(str(tmp_path / "run"), max_steps=1, mixed_precision="auto")
    trainer = Trainer(fresh_model(), NoisyRegression(), collate, cfg)
    assert trainer.accelerator.mixed_precision == resolve_precision("auto")


def test_only_the_spurious_1x1_stride_warning_of_ddp_is_silenced(tmp_path):
    import warnings

    # the exact text DDP printed for SAM's mask-embedding 1x1 conv in a 2-process head run
    spurious = (
        "Grad strides do not match bucket view strides. This may indicate grad was not created according "
        "to the gradient layout contract, or that the param's strides changed since DDP was constructed.  "
        "This is not an error, but may impair performance.\n"
        "grad.sizes() = [128, 16, 1, 1], strides() = [16, 1, 16, 16]\n"
        "bucket_view.sizes() = [128, 16, 1, 1], strides() = [16, 1, 1, 1]"
    )
    real = spurious.replace("16, 1, 1]", "16, 3, 3]")  # a 3x3 kernel: a real layout difference
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Trainer(fresh_model(seed=0), NoisyRegression(), collate, make_config(str(tmp_path), max_steps=1))
        warnings.warn(spurious, UserWarning, stacklevel=1)
        warnings.warn(real, UserWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert spurious not in messages
    assert real in messages
