"""Evaluation suite: the paper's benchmarks and metrics in one call (``flmm eval`` on the command line).

- :func:`evaluate` runs a benchmark (``shapes`` by default, offline; ``refcoco``, ``png``, ``reasonseg``,
  ``gcg`` from disk) with a :class:`Grounder`, sharded across processes with accelerate, and returns
  nested results; :func:`markdown_table` renders them; ``out_dir`` also writes ``cases.png``.
- :class:`Grounder` is the small protocol a method implements (``set_image``, ``ground_spans``,
  ``chat_ground``); :class:`FLMMGrounder` is F-LMM's; :func:`build_grounder` picks one by name
  from :data:`GROUNDERS`.
- Metrics come from :mod:`flmm.metrics`; see :mod:`flmm.evaluation.tasks` for how failures, skipped
  samples and duplicate ids are handled.
"""

from flmm.evaluation.benchmarks import BENCHMARKS, DEFAULT_SHAPES_TASKS, SHAPES_TASKS, build_tasks
from flmm.evaluation.cases import draw_cases
from flmm.evaluation.chat_check import bare_generate, plain_sdpa, run_qa
from flmm.evaluation.grounder import (
    GROUNDERS,
    CaptureGrounder,
    ChatGrounding,
    FLMMGrounder,
    Grounder,
    SpanGrounding,
    build_grounder,
    tokens_for_spans,
)
from flmm.evaluation.report import markdown_table
from flmm.evaluation.runner import evaluate, evaluate_shard, merge_shards, summarize, write_outputs
from flmm.evaluation.state import CaseKeeper, TaskState, merge_states
from flmm.evaluation.tasks import TaskRunner, TaskSpec, accumulator_factories, check_masks, shard_indices

__all__ = [
    "BENCHMARKS",
    "DEFAULT_SHAPES_TASKS",
    "GROUNDERS",
    "SHAPES_TASKS",
    "CaptureGrounder",
    "CaseKeeper",
    "ChatGrounding",
    "FLMMGrounder",
    "Grounder",
    "SpanGrounding",
    "TaskRunner",
    "TaskSpec",
    "TaskState",
    "accumulator_factories",
    "bare_generate",
    "build_grounder",
    "build_tasks",
    "check_masks",
    "draw_cases",
    "evaluate",
    "evaluate_shard",
    "markdown_table",
    "merge_shards",
    "merge_states",
    "plain_sdpa",
    "run_qa",
    "shard_indices",
    "summarize",
    "tokens_for_spans",
    "write_outputs",
]
