"""Data passed from the frozen LMM to the mask head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from flmm.geometry import GridGeometry


@dataclass
class LMMIdentity:
    """What a mask head needs to know about the LMM it was trained on."""

    name: str  # e.g. "llava-hf/llava-1.5-7b-hf" or a local path's basename
    family: str  # registry key of the adapter, e.g. "llava"
    num_layers: int  # M
    num_heads: int  # N
    hidden_size: int  # d
    num_grids: int = 1  # visual views returned per image (LLaVA-NeXT: 2)


@dataclass
class CaptureResult:
    """Everything captured for the selected text tokens of one sample (one image, one text).

    ``T`` selected tokens, ``M`` decoder layers, ``N`` attention heads, ``d`` hidden size.

    Attributes:
        attentions: one tensor per visual grid, ``(T, M, N, h, w)`` float32: softmax attention rows of
            the selected tokens restricted to that grid's image-token columns (rows are softmaxed
            over the *whole* key sequence, then sliced, exactly as eager attention would).
        geometries: the :class:`GridGeometry` of each grid, same order as ``attentions``.
        hidden_states: ``(T, M, d)`` outputs of every decoder layer at the selected tokens.
        last_hidden: ``(T, d)`` final hidden state (after the LM's final norm) at the selected tokens.
        positions: ``(T,)`` indices of the selected tokens in the input sequence.
        token_ids: ``(T,)`` their vocabulary ids.
        text: the assistant text the spans refer to ('' when tokens were selected by index).
        offsets: ``(T, 2)`` character span ``[start, end)`` of each selected token in ``text``
            (``-1`` when unknown).
    """

    attentions: list[torch.Tensor]
    geometries: list[GridGeometry]
    hidden_states: torch.Tensor
    last_hidden: torch.Tensor
    positions: torch.Tensor
    token_ids: torch.Tensor
    text: str = ""
    offsets: torch.Tensor = field(default_factory=lambda: torch.empty(0, 2, dtype=torch.long))

    def select(self, idx: torch.Tensor | list[int]) -> CaptureResult:
        """Sub-select tokens (indices into the ``T`` axis)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return CaptureResult(
            attentions=[a[idx] for a in self.attentions],
            geometries=self.geometries,
            hidden_states=self.hidden_states[idx],
            last_hidden=self.last_hidden[idx],
            positions=self.positions[idx],
            token_ids=self.token_ids[idx],
            text=self.text,
            offsets=self.offsets[idx] if len(self.offsets) else self.offsets,
        )
