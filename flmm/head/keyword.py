"""Keyword selector: which words of the LMM's text name something to ground.

A linear layer on the LMM's last hidden states gives one sigmoid score per token (paper Sec. 3.3); tokens
scoring above a threshold (0.3) are keywords, and runs of adjacent keyword tokens form one phrase,
mapped back to a character span of the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from flmm.errors import InputError


class KeywordSelector(nn.Module):
    """``Linear(d, 1)`` on last hidden states: ``(..., T, d) -> (..., T)`` keyword logits (pre-sigmoid)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)

    def forward(self, last_hidden: torch.Tensor) -> torch.Tensor:
        if last_hidden.shape[-1] != self.linear.in_features:
            raise InputError(
                f"keyword selector expects hidden size {self.linear.in_features}, got {last_hidden.shape[-1]}"
            )
        return self.linear(last_hidden.to(self.linear.weight.dtype))[..., 0]


@dataclass
class Phrase:
    """A run of adjacent keyword tokens.

    Attributes:
        token_indices: indices into the capture's ``T`` axis, ascending.
        span: ``[start, end)`` character span in the text (surrounding whitespace trimmed), or ``None``
            when the tokens' offsets are unknown.
        text: the phrase's text (``""`` when unknown).
        score: mean keyword probability of its tokens.
    """

    token_indices: list[int]
    span: tuple[int, int] | None
    text: str
    score: float


def _span_of(idx: list[int], offsets: torch.Tensor | None, text: str) -> tuple[tuple[int, int] | None, str]:
    if offsets is None or len(offsets) == 0:
        return None, ""
    start, end = int(offsets[idx[0], 0]), int(offsets[idx[-1], 1])
    if start < 0 or end < 0 or end < start:
        return None, ""
    if text:
        end = min(end, len(text))
        # BPE tokens often carry their leading space ("Ġman"): a span should start on the word
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return (start, end), text[start:end]
    return (start, end), ""


def group_keywords(
    probs: torch.Tensor,
    threshold: float = 0.3,
    positions: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    text: str = "",
) -> list[Phrase]:
    """Group keyword tokens into phrases.

    Args:
        probs: ``(T,)`` keyword probabilities in [0, 1] (sigmoid of the selector's logits).
        threshold: a token is a keyword when ``prob > threshold`` (the paper: "exceeding").
        positions: ``(T,)`` sequence positions of the tokens; two tokens are adjacent only when their
            positions differ by one (selected tokens need not be contiguous). Default: ``arange(T)``.
        offsets: ``(T, 2)`` character ``[start, end)`` of each token in ``text`` (``-1`` unknown).
        text: the text the offsets index.

    Returns:
        phrases in text order.
    """
    probs = probs.detach().float().reshape(-1).cpu()
    t = len(probs)
    if not torch.isfinite(probs).all():
        raise InputError("keyword scores contain NaN or inf")
    if positions is None:
        positions = torch.arange(t)
    positions = torch.as_tensor(positions).reshape(-1).cpu()
    if len(positions) != t:
        raise InputError(f"{t} keyword scores but {len(positions)} positions")
    if offsets is not None and len(offsets) and tuple(offsets.shape) != (t, 2):
        raise InputError(f"offsets must be ({t}, 2), got {tuple(offsets.shape)}")
    offsets = offsets.cpu() if offsets is not None else None
    positive = (probs > threshold).tolist()
    phrases: list[Phrase] = []
    run: list[int] = []
    for i in range(t + 1):
        extends = i < t and positive[i] and (not run or int(positions[i]) == int(positions[run[-1]]) + 1)
        if extends:
            run.append(i)
            continue
        if run:
            span, phrase_text = _span_of(run, offsets, text)
            phrases.append(Phrase(list(run), span, phrase_text, float(probs[run].mean())))
            run = []
        if i < t and positive[i]:
            run = [i]
    return phrases


def text_of(token_indices: Sequence[int], offsets: torch.Tensor | None, text: str) -> str | None:
    """The text of ``text`` that the tokens cover (``offsets (T, 2)`` index ``text``): from the first to the
    last of them that has a place in it, spaces trimmed as in a keyword phrase; None when none has."""
    if offsets is None or not len(offsets) or not text:
        return None
    idx = sorted(i for i in token_indices if int(offsets[i, 1]) > int(offsets[i, 0]))
    return (_span_of(idx, offsets, text)[1] or None) if idx else None


def keyword_labels(offsets: torch.Tensor, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Training targets of the selector: ``(T,)`` float, 1 for tokens whose character span overlaps any of
    ``spans`` (``[start, end)`` in the same text), 0 otherwise (and for tokens with unknown offsets)."""
    offsets = torch.as_tensor(offsets)
    labels = torch.zeros(len(offsets))
    for s, e in spans:
        if e <= s:
            raise InputError(f"empty keyword span [{s}, {e})")
        overlap = (offsets[:, 0] < e) & (offsets[:, 1] > s) & (offsets[:, 0] >= 0)
        labels[overlap] = 1.0
    return labels
