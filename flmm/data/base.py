"""Base class of the dataset readers: indexing, checked loading, and counted skipping of bad samples.

Bad-input rules (issue 7): a malformed annotation FILE (unreadable, wrong top-level type, missing key)
raises :class:`~flmm.errors.DataError` naming the file and the field, at construction. A bad SAMPLE
(missing or corrupt image, image size differing from the annotation, empty mask, phrase that cannot be
located) never crashes an epoch: it is skipped, counted in ``dataset.skipped`` (a ``Counter`` keyed by
reason), and logged once per reason on logger ``flmm.data``; :meth:`GroundingDataset.log_skips` logs
one summary line. With ``num_workers > 0`` each DataLoader worker counts in its own copy.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from flmm.data.types import GroundingSample
from flmm.errors import DataError, ImageError

logger = logging.getLogger("flmm.data")

# F-LMM's training/evaluation user turn for caption-style answers.
DEFAULT_QUESTION = "Please give me a description of the image."


class SkipSample(Exception):
    """Raised inside a reader to drop one sample; carries the reason it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class GroundingDataset(Dataset):
    """A map-style dataset of :class:`GroundingSample` (``len``, ``[i]``, iteration).

    Subclasses fill ``self._items`` at construction and implement :meth:`_build` (index -> lazy
    sample, may raise :class:`SkipSample`). With ``check=True`` (default) ``__getitem__`` also decodes
    the image (kept in ``sample.image_loader``) and every mask, verifies their sizes, and drops objects
    whose mask is empty (unless :attr:`keep_empty_masks`); a sample left without objects is skipped. With ``check=False`` samples are
    returned lazily and unverified (fast scanning of the annotations).

    ``dataset[i]`` on a bad sample returns the next good one (wrapping around) so a DataLoader never
    fails mid-epoch; iterating the dataset yields only the good samples, each once.
    """

    name = "dataset"
    #: keep objects whose mask is empty (an expression that denotes nothing: its target is no mask)
    keep_empty_masks = False

    def __init__(self, *, check: bool = True, require_objects: bool = True) -> None:
        self.check = check
        self.require_objects = require_objects
        self.skipped: Counter[str] = Counter()
        self._items: list[Any] = []

    # -- subclass interface -------------------------------------------------------------------------
    def _build(self, index: int) -> GroundingSample:
        raise NotImplementedError

    # -- public API ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> GroundingSample:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} with {n} samples")
        index = int(index) % n
        for k in range(n):
            try:
                return self._load((index + k) % n)
            except SkipSample as s:
                self._skip(s.reason, s.detail)
        raise DataError(f"{self.name}: every one of its {n} samples is unusable ({self._summary()})")

    def __iter__(self) -> Iterator[GroundingSample]:
        for i in range(len(self)):
            sample = self.get_or_skip(i)
            if sample is not None:
                yield sample
        self.log_skips()

    def get_or_skip(self, index: int) -> GroundingSample | None:
        """Sample ``index`` (``0 <= index < len``), or None when it is unusable; the reason is counted in
        :attr:`skipped`. Unlike ``self[index]`` it never substitutes another sample, so that shards of an
        evaluation each see exactly their own indices."""
        try:
            return self._load(index)
        except SkipSample as s:
            self._skip(s.reason, s.detail)
            return None

    def log_skips(self) -> None:
        """Log one warning line with the skip counts so far (nothing when nothing was skipped)."""
        if self.skipped:
            logger.warning("%s: skipped %s", self.name, self._summary())

    # -- helpers for subclasses ---------------------------------------------------------------------
    def _skip(self, reason: str, detail: str = "") -> None:
        first = reason not in self.skipped
        self.skipped[reason] += 1
        if first:
            logger.warning(
                "%s: skipping (%s) %s; further ones are only counted in .skipped", self.name, reason, detail
            )

    def _summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))

    def _load(self, index: int) -> GroundingSample:
        sample = self._build(index)
        if self.check:
            self._materialize(sample)
        if self.require_objects and not sample.objects:
            raise SkipSample("no_objects", sample.sample_id)
        return sample

    def _materialize(self, sample: GroundingSample) -> None:
        try:
            image = sample.load_image()
        except ImageError as e:
            raise SkipSample("bad_image", str(e)) from None
        hw = (image.height, image.width)
        if hw != tuple(sample.image_hw):
            raise SkipSample(
                "image_size_mismatch", f"{sample.image_path}: file {hw}, annotation {sample.image_hw}"
            )
        sample.image_loader = _Const(image)
        kept = []
        for obj in sample.objects:
            try:
                m = obj.get_mask()
                ign = obj.get_ignore()
            except ImageError as e:  # e.g. a missing panoptic PNG
                raise SkipSample("bad_mask_file", str(e)) from None
            except DataError as e:  # a corrupt RLE in an otherwise fine file
                self._skip("bad_mask", f"{sample.sample_id}: {e}")
                continue
            if m.shape != hw or (ign is not None and ign.shape != hw):
                raise SkipSample("mask_size_mismatch", f"{sample.sample_id}: mask {m.shape}, image {hw}")
            if not m.any() and not self.keep_empty_masks:
                self._skip("empty_mask", f"{sample.sample_id} object {obj.ids}")
                continue
            kept.append(obj)
        sample.objects = kept


class _Const:
    """Picklable zero-argument callable returning a fixed value (an already decoded image)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


# -- annotation file access with DataError --------------------------------------------------------


def load_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON annotation file; :class:`DataError` naming the file if missing or not JSON.

    LISA's ReasonSeg files are sometimes cp1252-encoded; that encoding is tried after UTF-8.
    """
    if not os.path.isfile(path):
        raise DataError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("cp1252")
        return json.loads(text)
    except (OSError, ValueError) as e:
        raise DataError(f"{what} file {path} is not valid JSON: {e}") from e


def load_pickle(path: str | os.PathLike, what: str) -> Any:
    """Unpickle a trusted annotation file (refs(unc).p); :class:`DataError` if missing or corrupt.

    The refs pickles are written with Python 2; ``encoding="latin1"`` reads those too.
    """
    if not os.path.isfile(path):
        raise DataError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{what} file {path} cannot be unpickled: {e}") from e


def expect_type(value: Any, types: type | tuple[type, ...], path: Any, field: str) -> Any:
    """Return ``value`` if it is an instance of ``types``, else raise :class:`DataError` naming both."""
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DataError(f"{path}: field '{field}' must be {names}, got {type(value).__name__}")
    return value


def require(
    record: Any, key: str, path: Any, where: str, types: type | tuple[type, ...] | None = None
) -> Any:
    """``record[key]``, with :class:`DataError` naming the file, the field and where it was expected."""
    if not isinstance(record, dict):
        raise DataError(f"{path}: {where} must be an object (dict), got {type(record).__name__}")
    if key not in record:
        raise DataError(f"{path}: missing field '{key}' in {where}")
    value = record[key]
    if types is not None:
        expect_type(value, types, path, f"{where}.{key}")
    return value
