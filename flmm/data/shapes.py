"""Adapters from the synthetic shapes world (:mod:`flmm.world`) to :class:`GroundingSample`.

Images live in memory (``image_path == ""``; ``sample.image_loader`` returns the RGB ``PIL.Image``),
are ``IMAGE_SIZE x IMAGE_SIZE`` (128) pixels, and are re-rendered from their seed on access (rendering is
deterministic), so a dataset holds only seeds and texts. Texts come from the world's generators with a
generator seeded by ``(scene seed, task)``, so every sample is reproducible. ``flmm.world`` is imported
on first use so this module imports even when the world is unavailable.

Datasets:
  * :class:`ShapesRES`: one sample per referring expression (the expression is the answer, or with
    ``mode="question"`` the question, with an empty answer as in ReasonSeg).
  * :class:`ShapesNarratives`: one narrative per scene, one object per grounded phrase (thing/stuff,
    plural unions).
  * :class:`ShapesRefNarratives`: the paper's recipe: a scene's expressions joined with ``" ; "``
    (optionally with expressions that denote nothing, whose target is an empty mask).
  * :class:`ShapesPresence`: the RES expressions beside expressions that denote nothing (empty masks),
    one per sample: does the grounder's score tell them apart?
  * :class:`ShapesQA`: question/answer pairs without masks (for checking the LMM's answers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flmm.data.base import DEFAULT_QUESTION, GroundingDataset, _Const
from flmm.data.spans import join_expressions
from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import ConfigError, NotReadyError

_TASK_SALT = {"res": 1, "narrative": 2, "refnarrative": 1, "qa": 3, "absent": 4}


def _world() -> Any:
    try:
        import flmm.world as world
    except ImportError as e:  # pragma: no cover - only while the world package is broken
        raise NotReadyError(f"flmm.world cannot be imported: {e}") from e
    if not hasattr(world, "sample_scene"):
        raise NotReadyError("flmm.world does not export sample_scene yet; the shapes datasets need it")
    return world


def _rng(seed: int, task: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _TASK_SALT[task]])


class _ShapesBase(GroundingDataset):
    task = "res"

    def __init__(self, split: str, n: int, *, check: bool = True, require_objects: bool = True) -> None:
        super().__init__(check=check, require_objects=require_objects)
        if n < 1:
            raise ConfigError(f"n (number of scenes) must be >= 1, got {n}")
        _world()  # fail early with NotReadyError when the world is unavailable
        self.split = split
        self.name = f"shapes-{self.task}/{split}"
        self.seeds = list(self.world.split_seeds(split, n))
        self._cached: tuple[int, Any] | None = None

    @property
    def world(self) -> Any:
        # looked up on use rather than stored: a module attribute would make the dataset unpicklable
        # (DataLoader workers under the "spawn" start method pickle it)
        return _world()

    def scene(self, seed: int) -> Any:
        """The world's scene of ``seed`` (image, masks, spec). Consecutive samples often share a scene (one
        per expression): the last one is kept."""
        if self._cached is None or self._cached[0] != seed:
            self._cached = (seed, self.world.sample_scene(seed))
        return self._cached[1]

    def _sample(
        self, sid: str, seed: int, scene: Any, question: str, answer: str, objects: list, **meta: Any
    ) -> GroundingSample:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(scene.image, dtype=np.uint8))
        h, w = scene.image.shape[:2]
        return GroundingSample(
            sample_id=sid,
            image_path="",
            image_hw=(int(h), int(w)),
            question=question,
            answer=answer,
            objects=objects,
            meta={
                "dataset": f"shapes-{self.task}",
                "split": self.split,
                "seed": int(seed),
                **meta,
            },
            image_loader=_Const(image),
        )


def _absent(world: Any, scene: Any, seed: int, n: int) -> list:
    """The ``n`` (at most) expressions of ``scene`` that denote nothing, seeded by (scene seed, "absent")."""
    return world.absent_expressions(scene, _rng(seed, "absent"), n) if n else []


def _ref_object(expr: Any, scene: Any, span: list[tuple[int, int]]) -> GroundedObject:
    return GroundedObject(
        spans=span,
        mask=np.asarray(expr.mask(scene), dtype=bool),
        category="thing",
        plural=len(expr.thing_ids) > 1,
        ids=tuple(int(i) for i in expr.thing_ids),
    )


class ShapesRES(_ShapesBase):
    """One sample per referring expression of ``n`` scenes of ``split``.

    ``mode="answer"``: question = ``question``, answer = the expression (one span covering it).
    ``mode="question"``: question = ``template`` with ``{expression}``, answer ``""``, no span.
    """

    task = "res"

    def __init__(
        self,
        split: str,
        n: int,
        mode: str = "answer",
        *,
        question: str = DEFAULT_QUESTION,
        template: str = "please segment {expression} .",
        check: bool = True,
    ) -> None:
        if mode not in ("answer", "question"):
            raise ConfigError(f"mode must be 'answer' or 'question', got {mode!r}")
        super().__init__(split, n, check=check)
        self.mode, self.question, self.template = mode, question, template
        for seed in self.seeds:
            exprs = self.world.referring_expressions(self.scene(seed), _rng(seed, "res"))
            self._items.extend((seed, k) for k in range(len(exprs)))

    def _build(self, index: int) -> GroundingSample:
        seed, k = self._items[index]
        scene = self.scene(seed)
        expr = self.world.referring_expressions(scene, _rng(seed, "res"))[k]
        if self.mode == "answer":
            question, answer, span = self.question, expr.text, [(0, len(expr.text))]
        else:
            question, answer, span = self.template.replace("{expression}", expr.text), "", []
        return self._sample(
            f"{self.name}/{seed}/{k}",
            seed,
            scene,
            question,
            answer,
            [_ref_object(expr, scene, span)],
            kind=expr.kind,
        )


class ShapesNarratives(_ShapesBase):
    """One narrative per scene: answer = narrative text, one object per grounded phrase."""

    task = "narrative"

    def __init__(self, split: str, n: int, *, question: str = DEFAULT_QUESTION, check: bool = True) -> None:
        super().__init__(split, n, check=check)
        self.question = question
        self._items = list(self.seeds)

    def _build(self, index: int) -> GroundingSample:
        seed = self._items[index]
        scene = self.scene(seed)
        narr = self.world.narrative(scene, _rng(seed, "narrative"))
        objects = [
            GroundedObject(
                spans=[(int(seg.start), int(seg.end))],
                mask=np.asarray(seg.mask(scene), dtype=bool),
                category="stuff" if seg.stuff_id is not None else "thing",
                plural=bool(seg.plural),
                ids=("stuff", int(seg.stuff_id))
                if seg.stuff_id is not None
                else tuple(int(i) for i in seg.thing_ids),
            )
            for seg in sorted(narr.segments, key=lambda s: s.start)
        ]
        return self._sample(f"{self.name}/{seed}", seed, scene, self.question, narr.text, objects)


class ShapesRefNarratives(_ShapesBase):
    """The paper's RES-as-narrative recipe on the shapes world: a scene's referring expressions joined
    as ``"expr one ; expr two ."`` (world texts keep punctuation as separate tokens), each with its mask;
    at most ``max_expressions`` per sample (more are split into consecutive chunks).

    ``absent=k`` mixes up to ``k`` expressions per scene that denote nothing (``"the red circle"`` with
    no red circle; :func:`flmm.world.absent_expressions`) in among them, at seeded places, each with an
    empty mask: a head trained on them learns to answer "nothing" rather than a confident wrong mask.
    ``absent=0`` (default) gives exactly the samples of earlier versions.
    """

    task = "refnarrative"

    def __init__(
        self,
        split: str,
        n: int,
        *,
        max_expressions: int = 8,
        absent: int = 0,
        question: str = DEFAULT_QUESTION,
        check: bool = True,
    ) -> None:
        if max_expressions < 1:
            raise ConfigError(f"max_expressions must be >= 1, got {max_expressions}")
        if absent < 0:
            raise ConfigError(f"absent must be >= 0 expressions per scene, got {absent}")
        super().__init__(split, n, check=check)
        self.question, self.absent = question, int(absent)
        self.keep_empty_masks = self.absent > 0
        if self.absent:  # other samples: other ids, so a feature cache never mixes the two
            self.name = f"shapes-{self.task}-absent{self.absent}/{split}"
        for seed in self.seeds:
            m = len(self._expressions(seed))
            for start in range(0, m, max_expressions):
                self._items.append((seed, start, min(m, start + max_expressions)))

    def _expressions(self, seed: int) -> list:
        scene = self.scene(seed)
        exprs = self.world.referring_expressions(scene, _rng(seed, "res"))
        if not self.absent:
            return exprs
        exprs = exprs + _absent(self.world, scene, seed, self.absent)
        order = np.random.default_rng([int(seed), _TASK_SALT["absent"], 1]).permutation(len(exprs))
        return [exprs[i] for i in order]

    def _build(self, index: int) -> GroundingSample:
        seed, start, stop = self._items[index]
        scene = self.scene(seed)
        exprs = self._expressions(seed)[start:stop]
        answer, spans = join_expressions([e.text for e in exprs], separator=" ; ", terminator=" .")
        objects = [_ref_object(e, scene, [span]) for e, span in zip(exprs, spans)]
        return self._sample(f"{self.name}/{seed}/{start}", seed, scene, self.question, answer, objects)


class ShapesPresence(_ShapesBase):
    """Does a grounder's score say whether an expression denotes anything? One sample per expression of
    ``n`` scenes: the scene's RES expressions (those of :class:`ShapesRES`, masks as there) and up to
    ``absent`` expressions per scene that denote nothing (:func:`flmm.world.absent_expressions`; empty
    mask, ``meta["kind"] == "absent"``). The expression is the answer, one span covering it.
    """

    task = "presence"
    keep_empty_masks = True

    def __init__(
        self, split: str, n: int, *, absent: int = 4, question: str = DEFAULT_QUESTION, check: bool = True
    ) -> None:
        if absent < 1:
            raise ConfigError(f"absent must be >= 1 expression per scene, got {absent}")
        super().__init__(split, n, check=check)
        self.question, self.absent = question, int(absent)
        for seed in self.seeds:
            scene = self.scene(seed)
            m = len(self.world.referring_expressions(scene, _rng(seed, "res")))
            self._items.extend((seed, k) for k in range(m))
            self._items.extend((seed, -1 - k) for k in range(len(_absent(self.world, scene, seed, absent))))

    def _build(self, index: int) -> GroundingSample:
        seed, k = self._items[index]
        scene = self.scene(seed)
        if k >= 0:
            expr, sid = self.world.referring_expressions(scene, _rng(seed, "res"))[k], str(k)
        else:
            expr, sid = _absent(self.world, scene, seed, self.absent)[-1 - k], f"absent{-1 - k}"
        span = [(0, len(expr.text))]
        obj = _ref_object(expr, scene, span)
        return self._sample(
            f"{self.name}/{seed}/{sid}", seed, scene, self.question, expr.text, [obj], kind=expr.kind
        )


class ShapesQA(_ShapesBase):
    """One sample per (question, short answer) pair of each scene; no objects."""

    task = "qa"

    def __init__(self, split: str, n: int, *, check: bool = True) -> None:
        super().__init__(split, n, check=check, require_objects=False)
        for seed in self.seeds:
            pairs = self.world.qa_pairs(self.scene(seed), _rng(seed, "qa"))
            self._items.extend((seed, k) for k in range(len(pairs)))

    def _build(self, index: int) -> GroundingSample:
        seed, k = self._items[index]
        scene = self.scene(seed)
        question, answer = self.world.qa_pairs(scene, _rng(seed, "qa"))[k]
        return self._sample(f"{self.name}/{seed}/{k}", seed, scene, question, answer, [])
