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

from contextvars import ContextVar, Token
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "flmm_capture"


@dataclass
class _Call:
    """Buffers of one forward call that had queries to capture (written layer by layer in place)."""

    positions: torch.Tensor  # (B, S_c) absolute, -1 = none
    local: torch.Tensor  # (B, S_c) index on the call's query axis
    rows: torch.Tensor | None = None  # (B, M, H, S_c, K) float32
    hidden: torch.Tensor | None = None  # (B, S_c, M, d) float32
    last: torch.Tensor | None = None  # (B, S_c, d) float32


@dataclass
class CaptureState:
    """What to capture and what was captured during one or more forward passes.

    Attributes:
        key_index: ``(B, K)`` absolute positions of the image tokens (the kept key columns), ``-1`` pads.
        layers: id(attention module) -> layer index in the language model.
        positions: ``(B, S)`` absolute query positions to capture in any call, ``-1`` pads; or None.
        from_position: if set, also capture every query at absolute position ``>= from_position``
            (used for generated tokens during ``generate``).
    """

    key_index: torch.Tensor
    layers: dict[int, int]
    positions: torch.Tensor | None = None
    from_position: int | None = None
    calls: list[_Call] = field(default_factory=list)
    current: _Call | None = None

    def select(self, q_len: int, kv_len: int, batch: int, device: torch.device) -> torch.Tensor | None:
        """Absolute positions ``(B, S_c)`` to capture in a call, ``-1`` where a row has fewer; or None.
        Explicit positions keep their given order, so row ``j`` of sample ``b`` is ``positions[b, j]``."""
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
        """All calls together: positions ``(B, S)``, rows ``(B, M, H, S, K)``, hidden ``(B, S, M, d)``
        and last hidden ``(B, S, d)``, in call order. A single call is returned without copying."""
        calls = [c for c in self.calls if c.rows is not None]
        if not calls:
            raise RuntimeError("nothing was captured; is the attention implementation set to flmm_capture?")
        if any(c.hidden is None or c.last is None for c in calls):
            raise RuntimeError("hidden states were not captured for every call")
        if len(calls) == 1:
            c = calls[0]
            return c.positions, c.rows, c.hidden, c.last  # type: ignore[return-value]
        return (
            torch.cat([c.positions for c in calls], dim=1),
            torch.cat([c.rows for c in calls], dim=3),  # type: ignore[misc]
            torch.cat([c.hidden for c in calls], dim=1),  # type: ignore[misc]
            torch.cat([c.last for c in calls], dim=1),  # type: ignore[misc]
        )


_ACTIVE: ContextVar[CaptureState | None] = ContextVar("flmm_capture_state", default=None)


def _record_rows(
    state: CaptureState,
    layer: int,
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    is_causal: bool,
) -> None:
    """Write the softmax rows of the selected queries, restricted to the image keys, into the current
    call's buffer ``rows[:, layer]`` (float32). At layer 0 a new call starts (or none, if this forward
    has nothing to capture). Transient memory is one ``(B, H, S_c, L)`` score block."""
    b, h, q_len, d = query.shape
    kv_len = key.shape[2]
    if layer == 0:
        sel = state.select(q_len, kv_len, b, query.device)
        if sel is None:
            state.current = None
            return
        local = torch.where(sel >= 0, sel - (kv_len - q_len), torch.zeros_like(sel))
        state.current = _Call(sel, local)
        state.calls.append(state.current)
    call = state.current
    if call is None:
        return
    sel, local = call.positions, call.local
    s = local.shape[1]
    kidx = state.key_index.to(query.device)
    if call.rows is None:
        call.rows = torch.empty(b, len(state.layers), h, s, kidx.shape[1], device=query.device)
    q = query.gather(2, local[:, None, :, None].expand(b, h, s, d)).float()
    h_kv = key.shape[1]
    # GQA without repeat_kv: fold the query heads of a KV group into the row axis
    scores = torch.matmul(q.reshape(b, h_kv, (h // h_kv) * s, d), key.float().transpose(-1, -2))
    scores = scores.view(b, h, s, kv_len).mul_(scaling if scaling is not None else d**-0.5)
    if attention_mask is not None:
        m = attention_mask[..., :kv_len]
        m = m.expand(b, m.shape[1], q_len, kv_len).gather(
            2, local[:, None, :, None].expand(b, m.shape[1], s, kv_len)
        )
        if m.dtype == torch.bool:
            scores.masked_fill_(~m, float("-inf"))
        else:
            scores.add_(m.float())
    elif is_causal:
        future = torch.arange(kv_len, device=query.device)[None, None, :] > sel[:, :, None]  # (B, S, K)
        scores.masked_fill_(future[:, None], float("-inf"))
    # in-place softmax over the whole key axis (same as eager's float32 softmax)
    scores.sub_(scores.amax(-1, keepdim=True)).exp_()
    scores.div_(scores.sum(-1, keepdim=True))
    out = call.rows[:, layer]
    torch.gather(scores, -1, kidx.clamp(min=0)[:, None, None, :].expand(b, h, s, kidx.shape[1]), out=out)
    invalid = ~((sel >= 0)[:, None, :, None] & (kidx >= 0)[:, None, None, :])
    if invalid.any():
        out.masked_fill_(invalid, 0.0)


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
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        is_causal=is_causal,
        **kwargs,
    )
    state = _ACTIVE.get()
    if state is not None:
        layer = state.layers.get(id(module))
        if layer is not None:
            causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
            with torch.no_grad():
                _record_rows(state, layer, query, key, attention_mask, scaling, causal)
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
        self._token: Token[CaptureState | None] | None = None

    def _layer_hook(self, index: int):
        def hook(_module, _inputs, output):
            call = self.state.current
            if call is None:
                return
            hs = output[0] if isinstance(output, tuple) else output
            b, s = call.local.shape
            if call.hidden is None:
                call.hidden = torch.empty(b, s, len(self._layers), hs.shape[-1], device=hs.device)
            call.hidden[:, :, index] = hs.detach().gather(
                1, call.local[:, :, None].expand(b, s, hs.shape[-1])
            )

        return hook

    def _norm_hook(self, _module, _inputs, output):
        call = self.state.current
        if call is None:
            return
        b, s = call.local.shape
        call.last = output.detach().gather(1, call.local[:, :, None].expand(b, s, output.shape[-1])).float()

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
