"""Which part of a mask does the phrase name? Show each part alone to the frozen LMM and ask.

The part selector (:mod:`flmm.head.selector`) chooses among the parts of the U-Net's mask from the
phrase's hidden states; in a crowded scene those carry the choice for about eight objects in ten. The
frozen LMM itself tells things apart much better when it sees one at a time: on the shapes world it
says which of two things "the small red square" names for 99 % of the pairs when each is shown alone
with the rest of the image grey (docs/results.md, session 28). So, at inference, for every object whose
mask has two or more parts (an flmm extension, nothing is trained):

1. each part is refined on its own (SAM prompted by that part alone; the U-Net part itself for a head
   without a refiner), and the image is greyed outside that mask, dilated by ``dilate`` pixels;
2. the LMM is asked the head's presence question (:class:`~flmm.lmm.presence.PresenceCheck`) about
   the phrase, on each of these images: ``z_i = logit(yes) - logit(no)``;
3. the selector's part logits ``s_i`` become

   - ``s_i + weight * z_i`` when the question asks the whole phrase;
   - ``s_i + weight * min(z_i - min(max_j z_j, 0), 0)`` when it asks only what the phrase says of
     the thing itself: a phrase's place (``place_words``: "the LEFT-MOST big star") and its relation to
     another thing (from the first of ``relation_words``: "the star RIGHT OF the blue square") cannot
     be judged on a part shown alone, so they are left out of the question, and the answer may only
     mark a part down (when the LMM says no to it, or less than to the best part when it says no to
     every part).

The selector then keeps the parts scored above ``HeadConfig.part_threshold`` as before. Cost: per such
object, one refiner pass and one LMM forward per part (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from flmm.errors import ConfigError, InputError
from flmm.lmm.messages import conversation
from flmm.lmm.presence import PresenceCheck, logit_differences

if TYPE_CHECKING:
    from flmm.lmm.frozen import FrozenLMM


@dataclass
class PartCheck:
    """How the LMM checks the parts of a mask (see the module text).

    Attributes:
        weight: how much the LMM's answer (a logit difference) moves a part's selector logit.
        place_words: words left out of the question (they place the thing among others).
        relation_words: the question stops before the first of these (the rest relates the thing to
            another, which a part shown alone does not show).
        dilate: pixels of context kept around each part's mask.
        fill: the grey level (0-255) of the rest of the image.
    """

    weight: float = 1.0
    place_words: tuple[str, ...] = ()
    relation_words: tuple[str, ...] = ()
    dilate: int = 2
    fill: int = 128

    def __post_init__(self) -> None:
        if not isinstance(self.weight, (int, float)) or not np.isfinite(self.weight) or self.weight <= 0:
            raise ConfigError(f"part check weight must be a finite number > 0, got {self.weight!r}")
        for name in ("place_words", "relation_words"):
            words = getattr(self, name)
            if isinstance(words, str) or not all(isinstance(w, str) and w.strip() for w in words):
                raise ConfigError(f"part check {name} must be a list of words, got {words!r}")
            setattr(self, name, tuple(w.lower() for w in words))
        if not isinstance(self.dilate, int) or self.dilate < 0:
            raise ConfigError(f"part check dilate must be an integer >= 0 (pixels), got {self.dilate!r}")
        if not isinstance(self.fill, int) or not 0 <= self.fill <= 255:
            raise ConfigError(f"part check fill must be a grey level in [0, 255], got {self.fill!r}")

    def question_phrase(self, phrase: str) -> str:
        """What of ``phrase`` a part shown alone can be asked about: without ``place_words``, up to the
        first of ``relation_words`` ("the left-most star left of the red square" -> "the star")."""
        kept = []
        for word in phrase.split():
            if word.lower() in self.relation_words:
                break
            if word.lower() not in self.place_words:
                kept.append(word)
        return " ".join(kept)

    def rescore(self, part_logits: torch.Tensor, z: torch.Tensor, whole: bool) -> torch.Tensor:
        """``(n,)`` selector logits moved by the LMM's ``(n,)`` answers ``z`` (see the module text);
        ``whole``: the question asked the whole phrase."""
        z = z.to(part_logits)
        if whole:
            return part_logits + self.weight * z
        best = z.max().clamp(max=0.0)
        return part_logits + self.weight * (z - best).clamp(max=0.0)


def isolate(image: np.ndarray, mask: np.ndarray, dilate: int = 2, fill: int = 128) -> np.ndarray:
    """``image (H, W, 3)`` uint8 with every pixel farther than ``dilate`` px (4-connected steps) from
    ``mask (H, W)`` bool set to ``fill``; a new array."""
    if image.ndim != 3 or image.shape[:2] != mask.shape:
        raise InputError(f"image {image.shape} and mask {mask.shape} must share (H, W)")
    keep = ndimage.binary_dilation(mask, iterations=dilate) if dilate else mask  # iterations=0: until stable
    out = image.copy()
    out[~keep] = fill
    return out


class PartVerifier:
    """The check of one grounding call: what :meth:`FLMMHead.predict` takes as ``verifier``.

    Args:
        lmm: the frozen LMM.
        presence: the question and answer words (its ``nouns`` limit which phrases are checked; its bias
            is not used: only differences between parts matter, or the sign of the answer).
        check: the :class:`PartCheck`.
        image: the image the phrases are grounded in.
        phrases: per object, its text (None: not checked).
    """

    def __init__(
        self,
        lmm: FrozenLMM,
        presence: PresenceCheck,
        check: PartCheck,
        image: Image.Image,
        phrases: Sequence[str | None],
    ) -> None:
        self.lmm, self.presence, self.check = lmm, presence, check
        self.image = np.asarray(image.convert("RGB"))
        self.phrases = list(phrases)
        self.asked: dict[int, np.ndarray] = {}  # object -> the LMM's answers, for inspection

    def wants(self, k: int) -> bool:
        """Whether object ``k``'s parts are checked (it has text the presence question covers)."""
        phrase = self.phrases[k]
        return (
            phrase is not None
            and bool(phrase.strip())
            and self.presence.covers(self.check.question_phrase(phrase))
        )

    def __call__(self, k: int, part_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Object ``k``'s ``(n,)`` part logits rescored from its parts' ``(n, H, W)`` bool masks on the
        image's pixels."""
        phrase = self.phrases[k]
        if phrase is None or len(masks) != len(part_logits):
            raise InputError(f"object {k}: {len(masks)} part masks for {len(part_logits)} part logits")
        if tuple(masks.shape[1:]) != self.image.shape[:2]:
            raise InputError(
                f"part masks {tuple(masks.shape[1:])} are not on the image {self.image.shape[:2]}"
            )
        asked = self.check.question_phrase(phrase)
        shown = [
            Image.fromarray(isolate(self.image, m, self.check.dilate, self.check.fill))
            for m in masks.cpu().numpy()
        ]
        conv = conversation(self.presence.ask(asked))
        rows = self.lmm.next_token_logits(shown, [conv] * len(shown))
        z = logit_differences(self.lmm, self.presence, rows)
        self.asked[k] = z
        whole = asked.split() == phrase.split()
        return self.check.rescore(part_logits, torch.from_numpy(z), whole)


def part_verifier(
    lmm: FrozenLMM,
    presence: PresenceCheck | None,
    check: PartCheck | None,
    image: Image.Image,
    phrases: Sequence[str | None],
) -> PartVerifier | None:
    """The :class:`PartVerifier` of one call, or None when the head has no part check (or no presence
    question to ask it with)."""
    if check is None or presence is None:
        return None
    return PartVerifier(lmm, presence, check, image, phrases)
