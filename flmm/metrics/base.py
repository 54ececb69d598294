"""Shared pieces of every metric: the accumulator contract and mask validation.

Conventions used by all of :mod:`flmm.metrics`:

- A mask is a numpy array of shape ``(H, W)`` in image pixels (row = y, column = x), dtype ``bool``.
  Integer arrays (any int/uint dtype, e.g. ``uint8``) holding only 0 and 1 are accepted and converted;
  anything else (floats, probabilities, 0/255 masks, 3-D stacks) raises :class:`~flmm.errors.InputError`:
  threshold or squeeze it yourself, the metric never guesses. A prediction and its ground truth must
  have the same ``(H, W)``: resize the prediction to the image first, the metric never resizes.
- Every score is a fraction in ``[0, 1]`` (never percent). ``compute()`` returns a flat dict of
  floats and integer counts (GCG also names its METEOR/similarity implementations as strings). A ratio
  over zero items is ``nan``.
- Every accumulator has ``update(...)``, ``compute()``, ``state_dict()`` (plain JSON-serialisable
  numbers, strings and lists), ``load_state_dict(state)`` and ``merge(other)``, so each process can
  evaluate its shard and the main process merges the gathered states::

      states = accelerate.utils.gather_object([acc.state_dict()])
      total = ResAccumulator()
      for s in states:
          total.merge(s)
      print(total.compute())
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from flmm.errors import InputError


def as_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """Validate one binary mask and return it as a ``(H, W)`` bool array.

    Args:
        mask: array-like ``(H, W)``; dtype bool, or any integer dtype whose values are only 0 and 1.
        name: what to call it in the error message.

    Raises:
        InputError: not 2-D, empty, float dtype, or integer values other than 0/1.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}; pass one mask at a time.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name} has an empty shape {arr.shape}.")
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise InputError(
                f"{name} is {arr.dtype} with values outside {{0, 1}} (min {arr.min()}, max {arr.max()}); "
                "pass a bool mask (e.g. `mask > 0` or `mask == 255` as you intend)."
            )
        return arr.astype(bool)
    raise InputError(
        f"{name} has dtype {arr.dtype}; masks must be bool (or integer 0/1). Threshold probabilities or "
        "logits yourself (e.g. `probs > 0.5`, `logits > 0`)."
    )


def check_same_shape(pred: np.ndarray, gt: np.ndarray, what: str = "prediction") -> None:
    """Raise :class:`InputError` unless ``pred`` and ``gt`` have the same ``(H, W)``."""
    if pred.shape != gt.shape:
        raise InputError(
            f"{what} has shape {pred.shape} but the ground truth has {gt.shape}; resize the prediction to "
            "the ground-truth image size before evaluating (metrics never resize)."
        )


def safe_ratio(num: float, den: float) -> float:
    """``num / den``, or ``nan`` when ``den == 0`` (a ratio over nothing)."""
    return float(num) / float(den) if den else float("nan")


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean; 0 when both are 0, ``nan`` when either is ``nan``."""
    if np.isnan(precision) or np.isnan(recall):
        return float("nan")
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


class Accumulator(ABC):
    """Streaming metric: ``update`` per sample, ``compute`` at the end, ``merge`` across processes.

    Sub-classes keep their whole state in ``self._state`` (a dict of plain numbers, strings and lists)
    and implement :meth:`_merge_state`. Sample ids, when given, are remembered to refuse duplicates,
    within one accumulator and across merged ones.
    """

    def __init__(self) -> None:
        self._state: dict[str, Any] = self._initial_state()
        self._ids: set[Hashable] = set()

    @abstractmethod
    def _initial_state(self) -> dict[str, Any]:
        """The state of an accumulator that has seen nothing."""

    @abstractmethod
    def _merge_state(self, other: dict[str, Any]) -> None:
        """Add another accumulator's state (same class and settings) into ``self._state``."""

    @abstractmethod
    def compute(self) -> dict[str, Any]:
        """The metric values over everything seen so far (flat dict, fractions in [0, 1])."""

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._state = self._initial_state()
        self._ids = set()

    def _register_id(self, sample_id: Hashable | None) -> None:
        if sample_id is None:
            return
        if sample_id in self._ids:
            raise InputError(f"duplicate sample id {sample_id!r}: every sample must be evaluated once.")
        self._ids.add(sample_id)

    def _register_ids(self, ids: Iterable[Hashable]) -> None:
        dup = self._ids.intersection(ids)
        if dup:
            shown = sorted(map(repr, dup))[:5]
            raise InputError(f"merging accumulators that both saw sample ids {shown}: shards overlap.")
        self._ids.update(ids)

    def state_dict(self) -> dict[str, Any]:
        """Plain-data copy of the state (JSON-serialisable when sample ids are str/int)."""
        state = copy.deepcopy(self._state)
        state["ids"] = sorted(self._ids, key=repr)
        state["class"] = type(self).__name__
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with one from :meth:`state_dict`."""
        self.reset()
        self.merge(state)

    def merge(self, other: Accumulator | dict[str, Any]) -> Accumulator:
        """Add another accumulator (or its :meth:`state_dict`) into this one, in place; returns ``self``.

        Raises:
            InputError: the other is a different metric, or both saw the same sample id.
        """
        state = other.state_dict() if isinstance(other, Accumulator) else copy.deepcopy(other)
        cls = state.pop("class", type(self).__name__)
        if cls != type(self).__name__:
            raise InputError(f"cannot merge a {cls} state into a {type(self).__name__}.")
        missing = set(self._initial_state()) - set(state)
        if missing:
            raise InputError(f"not a {type(self).__name__} state: missing keys {sorted(missing)}.")
        ids = [tuple(i) if isinstance(i, list) else i for i in state.pop("ids", [])]
        self._register_ids(ids)
        self._merge_state(state)
        return self
