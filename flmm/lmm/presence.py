"""Is what a phrase names in the image at all? Ask the frozen LMM.

A mask head always draws its best guess: asked for "the red circle" in a scene with a red diamond and a
blue circle, it outlines one of them with confidence. The frozen LMM still answers questions, so flmm
asks it, with a yes/no question built from the phrase, and reads the next-token logits of the two
answer words (nothing is generated and nothing trained):

    p = sigmoid(logit(yes) - logit(no) + bias)

When the head's config names a :class:`PresenceCheck`, the grounding pipeline's ``ground`` and the
evaluation's grounder (for answers that are one referring expression, not spans of a caption) take
``min(mask score, p)`` as a phrase's score, so a phrase the LMM says is not there falls below the
default ``min_score`` (0.5) and its mask is not shown. Both ask through
:meth:`FrozenLMM.capture_and_ask`: each question continues the key/value cache of the grounding forward
after the image, so it costs a forward of its own few tokens (docs/benchmarks.md). ``bias`` is chosen on
held-out data (:func:`calibrate_bias`); the shapes-world head's numbers are in docs/results.md (session 26).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from flmm.errors import ConfigError, InputError
from flmm.image import ImageLike, load_image
from flmm.lmm.messages import Message, conversation

if TYPE_CHECKING:
    from flmm.lmm.frozen import FrozenLMM

NUMBER_WORDS = frozenset({"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"})


@dataclass
class PresenceCheck:
    """How to ask the LMM whether a phrase's referent is in the image.

    Attributes:
        question: template with ``{expression}`` (the phrase as given) or ``{indefinite}`` (its leading
            "the" made "a"/"an", or dropped before a number: "the red circle" -> "a red circle"), e.g.
            ``"Is there {expression} in the image? Answer yes or no."`` for an instruction-tuned LMM.
        yes, no: the answer words; their first tokens' logits are compared.
        bias: added to ``logit(yes) - logit(no)`` before the sigmoid (0: the LMM's own odds).
        nouns: when given, only phrases with one of these words are asked about (the nouns the LMM's
            yes/no question covers; the shapes LMM was never asked whether there is "a sky"); the others
            get no presence (NaN) and keep their mask score. Empty: every phrase is asked about.
    """

    question: str
    yes: str = "yes"
    no: str = "no"
    bias: float = 0.0
    nouns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not all(isinstance(v, str) for v in (self.question, self.yes, self.no)):
            raise ConfigError("a presence check's question, yes and no must be strings")
        if isinstance(self.nouns, str) or not all(isinstance(n, str) for n in self.nouns):
            raise ConfigError(f"presence nouns must be a list of words, got {self.nouns!r}")
        if "{expression}" not in self.question and "{indefinite}" not in self.question:
            raise ConfigError(
                f"presence question {self.question!r} needs {{expression}} or {{indefinite}} for the phrase"
            )
        if not self.yes.strip() or not self.no.strip() or self.yes == self.no:
            raise ConfigError(f"presence answers must be two different words, got {self.yes!r}, {self.no!r}")
        if not isinstance(self.bias, (int, float)) or not np.isfinite(self.bias):
            raise ConfigError(f"presence bias must be finite, got {self.bias}")
        self.nouns = tuple(str(n).lower() for n in self.nouns)

    def covers(self, phrase: str) -> bool:
        """Whether ``phrase`` is asked about (see ``nouns``)."""
        return not self.nouns or any(w in self.nouns for w in phrase.lower().split())

    def ask(self, phrase: str) -> str:
        """The question about one phrase."""
        words = phrase.split()
        if words and words[0].lower() == "the" and len(words) > 1:
            rest = words[1:]
            words = (
                rest
                if rest[0].lower() in NUMBER_WORDS
                else ["an" if rest[0][0].lower() in "aeiou" else "a", *rest]
            )
        return self.question.replace("{expression}", phrase.strip()).replace("{indefinite}", " ".join(words))


def _answer_token(lmm: FrozenLMM, word: str) -> int:
    tok = lmm.processor.tokenizer
    ids = tok.encode(word, add_special_tokens=False)
    if not ids or (tok.unk_token_id is not None and ids[0] == tok.unk_token_id):
        raise ConfigError(f"the LMM's tokenizer has no token for the presence answer {word!r}")
    return int(ids[0])


def _require_text(phrases: Sequence[str]) -> None:
    if any(not isinstance(p, str) or not p.strip() for p in phrases):
        raise InputError("every phrase to check must be non-empty text")


def questions(check: PresenceCheck, phrases: Sequence[str]) -> tuple[list[int], list[list[Message]]]:
    """The indices of the phrases ``check`` covers, and the question conversation about each of them."""
    _require_text(phrases)
    asked = [i for i, p in enumerate(phrases) if check.covers(p)]
    return asked, [conversation(check.ask(phrases[i])) for i in asked]


def logit_differences(lmm: FrozenLMM, check: PresenceCheck, logits: torch.Tensor) -> np.ndarray:
    """``(K,)`` float64 ``logit(yes) - logit(no)`` (no bias) from next-token ``logits (K, vocab)``."""
    yes, no = _answer_token(lmm, check.yes), _answer_token(lmm, check.no)
    if yes == no:
        raise ConfigError(f"presence answers {check.yes!r} and {check.no!r} start with the same token")
    return (logits[:, yes] - logits[:, no]).cpu().double().numpy()


def probabilities(
    lmm: FrozenLMM, check: PresenceCheck, logits: torch.Tensor, asked: Sequence[int], n: int
) -> np.ndarray:
    """``(n,)`` float32: ``sigmoid(logit(yes) - logit(no) + bias)`` for the ``asked`` phrases, whose
    question logits are the rows of ``logits``, NaN for the others (see :func:`questions`)."""
    out = np.full(n, np.nan, dtype=np.float32)
    if len(asked):
        z = logit_differences(lmm, check, logits) + check.bias
        out[list(asked)] = 1.0 / (1.0 + np.exp(-z))
    return out


def yes_logits(lmm: FrozenLMM, image: ImageLike, phrases: Sequence[str], check: PresenceCheck) -> np.ndarray:
    """``(K,)`` float64 ``logit(yes) - logit(no)`` for the question about each of ``K`` phrases (no bias;
    every phrase is asked, covered or not)."""
    if not phrases:
        return np.zeros(0)
    _require_text(phrases)
    pil = load_image(image)
    rows = lmm.next_token_logits([pil] * len(phrases), [conversation(check.ask(p)) for p in phrases])
    return logit_differences(lmm, check, rows)


def presence_probability(
    lmm: FrozenLMM, image: ImageLike, phrases: Sequence[str], check: PresenceCheck
) -> np.ndarray:
    """``(K,)`` float32 in [0, 1]: the LMM's (biased) probability that each phrase's referent is there;
    NaN for a phrase the check does not cover (``check.nouns``). One batched forward of the questions;
    :meth:`FrozenLMM.capture_and_ask` gives the same logits beside a capture of the image."""
    asked, convs = questions(check, phrases)
    if not asked:
        return np.full(len(phrases), np.nan, dtype=np.float32)
    pil = load_image(image)
    return probabilities(lmm, check, lmm.next_token_logits([pil] * len(asked), convs), asked, len(phrases))


def cap_scores(scores: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """``(K,)`` float32 ``min(score, presence)``, the score unchanged where presence is NaN (not asked)."""
    s = np.asarray(scores, dtype=np.float32)
    return np.where(np.isnan(presence), s, np.minimum(s, presence)).astype(np.float32)


def calibrate_bias(present: np.ndarray, absent: np.ndarray) -> float:
    """The bias that maximises ``TPR - FPR`` at ``p >= 0.5`` (Youden's J) given the raw logit differences
    of phrases that are there (``present``) and are not (``absent``); ties broken towards 0."""
    p, a = np.asarray(present, dtype=np.float64), np.asarray(absent, dtype=np.float64)
    if not p.size or not a.size:
        raise InputError(
            "calibrating the presence bias needs phrases that are there and phrases that are not"
        )
    cuts = np.unique(np.concatenate([p, a]))
    # a cut between consecutive values, below/above all of them, or 0 itself (no bias)
    cand = np.concatenate([[cuts[0] - 1.0], (cuts[1:] + cuts[:-1]) / 2, [cuts[-1] + 1.0], [0.0]])
    j = np.array([(p >= c).mean() - (a >= c).mean() for c in cand])
    best = np.flatnonzero(j >= j.max() - 1e-12)
    cut = cand[best[np.argmin(np.abs(cand[best]))]]
    return float(-cut)
