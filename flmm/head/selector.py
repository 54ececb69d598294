"""A learned part selector between the U-Net and the refiner (an flmm extension, off by default).

Why (measured on the shapes world, session 19): for "the LEFT-MOST square" the language-conditioned
U-Net finds the class and not the member. 83 % of its masks for location expressions cover two or more
things on test scenes, 76 % on the scenes it was trained on; a transformer over the U-Net's deepest
cells did not change that. Yet the right thing is usually one of the mask's own parts: keeping the
connected part that lies furthest in the named direction raises "found" from 29 % to 70 %. This module
learns that step instead of hard-coding it, from the phrase's hidden states and each part's place among
the others, and keeps every part of a plural phrase ("the squares").

Per object, a part is a 4-connected component of the U-Net's foreground (``logit > 0``) on the on-image
canvas cells. Each part is described by :data:`PART_FEATURES` numbers in canvas coordinates normalised to
``[-1, 1]`` over the image's extent on the canvas (x right, y down), and scored from them and the phrase's
hidden states (:class:`PartSelector`).

At inference, parts scored below ``HeadConfig.part_threshold`` (default 0) are suppressed in the logits
that prompt the refiner, and in the decoder mask that is returned; when every part scores below it,
the best one is kept. In training the
selector learns from its own loss (does the ground truth cover more than half of the part?), and the
refiner is prompted with the parts the ground truth covers (teacher forcing), so that it learns to keep
to the part it is given rather than to spread over the phrase's whole class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from scipy import ndimage

#: centre x, y; area share; mean probability; box width, height; distance of the centre from the parts'
#: left-most, right-most, top-most and bottom-most centres; number of parts / 8
PART_FEATURES = 11
#: logit given to the cells of a suppressed part (the refiner reads it as clear background)
SUPPRESSED = -10.0


@dataclass
class Parts:
    """The parts of one object's U-Net mask.

    Attributes:
        labels: ``(S, S)`` long on the canvas: 0 off the mask, ``i`` on part ``i`` (1-based).
        features: ``(n, PART_FEATURES)`` float32, one row per part (``n`` may be 0 or 1).
    """

    labels: torch.Tensor
    features: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.features.shape[0])


def find_parts(logits: torch.Tensor, on_image: torch.Tensor) -> Parts:
    """Parts of one object's canvas logits ``(S, S)``, on the cells where ``on_image`` ``(S, S)`` (0/1 or
    bool, :func:`flmm.head.prep.canvas_image_mask`) says the image lies; coordinates are normalised over
    the extent of those cells (the image's, without a processor's padding)."""
    on = on_image.detach().bool().cpu().numpy()
    fg = (logits.detach() > 0).cpu().numpy() & on
    lab, n = ndimage.label(fg)
    labels = torch.from_numpy(lab.astype(np.int64)).to(logits.device)
    if n == 0:
        return Parts(labels, torch.zeros(0, PART_FEATURES, device=logits.device))
    r = np.nonzero(on.any(1))[0]
    c = np.nonzero(on.any(0))[0]
    vh, vw = r[-1] + 1 - r[0], c[-1] + 1 - c[0]
    prob = torch.sigmoid(logits.detach().float()).cpu().numpy()
    index = np.arange(1, n + 1)
    rows, cols = np.mgrid[: lab.shape[0], : lab.shape[1]]
    ys, xs = (rows - r[0] + 0.5) / vh * 2 - 1, (cols - c[0] + 0.5) / vw * 2 - 1
    area = ndimage.sum(np.ones_like(prob), lab, index) / on.sum()
    cx, cy = ndimage.mean(xs, lab, index), ndimage.mean(ys, lab, index)
    mean_p = ndimage.mean(prob, lab, index)
    x0, x1 = ndimage.minimum(xs, lab, index), ndimage.maximum(xs, lab, index)
    y0, y1 = ndimage.minimum(ys, lab, index), ndimage.maximum(ys, lab, index)
    feats = np.stack(
        [
            cx,
            cy,
            area,
            mean_p,
            x1 - x0,
            y1 - y0,
            cx - cx.min(),
            cx.max() - cx,
            cy - cy.min(),
            cy.max() - cy,
            np.full(n, n / 8.0),
        ],
        axis=1,
    )
    return Parts(labels, torch.from_numpy(feats.astype(np.float32)).to(logits.device))


class PartSelector(nn.Module):
    """Scores each part of an object's U-Net mask from its features and the phrase's hidden states.

    The phrase is read token by token from all ``M`` captured layers (normalised, projected) and max-pooled
    over its tokens, so that one telling word ("left-most") is not averaged away by the others; the
    pooled vector gives the weights and bias of a linear score over the part's embedded features (a
    bilinear form: "left-most" x "distance from the left-most centre").

    Args:
        num_layers, hidden_size: ``M`` and ``d`` of the LMM's captured hidden states.
        width: width of the token and part embeddings.
    """

    def __init__(self, num_layers: int, hidden_size: int, width: int = 64) -> None:
        super().__init__()
        self.words = nn.Sequential(
            nn.LayerNorm(num_layers * hidden_size), nn.Linear(num_layers * hidden_size, width)
        )
        self.query = nn.Sequential(nn.ReLU(), nn.Linear(width, width + 1))
        self.parts = nn.Sequential(nn.Linear(PART_FEATURES, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, parts: Sequence[Parts], hidden: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per object ``(n_k,)`` part logits (empty for an object with one part or none: nothing to choose).

        ``hidden`` holds per object its phrase's hidden states ``(T_k, M, d)``, as the head's cues read them."""
        dtype = next(self.parameters()).dtype
        return [
            self.score(p.features, h) if p.count >= 2 else torch.zeros(0, dtype=dtype, device=h.device)
            for p, h in zip(parts, hidden)
        ]

    def score(self, features: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``(n,)`` logits of ``n`` parts described by ``features`` ``(n, PART_FEATURES)``, for a phrase with
        hidden states ``hidden`` ``(T, M, d)``."""
        dtype = next(self.parameters()).dtype
        q = self.query(self.words(hidden.to(dtype).flatten(1)).amax(0))
        return self.parts(features.to(dtype)) @ q[:-1] + q[-1]


def kept_parts(part_logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """``(n,)`` bool: parts scored above ``threshold`` (a logit), or the best one when none is."""
    keep = part_logits > threshold
    if len(keep) and not keep.any():
        keep[part_logits.argmax()] = True
    return keep


def suppress_parts(
    logits: torch.Tensor, parts: Sequence[Parts], keep: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Canvas logits ``(K, S, S)`` with the cells of every part not in ``keep`` (per object ``(n_k,)`` bool;
    empty = keep all) set to at most :data:`SUPPRESSED`; gradients still flow through the kept cells."""
    rows = []
    for lg, p, k in zip(logits, parts, keep):
        if len(k) == 0:
            rows.append(lg)
            continue
        keep_label = torch.cat([torch.ones(1, dtype=torch.bool, device=k.device), k.bool()])
        dropped = ~keep_label[p.labels]  # label 0 (off the mask) is "kept": its logits stay as they are
        rows.append(torch.where(dropped, lg.clamp(max=SUPPRESSED), lg))
    return torch.stack(rows)


def true_parts(parts: Sequence[Parts], targets: torch.Tensor) -> list[torch.Tensor]:
    """Per object ``(n_k,)`` bool: the parts the ground truth covers (all of them when it covers none, so a
    mask that missed keeps every part). What prompts the refiner in training (teacher forcing)."""
    out = []
    for t in part_targets(parts, targets):
        k = t > 0.5
        out.append(k if k.any() else torch.ones_like(k))
    return out


def part_targets(parts: Sequence[Parts], targets: torch.Tensor) -> list[torch.Tensor]:
    """Per object ``(n_k,)`` float 0/1: does the ground truth cover more than half of the part?

    ``targets (K, S, S)`` are the decoder's canvas targets (fraction of each cell covered)."""
    out = []
    for p, t in zip(parts, targets):
        if p.count < 2:
            out.append(t.new_zeros(0))
            continue
        index = p.labels.reshape(-1)
        cover = torch.zeros(p.count + 1, device=t.device).index_add_(0, index, t.reshape(-1).float())
        size = torch.bincount(index, minlength=p.count + 1).to(t.device).float()
        out.append((cover[1:] / size[1:].clamp_min(1) > 0.5).float())
    return out
