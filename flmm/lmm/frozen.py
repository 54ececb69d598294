"""``FrozenLMM``: a transformers vision-language model, frozen, that also reports word->image attention.

Typical use::

    lmm = FrozenLMM.from_pretrained("llava-hf/llava-1.5-7b-hf", dtype=torch.bfloat16, device="cuda")
    msgs = conversation("Please describe the image.", "A man in a blue shirt.")
    cap = lmm.capture(image, msgs, spans=[(2, 5)])      # attention rows of "man"
    gen = lmm.generate(image, conversation("What is in the image?"))  # rows of every generated token

The model's own outputs are exactly those of SDPA attention (see :mod:`flmm.lmm.capture`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.generation.utils import GenerateDecoderOnlyOutput

from flmm.errors import FlmmError, InputError, SpanError
from flmm.image import ImageLike, load_image
from flmm.lmm.adapter import Encoded, LMMAdapter, Message
from flmm.lmm.capture import ATTN_IMPLEMENTATION, capture
from flmm.lmm.messages import validate_messages
from flmm.lmm.registry import adapter_class_for
from flmm.lmm.types import CaptureResult, LMMIdentity

#: ``generate``'s name for the key/value cache, in and out: newer transformers 5 releases call it
#: ``cache`` (``past_key_values`` still works there but warns), earlier ones ``past_key_values``
CACHE_KWARG = "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"


@dataclass
class Generation:
    """A generated answer and what was captured while generating it.

    Attributes:
        text: the decoded answer (special tokens removed).
        token_ids: ``(n,)`` generated ids (including a final EOS if one was produced).
        capture: rows/hidden states of the generated tokens; ``offsets`` index ``text``.
    """

    text: str
    token_ids: torch.Tensor
    capture: CaptureResult | None


class FrozenLMM:
    """A frozen LMM (every parameter ``requires_grad=False``, eval mode) with attention capture.

    Args:
        model: a loaded transformers vision-language model of a registered family.
        processor: its processor (chat template, tokenizer, image processor).
        name: a name for the identity saved with trained heads (hub id or folder name).
        family: force a registered family instead of detecting it from ``config.model_type``.
    """

    def __init__(self, model: Any, processor: Any, name: str = "", family: str | None = None) -> None:
        self.adapter: LMMAdapter = adapter_class_for(model, family)(model, processor)
        self.model = model
        self.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        text_cfg = self.adapter.text_config()
        text_cfg._attn_implementation_internal = ATTN_IMPLEMENTATION

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device = "cpu",
        trust_remote_code: bool = False,
        local_files_only: bool | None = None,
        family: str | None = None,
    ) -> FrozenLMM:
        """Load a model and processor from the hub or a local folder (``HF_HUB_OFFLINE`` honoured).

        ``dtype``: e.g. ``torch.bfloat16`` on GPU; default float32. ``trust_remote_code`` stays off
        unless you ask for it.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from flmm.assets_path import resolve

        name = str(name_or_path)  # the identity keeps the portable name (e.g. flmm:shapes/lmm)
        name_or_path = resolve(name)
        kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if local_files_only is not None:
            kw["local_files_only"] = local_files_only
        try:
            processor = AutoProcessor.from_pretrained(name_or_path, **kw)
            model = AutoModelForImageTextToText.from_pretrained(
                name_or_path, dtype=dtype or torch.float32, attn_implementation="sdpa", **kw
            )
        except OSError as e:
            raise FlmmError(
                f"cannot load {name_or_path!r}: {e}. Pass a local folder or make sure the hub is reachable "
                "(HF_HUB_OFFLINE=1 only finds models already in the cache)."
            ) from e
        model.to(device)
        return cls(model, processor, name=name, family=family)

    # --- identity -------------------------------------------------------------------------------
    @property
    def identity(self) -> LMMIdentity:
        a = self.adapter
        return LMMIdentity(self.name, a.family, a.num_layers, a.num_heads, a.hidden_size, a.num_grids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- encoding ---------------------------------------------------------------------------------
    def encode(self, image: ImageLike, messages: list[Message], generation: bool = False) -> Encoded:
        """Validate and process one (image, conversation); see :meth:`LMMAdapter.encode_batch`."""
        return self.encode_batch([image], [messages], generation)[0]

    def encode_batch(
        self, images: Sequence[ImageLike], conversations: Sequence[list[Message]], generation: bool = False
    ) -> list[Encoded]:
        if len(images) != len(conversations) or not images:
            raise InputError("give one conversation per image (and at least one)")
        for m in conversations:
            validate_messages(m, generation)
        pil = [load_image(im) for im in images]
        return self.adapter.encode_batch(pil, list(conversations), generation)

    def _model_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        out = {}
        for k, v in inputs.items():
            if k == "offset_mapping":
                continue
            v = v.to(self.device)
            out[k] = v.to(dtype) if v.is_floating_point() else v
        return out

    def _capture_ctx(self, key_index: torch.Tensor, positions=None, from_position=None) -> capture:
        a = self.adapter
        return capture(
            a.decoder_layers(), a.attention_modules(), a.final_norm(), key_index, positions, from_position
        )

    # --- teacher-forced capture ---------------------------------------------------------------------
    # no_grad rather than inference_mode: captures are training inputs of the head (live, without the
    # cache), and inference tensors cannot be saved for backward
    @torch.no_grad()
    def capture(
        self,
        image: ImageLike,
        messages: list[Message],
        spans: Sequence[tuple[int, int]] | None = None,
        token_indices: Sequence[int] | None = None,
    ) -> CaptureResult:
        """Attention rows and hidden states of answer tokens, teacher-forcing ``messages``.

        Args:
            image: the image (PIL, array or path).
            messages: a conversation whose last message is the assistant answer.
            spans: character spans ``[start, end)`` of the answer; all tokens overlapping any span are
                selected (in sequence order). Default: every answer token.
            token_indices: alternatively, indices into the answer's tokens.

        Returns:
            a :class:`CaptureResult` with ``T`` selected tokens.
        """
        return self.capture_batch([image], [messages], [spans], [token_indices])[0]

    @torch.no_grad()
    def capture_batch(
        self,
        images: Sequence[ImageLike],
        conversations: Sequence[list[Message]],
        spans: Sequence[Sequence[tuple[int, int]] | None] | None = None,
        token_indices: Sequence[Sequence[int] | None] | None = None,
    ) -> list[CaptureResult]:
        """:meth:`capture` for a padded batch in one forward pass."""
        return self._capture_encoded(self.encode_batch(images, conversations), spans, token_indices)

    def _capture_encoded(
        self, encs: list[Encoded], spans=None, token_indices=None, cache: DynamicCache | None = None
    ) -> list[CaptureResult]:
        """Capture a batch already encoded; with ``cache``, the forward fills it (keys of every position)."""
        spans = spans or [None] * len(encs)
        token_indices = token_indices or [None] * len(encs)
        chosen = [_select(e, s, t) for e, s, t in zip(encs, spans, token_indices)]
        positions = _pad([e.answer_positions[c] for e, c in zip(encs, chosen)])
        key_index = _pad([e.key_index for e in encs])
        kw: dict[str, Any] = (
            {"use_cache": False} if cache is None else {"use_cache": True, CACHE_KWARG: cache}
        )
        with self._capture_ctx(key_index, positions=positions) as state:
            self.model(**self._model_inputs(encs[0].inputs), **kw)
        _, rows, hidden, last = state.stack()
        results = []
        for b, (enc, c) in enumerate(zip(encs, chosen)):
            n = len(c)  # row j of sample b is positions[b, j]: our order, no search needed
            results.append(
                _result(
                    enc,
                    rows[b, :, :, :n],
                    hidden[b, :n],
                    last[b, :n],
                    enc.answer_positions[c],
                    enc.answer_offsets[c],
                )
            )
        return results

    @torch.inference_mode()
    def logits(self, image: ImageLike, messages: list[Message]) -> torch.Tensor:
        """``(L, vocab)`` logits of the teacher-forced conversation (no capture)."""
        enc = self.encode(image, messages)
        return self.model(**self._model_inputs(enc.inputs), use_cache=False).logits[0]

    @torch.inference_mode()
    def next_token_logits(
        self, images: Sequence[ImageLike], conversations: Sequence[list[Message]]
    ) -> torch.Tensor:
        """``(B, vocab)`` float32 logits of the token that would follow each conversation's generation
        prompt (one batched forward, no generation, no capture; either padding side)."""
        enc = self.encode_batch(images, conversations, generation=True)
        inputs = self._model_inputs(enc[0].inputs)
        logits = self.model(**inputs, use_cache=False).logits
        mask = inputs["attention_mask"]
        last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1).to(logits.device)
        return logits[torch.arange(len(enc), device=logits.device), last].float()

    @torch.no_grad()
    def capture_and_ask(
        self,
        image: ImageLike,
        messages: list[Message],
        questions: Sequence[list[Message]],
        spans: Sequence[tuple[int, int]] | None = None,
    ) -> tuple[CaptureResult, torch.Tensor]:
        """:meth:`capture` of ``messages`` and :meth:`next_token_logits` of ``K`` questions about the same
        image, with the image's tokens run once.

        The capture's forward keeps its key/value cache; each question continues it from the first token
        where all questions and the capture differ (after the image, for templates that put the image
        before the text), so a question costs a forward of its own few tokens. When that shared prefix
        ends before the image's last token, the questions are run whole (:meth:`next_token_logits`).

        Returns:
            the capture (as :meth:`capture`) and ``(K, vocab)`` float32 logits, equal to
            ``next_token_logits([image] * K, questions)`` up to float error.
        """
        enc = self.encode(image, messages)
        if not questions:
            vocab = self.model.config.get_text_config().vocab_size
            return self._capture_encoded([enc], [spans])[0], torch.zeros(0, vocab)
        asked = self.encode_batch([image] * len(questions), questions, generation=True)
        full = enc.inputs["input_ids"][0]
        mask = asked[0].inputs["attention_mask"].bool()
        ids = [asked[0].inputs["input_ids"][b][mask[b]] for b in range(len(asked))]
        shared = min(min(_common_prefix(full, q), len(q) - 1) for q in ids)
        if shared <= int(enc.key_index.max()):  # they part before the image ends: no cache to share
            whole = self.next_token_logits([image] * len(ids), questions)
            return self._capture_encoded([enc], [spans])[0], whole
        cache = DynamicCache()  # every key kept, as in generate (see there)
        cap = self._capture_encoded([enc], [spans], cache=cache)[0]
        tok = self.adapter.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        rows = []
        for q in ids:
            extra = cache.get_seq_length() - shared
            if extra:  # a negative count removes that many tokens in every transformers 5 release
                cache.crop(-extra)
            q = q[None].to(self.device)
            # generate's input preparation runs only the uncached tokens, with each family's positions
            out = self.model.generate(
                input_ids=q,
                attention_mask=torch.ones_like(q),
                **{CACHE_KWARG: cache},
                max_new_tokens=1,
                do_sample=False,
                num_beams=1,  # whatever the model's generation config says: one greedy step, raw logits
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad,
            )
            rows.append(out.logits[0][0].float())
        return cap, torch.stack(rows)

    # --- generation -------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        image: ImageLike,
        messages: list[Message],
        max_new_tokens: int = 128,
        capture_attention: bool = True,
        streamer: Any = None,
        **generate_kwargs: Any,
    ) -> Generation:
        """Greedy (by default) KV-cached generation; captures rows of every generated token on the
        fly, so grounding the answer needs no second pass over the sequence.

        ``streamer``: any transformers streamer (e.g. ``TextIteratorStreamer``) to receive tokens.
        """
        enc = self.encode(image, messages, generation=True)
        inputs = self._model_inputs(enc.inputs)
        prompt_len = inputs["input_ids"].shape[1]
        kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens, **generate_kwargs}
        tok = self.adapter.tokenizer
        if tok.pad_token_id is None:
            kwargs.setdefault("pad_token_id", tok.eos_token_id)
        if not capture_attention:
            out = self.model.generate(**inputs, streamer=streamer, **kwargs)
            ids = out[0, prompt_len:].cpu()
            return Generation(tok.decode(ids, skip_special_tokens=True), ids, None)
        # capture indexes keys by absolute position: a cache whose sliding-window layers drop old keys
        # (Gemma3, ...) would shift that axis, so keep every key; the model's masks still apply the window
        if not {"cache", "past_key_values"} & kwargs.keys():  # a cache the caller passed is kept
            kwargs[CACHE_KWARG] = DynamicCache()
        with self._capture_ctx(enc.key_index[None], from_position=prompt_len) as state:
            out = self.model.generate(
                **inputs, streamer=streamer, return_dict_in_generate=True, use_cache=True, **kwargs
            )
            seq = out.sequences
            ids = seq[0, prompt_len:].cpu()
            special = set(tok.all_special_ids)
            if len(ids) and int(ids[-1]) not in special:
                # the last token was never fed back; one cached step gives its row (output discarded)
                self.model.generate(
                    input_ids=seq,
                    attention_mask=torch.ones_like(seq),
                    **{CACHE_KWARG: getattr(out, CACHE_KWARG)},
                    max_new_tokens=1,
                    do_sample=False,
                    pad_token_id=kwargs.get("pad_token_id"),
                )
        if not len(ids):
            return Generation("", ids, None)
        pos, rows, hidden, last = state.stack()
        n = min(len(ids), pos.shape[1])
        text, offsets = decode_with_offsets(tok, ids)
        cap = _result(
            enc, rows[0][:, :, :n], hidden[0][:n], last[0][:n], pos[0][:n].cpu(), offsets[:n], ids[:n], text
        )
        return Generation(text, ids, cap)


def decode_with_offsets(tokenizer: Any, ids: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Decode ``ids`` (special tokens skipped) and give each token's ``[start, end)`` in the text.

    Offsets come from decoding growing prefixes, so they are exact for any tokenizer (byte-level
    BPE, SentencePiece, word-level); special tokens get an empty span.
    """
    offsets = []
    prev = ""
    for k in range(len(ids)):
        cur = tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
        common = len(os.path.commonprefix([prev, cur]))
        offsets.append((common, len(cur)) if len(cur) > common else (len(cur), len(cur)))
        prev = cur
    return prev, torch.tensor(offsets, dtype=torch.long).reshape(-1, 2)


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Number of leading ids ``a (n,)`` and ``b (m,)`` share."""
    n = min(len(a), len(b))
    differ = torch.nonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def _select(enc: Encoded, spans, token_indices) -> torch.Tensor:
    n = len(enc.answer_positions)
    if spans is not None and token_indices is not None:
        raise InputError("give spans or token_indices, not both")
    if spans is not None:
        if not len(spans):
            raise SpanError("spans is empty")
        return torch.unique(torch.cat([enc.tokens_for_span(int(s), int(e)) for s, e in spans]))
    if token_indices is not None:
        idx = torch.as_tensor(list(token_indices), dtype=torch.long)
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= n:
            raise SpanError(
                f"token indices must lie in [0, {n}) (the answer has {n} tokens); got {idx.tolist()}"
            )
        return idx
    return torch.arange(n)


def _pad(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), max(width, 1)), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _result(enc: Encoded, rows, hidden, last, positions, offsets, token_ids=None, text=None) -> CaptureResult:
    """Split ``rows (M, H, T, K)`` into per-grid ``(T, M, H, h, w)`` maps (views, no copy on CPU)."""
    rows = rows.permute(2, 0, 1, 3).cpu()  # (T, M, H, K)
    maps, start = [], 0
    for g in enc.grids:
        n = g.positions.numel()
        h, w = g.geometry.grid_hw
        maps.append(rows[..., start : start + n].unflatten(-1, (h, w)))
        start += n
    ids = enc.inputs["input_ids"][enc.index][positions] if token_ids is None else token_ids
    return CaptureResult(
        attentions=maps,
        geometries=[g.geometry for g in enc.grids],
        hidden_states=hidden.cpu(),
        last_hidden=last.cpu(),
        positions=positions,
        token_ids=ids,
        text=enc.answer if text is None else text,
        offsets=offsets,
    )
