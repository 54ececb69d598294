"""The evaluation loops: one shard of one task, sample by sample, into accumulators.

Kinds of task (and the accumulators each fills, see :func:`accumulator_factories`):

- ``res``: teacher-forced grounding of referring expressions; cIoU/gIoU of the final (refined) masks and,
  when the grounder reports them, of the mask decoder's masks (one forward gives both).
- ``narrative``: teacher-forced grounding of every phrase of a caption (PNG average recall, final and
  decoder masks) and keyword selection (the grounder's selector vs the noun-phrase baseline, gold = the
  phrases' spans).
- ``reasonseg``: ask the LMM, ground the phrases it selects in its answer (the whole answer when it
  selects none), score the union of their masks (gIoU/cIoU, ignore regions excluded).
- ``gcg``: ask for a description, ground its phrases; METEOR, greedy mIoU and mask recall.
- ``qa``: chat preservation, see :mod:`flmm.evaluation.chat_check`.
- ``presence``: teacher-forced grounding of expressions that denote something and of expressions that
  denote nothing (empty ground truth); does the grounder's score tell them apart
  (:mod:`flmm.metrics.presence`)?

Failure handling: a sample whose prediction raises (bad span, wrong mask count or size, image error, ...)
is scored as *missing* for every one of its objects (IoU 0, counted in the metrics' ``missing``) and
listed in ``failures`` with the error; it is never dropped. A sample the reader skips (unreadable image,
empty ground-truth mask) is counted in ``skipped`` by reason. A repeated sample id is a broken
benchmark: :class:`~flmm.errors.DataError`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from flmm.data.base import GroundingDataset
from flmm.data.types import GroundingSample
from flmm.errors import DataError, InputError
from flmm.evaluation.grounder import Grounder
from flmm.evaluation.state import CaseKeeper, TaskState
from flmm.metrics import (
    ExactMatchAccumulator,
    GcgAccumulator,
    GenerationMatchAccumulator,
    KeywordAccumulator,
    PngAccumulator,
    PresenceAccumulator,
    ReasonSegAccumulator,
    ResAccumulator,
    noun_phrase_spans,
)
from flmm.metrics.base import Accumulator, as_mask
from flmm.metrics.presence import DEFAULT_THRESHOLD

logger = logging.getLogger("flmm.evaluation")

#: what a task reads: a reader's dataset, or any list of samples (tests, custom benchmarks)
DatasetLike = GroundingDataset | Sequence[GroundingSample]
KINDS = ("res", "narrative", "reasonseg", "gcg", "qa", "presence")
#: how many failures are logged one by one per task (all are kept in the results)
LOGGED_FAILURES = 3


@dataclass
class TaskSpec:
    """One task to evaluate.

    Attributes:
        task: unique id shown in the results, e.g. ``"res/refcoco/val"``.
        kind: one of :data:`KINDS`.
        dataset: a :class:`~flmm.data.base.GroundingDataset` or any sequence of
            :class:`~flmm.data.types.GroundingSample`.
    """

    task: str
    kind: str
    dataset: DatasetLike

    @property
    def name(self) -> str:
        return str(getattr(self.dataset, "name", self.task))


def accumulator_factories(
    kind: str, similarity: Any = None, meteor_backend: str = "auto"
) -> dict[str, Callable[[], Accumulator]]:
    """Accumulator name -> constructor for a task kind (GCG: ``similarity`` and METEOR backend)."""
    if kind == "res":
        return {"mask": ResAccumulator, "decoder": ResAccumulator}
    if kind == "narrative":
        return {
            "mask": PngAccumulator,
            "decoder": PngAccumulator,
            "selector": KeywordAccumulator,
            "noun_phrases": KeywordAccumulator,
        }
    if kind == "reasonseg":
        return {"mask": ReasonSegAccumulator}
    if kind == "gcg":
        return {"mask": lambda: GcgAccumulator(similarity=similarity, meteor_backend=meteor_backend)}
    if kind == "presence":
        return {"score": PresenceAccumulator}
    if kind == "qa":
        return {
            "bare": ExactMatchAccumulator,
            "flmm": ExactMatchAccumulator,
            "identical": GenerationMatchAccumulator,
        }
    raise InputError(f"unknown task kind {kind!r}; one of {KINDS}")


def shard_indices(n: int, rank: int, world_size: int, limit: int | None = None) -> range:
    """Indices ``i < min(n, limit)`` with ``i % world_size == rank`` (this process's share)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} must lie in [0, world_size={world_size})")
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    stop = n if limit is None else min(n, int(limit))
    return range(rank, stop, world_size)


def load_sample(dataset: DatasetLike, index: int) -> GroundingSample | None:
    """Sample ``index``, or None when the reader skips it (counted in ``dataset.skipped``).

    ``GroundingDataset[i]`` replaces a bad sample by the next good one, which would make two shards
    evaluate the same sample; here a bad sample is skipped in place instead.
    """
    if isinstance(dataset, GroundingDataset):
        return dataset.get_or_skip(index)
    return dataset[index]


def skip_counts(dataset: DatasetLike) -> Counter[str]:
    """A copy of the reader's skip counts so far (empty for a plain list of samples)."""
    return Counter(getattr(dataset, "skipped", {}))


def shard_skips(dataset: DatasetLike, before: Counter[str], rank: int) -> dict[str, int]:
    """Skips to report for this shard: those made while it ran, plus, on rank 0 only, those the reader
    made before (while reading the annotations), so that merging the shards counts each skip once."""
    during = skip_counts(dataset) - before
    return dict(during + before if rank == 0 else during)


def check_masks(masks: Any, k: int, hw: tuple[int, int], what: str = "masks") -> list[np.ndarray]:
    """Validate a grounder's ``(K, H, W)`` masks against ``k`` objects on an ``hw`` image.

    Raises:
        InputError: wrong count, wrong size (predictions are never resized) or non-binary values.
    """
    arr = np.asarray(masks)
    if arr.ndim != 3 or arr.shape[0] != k:
        raise InputError(f"the grounder returned {what} of shape {arr.shape}, expected ({k}, H, W)")
    if tuple(arr.shape[1:]) != tuple(hw):
        raise InputError(
            f"the grounder returned {what} of size {arr.shape[1:]}, but the image is {tuple(hw)}"
        )
    return [as_mask(m, f"{what}[{i}]") for i, m in enumerate(arr)]


def _image_key(sample: GroundingSample) -> Any:
    if sample.image_path:
        return ("path", sample.image_path)
    if "seed" in sample.meta:
        return ("seed", sample.meta.get("dataset"), sample.meta["seed"])
    return ("sample", sample.sample_id)


def _label(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "..."


class TaskRunner:
    """Runs one shard of one task (see the module docstring); :meth:`run` returns its :class:`TaskState`.

    Args:
        spec: the task.
        grounder: the method under evaluation.
        max_new_tokens: answer length limit for ReasonSeg/GCG generation.
        strict: re-raise a sample's failure instead of scoring it as missing.
        k_cases: worst/best cases to keep for the picture.
        factories: accumulator constructors (default :func:`accumulator_factories` of the kind).
    """

    def __init__(
        self,
        spec: TaskSpec,
        grounder: Grounder,
        *,
        max_new_tokens: int = 128,
        strict: bool = False,
        k_cases: int = 4,
        factories: dict[str, Callable[[], Accumulator]] | None = None,
    ) -> None:
        self.spec, self.grounder = spec, grounder
        self.max_new_tokens, self.strict = int(max_new_tokens), strict
        self.accs: dict[str, Any] = {
            n: f() for n, f in (factories or accumulator_factories(spec.kind)).items()
        }
        self.cases = CaseKeeper(k_cases)
        self.state = TaskState(spec.task, spec.kind, spec.name)
        self._image_key: Any = None

    # -- helpers -------------------------------------------------------------------------------------
    def _set_image(self, sample: GroundingSample) -> None:
        key = _image_key(sample)
        if key != self._image_key:
            self._image_key = None  # a failing set_image must not leave a stale image marked as current
            self.grounder.set_image(sample.load_image())
            self._image_key = key

    def _fail(self, sample: GroundingSample, error: Exception) -> None:
        if self.strict:
            raise error
        msg = f"{type(error).__name__}: {error}"
        if len(self.state.failures) < LOGGED_FAILURES:
            logger.warning("%s: %s failed, scored as missing (%s)", self.spec.task, sample.sample_id, msg)
        self.state.failures.append({"sample_id": sample.sample_id, "error": msg})

    def _update(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.accs[name].update(*args, **kwargs)
        except InputError as e:
            if "duplicate sample id" in str(e):
                raise DataError(f"{self.spec.task}: {e} The benchmark lists a sample twice.") from e
            raise

    # -- loop ----------------------------------------------------------------------------------------
    def run(
        self, rank: int = 0, world_size: int = 1, limit: int | None = None, progress: bool = False
    ) -> TaskState:
        """Evaluate samples ``i % world_size == rank`` (of the first ``limit``) and return the state."""
        step = {
            "res": self._res,
            "narrative": self._narrative,
            "reasonseg": self._reasonseg,
            "gcg": self._gcg,
            "presence": self._presence,
        }
        if self.spec.kind not in step:
            raise InputError(f"task kind {self.spec.kind!r} is not a grounding task; one of {sorted(step)}")
        indices = shard_indices(len(self.spec.dataset), rank, world_size, limit)
        before = skip_counts(self.spec.dataset)
        for i in tqdm(indices, desc=self.spec.task, disable=not progress, leave=False):
            sample = load_sample(self.spec.dataset, i)
            if sample is None:
                continue
            self.state.samples += 1
            step[self.spec.kind](sample)
        if len(self.state.failures) > LOGGED_FAILURES:
            logger.warning("%s: %d samples failed in all", self.spec.task, len(self.state.failures))
        self.state.skipped = shard_skips(self.spec.dataset, before, rank)
        self.state.accumulators = {n: a.state_dict() for n, a in self.accs.items()}
        self.state.cases = self.cases.pool
        return self.state

    def _ground(self, sample: GroundingSample) -> tuple[list | None, list | None, list | None, list | None]:
        """Final masks, decoder masks, keyword spans and ``K`` scores of a teacher-forced sample (None
        when failed)."""
        k = len(sample.objects)
        try:
            self._set_image(sample)
            question = self.grounder.question or sample.question
            out = self.grounder.ground_spans(question, sample.answer, [o.spans for o in sample.objects])
            masks = check_masks(out.masks, k, sample.image_hw)
            dec = out.extras.get("decoder_masks")
            dec = check_masks(dec, k, sample.image_hw, "decoder masks") if dec is not None else None
            kw = out.extras.get("keyword_spans")
            scores = [float(v) for v in np.asarray(out.scores, dtype=np.float64).reshape(-1)]
            if len(scores) != k or not all(0.0 <= v <= 1.0 for v in scores):  # also refuses NaN
                raise InputError(f"the grounder returned scores {scores} for {k} objects; need {k} in [0, 1]")
            return masks, dec, (list(kw) if kw is not None else None), scores
        except (DataError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - any failure of one sample is scored as missing and reported
            self._fail(sample, e)
            return None, None, None, None

    def _scored_objects(self, sample: GroundingSample, grounded: tuple, update: Callable[..., float]) -> None:
        """Score every object of ``sample`` with ``update(stage, pred, gt, obj, object_id) -> IoU``."""
        masks, dec, _, _ = grounded
        for k, obj in enumerate(sample.objects):
            oid = f"{sample.sample_id}#{k}"
            gt = obj.get_mask()
            pred = masks[k] if masks is not None else None
            iou = update("mask", pred, gt, obj, oid)
            if dec is not None or masks is None:
                update("decoder", dec[k] if dec is not None else None, gt, obj, oid)
            label = _label(" ".join(obj.texts(sample.answer)) or sample.question)
            self.cases.add(iou, oid, label, sample.load_image, pred, gt)

    def _res(self, sample: GroundingSample) -> None:
        self._scored_objects(
            sample,
            self._ground(sample),
            lambda n, p, g, o, i: self._update(n, p, g, sample_id=i, ignore=o.get_ignore()),
        )

    def _presence(self, sample: GroundingSample) -> None:
        masks, _, _, scores = self._ground(sample)
        for k, obj in enumerate(sample.objects):
            gt = obj.get_mask()
            score = scores[k] if scores is not None else None
            self._update("score", score, bool(gt.any()), sample_id=f"{sample.sample_id}#{k}")
            if gt.any():  # the picture shows absent expressions only: where a mask should be nothing
                continue
            # ranked by 1 - score, worst first (a failure too): the most confident claim of a thing not there
            value = 0.0 if score is None else 1.0 - score
            shown = score is not None and score >= DEFAULT_THRESHOLD
            pred = masks[k] if masks is not None and shown else np.zeros_like(gt)  # as the pipeline shows it
            said = "-" if score is None else f"{score:.2f}"
            label = _label(f"{' '.join(obj.texts(sample.answer))} ({said})")
            self.cases.add(value, f"{sample.sample_id}#{k}", label, sample.load_image, pred, gt)

    def _narrative(self, sample: GroundingSample) -> None:
        grounded = self._ground(sample)

        def update(name, pred, gt, obj, oid):
            thing, plural = obj.category != "stuff", bool(obj.plural)
            return self._update(name, pred, gt, is_thing=thing, is_plural=plural, sample_id=oid)

        self._scored_objects(sample, grounded, update)
        gold = [tuple(s) for o in sample.objects for s in o.spans]
        sid, text = sample.sample_id, sample.answer
        self._update("noun_phrases", text, noun_phrase_spans(text), gold, sample_id=sid)
        masks, _, keywords, _ = grounded
        if keywords is not None or masks is None:  # a failed sample selects nothing
            self._update("selector", text, keywords or [], gold, sample_id=sid)
            self.state.notes["keyword_texts"] = self.state.notes.get("keyword_texts", 0) + int(
                keywords is not None
            )

    def _chat(self, sample: GroundingSample, question: str):
        self._set_image(sample)
        return self.grounder.chat_ground(question, self.max_new_tokens)

    def _reasonseg(self, sample: GroundingSample) -> None:
        obj = sample.objects[0]
        gt = obj.get_mask()
        pred, label = None, ""
        try:
            out = self._chat(sample, sample.question)
            masks = check_masks(out.masks, len(out.phrases), sample.image_hw)
            text = out.text
            label = text
            if not masks and text.strip():
                # the paper's protocol grounds the whole answer when no phrase is selected
                start, end = len(text) - len(text.lstrip()), len(text.rstrip())
                whole = self.grounder.ground_spans(sample.question, text, [[(start, end)]])
                masks = check_masks(whole.masks, 1, sample.image_hw)
            pred = np.logical_or.reduce(masks) if masks else np.zeros(sample.image_hw, dtype=bool)
        except (DataError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - scored as missing and reported
            self._fail(sample, e)
        sid = sample.sample_id
        iou = self._update("mask", pred, gt, sample_id=sid, ignore=obj.get_ignore())
        self.cases.add(iou, sid, _label(f"{sample.question} -> {label}"), sample.load_image, pred, gt)

    def _gcg(self, sample: GroundingSample) -> None:
        text = sample.answer
        gt_masks = [o.get_mask() for o in sample.objects]
        gt_phrases = [text[o.spans[0][0] : o.spans[0][1]] if o.spans else "" for o in sample.objects]
        caption = pred_masks = pred_phrases = None
        try:
            out = self._chat(sample, sample.question)
            pred_masks = check_masks(out.masks, len(out.phrases), sample.image_hw)
            caption, pred_phrases = out.text, [p for p, _ in out.phrases]
        except (DataError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - scored as missing and reported
            self._fail(sample, e)
        per_image = self._update(
            "mask",
            gt_masks=gt_masks,
            gt_phrases=gt_phrases,
            references=[text],
            caption=caption,
            pred_masks=pred_masks,
            pred_phrases=pred_phrases,
            sample_id=sample.sample_id,
        )
        union_gt = np.logical_or.reduce(gt_masks)
        union_pred = np.logical_or.reduce(pred_masks) if pred_masks else None
        label = _label(caption if caption is not None else "(missing)")
        self.cases.add(per_image["miou"], sample.sample_id, label, sample.load_image, union_pred, union_gt)
