"""Chat preservation: the LMM inside flmm must answer exactly as the bare transformers model does.

For every question the same model answers twice, greedily:

- **bare**: the processor's chat template and ``model.generate`` with plain SDPA attention, nothing from
  flmm (the model object is shared with the :class:`FrozenLMM`, whose capture attention is switched back
  to ``"sdpa"`` for the duration);
- **flmm**: :meth:`FrozenLMM.generate` with attention capture on (what chat and grounding use).

Both answers are scored by exact match against the reference (:class:`ExactMatchAccumulator`), and the two
generations are compared token for token (:class:`GenerationMatchAccumulator`); the ids of questions
whose generations differ are listed in ``notes["differing"]``. F-LMM never changes the LMM, so any
difference is a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from flmm.errors import DataError, InputError
from flmm.evaluation.state import TaskState
from flmm.evaluation.tasks import (
    LOGGED_FAILURES,
    TaskSpec,
    accumulator_factories,
    load_sample,
    shard_indices,
    shard_skips,
    skip_counts,
)
from flmm.image import ImageLike, load_image
from flmm.lmm.capture import ATTN_IMPLEMENTATION
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import Message, conversation

logger = logging.getLogger("flmm.evaluation")


def _configs(config: Any) -> Iterator[Any]:
    """A model config and its sub-configs (text, vision, ...)."""
    yield config
    for key in getattr(config, "sub_configs", {}) or {}:
        sub = getattr(config, key, None)
        if sub is not None:
            yield sub


@contextmanager
def plain_sdpa(model: Any) -> Iterator[None]:
    """Within the block, every (sub-)config of ``model`` that flmm switched to its capture attention runs
    plain ``"sdpa"`` again; restored afterwards."""
    switched = [
        c
        for c in _configs(model.config)
        if getattr(c, "_attn_implementation_internal", None) == ATTN_IMPLEMENTATION
    ]
    for c in switched:
        c._attn_implementation_internal = "sdpa"
    try:
        yield
    finally:
        for c in switched:
            c._attn_implementation_internal = ATTN_IMPLEMENTATION


@torch.inference_mode()
def bare_generate(
    model: Any, processor: Any, image: ImageLike, messages: list[Message], max_new_tokens: int
) -> torch.Tensor:
    """Greedy answer of the plain transformers model: chat template, processor, ``model.generate``.

    Returns:
        ``(n,)`` int64 generated token ids on CPU (the prompt removed; a final EOS kept), exactly what
        :attr:`flmm.lmm.frozen.Generation.token_ids` holds for the same question.
    """
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = dict(processor(images=[load_image(image)], text=[prompt], return_tensors="pt"))
    param = next(model.parameters())
    inputs = {
        k: (v.to(param.device, param.dtype) if v.is_floating_point() else v.to(param.device))
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor)
    }
    tok = getattr(processor, "tokenizer", processor)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with plain_sdpa(model):
        out = model.generate(**inputs, do_sample=False, max_new_tokens=int(max_new_tokens), pad_token_id=pad)
    return out[0, inputs["input_ids"].shape[1] :].cpu()


def run_qa(
    spec: TaskSpec,
    lmm: FrozenLMM,
    *,
    rank: int = 0,
    world_size: int = 1,
    limit: int | None = None,
    max_new_tokens: int = 16,
    strict: bool = False,
    progress: bool = False,
) -> TaskState:
    """One shard of the chat-preservation task over samples with ``question`` and reference ``answer``.

    A question whose generation raises is scored wrong in both runs (``missing``), listed in
    ``failures`` and left out of the token comparison (so ``identical.count`` < questions shows it).
    """
    if int(max_new_tokens) < 1:
        raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    accs: dict[str, Any] = {n: f() for n, f in accumulator_factories("qa").items()}
    state = TaskState(spec.task, "qa", spec.name, notes={"differing": []})
    tok = lmm.adapter.tokenizer
    before = skip_counts(spec.dataset)
    for i in tqdm(
        shard_indices(len(spec.dataset), rank, world_size, limit),
        desc=spec.task,
        disable=not progress,
        leave=False,
    ):
        sample = load_sample(spec.dataset, i)
        if sample is None:
            continue
        state.samples += 1
        sid = sample.sample_id
        try:
            image = sample.load_image()
            msgs = conversation(sample.question)
            bare = bare_generate(lmm.model, lmm.processor, image, msgs, max_new_tokens)
            gen = lmm.generate(image, msgs, max_new_tokens=int(max_new_tokens), capture_attention=True)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - a failed question is scored wrong and reported
            if strict:
                raise
            msg = f"{type(e).__name__}: {e}"
            if len(state.failures) < LOGGED_FAILURES:
                logger.warning("%s: %s failed, scored as wrong (%s)", spec.task, sid, msg)
            state.failures.append({"sample_id": sid, "error": msg})
            accs["bare"].update(None, sample.answer, sample_id=sid)
            accs["flmm"].update(None, sample.answer, sample_id=sid)
            continue
        try:
            accs["bare"].update(
                tok.decode(bare, skip_special_tokens=True).strip(), sample.answer, sample_id=sid
            )
            accs["flmm"].update(gen.text.strip(), sample.answer, sample_id=sid)
            same = accs["identical"].update(bare.tolist(), gen.token_ids.tolist(), sample_id=sid)
        except InputError as e:
            if "duplicate sample id" in str(e):
                raise DataError(f"{spec.task}: {e} The benchmark lists a question twice.") from e
            raise
        if not same:
            state.notes["differing"].append(sid)
    state.skipped = shard_skips(spec.dataset, before, rank)
    state.accumulators = {n: a.state_dict() for n, a in accs.items()}
    return state
