"""METEOR caption score with three interchangeable backends; results always name the one that ran.

- ``"coco"`` (``meteor_impl = "coco-meteor-1.5"``): the Java METEOR 1.5 jar shipped by the PyPI
  package ``pycocoevalcap``, after its PTB tokenizer, exactly as GLaMM's ``eval/gcg/evaluate.py``
  (``COCOEvalCap``) scores GCG captions. Needs ``pip install pycocoevalcap`` and ``java`` on PATH.
  Its corpus score is METEOR 1.5's aggregate over all segments (statistics summed, then scored),
  with the English defaults (exact, stem, synonym and paraphrase modules, ``-norm``).
- ``"nltk"`` (``"nltk"``): ``nltk.translate.meteor_score.meteor_score`` with WordNet synonyms; needs
  the WordNet corpus, which cannot be downloaded here, so it is used only when already installed.
- ``"flmm"`` (``"flmm-exact+stem"``): our own implementation of nltk's METEOR (Banerjee & Lavie 2005,
  nltk's parameters alpha=0.9, beta=3, gamma=0.5) with the exact and Porter-stem matching stages but
  no WordNet synonym stage (it gives the same numbers as nltk run with an empty WordNet). The Porter
  stemmer comes from nltk (it needs no data); without nltk only the exact stage runs
  (``"flmm-exact"``).

``"auto"`` picks the first available of coco, nltk, flmm. The three give different numbers (METEOR
1.5 has other parameters and a paraphrase table): compare only scores with the same ``meteor_impl``.

Sentence score (nltk/flmm): align hypothesis and reference words one-to-one, stage by stage (exact
forms, then stems, [then synonyms]); within a stage hypothesis words are taken from the last to the
first and each takes the last still-free reference word with the same key. With m matches,
P = m/|hyp|, R = m/|ref|, F = P·R / (α·P + (1-α)·R), chunks = fewest runs of matches adjacent in
both sentences, penalty = γ·(chunks/m)^β, score = (1 - penalty)·F (0 when m = 0). With several
references the best one counts. The flmm/nltk corpus score is the mean sentence score.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from flmm.errors import ConfigError, InputError

ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5
BACKENDS: tuple[str, ...] = ("auto", "coco", "nltk", "flmm")


@dataclass
class MeteorResult:
    """``score``: corpus METEOR in [0, 1]; ``per_sentence``: one score per hypothesis; ``impl``: which
    implementation ran (``coco-meteor-1.5``, ``nltk``, ``flmm-exact+stem`` or ``flmm-exact``)."""

    score: float
    per_sentence: list[float] = field(default_factory=list)
    impl: str = ""


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric word tokens; punctuation is dropped (as COCO's caption pipeline does).

    ``"A man's hat."`` -> ``["a", "man", "s", "hat"]``.
    """
    return re.findall(r"[^\W_]+", text.lower())


@lru_cache(maxsize=1)
def _porter_stem() -> Callable[[str], str] | None:
    if importlib.util.find_spec("nltk") is None:
        return None
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer().stem


def _match_stage(
    hyp: list[tuple[int, str]], ref: list[tuple[int, str]], key: Callable[[str], str]
) -> tuple[list[tuple[int, int]], list[tuple[int, str]], list[tuple[int, str]]]:
    """One alignment stage: returns (matched (hyp_pos, ref_pos) pairs, unmatched hyp, unmatched ref)."""
    free: dict[str, list[int]] = defaultdict(list)
    for j, (_, word) in enumerate(ref):
        free[key(word)].append(j)
    matches, used_h, used_r = [], set(), set()
    for i in range(len(hyp) - 1, -1, -1):
        slots = free.get(key(hyp[i][1]))
        if slots:
            j = slots.pop()
            used_h.add(i)
            used_r.add(j)
            matches.append((hyp[i][0], ref[j][0]))
    rest_h = [w for i, w in enumerate(hyp) if i not in used_h]
    rest_r = [w for j, w in enumerate(ref) if j not in used_r]
    return matches, rest_h, rest_r


def align(hypothesis: Sequence[str], reference: Sequence[str], stem: bool = True) -> list[tuple[int, int]]:
    """Word alignment ``[(hyp_index, ref_index), ...]`` sorted by hypothesis index (exact, then stem)."""
    hyp = list(enumerate(hypothesis))
    ref = list(enumerate(reference))
    matches, hyp, ref = _match_stage(hyp, ref, lambda w: w)
    stemmer = _porter_stem() if stem else None
    if stemmer is not None:
        more, hyp, ref = _match_stage(hyp, ref, stemmer)
        matches += more
    return sorted(matches)


def count_chunks(matches: Sequence[tuple[int, int]]) -> int:
    """Number of runs of matches that are consecutive in both hypothesis and reference (0 if none)."""
    if not matches:
        return 0
    chunks = 1
    for (h0, r0), (h1, r1) in zip(matches[:-1], matches[1:]):
        if not (h1 == h0 + 1 and r1 == r0 + 1):
            chunks += 1
    return chunks


def sentence_meteor(
    hypothesis: Sequence[str],
    references: Sequence[Sequence[str]],
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    stem: bool = True,
) -> float:
    """METEOR (exact + stem stages) of one tokenized hypothesis against tokenized references.

    Args:
        hypothesis: list of word tokens (see :func:`tokenize`).
        references: one or more token lists; the best-scoring reference counts.

    Returns:
        score in [0, 1]; 0 when nothing matches or a side is empty.
    """
    if isinstance(hypothesis, str) or any(isinstance(r, str) for r in references):
        raise InputError("sentence_meteor takes token lists; use tokenize(text) first.")
    if len(references) == 0:
        raise InputError("sentence_meteor needs at least one reference.")
    best = 0.0
    for reference in references:
        matches = align(hypothesis, reference, stem=stem)
        m = len(matches)
        if m == 0:
            continue
        precision, recall = m / len(hypothesis), m / len(reference)
        fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
        penalty = gamma * (count_chunks(matches) / m) ** beta
        best = max(best, (1 - penalty) * fmean)
    return best


def _coco_available() -> bool:
    return importlib.util.find_spec("pycocoevalcap") is not None and shutil.which("java") is not None


@lru_cache(maxsize=1)
def _nltk_wordnet_available() -> bool:
    if importlib.util.find_spec("nltk") is None:
        return False
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")
    except (LookupError, OSError):
        return False
    return True


def available_backends() -> list[str]:
    """Backends usable on this machine, in ``"auto"`` order of preference."""
    found = []
    if _coco_available():
        found.append("coco")
    if _nltk_wordnet_available():
        found.append("nltk")
    found.append("flmm")
    return found


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``"auto"`` (or an explicit name) stands for here.

    Raises:
        ConfigError: unknown name, or an explicit backend that is not installed.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown METEOR backend {backend!r}; choose one of {BACKENDS}.")
    found = available_backends()
    if backend == "auto":
        return found[0]
    if backend not in found:
        hint = {
            "coco": "pip install pycocoevalcap and install a Java runtime (java on PATH)",
            "nltk": "install nltk and its WordNet corpus (nltk.download('wordnet'))",
        }[backend]
        raise ConfigError(f"METEOR backend {backend!r} is not available: {hint}; or use 'flmm'.")
    return backend


def _coco_meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> MeteorResult:
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    keys = list(range(len(hypotheses)))
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": r} for r in references[k]] for k in keys})
    res = tok.tokenize({k: [{"caption": hypotheses[k]}] for k in keys})
    scorer = Meteor()
    try:
        score, scores = scorer.compute_score(gts, res)
    finally:
        # its __del__ stops the JVM but would block on a lock left held by a failed compute_score
        scorer.meteor_p.kill()
        scorer.lock = threading.Lock()
        del scorer
    return MeteorResult(float(score), [float(s) for s in scores], "coco-meteor-1.5")


def meteor(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], backend: str = "auto"
) -> MeteorResult:
    """Corpus METEOR of generated captions.

    Args:
        hypotheses: one generated text per sample (raw strings; each backend tokenizes).
        references: for each sample, a non-empty list of reference texts.
        backend: ``"auto"``, ``"coco"``, ``"nltk"`` or ``"flmm"`` (see module doc).

    Returns:
        :class:`MeteorResult` with the corpus score, per-sentence scores and ``impl``.
    """
    if isinstance(hypotheses, str):
        raise InputError("hypotheses must be a list of strings, one per sample.")
    if len(hypotheses) != len(references):
        raise InputError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists.")
    for k, refs in enumerate(references):
        if isinstance(refs, str) or len(refs) == 0:
            raise InputError(f"references[{k}] must be a non-empty list of strings.")
    name = resolve_backend(backend)
    if not hypotheses:
        return MeteorResult(float("nan"), [], _impl_name(name))
    if name == "coco":
        return _coco_meteor(hypotheses, references)
    if name == "nltk":
        from nltk.translate.meteor_score import meteor_score as nltk_meteor

        scores = [
            float(nltk_meteor([tokenize(r) for r in refs], tokenize(h)))
            for h, refs in zip(hypotheses, references)
        ]
    else:
        scores = [
            sentence_meteor(tokenize(h), [tokenize(r) for r in refs])
            for h, refs in zip(hypotheses, references)
        ]
    return MeteorResult(sum(scores) / len(scores), scores, _impl_name(name))


def _impl_name(backend: str) -> str:
    if backend == "coco":
        return "coco-meteor-1.5"
    if backend == "nltk":
        return "nltk"
    return "flmm-exact+stem" if _porter_stem() is not None else "flmm-exact"
