"""A colour-gated shape loss on every visual token: the vision warm-up's phase ``bind``.

Why (measured on the shapes world, session 23, docs/training-log.md): the warm-up's whole-scene phase
finds each caption concept in SOME token (max-pooled multiple-instance learning), so one token per thing
may say "circle" and the others need not. A linear read-out of the thing under a token then gets its
colour 99.7 % right and its shape 66.7 %; the LM cannot look for "the circle" where the circle's tokens
do not say it, and the head's part selector cannot tell the circle's part from the square's.

The caption says which shapes each colour goes with. Where it pairs a colour with exactly one shape
("a red circle and two blue squares": red -> circle, blue -> square), every token that shows that
colour belongs to a thing of that shape. The tower's own per-token colour scores (the concept probe,
which the whole-scene phase has trained) weigh each token, and the token's shape logits (the word
probe's shape group) must name that shape. No mask, box or coordinate is used: the labels are caption
words, the weights the model's own colour read-out, held fixed (no gradient) so that the loss cannot
be lowered by seeing less colour.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flmm.errors import InputError


def colour_gated_shape_loss(
    colour_logits: torch.Tensor, shape_logits: torch.Tensor, pairs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The gated loss over a batch of whole scenes.

    Args:
        colour_logits: ``(B, N, C)`` per-token logits of the ``C`` colour concepts (sigmoid = "this token
            shows colour c"); detached here.
        shape_logits: ``(B, N, S)`` per-token logits of the ``S`` shape words (softmax over shapes).
        pairs: ``(B, C, S)`` 0/1: the caption names a thing of colour ``c`` and shape ``s``.

    Raises:
        InputError: the three shapes do not fit together.

    Returns:
        ``(loss, accuracy)``: the mean over (scene, colour) pairs with exactly one named shape of the
        colour-weighted cross-entropy of the tokens' shape logits against that shape, and the same
        weighting of "the token's top shape is that shape"; None when no colour has exactly one shape.
    """
    if colour_logits.shape[:2] != shape_logits.shape[:2] or pairs.shape != (
        colour_logits.shape[0],
        colour_logits.shape[2],
        shape_logits.shape[2],
    ):
        raise InputError(
            f"shapes do not fit: colour {tuple(colour_logits.shape)}, shape {tuple(shape_logits.shape)}, "
            f"pairs {tuple(pairs.shape)}"
        )
    unique = (pairs > 0.5).sum(-1) == 1  # (B, C)
    if not unique.any():
        return None
    target = pairs.argmax(-1)  # (B, C): the one shape, where unique
    weights = torch.sigmoid(colour_logits.detach().float())  # (B, N, C)
    index = target[:, None, :].expand(-1, shape_logits.shape[1], -1)  # (B, N, C)
    log_p = F.log_softmax(shape_logits.float(), -1).gather(2, index)  # (B, N, C)
    right = (shape_logits.argmax(-1, keepdim=True) == index).float()  # (B, N, C)
    total = weights.sum(1).clamp_min(1e-3)  # (B, C)
    loss = -((weights * log_p).sum(1) / total)[unique].mean()
    accuracy = ((weights * right).sum(1) / total)[unique].mean()
    return loss, accuracy


__all__ = ["colour_gated_shape_loss"]
