"""The one training loop of flmm (tiny shapes-world models and the real recipes alike).

Runs as a plain single process (``python -m ...``, CPU or one GPU) or under ``accelerate launch``
(DDP over GPUs and nodes, DeepSpeed / FSDP through accelerate's config file): Hugging Face
accelerate is used only inside :class:`Trainer`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from flmm.errors import ConfigError
from flmm.train.accel import make_accelerator
from flmm.train.checkpoint import TrainerState, latest_checkpoint, load_checkpoint, save_checkpoint
from flmm.train.config import TrainConfig
from flmm.train.cores import idle_cores_lent
from flmm.train.interrupt import StopRequest
from flmm.train.logger import RunLogger
from flmm.train.sampler import ShardedBatchSampler
from flmm.train.schedule import build_scheduler
from flmm.train.seeding import seed_everything

EvalFn = Callable[[torch.nn.Module], Mapping[str, float]]
StepCallback = Callable[["Trainer", TrainerState], None]


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        state: position reached (``state.global_step`` optimizer steps done).
        interrupted: True when a signal, :meth:`Trainer.request_stop` or ``max_minutes`` stopped the run
            before ``state.total_steps``; a checkpoint of that position was written.
        checkpoint: path of the last checkpoint written (None if none).
        last_train: the last logged training scalars; ``last_eval``: the last ``eval_fn`` result.
    """

    state: TrainerState
    interrupted: bool
    checkpoint: str | None
    last_train: dict[str, float] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _scalars(output: Mapping[str, Any]) -> dict[str, float]:
    values = {}
    for key, value in output.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            values[key] = float(value.detach().float())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = float(value)
    return values


def _param_groups(model: torch.nn.Module, lr: float) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters, one per learning-rate factor (see ``Trainer``)."""
    scales: dict[str, float] = dict(getattr(model, "lr_scales", {}))
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            factor = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
            groups.setdefault(float(factor), []).append(p)
    if not groups:
        raise ConfigError("the model has no parameter with requires_grad=True: nothing to train")
    return [{"params": ps, "lr": lr * f} for f, ps in groups.items()]


class Trainer:
    """Trains the ``requires_grad`` parameters of ``model`` with AdamW + warm-up/cosine.

    Args:
        model: ``forward(batch) -> dict`` with a scalar ``"loss"`` tensor and optionally other scalars
            (logged). An attribute ``lr_scales: dict[str, float]`` (parameter-name prefix -> factor)
            trains those parameters at ``factor x`` the learning rate, e.g. a fresh probe beside a
            pre-trained tower. ``batch`` is whatever ``collate_fn`` returns, moved to the device.
        train_dataset: map-style dataset; its order is decided by the trainer (seeded by
            ``(config.seed, epoch)``, sharded over processes). If it has ``set_epoch(epoch)``, that is
            called before each epoch (also when resuming mid-epoch).
        collate_fn: list of samples -> batch.
        config: :class:`TrainConfig`.
        eval_fn: called on the main process with the unwrapped model in eval mode under
            ``torch.inference_mode()`` every ``config.eval_every_steps`` and at the end; returns scalars.
            In a multi-process CPU launch the other processes wait meanwhile and the main process
            evaluates with every core (:mod:`flmm.train.cores`).
        step_callback: called on every process after each optimizer step (tests, custom hooks).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_dataset: Dataset,
        collate_fn: Callable[[list[Any]], Any] | None,
        config: TrainConfig,
        eval_fn: EvalFn | None = None,
        step_callback: StepCallback | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.eval_fn = eval_fn
        self.step_callback = step_callback
        self.train_dataset = train_dataset
        self.collate_fn = collate_fn
        self.accelerator = make_accelerator(config)
        self.stop = StopRequest()
        groups = _param_groups(model, config.lr)
        params = [p for g in groups for p in g["params"]]
        optimizer = torch.optim.AdamW(
            groups,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
        acc = self.accelerator
        self.sampler = ShardedBatchSampler(
            len(train_dataset),  # type: ignore[arg-type]  # map-style datasets are sized
            config.batch_size,
            config.seed,
            acc.process_index,
            acc.num_processes,
        )
        self.steps_per_epoch = len(self.sampler) // config.grad_accum_steps
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"one epoch gives {len(self.sampler)} micro-batches per process, fewer than "
                f"grad_accum_steps={config.grad_accum_steps}: lower it or add data"
            )
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self._configure_deepspeed()
        self.model, self.optimizer = acc.prepare(model, optimizer)
        # The scheduler is stepped by us once per optimizer step; accelerate's wrapper would step it
        # num_processes times per call, so it is deliberately not prepared.
        self.scheduler = build_scheduler(
            self.optimizer, self.total_steps, config.warmup_ratio, config.schedule, config.min_lr_ratio
        )
        self.params = params
        self.logger = RunLogger(config.output_dir, enabled=acc.is_main_process)

    # -- public API ---------------------------------------------------------------------------------
    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def unwrapped_model(self) -> torch.nn.Module:
        """The model without DDP/compile wrappers (same parameters)."""
        return self.accelerator.unwrap_model(self.model)

    def request_stop(self, reason: str = "requested") -> None:
        """Checkpoint and stop after the current optimizer step, as on SIGINT/SIGTERM."""
        self.stop.request(reason)

    def train(self, resume: bool | str = False) -> TrainResult:
        """Run until ``total_steps`` or an interruption; always leaves a checkpoint of the end position.

        Args:
            resume: False for a fresh run (the run folder's checkpoints are ignored), True to continue
                from the latest complete checkpoint of ``config.output_dir`` (fresh if there is none),
                or the path of a checkpoint folder.
        """
        cfg, acc = self.config, self.accelerator
        state = self._start(resume)
        start_time, last_ckpt = time.time(), None
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(
            total=self.total_steps,
            initial=state.global_step,
            disable=not (acc.is_main_process and cfg.progress_bar),
            desc="train",
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 60.0,  # keep redirected logs short
        )
        self.model.train()
        interrupted = False
        with self.stop:
            while state.global_step < self.total_steps and not interrupted:
                self.sampler.set_epoch(state.epoch, state.batch_in_epoch)
                if hasattr(self.train_dataset, "set_epoch"):  # epoch-dependent data (curricula)
                    self.train_dataset.set_epoch(state.epoch)
                batches = iter(self._loader(state.epoch))
                while state.global_step < self.total_steps and (
                    state.batch_in_epoch + cfg.grad_accum_steps <= len(self.sampler)
                ):
                    step_scalars = self._optimizer_step(batches, state)
                    for k, v in step_scalars.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
                    state.global_step += 1
                    bar.update(1)
                    done = state.global_step >= self.total_steps
                    if count and (state.global_step % cfg.log_every_steps == 0 or done):
                        last_train = self._log_train(state, sums, count)
                        bar.set_postfix(loss=f"{last_train.get('loss', float('nan')):.4f}")
                        sums, count = {}, 0
                    if self.step_callback is not None:
                        self.step_callback(self, state)
                    if cfg.eval_every_steps and state.global_step % cfg.eval_every_steps == 0 and not done:
                        last_eval = self._evaluate(state)
                    over_budget = cfg.max_minutes > 0 and (time.time() - start_time) > 60 * cfg.max_minutes
                    if over_budget:
                        self.stop.request("max_minutes")
                    interrupted = self._should_stop() and not done
                    periodic = cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0
                    if periodic or interrupted or done:
                        last_ckpt = self._save(state, start_time)
                    if interrupted:
                        break
                else:
                    state.epoch += 1
                    state.batch_in_epoch = 0
        bar.close()
        if interrupted:
            self.logger.log(state.global_step, "event", event="interrupted", reason=self.stop.reason)
        else:
            last_eval = self._evaluate(state) if self.eval_fn is not None else last_eval
        if last_ckpt is None and state.global_step > 0:
            last_ckpt = self._save(state, start_time)
        self.logger.close()
        return TrainResult(state, interrupted, last_ckpt, last_train, last_eval)

    # -- internals ----------------------------------------------------------------------------------
    def _configure_deepspeed(self) -> None:
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if plugin is None:
            return
        # DeepSpeed needs the micro-batch size and clipping before prepare(); we do not prepare our
        # dataloader, so "auto" values cannot be inferred by accelerate.
        ds = plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = self.config.batch_size
        ds["gradient_accumulation_steps"] = self.config.grad_accum_steps
        ds.setdefault("gradient_clipping", self.config.max_grad_norm)

    def _loader(self, epoch: int) -> DataLoader:
        # An own generator: creating a DataLoader iterator otherwise draws its workers' base seed
        # from the global RNG, which a resumed run would do at another moment than the straight one.
        g = torch.Generator()
        g.manual_seed(self.config.seed * 1_000_003 + epoch * 1009 + self.accelerator.process_index)
        return DataLoader(
            self.train_dataset,
            batch_sampler=self.sampler,
            collate_fn=self.collate_fn,
            num_workers=self.config.num_workers,
            persistent_workers=False,
            generator=g,
        )

    def _start(self, resume: bool | str) -> TrainerState:
        cfg, acc = self.config, self.accelerator
        path = None
        if resume is True:
            path = latest_checkpoint(cfg.output_dir)
        elif isinstance(resume, str) and resume:
            path = resume
            if not os.path.isdir(path):
                raise ConfigError(f"no checkpoint folder at {path!r}")
        if acc.is_main_process:
            saved = os.path.join(cfg.output_dir, "train_config.json")
            if path is not None and os.path.isfile(saved):
                diffs = TrainConfig.load(saved).differences(cfg)
                if diffs:
                    print(f"[flmm.train] resuming with a changed config: {diffs}")
            cfg.save(cfg.output_dir)
        acc.wait_for_everyone()
        if path is None:
            seed_everything(cfg.seed + acc.process_index)
            return TrainerState(
                data_seed=cfg.seed, world_size=acc.num_processes, total_steps=self.total_steps
            )
        state = load_checkpoint(path, acc, self.model, self.optimizer, self.scheduler)
        if state.world_size != acc.num_processes:
            raise ConfigError(
                f"checkpoint {path!r} was written by {state.world_size} processes, this run has "
                f"{acc.num_processes}: the data position and RNG states cannot be mapped exactly; resume "
                "with the same number of processes"
            )
        if state.data_seed != cfg.seed:
            raise ConfigError(f"checkpoint data seed {state.data_seed} != config seed {cfg.seed}")
        state.total_steps = self.total_steps
        self.logger.log(state.global_step, "event", event="resumed", checkpoint=path)
        return state

    def _optimizer_step(self, batches, state: TrainerState) -> dict[str, float]:
        acc, cfg = self.accelerator, self.config
        scalars: dict[str, float] = {}
        for _ in range(cfg.grad_accum_steps):
            batch = _to_device(next(batches), acc.device)
            state.batch_in_epoch += 1
            with acc.accumulate(self.model):
                with acc.autocast():
                    output = self.model(batch)
                if not isinstance(output, Mapping) or "loss" not in output:
                    raise ConfigError("the model's forward(batch) must return a dict with a 'loss' tensor")
                loss = output["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise FloatingPointError(f"non-finite loss {float(loss)} at step {state.global_step}")
                acc.backward(loss)
                if acc.sync_gradients:
                    if cfg.max_grad_norm > 0:
                        norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
                        scalars["grad_norm"] = float(norm) if norm is not None else float("nan")
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            for k, v in _scalars(output).items():
                scalars[k] = scalars.get(k, 0.0) + v / cfg.grad_accum_steps
        scalars["lr"] = float(self.scheduler.get_last_lr()[0])
        self.scheduler.step()
        return scalars

    def _reduce_mean(self, values: dict[str, float]) -> dict[str, float]:
        acc = self.accelerator
        if acc.num_processes == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=acc.device)
        t = acc.reduce(t, reduction="mean")
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def _log_train(self, state: TrainerState, sums: dict[str, float], count: int) -> dict[str, float]:
        means = self._reduce_mean({k: v / count for k, v in sums.items()})
        self.logger.log(state.global_step, "train", epoch=state.epoch, **means)
        return means

    def _should_stop(self) -> bool:
        acc = self.accelerator
        if acc.num_processes == 1:
            return self.stop.requested
        # A signal may reach only some processes; all must stop at the same step or DDP deadlocks.
        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=acc.device)
        return bool(acc.reduce(flag, reduction="sum").item() > 0)

    def _evaluate(self, state: TrainerState) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        results: dict[str, float] = {}
        acc = self.accelerator
        if acc.is_main_process:
            model = self.unwrapped_model()
            model.eval()
            # the other processes wait at the barrier below: their cores evaluate too
            with torch.inference_mode(), idle_cores_lent(acc.num_processes, acc.device.type):
                results = {k: float(v) for k, v in dict(self.eval_fn(model)).items()}
            model.train()
            self.logger.log(state.global_step, "eval", **results)
            print(f"[flmm.train] step {state.global_step} eval: {results}")
        acc.wait_for_everyone()
        return results

    def _save(self, state: TrainerState, start_time: float) -> str:
        now = time.time()
        state.elapsed_seconds += now - getattr(self, "_last_save_time", start_time)
        self._last_save_time = now
        state.elapsed_seconds = math.floor(state.elapsed_seconds * 1000) / 1000
        return save_checkpoint(
            self.config.output_dir,
            state,
            self.accelerator,
            self.model,
            self.optimizer,
            self.scheduler,
            keep_last=self.config.keep_last,
        )
