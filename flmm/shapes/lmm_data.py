"""Teacher-forced conversations of the shapes world for pre-training the tiny LMM.

Only language about the scenes is used (captions and question answering): no masks, no boxes, no
coordinates ever reach the model. A sample is one conversation about one scene, either

- a *caption* conversation: ``USER: <image>\\ndescribe the image . ASSISTANT: <narrative></s>``,
- a *QA* conversation: several single-word questions of :func:`flmm.world.qa_pairs`, one per turn
  (the image in the first user turn), or
- a *packed* conversation: QA turns, then the caption request (more supervision per image: the 256
  visual tokens dominate the cost of a sequence).

A caption never precedes questions: answers copied from a caption in the context would not need the
image, and looking at the image is what makes the word-to-image attention informative.
Each sample is deterministic given its index (resumable training, any number of workers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from transformers import LlavaProcessor

from flmm.errors import ConfigError
from flmm.shapes.concepts import concept_targets
from flmm.world import Scene, SceneSpec, narrative, qa_pairs, render, sample_spec

CAPTION_PROMPTS: tuple[str, ...] = (
    "describe the image .",
    "please give me a description of the image .",
    "what is in the image ?",
)
IGNORE_INDEX = -100


@dataclass
class ChatDataConfig:
    """Mix of the pre-training conversations.

    Attributes:
        p_caption: probability of a caption conversation.
        p_packed: probability of a packed conversation (QA turns then the caption); the rest are QA
            conversations.
        max_questions: questions per QA / packed conversation (drawn from up to ``qa_per_kind`` per kind).
        qa_per_kind: ``max_per_kind`` of :func:`flmm.world.qa_pairs`.
        p_simple: probability that the scene keeps only its first 1..``simple_max_things`` things
            (simpler scenes teach colour/shape words before they must be told apart).
        simple_max_things: largest thing count of such a simpler scene.
        located_questions: questions per scene, among those a conversation draws from, that ask about a
            thing named by its place (the opt-in kind ``located`` of :mod:`flmm.world.qa`: "what color
            is the left-most circle ?"); 0: none.
    """

    p_caption: float = 0.5
    p_packed: float = 0.0
    max_questions: int = 8
    qa_per_kind: int = 2
    p_simple: float = 0.0
    simple_max_things: int = 2
    located_questions: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.p_caption and 0 <= self.p_packed and self.p_caption + self.p_packed <= 1):
            raise ConfigError("p_caption and p_packed must be >= 0 with p_caption + p_packed <= 1")
        for name in ("max_questions", "qa_per_kind"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.located_questions < 0:
            raise ConfigError(f"located_questions must be >= 0, got {self.located_questions}")

    def to_dict(self) -> dict:
        return asdict(self)


def user_turn(text: str, image: Image.Image | None = None) -> dict:
    """A user message in the hub format; the image (if any) comes before the text, as in LLaVA."""
    content: list[dict] = [{"type": "image", "image": image}] if image is not None else []
    return {"role": "user", "content": [*content, {"type": "text", "text": text}]}


def assistant_turn(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def conversation(seed: int, index_rng: np.random.Generator, cfg: ChatDataConfig) -> tuple[Scene, list[dict]]:
    """Scene ``seed`` (possibly simplified, see ``cfg.p_simple``) and one conversation about it (hub
    message list; the image is in the first user turn)."""
    spec = sample_spec(seed)
    if index_rng.random() < cfg.p_simple and len(spec.things) > 1:
        # a simpler scene: its first things only (the world draws 1..6 uniformly)
        k = int(index_rng.integers(1, min(cfg.simple_max_things, len(spec.things) - 1) + 1))
        spec = SceneSpec(spec.things[:k], spec.stuff_top, spec.stuff_bottom, spec.horizon, spec.seed)
    scene = render(spec)
    image = Image.fromarray(scene.image)
    u = index_rng.random()
    messages: list[dict] = []
    if u >= cfg.p_caption:  # QA turns (QA or packed conversation)
        pairs = qa_pairs(
            scene,
            np.random.default_rng([seed, int(index_rng.integers(1 << 30))]),
            cfg.qa_per_kind,
            cfg.located_questions,
        )
        for turn, k in enumerate(index_rng.permutation(len(pairs))[: cfg.max_questions]):
            question, answer = pairs[k]
            messages += [user_turn(question, image if turn == 0 else None), assistant_turn(answer)]
    if u < cfg.p_caption + cfg.p_packed:  # caption turn (caption or packed conversation)
        prompt = CAPTION_PROMPTS[index_rng.integers(len(CAPTION_PROMPTS))]
        caption = narrative(scene, np.random.default_rng([seed, int(index_rng.integers(1 << 30))])).text
        messages += [user_turn(prompt, image if not messages else None), assistant_turn(caption)]
    return scene, messages


def encode(processor: LlavaProcessor, messages: list[dict]) -> dict[str, torch.Tensor]:
    """Tokenise a conversation: ``input_ids`` / ``labels`` ``(L,)`` int64 (labels are -100 outside the
    assistant answers and their ``</s>``) and, when it has an image, ``pixel_values`` ``(3, 128, 128)``
    float32."""
    out = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids = out["input_ids"][0]
    labels = torch.where(out["assistant_masks"][0].bool(), ids, torch.full_like(ids, IGNORE_INDEX))
    sample = {"input_ids": ids, "labels": labels}
    if "pixel_values" in out:
        sample["pixel_values"] = out["pixel_values"][0]
    return sample


class ShapesChatDataset(Dataset):
    """Conversation ``i`` is about scene ``seeds[i]``; its kind and content are seeded by ``(seed, i)``."""

    def __init__(
        self, seeds: list[int], processor: LlavaProcessor, cfg: ChatDataConfig | None = None
    ) -> None:
        self.seeds = list(seeds)
        self.processor = processor
        self.cfg = cfg if cfg is not None else ChatDataConfig()

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seeds[i], i, 7])
        scene, messages = conversation(self.seeds[i], rng, self.cfg)
        sample = encode(self.processor, messages)
        sample["pixel_values"] = self.pixels(scene, sample["pixel_values"])
        # image-level concepts named by the scene's caption (text only; see flmm.shapes.concepts)
        sample["concepts"] = concept_targets(narrative(scene).text)
        return sample

    def pixels(self, scene: Scene, pixel_values: torch.Tensor) -> torch.Tensor:
        """The item's ``pixel_values (3, H, W)``: the processed image (a subclass may put what its model
        reads in their place, see :class:`flmm.shapes.oracle.OracleChatDataset`)."""
        return pixel_values


def collate_chat(samples: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of :func:`encode` outputs: ``input_ids``, ``labels``, ``attention_mask`` ``(B, L)``,
    and, when the samples have them, ``pixel_values`` ``(B, 3, H, W)`` and ``concepts`` ``(B, C)`` float."""
    length = max(len(s["input_ids"]) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    for b, s in enumerate(samples):
        n = len(s["input_ids"])
        ids[b, :n], labels[b, :n], mask[b, :n] = s["input_ids"], s["labels"], 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    for key in ("pixel_values", "concepts"):
        if all(key in s for s in samples):
            batch[key] = torch.stack([s[key] for s in samples])
    return batch


class ChatCollator:
    """Picklable ``collate_fn`` (DataLoader workers) around :func:`collate_chat`."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return collate_chat(samples, self.pad_id)
