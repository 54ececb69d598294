"""Frozen-LMM core: capture equals eager attention, outputs equal SDPA, geometry maps tokens to pixels."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from flmm.errors import ImageError, InputError, SpanError, UnsupportedModelError
from flmm.lmm.capture import ATTN_IMPLEMENTATION
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from tests.tiny import BUILDERS, make_vision_local

FAMILIES = sorted(BUILDERS)
Q = "what color is the circle ?"
A = "the big circle is red and the small square is blue ."


def _image(h=40, w=60, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=FAMILIES)
def lmm(request):
    model, proc = BUILDERS[request.param]()
    return FrozenLMM(model, proc, name=f"tiny-{request.param}")


def _eager_rows(lmm: FrozenLMM, enc) -> torch.Tensor:
    """Reference: eager attention with output_attentions, sliced by hand -> (M, H, T, K)."""
    cfg = lmm.adapter.text_config()
    cfg._attn_implementation_internal = "eager"
    try:
        with torch.no_grad():
            out = lmm.model(**lmm._model_inputs(enc.inputs), output_attentions=True, use_cache=False)
    finally:
        cfg._attn_implementation_internal = ATTN_IMPLEMENTATION
    att = torch.stack(out.attentions, dim=0)[:, enc.index]  # (M, H, L, L)
    rows = att[:, :, enc.answer_positions]
    return rows[..., enc.key_index].float()


def test_frozen_and_identity(lmm):
    assert all(not p.requires_grad for p in lmm.model.parameters())
    assert not lmm.model.training
    ident = lmm.identity
    assert ident.num_layers == lmm.adapter.num_layers > 0 and ident.num_heads > 0


def test_capture_equals_eager(lmm):
    img = _image()
    msgs = conversation(Q, A)
    enc = lmm.encode(img, msgs)
    cap = lmm.capture(img, msgs)
    ref = _eager_rows(lmm, enc)  # (M, H, T, K)
    got = torch.cat([a.flatten(-2) for a in cap.attentions], dim=-1).permute(1, 2, 0, 3)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-5
    # each map sums to less than 1 (text keys take the rest) and is non-negative
    assert got.min() >= 0 and got.sum(-1).max() <= 1 + 1e-5
    assert cap.hidden_states.shape == (
        len(enc.answer_positions),
        lmm.identity.num_layers,
        lmm.identity.hidden_size,
    )


def test_outputs_identical_to_sdpa(lmm):
    img = _image(seed=1)
    msgs = conversation(Q, A)
    enc = lmm.encode(img, msgs)
    inputs = lmm._model_inputs(enc.inputs)
    cfg = lmm.adapter.text_config()
    with torch.no_grad():
        with lmm._capture_ctx(enc.key_index[None], positions=enc.answer_positions[None]):
            ours = lmm.model(**inputs, use_cache=False).logits
        cfg._attn_implementation_internal = "sdpa"
        try:
            plain = lmm.model(**inputs, use_cache=False).logits
        finally:
            cfg._attn_implementation_internal = ATTN_IMPLEMENTATION
    assert torch.equal(ours, plain)


def test_spans_select_tokens(lmm):
    img = _image()
    msgs = conversation(Q, A)
    start = A.index("circle")
    cap = lmm.capture(img, msgs, spans=[(start, start + len("circle"))])
    assert len(cap.positions) >= 1
    for s, e in cap.offsets.tolist():
        assert s < start + len("circle") and e > start
    full = lmm.capture(img, msgs)
    sel = [int(torch.nonzero(full.positions == p)[0]) for p in cap.positions]
    torch.testing.assert_close(cap.attentions[0], full.attentions[0][sel], atol=1e-6, rtol=0)


def test_batch_with_padding_matches_single(lmm):
    imgs = [_image(40, 60, 2), _image(50, 30, 3)]
    convs = [conversation(Q, A), conversation("describe the image .", "a dog on the grass .")]
    batch = lmm.capture_batch(imgs, convs)
    for img, msgs, got in zip(imgs, convs, batch):
        single = lmm.capture(img, msgs)
        assert torch.equal(single.token_ids, got.token_ids)
        for a, b in zip(single.attentions, got.attentions):
            assert (a - b).abs().max().item() <= 1e-5
        assert (single.hidden_states - got.hidden_states).abs().max().item() <= 1e-4


def test_next_token_logits_batched_match_single(lmm):
    imgs = [_image(40, 60, 5), _image(50, 30, 6)]
    convs = [conversation(Q), conversation("is there a big red circle in the image ?")]
    batch = lmm.next_token_logits(imgs, convs)
    assert batch.shape == (2, lmm.model.config.get_text_config().vocab_size) and batch.dtype == torch.float32
    for k, (img, msgs) in enumerate(zip(imgs, convs)):  # the last real token of each row, either padding side
        assert (lmm.next_token_logits([img], [msgs])[0] - batch[k]).abs().max().item() <= 1e-4


def test_capture_and_ask_runs_the_image_once_and_equals_separate_calls(lmm, monkeypatch):
    img = _image(seed=7)
    msgs = conversation(Q, A)
    asks = [
        conversation("is there a red circle ?"),
        conversation("is there a big blue square in the image ?"),
    ]
    ref_cap, ref = lmm.capture(img, msgs, spans=[(4, 10)]), lmm.next_token_logits([img] * 2, asks)
    whole, calls = lmm.next_token_logits, []  # the path that runs each question whole, image included
    monkeypatch.setattr(lmm, "next_token_logits", lambda *a: (calls.append(1), whole(*a))[1])
    cap, got = lmm.capture_and_ask(img, msgs, asks, spans=[(4, 10)])
    assert not calls  # every family's template puts the image before the text: the questions share it
    assert got.shape == ref.shape and (got - ref).abs().max().item() <= 1e-4
    assert torch.equal(cap.positions, ref_cap.positions)
    for a, b in zip(cap.attentions, ref_cap.attentions):
        assert (a - b).abs().max().item() <= 1e-5
    # a capture that differs from the questions before the image (a system prompt): run whole
    sys_msgs = conversation(Q, A, system="you are a careful observer .")
    cap, got = lmm.capture_and_ask(img, sys_msgs, asks)
    assert calls and (got - ref).abs().max().item() <= 1e-4
    assert torch.equal(cap.positions, lmm.capture(img, sys_msgs).positions)
    assert lmm.capture_and_ask(img, msgs, [])[1].shape == (0, ref.shape[1])


def test_generation_capture_equals_teacher_forced(lmm):
    img = _image(seed=4)
    with warnings.catch_warnings():  # the key/value cache goes by the installed transformers' own name
        warnings.simplefilter("error", FutureWarning)
        gen = lmm.generate(img, conversation(Q), max_new_tokens=6)
    assert gen.capture is not None and len(gen.capture.positions) >= 1
    tf = lmm.capture(img, conversation(Q, gen.text))
    n = min(len(tf.token_ids), len(gen.capture.token_ids))
    assert n >= 1
    assert torch.equal(tf.token_ids[:n], gen.capture.token_ids[:n])
    for a, b in zip(tf.attentions, gen.capture.attentions):
        assert (a[:n] - b[:n]).abs().max().item() <= 1e-5
    assert (tf.hidden_states[:n] - gen.capture.hidden_states[:n]).abs().max().item() <= 1e-4


def _visual_embeddings(lmm: FrozenLMM, img) -> tuple[torch.Tensor, object]:
    """Input embeddings of the language model at every visual token -> (K, d), and the encoding."""
    enc = lmm.encode(img, conversation(Q, A))
    grabbed = {}

    def pre_hook(_m, args, kwargs):
        grabbed["x"] = kwargs.get("inputs_embeds")

    h = lmm.adapter.language_model().register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            lmm.model(**lmm._model_inputs(enc.inputs), use_cache=False)
    finally:
        h.remove()
    return grabbed["x"][0, enc.key_index], enc


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("hw", [(40, 60), (60, 36)])
def test_planted_patch_lands_on_its_grid_cells(family, hw):
    """A bright square planted in the image changes exactly the tokens whose cells cover it."""
    model, proc = BUILDERS[family]()
    lmm = FrozenLMM(model, proc)
    make_vision_local(lmm.model, _vision_tower(lmm.model))
    h, w = hw
    base = np.full((h, w, 3), 90, np.uint8)
    planted = base.copy()
    y0, x0, s = int(h * 0.55), int(w * 0.7), max(4, min(h, w) // 8)
    planted[y0 : y0 + s, x0 : x0 + s] = 250
    e0, enc = _visual_embeddings(lmm, base)
    e1, _ = _visual_embeddings(lmm, planted)
    changed = ((e0 - e1).abs().amax(-1) > 1e-4).nonzero().flatten().tolist()
    assert changed, "planting a patch changed no visual token"
    start = 0
    hits = 0
    for g in enc.grids:
        gh, gw = g.geometry.grid_hw
        bx0, by0, bx1, by1 = g.geometry.box
        cw, ch = (bx1 - bx0) / gw, (by1 - by0) / gh
        for k in range(g.positions.numel()):
            if start + k not in changed:
                continue
            r, c = divmod(k, gw)
            cx0, cy0 = bx0 + c * cw, by0 + r * ch
            # the cell must overlap the planted square (with one processed pixel of resampling blur)
            pad = max(cw, ch)
            assert (
                cx0 - pad < x0 + s and cx0 + cw + pad > x0 and cy0 - pad < y0 + s and cy0 + ch + pad > y0
            ), (g.geometry.name, r, c, (cx0, cy0, cw, ch), (x0, y0, s))
            hits += 1
        # and the cell under the patch centre changed
        cx, cy = x0 + s / 2, y0 + s / 2
        if bx0 <= cx < bx1 and by0 <= cy < by1:
            k = int((cy - by0) // ch) * gw + int((cx - bx0) // cw)
            assert start + k in changed, (g.geometry.name, "centre cell unchanged")
        start += g.positions.numel()
    assert hits == len(changed)


def _vision_tower(model):
    inner = getattr(model, "model", model)
    for name in ("vision_tower", "visual", "vision_model"):
        if getattr(inner, name, None) is not None:
            return getattr(inner, name)
    raise AttributeError("no vision tower")


# --- bad input ------------------------------------------------------------------------------------
def test_unsupported_model_names_families():
    from transformers import LlamaConfig, LlamaForCausalLM

    m = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=10, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
        )
    )
    with pytest.raises(UnsupportedModelError, match="llava"):
        FrozenLMM(m, None)


def test_bad_conversations_and_spans(lmm):
    img = _image()
    no_image = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
    with pytest.raises(InputError, match="image"):
        lmm.capture(img, no_image)
    with pytest.raises(InputError, match="empty"):
        lmm.capture(img, conversation(Q, "   "))
    with pytest.raises(InputError):
        lmm.capture(img, conversation(Q))  # no answer to teacher-force
    with pytest.raises(SpanError):
        lmm.capture(img, conversation(Q, A), spans=[(len(A) - 2, len(A) + 5)])
    with pytest.raises(SpanError):
        lmm.capture(img, conversation(Q, A), token_indices=[999])
    with pytest.raises(InputError):
        lmm.generate(img, conversation(Q, A))  # ends with the assistant


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "LA"])
def test_image_modes_are_converted(lmm, mode):
    from PIL import Image

    im = Image.fromarray(_image()).convert(mode) if mode != "I;16" else Image.new("I;16", (60, 40), 3000)
    cap = lmm.capture(im, conversation(Q, A), token_indices=[0])
    assert torch.isfinite(cap.attentions[0]).all()


def test_absurd_image_sizes(lmm):
    from PIL import Image

    from flmm.image import load_image

    with pytest.raises(ImageError, match="at least"):
        lmm.capture(np.zeros((1, 1, 3), np.uint8), conversation(Q, A))
    with pytest.raises(ImageError, match="more than"):
        load_image(Image.new("L", (20000, 20000)))
    # very thin but valid images go through the processor's own resize
    cap = lmm.capture(np.full((4, 300, 3), 128, np.uint8), conversation(Q, A), token_indices=[0])
    assert cap.geometries[0].image_hw == (4, 300) and torch.isfinite(cap.attentions[0]).all()
