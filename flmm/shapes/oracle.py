"""Oracle visual tokens: what the LMM stage can learn when the vision tower is perfect.

A diagnostic, not a model: :class:`OracleTower` stands in for the tiny LLaVA's CLIP tower and returns,
for each 8-pixel cell of a shapes-world scene, a fixed token built from the scene's ground truth
(:func:`oracle_tokens`). The projector and the Llama are then trained exactly as in the LMM stage
(:class:`~flmm.shapes.lmm_objective.CausalLMObjective` through :class:`~flmm.train.Trainer`), so any
shortfall in QA or attention grounding is the LM stage's, not the tower's. Run it with
``python examples/oracle_lmm.py``.

Images reach the tower in two ways:

- training conversations come from :class:`OracleChatDataset`, whose ``pixel_values`` carry the oracle
  tokens themselves (so DataLoader worker processes can build them);
- evaluation code renders its scenes and runs the real image processor; :meth:`OracleTower.remember`
  registers those scenes first (keyed by the processed pixels), see :func:`remember_scenes`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from flmm.errors import InputError
from flmm.shapes.lmm import token_grid
from flmm.shapes.lmm_data import ChatDataConfig, ShapesChatDataset
from flmm.world import COLORS, SHAPES, SIZES, STUFF_BOTTOM, STUFF_TOP, Scene, sample_scene

STUFF = (*STUFF_TOP, *STUFF_BOTTOM)
# feature layout of one oracle token (width 128): one-hot colour, shape, size, stuff kind, row, column
_COLOUR, _SHAPE, _SIZE, _STUFF, _ROW, _COL = 0, 16, 28, 32, 48, 64
_MARK = 12345.0  # last pixel value of an OracleChatDataset item: "these pixels are oracle tokens"


def oracle_tokens(scene: Scene, grid: int = 16, hidden: int = 128) -> torch.Tensor:
    """``(grid * grid, hidden)`` float32 tokens of ``scene``, row-major over the ``grid x grid`` cells
    (cell ``(r, c)`` covers pixels ``[r*p, (r+1)*p) x [c*p, (c+1)*p)``, ``p = 128 / grid``).

    A cell gets the one-hot colour, shape and size of the thing whose visible mask covers more than 30 %
    of it (the front-most when several do), the one-hot stuff kind when its stuff covers more than half
    of it, and always its one-hot row and column (dims 48-63 and 64-79)."""
    size = scene.stuff_masks.shape[-1]
    if grid > 16 or hidden < 80 or size % grid:
        raise InputError(
            f"oracle tokens need grid <= 16 dividing {size} and hidden >= 80; got {grid}, {hidden}"
        )
    cell = size // grid

    def cover(mask: np.ndarray) -> torch.Tensor:
        m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
        return m.reshape(grid, cell, grid, cell).mean(dim=(1, 3))

    tok = torch.zeros(grid, grid, hidden)
    for j, name in enumerate((scene.spec.stuff_top, scene.spec.stuff_bottom)):
        tok[cover(scene.stuff_masks[j]) > 0.5, _STUFF + STUFF.index(name)] = 1
    for k, thing in enumerate(scene.spec.things):  # later things are in front: they overwrite
        hit = cover(scene.thing_masks[k]) > 0.3
        tok[hit, _COLOUR : _SIZE + len(SIZES)] = 0
        tok[hit, _COLOUR + COLORS.index(thing.color)] = 1
        tok[hit, _SHAPE + SHAPES.index(thing.shape)] = 1
        tok[hit, _SIZE + SIZES.index(thing.size)] = 1
    tok[..., _ROW : _ROW + grid] = torch.eye(grid)[:, None, :]
    tok[..., _COL : _COL + grid] = torch.eye(grid)[None, :, :]
    return tok.reshape(grid * grid, hidden)


def _key(pixels: torch.Tensor) -> bytes:
    return hashlib.sha1((pixels.float() * 512).round().to(torch.int32).numpy().tobytes()).digest()


class OracleTower(nn.Module):
    """Drop-in for ``LlavaForConditionalGeneration.model.vision_tower`` (no trainable parameters).

    ``forward(pixel_values (B, 3, H, W))`` returns ``hidden_states`` (every layer the same) of shape
    ``(B, 1 + grid * grid, hidden)``: a zero CLS token, then :func:`oracle_tokens` of each image.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.grid = token_grid(config)
        self.registry: dict[bytes, torch.Tensor] = {}

    def remember(self, scene: Scene, pixels: torch.Tensor) -> None:
        """Register ``scene`` under its processed ``pixels (3, H, W)`` (as the image processor gave them)."""
        self.registry[_key(pixels.cpu())] = oracle_tokens(scene, self.grid, self.config.hidden_size)

    def _tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        n = self.grid * self.grid * self.config.hidden_size
        if float(pixels[-1, -1, -1]) == _MARK:
            return pixels.flatten()[:n].reshape(self.grid * self.grid, -1)
        found = self.registry.get(_key(pixels))
        if found is None:
            raise InputError(
                "OracleTower got an image it does not know: call remember() (or remember_scenes) first"
            )
        return found

    def forward(self, pixel_values: torch.Tensor, **_: object) -> BaseModelOutputWithPooling:
        tokens = torch.stack([self._tokens(p) for p in pixel_values.detach().float().cpu()])
        hidden = torch.cat([torch.zeros_like(tokens[:, :1]), tokens], dim=1)
        hidden = hidden.to(device=pixel_values.device, dtype=pixel_values.dtype)
        states = (hidden,) * (self.config.num_hidden_layers + 1)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden, pooler_output=hidden[:, 0], hidden_states=states
        )


def remember_scenes(tower: OracleTower, processor, seeds: list[int]) -> None:
    """Register the scenes ``seeds`` (as :func:`flmm.world.sample_scene` renders them) with ``tower``."""
    for seed in seeds:
        scene = sample_scene(seed)
        tower.remember(
            scene, processor.image_processor(images=scene.image, return_tensors="pt")["pixel_values"][0]
        )


class OracleChatDataset(ShapesChatDataset):
    """:class:`~flmm.shapes.lmm_data.ShapesChatDataset` whose ``pixel_values (3, H, W)`` hold the oracle
    tokens of the conversation's scene (flattened, then zeros, the last value a marker) for a tower of
    ``grid x grid`` tokens of width ``hidden``."""

    def __init__(
        self,
        seeds: list[int],
        processor,
        cfg: ChatDataConfig | None = None,
        grid: int = 16,
        hidden: int = 128,
    ):
        super().__init__(seeds, processor, cfg)
        self.grid, self.hidden = grid, hidden

    def pixels(self, scene: Scene, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = oracle_tokens(scene, self.grid, self.hidden).flatten()
        if tokens.numel() >= pixel_values.numel():
            raise InputError(
                f"{self.grid}x{self.grid} oracle tokens of width {self.hidden} do not fit in an image"
            )
        out = torch.zeros(pixel_values.numel())
        out[: tokens.numel()] = tokens
        out[-1] = _MARK
        return out.reshape(pixel_values.shape)


__all__ = ["OracleChatDataset", "OracleTower", "oracle_tokens", "remember_scenes"]
