"""Atomic, resumable checkpoints.

A checkpoint is a folder ``<run>/checkpoints/step_00000100/`` holding:

- ``trainable.safetensors``: the parameters with ``requires_grad`` (names as in ``named_parameters``
  of the unwrapped model), fp32 as trained;
- ``optimizer.pt``, ``scheduler.pt`` (and ``scaler.pt`` with fp16): state dicts, read back with
  ``torch.load(weights_only=True)``;
- ``rng_state_<rank>.pt``: python, numpy and torch RNG states of every process;
- ``trainer_state.json``: step, epoch, position in the epoch, data-order seed, world size;
- ``COMPLETE``: written last.

Everything is first written to ``.tmp_step_...`` and the folder is renamed when complete, so a
crash mid-write leaves no folder that :func:`latest_checkpoint` would pick. With DeepSpeed or FSDP
(sharded weights and optimizer) the model and optimizer go through ``accelerator.save_state`` into
``accelerate_state/`` instead (untested here: no GPU).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from flmm.errors import ConfigError, DataError

CHECKPOINTS_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step_(\d{8})$")
_COMPLETE = "COMPLETE"


@dataclass
class TrainerState:
    """Where a run is: enough to continue it exactly.

    ``batch_in_epoch`` counts this process's micro-batches already consumed in ``epoch``; the data
    order of an epoch depends only on ``(data_seed, epoch)`` (see :mod:`flmm.train.sampler`).
    """

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    data_seed: int = 0
    world_size: int = 1
    total_steps: int = 0
    elapsed_seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TrainerState:
        return cls(**d)


def capture_rng_state() -> dict:
    """RNG states of python, numpy and torch (CPU and CUDA) of this process, ``weights_only``-safe."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the parameters with ``requires_grad`` (detached CPU copies)."""
    return {
        name: p.detach().to("cpu").contiguous().clone()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable parameters into ``model``; the set of names must match exactly."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ConfigError(
            "the checkpoint's trainable parameters do not match the model's "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}): was it made by another model or with "
            "other parameters frozen?"
        )
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != tensors[name].shape:
                raise ConfigError(
                    f"parameter {name}: checkpoint shape {tuple(tensors[name].shape)} != {tuple(p.shape)}"
                )
            p.copy_(tensors[name].to(p.device, p.dtype))


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(run_dir: str) -> list[str]:
    """Complete checkpoint folders of a run, oldest first."""
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _STEP_RE.match(name)
        path = os.path.join(root, name)
        if m and os.path.isfile(os.path.join(path, _COMPLETE)):
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str) -> str | None:
    """The complete checkpoint with the highest step, or None. Partial (``.tmp_*``) folders never count."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _is_sharded(accelerator) -> bool:
    kind = str(getattr(accelerator, "distributed_type", "NO"))
    return "DEEPSPEED" in kind or "FSDP" in kind


def save_checkpoint(
    run_dir: str,
    state: TrainerState,
    accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    keep_last: int = 2,
) -> str:
    """Write a checkpoint of ``state.global_step``; all processes must call this. Returns its path.

    ``model`` is the (possibly wrapped) prepared model; its trainable parameters are saved under the
    unwrapped model's names.
    """
    root = os.path.join(run_dir, CHECKPOINTS_DIR)
    final = os.path.join(root, step_dir_name(state.global_step))
    tmp = os.path.join(root, ".tmp_" + step_dir_name(state.global_step))
    done_already = os.path.isfile(os.path.join(final, _COMPLETE))
    accelerator.wait_for_everyone()
    if done_already:
        return final
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    accelerator.wait_for_everyone()

    torch.save(capture_rng_state(), os.path.join(tmp, f"rng_state_{accelerator.process_index}.pt"))
    if _is_sharded(accelerator):
        accelerator.save_state(os.path.join(tmp, "accelerate_state"))
        full = accelerator.get_state_dict(model)
        unwrapped = accelerator.unwrap_model(model)
        names = {n for n, p in unwrapped.named_parameters() if p.requires_grad}
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in full.items() if k in names}
    else:
        weights = trainable_state_dict(accelerator.unwrap_model(model))
    if accelerator.is_main_process:
        save_file(weights, os.path.join(tmp, "trainable.safetensors"))
        if not _is_sharded(accelerator):
            torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
        torch.save(scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
        if getattr(accelerator, "scaler", None) is not None:
            torch.save(accelerator.scaler.state_dict(), os.path.join(tmp, "scaler.pt"))
        with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
            json.dump(state.to_json(), f, indent=2)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(tmp, _COMPLETE), "w") as f:
            f.write("ok\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _load(path: str):
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(
    path: str,
    accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
) -> TrainerState:
    """Restore weights, optimizer, scheduler, scaler and this process's RNG states; return the state."""
    if not os.path.isfile(os.path.join(path, _COMPLETE)):
        raise DataError(f"{path!r} is not a complete checkpoint (no {_COMPLETE} marker)")
    with open(os.path.join(path, "trainer_state.json")) as f:
        state = TrainerState.from_json(json.load(f))
    if _is_sharded(accelerator):
        accelerator.load_state(os.path.join(path, "accelerate_state"))
    else:
        load_trainable_state_dict(
            accelerator.unwrap_model(model), load_file(os.path.join(path, "trainable.safetensors"))
        )
        optimizer.load_state_dict(_load(os.path.join(path, "optimizer.pt")))
    scheduler.load_state_dict(_load(os.path.join(path, "scheduler.pt")))
    scaler_path = os.path.join(path, "scaler.pt")
    if getattr(accelerator, "scaler", None) is not None and os.path.isfile(scaler_path):
        accelerator.scaler.load_state_dict(_load(scaler_path))
    rng_path = os.path.join(path, f"rng_state_{accelerator.process_index}.pt")
    if os.path.isfile(rng_path):
        restore_rng_state(_load(rng_path))
    return state
