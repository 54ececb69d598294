"""An optional text-only phase of the tiny LMM's pre-training: the Llama reads a scene *told in words*
and answers about it, before it ever sees an image.

A sample is one conversation of :func:`flmm.shapes.lmm_data.conversation` (same mix, same questions,
same caption requests) whose image is replaced by the scene in words (every fact the image shows, worded
unlike any caption the assistant gives; see :func:`scene_in_words`)::

    USER: a big blue triangle in front of the wall . a big orange circle on the sand . the wall above
    the sand . what color is the big circle ? ASSISTANT: orange</s>

Only captions and QA text of the shapes world are used: no image, no mask, no box, no coordinate. The
phase trains the language model and its embeddings (the vision tower and the projector get no
gradient), so that the multimodal stage starts from an LM that already finds the thing a question names
in its context and copies its attribute, and only has to learn to read the same facts from visual
tokens. The run goes to ``<out>/text``; ``text.safetensors`` (the language model's weights) marks it
done and is reused by ``resume``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from flmm.errors import ConfigError
from flmm.shapes.lmm_data import (
    ChatCollator,
    ChatDataConfig,
    ShapesChatDataset,
    conversation,
    encode,
)
from flmm.shapes.lmm_objective import CausalLMObjective, answer_hits
from flmm.shapes.stage import load_part, save_part, split_batch, trainable_only
from flmm.train import TrainConfig, Trainer
from flmm.world import Scene, split_seeds
from flmm.world.describe import IN_REGION, article, regions


@dataclass
class TextPretrainConfig:
    """The text-only phase (``steps=0``: off).

    Attributes:
        steps / batch_size / lr: the phase's loop (cosine schedule, AdamW; the LMM stage's precision).
        data: conversation mix (the LMM stage's by default).
        val_conversations: held-out ``val`` conversations scored at the end (answer-token accuracy).
    """

    steps: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    data: ChatDataConfig = field(
        default_factory=lambda: ChatDataConfig(p_caption=0.25, p_packed=0.5, p_simple=0.25)
    )
    val_conversations: int = 256

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"text pre-training needs steps >= 0, batch_size >= 1 and lr > 0, got steps={self.steps}, "
                f"batch_size={self.batch_size}, lr={self.lr}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def as_text(messages: list[dict], scene_text: str) -> list[dict]:
    """``messages`` (hub format) with every image item replaced by the text item ``scene_text``."""
    told = {"type": "text", "text": scene_text}
    return [
        {**m, "content": [told if item["type"] == "image" else item for item in m["content"]]}
        for m in messages
    ]


class TextChatDataset(ShapesChatDataset):
    """Conversation ``i`` of :class:`ShapesChatDataset` (same scene, kind and questions), told in words:
    items have ``input_ids`` / ``labels`` ``(L,)`` and no ``pixel_values``."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seeds[i], i, 7])
        scene, messages = conversation(self.seeds[i], rng, self.cfg)
        return encode(self.processor, as_text(messages, scene_in_words(scene)))


def scene_in_words(scene: Scene) -> str:
    """Every fact an image of ``scene`` shows, in the world's words: each thing from left to right with
    its size, colour, shape and stuff region, then the two stuff kinds, e.g.
    ``"a big blue triangle in front of the wall . a small orange circle on the sand . the wall above the
    sand ."`` (a thing straddling the horizon gets no region)."""
    spec = scene.spec
    stuff = (spec.stuff_top, spec.stuff_bottom)
    where = regions(spec)
    words: list[str] = []
    for k in sorted(range(len(spec.things)), key=lambda k: spec.things[k].center[0]):
        t = spec.things[k]
        words += [article(t.size), t.size, t.color, t.shape]
        region = where[k]
        if region is not None:
            words += [IN_REGION[stuff[region]], "the", stuff[region]]
        words.append(".")
    return " ".join([*words, "the", stuff[0], "above", "the", stuff[1], "."])


def answer_accuracy(
    objective: CausalLMObjective, data: TextChatDataset, batch_size: int = 32
) -> dict[str, float]:
    """Greedy teacher-forced accuracy on the assistant tokens of ``data`` (``text_token_acc``) and the
    share of conversations whose every answer token is right (``text_exact``)."""
    model = objective.lmm
    was_training = model.training
    model.eval()
    collate = ChatCollator(data.processor.tokenizer.pad_token_id)
    hits = total = exact = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            batch = collate([data[j] for j in range(start, min(len(data), start + batch_size))])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            hit, valid = answer_hits(logits, batch["labels"])
            hits += int(hit.sum())
            total += int(valid.sum())
            exact += int((hit | ~valid).all(dim=1).sum())
    model.train(was_training)
    return {"text_token_acc": hits / max(1, total), "text_exact": exact / max(1, len(data))}


def pretrain_text(
    lmm: nn.Module,
    processor,
    cfg: TextPretrainConfig,
    seeds: list[int],
    out: str,
    loop: TrainConfig,
    resume: bool = False,
) -> dict[str, float] | None:
    """Run the text-only phase on ``lmm`` (in place) in ``<out>/text``.

    ``loop`` supplies the precision, seed, workers and budget of the LMM stage. Returns the held-out
    answer accuracy (:func:`answer_accuracy` on ``cfg.val_conversations`` ``val`` conversations), ``{}``
    when ``cfg.steps`` is 0, or None when interrupted (``resume=True`` continues; a finished phase is
    reloaded from ``text.safetensors``).
    """
    if cfg.steps == 0:
        return {}
    folder = os.path.join(out, "text")
    done = os.path.join(folder, "text.safetensors")
    objective = CausalLMObjective(lmm)
    val = TextChatDataset(split_seeds("val", cfg.val_conversations), processor, cfg.data)
    if resume and os.path.isfile(done):
        load_part(lmm, done, "text phase")
        return answer_accuracy(objective, val)
    train = split_batch(TrainConfig(
        output_dir=folder, max_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=loop.seed,
        mixed_precision=loop.mixed_precision, num_workers=loop.num_workers, max_minutes=loop.max_minutes,
        save_every_steps=250, log_every_steps=25,
    ))  # fmt: skip
    data = TextChatDataset(seeds, processor, cfg.data)
    collate = ChatCollator(processor.tokenizer.pad_token_id)
    with trainable_only(lmm, _is_text):  # only the language model learns here: nothing else gets a gradient
        trainer = Trainer(objective, data, collate, train, eval_fn=lambda _m: answer_accuracy(objective, val))
        result = trainer.train(resume=resume)
    if result.interrupted:
        return None
    save_part(lmm, _is_text, done)
    return dict(result.last_eval)


def _is_text(name: str) -> bool:
    """Whether parameter ``name`` of a LLaVA model belongs to the language side (Llama and LM head)."""
    return name.startswith(("model.language_model.", "lm_head."))


__all__ = [
    "TextChatDataset",
    "TextPretrainConfig",
    "answer_accuracy",
    "as_text",
    "pretrain_text",
    "scene_in_words",
]
