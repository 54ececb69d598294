"""An optional alignment phase of the tiny LMM: only the projector learns, the language model is frozen.

LLaVA trains in two stages: first only the projector, with the language model frozen, on image
captions ("feature alignment"); then projector and language model together. The shapes recipe's text
phase (:mod:`flmm.shapes.text_pretrain`) leaves a Llama that already finds the thing a question names in
a scene told in words and copies its attribute. With the language model frozen, the projector is pushed
to turn visual tokens into inputs that this text-trained Llama can read the same way, before the joint
LMM stage may rewrite the Llama to suit a still random projector. Same conversations as the LMM stage
(captions and QA: no mask, box or coordinate). The run goes to ``<out>/align``; ``align.safetensors``
(the projector's weights) marks it done and is reused by ``resume``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from flmm.shapes.stage import load_part, save_part, trainable_only
from flmm.train import Trainer

PROJECTOR = "model.multi_modal_projector."  # LLaVA's projector, by parameter name


def _is_projector(name: str) -> bool:
    return name.startswith(PROJECTOR)


def align_projector(
    lmm: nn.Module, make_trainer: Callable[[], Trainer], folder: str, resume: bool = False
) -> dict[str, float] | None:
    """Train only ``lmm``'s projector with the trainer ``make_trainer()`` builds (its output folder must
    be ``folder``; it is built once the rest of ``lmm`` is frozen, and everything trainable before is
    trainable again after). Returns the trainer's last held-out evaluation (``{}`` when a finished phase
    was reloaded from ``<folder>/align.safetensors``), or None when interrupted (``resume=True``
    continues it)."""
    done = os.path.join(folder, "align.safetensors")
    if resume and os.path.isfile(done):
        load_part(lmm, done, "alignment phase")
        return {}
    with trainable_only(lmm, _is_projector):
        result = make_trainer().train(resume=resume)
    if result.interrupted:
        return None
    save_part(lmm, _is_projector, done)
    return dict(result.last_eval)


__all__ = ["PROJECTOR", "align_projector"]
