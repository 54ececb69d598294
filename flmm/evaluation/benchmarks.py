"""Which tasks each benchmark name stands for, built on the readers of :mod:`flmm.data`.

- ``shapes`` (default, offline): the shapes world's ``test`` split, ``n`` scenes per task; tasks ``res``
  (referring expressions), ``png`` + ``keywords`` (narratives: one pass gives both), ``gcg`` (describe
  the scene, ground the phrases), ``qa`` (chat preservation); ``reason`` (ask "please segment ...",
  ground the answer, ReasonSeg metrics) on request.
- ``refcoco``: RefCOCO / RefCOCO+ / RefCOCOg RES under ``data_root`` (:func:`flmm.data.load_refcoco`);
  ``dataset`` and ``split`` may be comma lists, ``split="all"`` = every evaluation split.
- ``png``: Panoptic Narrative Grounding ``val`` (:func:`flmm.data.load_png`), with keyword selection.
- ``reasonseg``: LISA's ReasonSeg ``val``/``test`` (:func:`flmm.data.load_reasonseg`).
- ``gcg``: GranD-f GCG ``val``/``test`` (:func:`flmm.data.load_gcg_eval`); annotations default to
  ``<data_root>/annotations/val_test``, images to ``<data_root>/GranDf_HA_images/val_test``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from flmm.data import REFER_DATASETS, load_gcg_eval, load_png, load_reasonseg, load_refcoco
from flmm.data.base import DEFAULT_QUESTION
from flmm.errors import ConfigError
from flmm.evaluation.tasks import TaskSpec

BENCHMARKS: tuple[str, ...] = ("shapes", "refcoco", "png", "reasonseg", "gcg")
SHAPES_TASKS: tuple[str, ...] = ("res", "png", "keywords", "gcg", "qa", "reason", "absent")
DEFAULT_SHAPES_TASKS: tuple[str, ...] = ("res", "png", "keywords", "gcg", "qa")
#: scenes per shapes task by default: a few minutes on a laptop CPU (pass more for tighter numbers)
DEFAULT_SCENES = 10
#: evaluation splits of each RefCOCO-family dataset (``split="all"``)
REFER_EVAL_SPLITS = {
    name: tuple(s for s in splits if s != "train") for name, (_, splits) in REFER_DATASETS.items()
}


def _items(value: str | Sequence[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v.strip()]


def _need_root(data_root: str | None, benchmark: str) -> str:
    if not data_root:
        raise ConfigError(f"benchmark {benchmark!r} reads data from disk: pass data_root (--data-root DIR)")
    if not os.path.isdir(data_root):
        raise ConfigError(f"data root {data_root!r} is not a folder")
    return data_root


def shapes_tasks(
    split: str = "test",
    n: int = DEFAULT_SCENES,
    tasks: Sequence[str] | None = None,
    question: str | None = None,
) -> list[TaskSpec]:
    """Shapes-world tasks on ``n`` scenes of ``split``; ``question`` = the grounder's teacher-forcing and
    captioning user turn (default the F-LMM one)."""
    from flmm.data.shapes import ShapesNarratives, ShapesPresence, ShapesQA, ShapesRES

    chosen = list(DEFAULT_SHAPES_TASKS if tasks is None else _items(tasks))
    unknown = sorted(set(chosen) - set(SHAPES_TASKS))
    if unknown or not chosen:
        raise ConfigError(
            f"unknown shapes task(s) {unknown or chosen}; choose from {', '.join(SHAPES_TASKS)}"
        )
    q = question or DEFAULT_QUESTION
    specs: list[TaskSpec] = []
    if "res" in chosen:
        res = ShapesRES(split, n, question=q)
        specs.append(TaskSpec(f"res/{res.name}", "res", res))
    if "png" in chosen or "keywords" in chosen:
        narratives = ShapesNarratives(split, n, question=q)
        specs.append(TaskSpec(f"narrative/{narratives.name}", "narrative", narratives))
    if "reason" in chosen:
        reason = ShapesRES(split, n, mode="question")  # "please segment {expression} ." (shapes vocabulary)
        specs.append(TaskSpec(f"reasonseg/{reason.name}", "reasonseg", reason))
    if "gcg" in chosen:
        captions = ShapesNarratives(split, n, question=q)
        specs.append(TaskSpec(f"gcg/{captions.name}", "gcg", captions))
    if "absent" in chosen:
        presence = ShapesPresence(split, n, question=q)
        specs.append(TaskSpec(f"presence/{presence.name}", "presence", presence))
    if "qa" in chosen:
        qa = ShapesQA(split, n)
        specs.append(TaskSpec(f"qa/{qa.name}", "qa", qa))
    return specs


def build_tasks(
    benchmark: str = "shapes",
    *,
    split: str | Sequence[str] | None = None,
    n: int = DEFAULT_SCENES,
    tasks: Sequence[str] | str | None = None,
    question: str | None = None,
    data_root: str | None = None,
    dataset: str | Sequence[str] = "refcoco",
    ann_dir: str | None = None,
    image_dir: str | None = None,
) -> list[TaskSpec]:
    """The :class:`TaskSpec` list of a benchmark (see the module docstring for each one's options).

    Raises:
        ConfigError: unknown benchmark, dataset, split or task, or missing ``data_root``.
        DataError: an annotation file is missing or malformed (from the readers).
    """
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if benchmark == "shapes":
        splits = _items(split or "test")
        return [spec for s in splits for spec in shapes_tasks(s, n, tasks, question)]
    if tasks is not None:
        raise ConfigError(f"tasks are chosen for the shapes benchmark only, not for {benchmark!r}")
    root = _need_root(data_root, benchmark)
    if benchmark == "refcoco":
        specs = []
        for name in _items(dataset):
            if name not in REFER_DATASETS:
                raise ConfigError(
                    f"unknown RefCOCO dataset {name!r}; choose from {', '.join(REFER_DATASETS)}"
                )
            wanted = REFER_EVAL_SPLITS[name] if split == "all" else _items(split or "val")
            for s in wanted:
                ds = load_refcoco(root, name, s, image_dir=image_dir)
                specs.append(TaskSpec(f"res/{name}/{s}", "res", ds))
        return specs
    if benchmark == "png":
        return [
            TaskSpec(f"narrative/png/{s}", "narrative", load_png(root, s)) for s in _items(split or "val")
        ]
    if benchmark == "reasonseg":
        return [
            TaskSpec(f"reasonseg/reasonseg/{s}", "reasonseg", load_reasonseg(root, s))
            for s in _items(split or "val")
        ]
    ann = ann_dir or os.path.join(root, "annotations", "val_test")
    images = image_dir or os.path.join(root, "GranDf_HA_images", "val_test")
    return [TaskSpec(f"gcg/gcg/{s}", "gcg", load_gcg_eval(ann, images, s)) for s in _items(split or "val")]
