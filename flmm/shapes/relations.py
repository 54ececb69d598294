"""Two warm-up terms that keep WHERE things are in the tower's tokens: relation questions and token
addresses (phase ``relations`` of :mod:`flmm.shapes.vision_warmup`).

Why: measured with :func:`flmm.shapes.lmm_eval.position_probe`, the shipped tower's patch embeddings
carry each token's grid column (61 % read-out, chance 6 %), its last layer almost none (9 %), and the
projector output none (6.6 %): the warm-up's losses pool over tokens, so nothing keeps the position
embeddings alive, and the LM cannot tell left from right (relation QA at chance in every LMM trained).

:class:`RelationProbe` answers the world's relation QUESTIONS from the tokens. Each question is read
from its text only: ``"is the red circle left of the blue square ?" -> "yes"`` gives two descriptors
(the words before and after the relation), the relation and the answer. A descriptor's words (size,
colour, shape) are embedded and summed into a query that attends over the tokens; a linear read-out
of each token gives its (x, y), so the attended place exists only if the tokens hold it.
:class:`TokenAddress` asks every token for its own grid row and column (the same target for every
image). No mask, box or coordinate of a thing is given; both probes are dropped after training.
Measured (docs/training-log.md, session 7): the address term keeps the place, the relation probe alone
does not learn from yes / no answers in the warm-up's budget.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from flmm.errors import ConfigError
from flmm.world import COLORS, SHAPES, SIZES, Scene, qa_items
from flmm.world.describe import RELATIONS

QUERY_WORDS: tuple[str, ...] = ("<none>", *SIZES, *COLORS, *SHAPES)  # index 0: an unused slot
_WORD = {w: i for i, w in enumerate(QUERY_WORDS)}
MAX_RELATIONS = 8  # questions kept per scene (as many "yes" as "no")
FIELDS = 8  # a row: a's (size, colour, shape) word ids, b's, relation index, answer (1 yes, 0 no)


def parse_relation(question: str, answer: str) -> list[int] | None:
    """One :data:`FIELDS`-long row from a relation question's text, or None if it is not one.

    ``"is the big red circle left of the square ?", "no"`` -> ``[big, red, circle, 0, 0, square, 0, 0]``
    (word ids into :data:`QUERY_WORDS`, 0 where the descriptor leaves a slot out; relation index into
    ``RELATIONS``).
    """
    text = question.removesuffix(" ?")
    for r, rel in enumerate(RELATIONS):
        head, sep, tail = text.partition(f" {rel} ")
        if sep and head.startswith("is the ") and tail.startswith("the "):
            a, b = head.split()[2:], tail.split()[1:]
            return [*_descriptor(a), *_descriptor(b), r, int(answer == "yes")]
    return None


def _descriptor(words: list[str]) -> list[int]:
    """(size, colour, shape) word ids of a descriptor's words; "object" leaves the shape slot at 0."""
    out = [0, 0, 0]
    for w in words:
        if w in SIZES:
            out[0] = _WORD[w]
        elif w in COLORS:
            out[1] = _WORD[w]
        elif w in SHAPES:
            out[2] = _WORD[w]
    return out


def relation_rows(scene: Scene) -> torch.Tensor:
    """``(MAX_RELATIONS, FIELDS)`` int64: the scene's relation questions parsed from their text
    (:func:`parse_relation`), balanced yes / no, padded with rows of -1."""
    rng = np.random.default_rng([scene.spec.seed, 29])
    items = [it for it in qa_items(scene, rng, max_per_kind=MAX_RELATIONS // 2) if it.kind == "relation"]
    rows = [row for it in items if (row := parse_relation(it.question, it.answer)) is not None]
    out = torch.full((MAX_RELATIONS, FIELDS), -1, dtype=torch.long)
    if rows:
        out[: len(rows)] = torch.tensor(rows[:MAX_RELATIONS])
    return out


class RelationProbe(nn.Module):
    """Answers relation questions from patch tokens ``(B, N, hidden)`` and rows ``(B, R, FIELDS)``.

    Every token reads out a scalar (x, y) with one linear layer (learned; what it reads must be in the
    token). A descriptor's query attends over the tokens (softmax over ``N``) and averages their (x, y);
    relation logits compare the two averages: ``left of`` = ``scale * (x_b - x_a) + bias`` (likewise
    ``right of``, ``above``, ``below``). ``forward`` returns ``(loss, accuracy)``: mean BCE and accuracy
    over the rows whose relation index is >= 0, or ``None`` when there are none.

    Args:
        hidden: token width.
        width: query / key width.
        fixed_place: ``(N, 2)`` (x, y) of each token to use instead of the learnt read-out (a
            diagnostic: e.g. the exact grid place, to ask whether a description finds its thing).
    """

    def __init__(self, hidden: int, width: int = 64, fixed_place: torch.Tensor | None = None) -> None:
        super().__init__()
        self.words = nn.Embedding(len(QUERY_WORDS), width, padding_idx=0)
        self.keys = nn.Linear(hidden, width)
        self.place = nn.Linear(hidden, 2)  # each token's (x, y), x to the right, y down
        self.fixed_place = fixed_place
        self.scale = nn.Parameter(torch.tensor(4.0))
        self.bias = nn.Parameter(torch.zeros(len(RELATIONS)))

    def locate(self, tokens: torch.Tensor, word_ids: torch.Tensor) -> torch.Tensor:
        """``(B, R, 2)``: the (x, y) read-out averaged with a softmax over ``N`` of query x key, the query
        being the sum of the descriptor's word embeddings ``word_ids (B, R, 3)``."""
        query = self.words(word_ids).sum(-2)  # (B, R, width)
        logits = torch.einsum("brw,bnw->brn", query, self.keys(tokens)) * query.shape[-1] ** -0.5
        where = self.place(tokens) if self.fixed_place is None else self.fixed_place.to(tokens)
        return logits.softmax(-1) @ where

    def forward(self, tokens: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        valid = rows[..., 6] >= 0  # (B, R)
        if not valid.any():
            return None
        keep = valid.any(1)
        tokens, rows, valid = tokens[keep], rows[keep].clamp_min(0), valid[keep]
        a, b = self.locate(tokens, rows[..., 0:3]), self.locate(tokens, rows[..., 3:6])
        d = b - a  # (B, R, 2)
        # in RELATIONS order: left of, right of, above, below
        diffs = torch.stack([d[..., 0], -d[..., 0], d[..., 1], -d[..., 1]], -1)
        logits = (self.scale * diffs + self.bias).gather(-1, rows[..., 6:7]).squeeze(-1)[valid].float()
        target = rows[..., 7][valid].float()
        loss = F.binary_cross_entropy_with_logits(logits, target)
        return loss, ((logits > 0).float() == target).float().mean()


class TokenAddress(nn.Module):
    """Each patch token predicts its own grid row and column (softmax cross-entropy over ``grid``
    classes each), from a linear layer.

    The target is the token's index in the sequence, the same for every image: it says nothing about
    where any thing is (no mask, box or coordinate of the scene), it only keeps each token's address
    readable in the last layer, as ViTs that re-add position embeddings in every block do by design.
    Measured on the shipped tower: the last layer's column read-out falls to 9 % (chance 6 %) without it.

    ``forward(tokens (B, grid * grid, hidden))`` returns ``(loss, row_acc, col_acc)``.
    """

    def __init__(self, hidden: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.linear = nn.Linear(hidden, 2 * grid)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = tokens.shape
        if n != self.grid * self.grid:
            raise ConfigError(
                f"TokenAddress: {n} tokens, expected a {self.grid}x{self.grid} grid (tower image size / patch size)"
            )
        logits = self.linear(tokens).float().reshape(b * n, 2, self.grid)
        index = torch.arange(n, device=tokens.device).repeat(b)
        targets = (index // self.grid, index % self.grid)  # row, column (raster order)
        loss = sum(F.cross_entropy(logits[:, k], t) for k, t in enumerate(targets))
        row, col = ((logits[:, k].argmax(-1) == t).float().mean() for k, t in enumerate(targets))
        return loss, row, col  # type: ignore[return-value]


__all__ = [
    "FIELDS",
    "MAX_RELATIONS",
    "QUERY_WORDS",
    "RelationProbe",
    "TokenAddress",
    "parse_relation",
    "relation_rows",
]
