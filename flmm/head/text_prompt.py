"""Language cues: the phrase's hidden states as extra sparse prompt tokens for SAM (paper Sec. 3.2).

The hidden states of each of the phrase's word-pieces from all ``M`` LMM layers are averaged with ``M``
learnable softmax weights (initialised equal) and projected by one linear layer to SAM's prompt width:
one prompt token per word-piece.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from flmm.errors import InputError


class LanguageCue(nn.Module):
    """``(T_obj, M, d)`` hidden states -> ``(T_obj, P)`` SAM prompt tokens.

    Args:
        num_layers: M, the number of LMM layers whose outputs are captured.
        hidden_size: d, the LMM hidden size.
        prompt_width: P, SAM's prompt-encoder hidden size (256 for released SAMs).
    """

    def __init__(self, num_layers: int, hidden_size: int, prompt_width: int) -> None:
        super().__init__()
        # zeros -> softmax gives equal weights, as the paper's initialisation
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.proj = nn.Linear(hidden_size, prompt_width)

    def layer_weights(self) -> torch.Tensor:
        """``(M,)`` softmax weights of the layers (sum 1)."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        m = self.layer_logits.shape[0]
        d = self.proj.in_features
        if hidden_states.dim() != 3 or tuple(hidden_states.shape[1:]) != (m, d):
            raise InputError(
                f"language cue expects hidden states (T_obj, {m}, {d}), got {tuple(hidden_states.shape)}"
            )
        h = hidden_states.to(self.proj.weight.dtype)
        mixed = torch.einsum("tmd,m->td", h, self.layer_weights())
        return self.proj(mixed)

    def batch(self, hidden_states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Prompt tokens of several objects: list of ``(T_k, M, d)`` -> list of ``(T_k, P)``.

        Objects keep their own token count; the refiner groups objects of equal count so that no padding
        token ever enters SAM's attention (SAM's two-way transformer has no attention mask).
        """
        return [self(h) for h in hidden_states]
