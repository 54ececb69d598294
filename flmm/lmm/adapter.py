"""The per-family adapter interface: how one LMM family lays its visual tokens out.

A family adapter knows three things the generic core cannot: where the language model and its
layers live, which token positions of a processed input are which grid cells, and which region of
the original image each grid spans (:class:`~flmm.geometry.GridGeometry`). Everything else
(chat-template rendering, character-span -> token mapping, capture, generation) is shared here and in
:mod:`flmm.lmm.frozen`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
from PIL import Image

from flmm.errors import InputError, SpanError
from flmm.geometry import GridGeometry

Message = dict[str, Any]


@dataclass
class VisualGrid:
    """One visual grid of an encoded input.

    Attributes:
        geometry: where the grid lies on the original image.
        positions: ``(h*w,)`` long, absolute token positions of the grid cells in row-major order.
    """

    geometry: GridGeometry
    positions: torch.Tensor


@dataclass
class Encoded:
    """One processed (image, conversation) pair, sample ``index`` of a padded batch.

    Attributes:
        inputs: the batch's model inputs (``input_ids`` ``(B, L)``, ``attention_mask``, ...).
        prompt_text: the conversation rendered by the chat template.
        answer: the assistant text the character spans refer to ('' for a generation prompt).
        answer_positions: ``(n,)`` absolute positions of the answer's tokens in ``input_ids[index]``.
        answer_offsets: ``(n, 2)`` their character spans ``[start, end)`` in ``answer``.
        grids: the visual grids, in the order the adapter defines (finest/primary first is not implied).
    """

    inputs: dict[str, torch.Tensor]
    prompt_text: str
    answer: str
    answer_positions: torch.Tensor
    answer_offsets: torch.Tensor
    grids: list[VisualGrid]
    index: int = 0

    @property
    def key_index(self) -> torch.Tensor:
        """``(K,)`` absolute positions of all visual tokens, grid after grid."""
        return torch.cat([g.positions for g in self.grids])

    def tokens_for_span(self, start: int, end: int) -> torch.Tensor:
        """Indices into ``answer_positions`` of the tokens overlapping ``answer[start:end]``."""
        if not (0 <= start < end <= len(self.answer)):
            raise SpanError(
                f"span [{start}, {end}) is outside the answer text of {len(self.answer)} characters"
            )
        o = self.answer_offsets
        hit = (o[:, 0] < end) & (o[:, 1] > start)
        idx = torch.nonzero(hit).flatten()
        if len(idx) == 0:
            raise SpanError(f"span [{start}, {end}) = {self.answer[start:end]!r} covers no token")
        return idx


class LMMAdapter:
    """Base class of a family adapter. Subclasses set ``family`` and ``model_types`` and implement
    :meth:`visual_grids`; they register themselves with :func:`flmm.lmm.registry.register_family`."""

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    #: config attribute holding the language model's config (its attention implementation is switched)
    text_config_key: ClassVar[str] = "text_config"

    def __init__(self, model: Any, processor: Any) -> None:
        self.model: Any = model  # a transformers PreTrainedModel (typed Any: its config is dynamic)
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)

    # --- model structure -------------------------------------------------------------------------
    def language_model(self) -> Any:
        """The decoder stack (has ``.layers`` and ``.norm``)."""
        inner = getattr(self.model, "model", self.model)
        for name in ("language_model", "text_model"):
            lm = getattr(inner, name, None)
            if lm is not None:
                return lm
        raise AttributeError(f"{type(self.model).__name__}: cannot find the language model")

    def decoder_layers(self) -> list[nn.Module]:
        return list(self.language_model().layers)

    def attention_modules(self) -> list[nn.Module]:
        return [layer.get_submodule("self_attn") for layer in self.decoder_layers()]

    def final_norm(self) -> nn.Module:
        return self.language_model().norm

    def text_config(self) -> Any:
        return getattr(self.model.config, self.text_config_key)

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers())

    @property
    def num_heads(self) -> int:
        return int(self.text_config().num_attention_heads)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config().hidden_size)

    #: visual grids per image (instances may override, e.g. Idefics3 without image splitting)
    num_grids: int = 1

    # --- inputs ------------------------------------------------------------------------------------
    def render(self, messages: list[Message], add_generation_prompt: bool) -> str:
        """The conversation as text through the processor's chat template."""
        return self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def process(self, images: list[Image.Image], texts: list[str]) -> dict[str, torch.Tensor]:
        """Run the processor on a batch of images and rendered prompts (padded batch tensors)."""
        return dict(self.processor(images=images, text=texts, return_tensors="pt", padding=True))

    def encode_batch(
        self, images: list[Image.Image], conversations: list[list[Message]], add_generation_prompt: bool
    ) -> list[Encoded]:
        """Process a batch together; each :class:`Encoded` shares the same padded ``inputs``.

        Conversations end with the assistant answer (teacher forcing) unless ``add_generation_prompt``.
        Positions are absolute in the padded batch sequence (left or right padding both work).
        """
        texts = [self.render(m, add_generation_prompt) for m in conversations]
        inputs = self.process(images, texts)
        out = []
        for b, (image, messages, text) in enumerate(zip(images, conversations, texts)):
            answer = "" if add_generation_prompt else _text_of(messages[-1])
            valid = torch.nonzero(inputs["attention_mask"][b]).flatten()
            ids = inputs["input_ids"][b][valid]
            if answer:
                idx, offsets = self._locate_answer(text, answer, ids)
                positions = valid[idx]
            else:
                positions, offsets = torch.empty(0, dtype=torch.long), torch.empty(0, 2, dtype=torch.long)
            grids = self.visual_grids(inputs, b, (image.height, image.width))
            if sum(g.positions.numel() for g in grids) == 0:
                raise InputError(
                    "the processed input holds no image tokens; is the image placeholder missing?"
                )
            out.append(Encoded(inputs, text, answer, positions, offsets, grids, b))
        return out

    def encode(self, image: Image.Image, messages: list[Message], add_generation_prompt: bool) -> Encoded:
        """:meth:`encode_batch` for one sample."""
        return self.encode_batch([image], [messages], add_generation_prompt)[0]

    def _locate_answer(self, text: str, answer: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions in the unpadded ``ids`` and answer-relative character offsets of the answer's tokens.

        The processor expands image placeholders inside the prompt, so tokens are aligned from the
        end: everything after the last visual token is tokenized identically with and without the
        expansion (checked, never assumed).
        """
        start = text.rfind(answer)
        if start < 0:
            raise InputError("the chat template changed the assistant text; cannot locate the answer")
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        plain_ids = torch.tensor(enc["input_ids"])
        offs = torch.tensor(enc["offset_mapping"]).reshape(-1, 2)
        end = start + len(answer)
        in_answer = (offs[:, 0] < end) & (offs[:, 1] > start) & (offs[:, 1] > offs[:, 0])
        idx = torch.nonzero(in_answer).flatten()
        if len(idx) == 0:
            raise InputError("the answer text produced no tokens")
        positions = idx + (len(ids) - len(plain_ids))
        if positions.min() < 0 or not torch.equal(ids[positions], plain_ids[idx]):
            raise InputError(
                "cannot align the answer's tokens with the processed sequence; the tokenizer splits "
                "differently around the answer. Put the image before the answer text."
            )
        offsets = (offs[idx] - start).clamp(min=0, max=len(answer))
        return positions, offsets

    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        """The visual grids of sample ``index`` of a processed batch, with their geometry on the
        original image of ``image_hw`` (H, W) pixels. Positions are absolute in the padded batch."""
        raise NotImplementedError

    def image_token_positions(self, input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
        """Absolute positions of ``token_id`` in a ``(L,)`` id sequence."""
        return torch.nonzero(input_ids == token_id).flatten()


def _text_of(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise InputError(f"message content must be a string or a list of parts, got {type(content).__name__}")
