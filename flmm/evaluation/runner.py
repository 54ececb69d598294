"""``evaluate``: run a benchmark with a grounder, sharded over processes, and report the results.

    from flmm.evaluation import FLMMGrounder, evaluate
    results = evaluate("shapes", FLMMGrounder(lmm, head), n=50, out_dir="eval-out")
    print(results["tasks"]["res/shapes-res/test"]["metrics"]["refined"]["ciou"])

Under ``accelerate launch`` (GPUs) or ``torchrun --nproc_per_node N`` (CPU processes, gloo) every
process evaluates samples ``i % world_size == rank`` of every task,
the task states are gathered with ``accelerate.utils.gather_object`` and merged (accumulators refuse a
sample seen twice), and the main process writes ``results.json``, ``table.md`` and ``cases.png``.
Scores are fractions in [0, 1] (the table shows percent); a ratio over nothing is ``None`` in JSON.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flmm.errors import ConfigError, InputError
from flmm.evaluation.benchmarks import DEFAULT_SCENES, build_tasks
from flmm.evaluation.chat_check import run_qa
from flmm.evaluation.grounder import Grounder
from flmm.evaluation.state import TaskState, merge_states
from flmm.evaluation.tasks import TaskRunner, TaskSpec, accumulator_factories
from flmm.lmm.frozen import FrozenLMM


def process_state() -> Any:
    """accelerate's ``PartialState`` of this process (initialises the process group under
    ``accelerate launch`` / ``torchrun``). Without CUDA it is asked for CPU processes (gloo), which
    accelerate only detects when told so."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def process_shard() -> tuple[int, int]:
    """``(rank, world_size)`` of this process under accelerate/torchrun (``(0, 1)`` otherwise)."""
    state = process_state()
    return int(state.process_index), int(state.num_processes)


def evaluate_shard(
    specs: Sequence[TaskSpec],
    grounder: Grounder,
    *,
    rank: int = 0,
    world_size: int = 1,
    lmm: FrozenLMM | None = None,
    limit: int | None = None,
    max_new_tokens: int = 128,
    qa_max_new_tokens: int = 16,
    strict: bool = False,
    k_cases: int = 4,
    progress: bool = False,
    similarity: Any = None,
    meteor_backend: str = "auto",
) -> list[TaskState]:
    """This process's share of every task, one :class:`TaskState` per spec (same order).

    ``lmm`` (default ``grounder.lmm``) is needed by ``qa`` tasks only; without one they are skipped with
    a note.
    """
    lmm = lmm if lmm is not None else getattr(grounder, "lmm", None)
    states = []
    for spec in specs:
        if spec.kind == "qa":
            if lmm is None:
                states.append(TaskState(spec.task, "qa", spec.name, notes={"no_lmm": 1}))
                continue
            states.append(
                run_qa(
                    spec,
                    lmm,
                    rank=rank,
                    world_size=world_size,
                    limit=limit,
                    max_new_tokens=qa_max_new_tokens,
                    strict=strict,
                    progress=progress,
                )
            )
            continue
        factories = accumulator_factories(spec.kind, similarity, meteor_backend)
        runner = TaskRunner(
            spec, grounder, max_new_tokens=max_new_tokens, strict=strict, k_cases=k_cases, factories=factories
        )
        states.append(runner.run(rank, world_size, limit, progress))
    return states


def merge_shards(
    shards: Sequence[Sequence[TaskState]],
    k_cases: int = 4,
    similarity: Any = None,
    meteor_backend: str = "auto",
) -> list[TaskState]:
    """Merge the per-process lists of :func:`evaluate_shard` into one state per task."""
    if not shards:
        raise InputError("no shards to merge")
    n = len(shards[0])
    if any(len(s) != n for s in shards):
        raise InputError("every shard must hold the same tasks")
    merged = []
    for j in range(n):
        column = [s[j] for s in shards]
        merged.append(
            merge_states(column, accumulator_factories(column[0].kind, similarity, meteor_backend), k_cases)
        )
    return merged


def _stage_provided(metrics: dict[str, Any]) -> bool:
    """Whether a stage accumulator saw at least one real prediction (not only failures)."""
    return int(metrics.get("count", 0)) - int(metrics.get("missing", 0)) > 0


def summarize_task(state: TaskState, similarity: Any = None, meteor_backend: str = "auto") -> dict[str, Any]:
    """The JSON-ready result of one merged task: metrics per stage, counts, failures and skips."""
    factories = accumulator_factories(state.kind, similarity, meteor_backend)
    computed = {}
    for name, acc_state in state.accumulators.items():
        acc = factories[name]()
        acc.load_state_dict(acc_state)
        computed[name] = acc.compute()
    out: dict[str, Any] = {
        "kind": state.kind,
        "dataset": state.dataset,
        "samples": state.samples,
        "failed": len(state.failures),
        "failures": state.failures,
        "skipped": state.skipped,
    }
    if state.kind in ("res", "narrative"):
        has_decoder = "decoder" in computed and _stage_provided(computed["decoder"])
        metrics = {("refined" if has_decoder else "mask"): computed["mask"]}
        if has_decoder:
            metrics["decoder"] = computed["decoder"]
        out["metrics"] = metrics
        if state.kind == "narrative":
            out["keywords"] = {"noun_phrases": computed["noun_phrases"]}
            if state.notes.get("keyword_texts", 0):
                out["keywords"] = {"selector": computed["selector"], **out["keywords"]}
    elif state.kind == "qa":
        if state.notes.get("no_lmm"):
            out.update(metrics={}, preserved=None, note="skipped: the grounder exposes no FrozenLMM (.lmm)")
            return out
        out["metrics"] = computed
        differing = list(state.notes.get("differing", []))
        ident = computed["identical"]
        out["differing"] = differing
        out["preserved"] = not differing and not state.failures and ident["identical"] == ident["count"]
    else:
        out["metrics"] = computed
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def summarize(
    states: Sequence[TaskState], similarity: Any = None, meteor_backend: str = "auto", **info: Any
) -> dict[str, Any]:
    """Results of merged tasks: ``{**info, "tasks": {task id: ...}, "chat_preserved": bool | None}``."""
    tasks = {s.task: summarize_task(s, similarity, meteor_backend) for s in states}
    flags = [t["preserved"] for t in tasks.values() if t["kind"] == "qa" and t.get("preserved") is not None]
    return _json_safe({**info, "tasks": tasks, "chat_preserved": all(flags) if flags else None})


def write_outputs(
    results: dict[str, Any], states: Sequence[TaskState], out_dir: str | os.PathLike
) -> dict[str, str]:
    """Write ``results.json``, ``table.md``, (when there are cases) ``cases.png`` and (for RES and
    narrative tasks) ``objects.json``, the per-object scores :mod:`flmm.evaluation.paired` compares,
    under ``out_dir``; returns their paths by kind."""
    from flmm.evaluation.cases import draw_cases
    from flmm.evaluation.paired import per_object_scores
    from flmm.evaluation.report import markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "results.json"), "table": str(out / "table.md")}
    picture = draw_cases(states)
    if picture is not None:
        files["cases"] = str(out / "cases.png")
        picture.save(files["cases"])
    objects = per_object_scores(states)
    if objects:  # what `flmm compare` pairs between two runs
        files["objects"] = str(out / "objects.json")
        (out / "objects.json").write_text(json.dumps(_json_safe(objects)) + "\n")
    results["files"] = files
    (out / "table.md").write_text(markdown_table(results) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return files


def evaluate(
    benchmark: str = "shapes",
    grounder: Grounder | None = None,
    *,
    lmm: FrozenLMM | None = None,
    split: str | Sequence[str] | None = None,
    n: int = DEFAULT_SCENES,
    tasks: Sequence[str] | str | None = None,
    data_root: str | None = None,
    dataset: str | Sequence[str] = "refcoco",
    ann_dir: str | None = None,
    image_dir: str | None = None,
    limit: int | None = None,
    max_new_tokens: int = 128,
    qa_max_new_tokens: int = 16,
    out_dir: str | os.PathLike | None = None,
    k_cases: int = 4,
    strict: bool = False,
    progress: bool | None = None,
    shard: tuple[int, int] | None = None,
    similarity: Any = None,
    meteor_backend: str = "auto",
) -> dict[str, Any]:
    """Evaluate ``grounder`` on a benchmark and return the nested results (see :func:`summarize`).

    Args:
        benchmark: ``shapes`` (default), ``refcoco``, ``png``, ``reasonseg`` or ``gcg``; options as in
            :func:`flmm.evaluation.benchmarks.build_tasks` (``split``, ``n``, ``tasks``, ``data_root``,
            ``dataset``, ``ann_dir``, ``image_dir``).
        grounder: the method (see :mod:`flmm.evaluation.grounder`).
        lmm: the LMM for the chat-preservation task (default ``grounder.lmm``).
        limit: evaluate only the first ``limit`` samples of each task.
        max_new_tokens / qa_max_new_tokens: answer length limits for ReasonSeg/GCG and for QA.
        out_dir: where the main process writes results.json, table.md and cases.png.
        k_cases: worst and best cases per task in the picture.
        strict: re-raise a sample's failure instead of scoring it as missing.
        progress: progress bars (default: on a terminal, main process only).
        shard: ``(rank, world_size)`` to evaluate one shard without gathering (results of that shard
            only); default: from accelerate, with gathering across processes.
        similarity, meteor_backend: GCG phrase similarity and METEOR implementation.

    Raises:
        ConfigError / DataError: bad benchmark options or data; FlmmError when every sample of a task
        failed (see the ``failures`` it names).
    """
    if grounder is None:
        raise ConfigError(
            "pass a grounder, e.g. FLMMGrounder(lmm, head) or build_grounder('f-lmm', lmm, head)"
        )
    specs = build_tasks(
        benchmark,
        split=split,
        n=n,
        tasks=tasks,
        question=getattr(grounder, "question", None),
        data_root=data_root,
        dataset=dataset,
        ann_dir=ann_dir,
        image_dir=image_dir,
    )
    gather = shard is None
    rank, world = process_shard() if shard is None else shard
    show = (sys.stderr.isatty() if progress is None else progress) and rank == 0
    mine = evaluate_shard(
        specs,
        grounder,
        rank=rank,
        world_size=world,
        lmm=lmm,
        limit=limit,
        max_new_tokens=max_new_tokens,
        qa_max_new_tokens=qa_max_new_tokens,
        strict=strict,
        k_cases=k_cases,
        progress=show,
        similarity=similarity,
        meteor_backend=meteor_backend,
    )
    if gather and world > 1:
        from accelerate.utils import gather_object

        shards = gather_object([mine])
    else:
        shards = [mine]
    merged = merge_shards(shards, k_cases, similarity, meteor_backend)
    _check_not_all_failed(merged)
    info = {
        "benchmark": benchmark,
        "method": getattr(grounder, "name", type(grounder).__name__),
        "world_size": world,
        "limit": limit,
    }
    if benchmark == "shapes":
        info["scenes_per_task"] = n
    results = summarize(merged, similarity, meteor_backend, **info)
    if out_dir is not None and rank == 0:
        write_outputs(results, merged, out_dir)
    return results


def _check_not_all_failed(states: Sequence[TaskState]) -> None:
    from flmm.errors import FlmmError

    for s in states:
        if s.samples and len(s.failures) == s.samples:
            raise FlmmError(
                f"{s.task}: every one of its {s.samples} samples failed; first error: {s.failures[0]['error']}"
            )
