"""Capture word->image attention rows without eager attention.

``flmm_capture`` is registered in transformers' ``AttentionInterface`` (and the matching
``AttentionMaskInterface``, so the model builds the same masks as for SDPA). It returns exactly what
SDPA returns (the model's outputs do not change by a bit) and, only while a :class:`capture` context
is active and only for the selected query positions, also computes those queries' softmax rows over
the whole key sequence and keeps the columns of the image tokens. Full ``L x L`` attention is never
built: the extra work is ``O(S * L)`` per layer for ``S`` selected queries.

Positions are *absolute* indices on the key axis (the padded input sequence, which is also the KV-cache
axis during generation). In a call with ``q_len`` queries and ``kv_len`` keys, query ``i`` sits at
absolute position ``kv_len - q_len + i``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "flmm_capture"


@dataclass
class CaptureState:
    """What to capture and what was captured during one or more forward passes.

    Attributes:
        key_index: ``(B, K)`` absolute positions of the image tokens (the kept key columns), ``-1`` pads.
        positions: ``(B, S)`` absolute query positions to capture in any call, ``-1`` pads; or None.
        from_position: if set, also capture every query at absolute position ``>= from_position``
            (used for generated tokens during ``generate``).
        layers: id(attention module) -> layer index in the language model.
        norm: the language model's final norm (its output at captured positions is ``last_hidden``).
    """

    key_index: torch.Tensor
    layers: dict[int, int]
    positions: torch.Tensor | None = None
    from_position: int | None = None
    rows: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> [(B, H, S_c, K)]
    hidden: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # layer -> [(B, S_c, d)]
    last: list[torch.Tensor] = field(default_factory=list)  # [(B, S_c, d)]
    call_positions: list[torch.Tensor] = field(default_factory=list)  # [(B, S_c)] absolute, -1 = none
    _pending: torch.Tensor | None = None  # local query indices of the current call, (B, S_c)

    def select(self, q_len: int, kv_len: int, batch: int, device: torch.device) -> torch.Tensor | None:
        """Absolute positions ``(B, S_c)`` to capture in a call, ``-1`` where a row has fewer; or None."""
        start = kv_len - q_len
        chosen = []
        if self.positions is not None:
            p = self.positions.to(device)
            inside = (p >= start) & (p < kv_len)
            chosen.append(torch.where(inside, p, torch.full_like(p, -1)))
        if self.from_position is not None:
            lo = max(self.from_position, start)
            if lo < kv_len:
                chosen.append(torch.arange(lo, kv_len, device=device).expand(batch, -1))
        if not chosen:
            return None
        sel = torch.cat(chosen, dim=1)
        if (sel < 0).all():
            return None
        return sel

    def stack(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenate all calls: positions ``(B, S)``, rows ``(B, M, H, S, K)``, hidden ``(B, S, M, d)``
        and last hidden ``(B, S, d)``, in call order."""
        if not self.call_positions:
            raise RuntimeError("nothing was captured")
        pos = torch.cat(self.call_positions, dim=1)
        n_layers = len(self.layers)
        missing = [i for i in range(n_layers) if i not in self.rows]
        if missing:
            raise RuntimeError(f"layers {missing} were not captured; is the attention implementation set?")
        rows = torch.stack([torch.cat(self.rows[i], dim=2) for i in range(n_layers)], dim=1)
        hidden = torch.stack([torch.cat(self.hidden[i], dim=1) for i in range(n_layers)], dim=2)
        last = torch.cat(self.last, dim=1)
        return pos, rows, hidden, last


_ACTIVE: ContextVar[CaptureState | None] = ContextVar("flmm_capture_state", default=None)


def _attention_rows(
    state: CaptureState,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    is_causal: bool,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Softmax rows ``(B, H, S, K)`` (float32) of the selected queries restricted to the image keys,
    and the selected absolute positions ``(B, S)``; None when this call has nothing to capture."""
    b, h, q_len, d = query.shape
    kv_len = key.shape[2]
    sel = state.select(q_len, kv_len, b, query.device)
    if sel is None:
        state._pending = None
        return None
    start = kv_len - q_len
    valid = sel >= 0
    local = torch.where(valid, sel - start, torch.zeros_like(sel))  # (B, S)
    s = local.shape[1]
    q = query.gather(2, local[:, None, :, None].expand(b, h, s, d)).float()
    h_kv = key.shape[1]
    groups = h // h_kv
    # GQA without repeat_kv: fold the query heads of a KV group into the row axis
    scores = torch.matmul(q.reshape(b, h_kv, groups * s, d), key.float().transpose(-1, -2))
    scores = scores.reshape(b, h, s, kv_len) * (scaling if scaling is not None else d**-0.5)
    if attention_mask is not None:
        m = attention_mask[..., :kv_len]
        m = m.expand(b, m.shape[1], q_len, kv_len)
        m = m.gather(2, local[:, None, :, None].expand(b, m.shape[1], s, kv_len))
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    elif is_causal:
        future = torch.arange(kv_len, device=query.device)[None, None, :] > sel[:, :, None]  # (B, S, K)
        scores = scores.masked_fill(future[:, None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    kidx = state.key_index.to(query.device)
    kept = probs.gather(-1, kidx.clamp(min=0)[:, None, None, :].expand(b, h, s, kidx.shape[1]))
    kept = kept.masked_fill(~(valid[:, None, :, None] & (kidx >= 0)[:, None, None, :]), 0.0)
    state._pending = local
    return kept, sel


def flmm_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA attention (unchanged output) + capture of selected rows when a capture is active."""
    out = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
    )
    state = _ACTIVE.get()
    if state is not None:
        layer = state.layers.get(id(module))
        if layer is not None:
            causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
            with torch.no_grad():
                got = _attention_rows(state, query, key, attention_mask, scaling, causal)
            if got is not None:
                state.rows.setdefault(layer, []).append(got[0])
                if layer == 0:
                    state.call_positions.append(got[1])
    return out


AttentionInterface.register(ATTN_IMPLEMENTATION, flmm_attention_forward)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


class capture:
    """Context manager: capture attention rows and hidden states of selected positions.

    Hooks the language model's decoder layers (their outputs are the per-layer hidden states) and the
    final norm (``last_hidden``) for the duration of the context.

    Args:
        layers: the language model's decoder layers, in order.
        attention_modules: each layer's self-attention module (same order).
        norm: the final norm module of the language model.
        key_index: ``(B, K)`` absolute positions of image tokens to keep, ``-1`` pads.
        positions: ``(B, S)`` absolute query positions to capture, ``-1`` pads (or None).
        from_position: capture every query at or after this absolute position (generation).
    """

    def __init__(
        self,
        layers: list[nn.Module],
        attention_modules: list[nn.Module],
        norm: nn.Module,
        key_index: torch.Tensor,
        positions: torch.Tensor | None = None,
        from_position: int | None = None,
    ) -> None:
        self.state = CaptureState(
            key_index=key_index,
            layers={id(m): i for i, m in enumerate(attention_modules)},
            positions=positions,
            from_position=from_position,
        )
        self._layers = layers
        self._norm = norm
        self._handles: list = []
        self._token = None

    def _layer_hook(self, index: int):
        def hook(_module, _inputs, output):
            local = self.state._pending
            if local is None:
                return
            hs = output[0] if isinstance(output, tuple) else output
            b, s = local.shape
            self.state.hidden.setdefault(index, []).append(
                hs.detach().gather(1, local[:, :, None].expand(b, s, hs.shape[-1])).float()
            )

        return hook

    def _norm_hook(self, _module, _inputs, output):
        local = self.state._pending
        if local is None:
            return
        b, s = local.shape
        self.state.last.append(output.detach().gather(1, local[:, :, None].expand(b, s, output.shape[-1])).float())

    def __enter__(self) -> CaptureState:
        for i, layer in enumerate(self._layers):
            self._handles.append(layer.register_forward_hook(self._layer_hook(i)))
        self._handles.append(self._norm.register_forward_hook(self._norm_hook))
        self._token = _ACTIVE.set(self.state)
        return self.state

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
