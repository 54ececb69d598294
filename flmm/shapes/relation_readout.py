"""Can relation questions be answered from a tower's FIXED tokens? A diagnostic for the tiny LMM.

:func:`relation_readout` fits a :class:`flmm.shapes.relations.RelationProbe` alone (the tower frozen)
on the tokens of one ViT hidden state and scores it on other scenes. With ``place="exact"`` the probe
is handed each token's exact grid place, so only finding the described things is left to the tokens:
the two settings separate "the tokens do not say WHAT is where" from "they do not say WHERE".
Measured numbers: docs/training-log.md (session 7).
"""

from __future__ import annotations

from typing import Any

import torch

from flmm.errors import ConfigError
from flmm.shapes.lmm import token_grid, world_patch
from flmm.shapes.relations import RelationProbe
from flmm.shapes.warmup_data import SceneImages, collate_batch

PLACES = ("learned", "exact")


@torch.no_grad()
def _tokens(tower: Any, processor: Any, seeds: list[int], layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, N, hidden)`` tokens of hidden state ``layer`` (CLS dropped) and ``(S, R, FIELDS)`` rows."""
    data = SceneImages(seeds, processor.image_processor, world_patch(tower.config), mix=False, relations=True)
    tokens, rows = [], []
    for start in range(0, len(data), 50):
        batch = collate_batch([data[i] for i in range(start, min(start + 50, len(data)))])
        pixels = batch["pixel_values"].to(tower.device, tower.dtype)
        tokens.append(
            tower(pixel_values=pixels, output_hidden_states=True).hidden_states[layer][:, 1:].float().cpu()
        )
        rows.append(batch["relations"])
    return torch.cat(tokens), torch.cat(rows)


def relation_readout(
    model: Any,
    processor: Any,
    fit_seeds: list[int],
    test_seeds: list[int],
    layer: int = -1,
    place: str = "learned",
    epochs: int = 8,
    lr: float = 1e-2,
    seed: int = 0,
) -> dict[str, float]:
    """Relation-question accuracy (chance 0.5, questions balanced yes / no) of a probe fitted on the
    frozen tower's hidden state ``layer`` of ``fit_seeds`` scenes, scored on ``test_seeds``.

    Args:
        model: a shapes ``LlavaForConditionalGeneration`` (only its vision tower is used).
        processor: its processor.
        layer: ViT hidden state (0 = patch embeddings, -1 = last).
        place: ``"learned"`` (a linear read-out of each token's (x, y), learnt from the answers) or
            ``"exact"`` (each token's grid (column, row) / grid, given).
        epochs, lr, seed: AdamW fit, batch 64.

    Returns ``{"fit_acc", "test_acc", "test_questions"}``.
    """
    if place not in PLACES:
        raise ConfigError(f"place must be one of {PLACES}, got {place!r}")
    tower = model.model.vision_tower
    fit, test = (_tokens(tower, processor, s, layer) for s in (fit_seeds, test_seeds))
    grid = token_grid(tower.config)
    index = torch.arange(grid * grid)
    exact = torch.stack([index % grid, index // grid], -1).float() / grid  # (N, 2): x = column, y = row
    torch.manual_seed(seed)
    probe = RelationProbe(fit[0].shape[-1], fixed_place=exact if place == "exact" else None)
    opt = torch.optim.AdamW(probe.parameters(), lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(fit[0])).split(64):
            out = probe(fit[0][idx], fit[1][idx])
            if out is not None:
                opt.zero_grad()
                out[0].backward()
                opt.step()
    with torch.no_grad():
        fit_out, test_out = probe(*fit), probe(*test)
    if fit_out is None or test_out is None:
        raise ConfigError("no relation question in these scenes: give more scenes (a third have none)")
    return {
        "fit_acc": float(fit_out[1]),
        "test_acc": float(test_out[1]),
        "test_questions": float((test[1][..., 6] >= 0).sum()),
    }


__all__ = ["PLACES", "relation_readout"]
