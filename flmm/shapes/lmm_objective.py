"""Training objective of the tiny LMM: next-token loss on the assistant tokens, plus optional aids on
the projected visual tokens: an image-level concept loss (see :mod:`flmm.shapes.concepts`) and a
token-address loss (see :class:`flmm.shapes.relations.TokenAddress`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from flmm.shapes.concepts import CONCEPTS
from flmm.shapes.lmm import token_grid
from flmm.shapes.lmm_data import IGNORE_INDEX
from flmm.shapes.relations import TokenAddress


def answer_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy next-token hits on the labelled tokens: ``logits (B, L, V)``, ``labels (B, L)`` (-100:
    unlabelled) -> ``hit``, ``valid`` ``(B, L - 1)`` bool (``hit`` is False where ``valid`` is)."""
    target = labels[:, 1:]
    valid = target != IGNORE_INDEX
    return (logits[:, :-1].argmax(-1) == target) & valid, valid


class CausalLMObjective(nn.Module):
    """Wraps a ``LlavaForConditionalGeneration`` for :class:`~flmm.train.Trainer`.

    ``forward(batch)`` returns ``loss`` (= LM cross-entropy + ``concept_weight`` x concept BCE +
    ``address_weight`` x address cross-entropy),
    ``lm_loss``, ``token_acc`` (greedy accuracy on the labelled tokens) and, with concepts,
    ``concept_loss``, with the address term ``address_loss`` and ``address_col_acc``. The concept
    probe is a linear layer on each projected visual token (the LM's input), max-pooled over the
    tokens; the address probe asks each projected token for its own grid row and column. Both are
    training aids only and not part of the exported LMM.

    Args:
        lmm: the LLaVA model (all of it trainable in this stage).
        concept_weight: weight of the concept loss (0 disables it and the probe).
        address_weight: weight of the token-address loss (0 disables it and the probe).
    """

    def __init__(self, lmm: Any, concept_weight: float = 0.0, address_weight: float = 0.0) -> None:
        super().__init__()
        self.lmm = lmm
        self.concept_weight, self.address_weight = concept_weight, address_weight
        hidden = int(lmm.config.text_config.hidden_size)
        self.concept_probe = nn.Linear(hidden, len(CONCEPTS)) if concept_weight > 0 else None
        grid = token_grid(lmm.config.vision_config)
        self.address_probe = TokenAddress(hidden, grid) if address_weight > 0 else None

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        extra: dict[str, torch.Tensor] = {}
        inputs: dict[str, Any] = dict(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        loss_terms: list[torch.Tensor] = []
        if self.concept_probe is not None or self.address_probe is not None:
            # one ViT pass, shared by the probes and the LM
            image = self.lmm.model.get_image_features(pixel_values=batch["pixel_values"], return_dict=True)
            tokens = torch.stack(list(image.pooler_output))  # (B, 256, hidden) projected visual tokens
            if self.concept_probe is not None:
                logits = self.concept_probe(tokens).amax(dim=1)  # (B, C): "some token shows it"
                extra["concept_loss"] = F.binary_cross_entropy_with_logits(
                    logits.float(), batch["concepts"].float()
                )
                loss_terms.append(self.concept_weight * extra["concept_loss"])
            if self.address_probe is not None:
                extra["address_loss"], _, extra["address_col_acc"] = self.address_probe(tokens)
                loss_terms.append(self.address_weight * extra["address_loss"])
            inputs["mm_encoder_outputs"] = {"image": image}
        elif "pixel_values" in batch:  # (a text-only batch has none)
            inputs["pixel_values"] = batch["pixel_values"]
        out = self.lmm(**inputs)
        loss = out.loss + sum(loss_terms) if loss_terms else out.loss
        with torch.no_grad():
            hit, valid = answer_hits(out.logits, batch["labels"])
            acc = hit.sum() / valid.sum().clamp_min(1)
        return {"loss": loss, "lm_loss": out.loss.detach(), "token_acc": acc, **extra}
