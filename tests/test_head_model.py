"""The whole head on tiny random models: shapes, gradients, checkpoints, identity checks, bad input."""

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flmm.errors import ConfigError, InputError, SpanError
from flmm.geometry import GridGeometry, image_box, pad_to_square_box
from flmm.head import FLMMHead, GroundingQuery, HeadConfig, UNetDecoder
from flmm.head.tiny import random_capture, tiny_lmm_identity, tiny_sam_model
from flmm.lmm.types import LMMIdentity

IMAGE_HW = (40, 60)
GEOM = GridGeometry((6, 6), pad_to_square_box(IMAGE_HW), IMAGE_HW)
IMAGE = np.random.RandomState(0).randint(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)


def _head(seed=0, **overrides):
    sam = tiny_sam_model(seed=seed)
    cfg = HeadConfig.create(tiny_lmm_identity(), sam, decoder_width=4, **overrides)
    torch.manual_seed(seed)
    return FLMMHead(cfg, sam_model=sam)


@pytest.fixture(scope="module")
def head():
    return _head()


@pytest.fixture(scope="module")
def capture():
    return random_capture(tiny_lmm_identity(), [GEOM], num_tokens=5, seed=1)


def _perturb_trainable(h, seed=3):
    # fresh SAM mask decoders start with near-zero logits; move every trainable weight so a load that
    # silently skipped something could not go unnoticed
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in h.trainable_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_default_decoder_has_about_8m_parameters():
    n = sum(p.numel() for p in UNetDecoder(1024).parameters())
    print(f"U-Net parameters at width 64 for 1024 maps: {n}")
    assert 7.0e6 < n < 9.0e6


@pytest.mark.parametrize("cue_width", [0, 8])
def test_channels_last_decoder_computes_the_same_logits_and_gradients(cue_width):
    """The U-Net runs on channels-last tensors for speed (benchmarks.unet_layout); what it computes and
    learns must not depend on that."""
    torch.manual_seed(0)
    dec = UNetDecoder(6, base_width=4, cue_width=cue_width)
    assert dec.channels_last  # the default
    maps = torch.randn(3, 6, 16, 16)
    cue = torch.randn(3, cue_width) if cue_width else None
    out, grads = {}, {}
    for layout in (False, True):
        dec.channels_last = layout
        dec.zero_grad()
        logits = dec(maps, cue)
        assert logits.shape == (3, 16, 16)
        logits.pow(2).mean().backward()
        out[layout] = logits.detach()
        grads[layout] = [p.grad.clone() for p in dec.parameters() if p.grad is not None]
    torch.testing.assert_close(out[True], out[False], rtol=1e-5, atol=1e-5)
    assert len(grads[True]) == len(grads[False]) > 0
    for a, b in zip(grads[True], grads[False]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_forward_shapes(head, capture):
    emb = head.embed_image(IMAGE)
    out = head([GroundingQuery(capture, [[0, 1], [3]], emb), GroundingQuery(capture, [[2, 3, 4]], emb)])
    r = head.refiner.mask_size
    assert out.decoder_logits.shape == (3, 64, 64)
    assert out.refiner_logits.shape == (3, r, r)
    assert out.iou_predictions.shape == (3,)
    assert [k.shape for k in out.keyword_logits] == [(5,), (5,)]
    assert out.query_index.tolist() == [0, 0, 1]
    assert len(out.frames) == 3 and out.frames[0].image_hw == IMAGE_HW


def test_gradients_reach_only_trainable_parameters(capture):
    h = _head()
    h.train()
    emb = h.embed_image(IMAGE)
    out = h([GroundingQuery(capture, [[0, 1], [3]], emb)])
    gt = torch.zeros(2, *IMAGE_HW, dtype=torch.bool)
    gt[0, 5:30, 10:40] = True  # object 1 is absent from the image: empty mask
    losses = h.compute_losses(out, [gt], [torch.tensor([1.0, 1, 0, 1, 0])])
    assert set(losses) == {
        "decoder_bce",
        "decoder_dice",
        "refiner_bce",
        "refiner_dice",
        "keyword_bce",
        "loss",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    sam = h.refiner.sam
    assert all(p.grad is None for p in sam.vision_encoder.parameters())
    assert sam.shared_image_embedding.positional_embedding.grad is None
    for part in (h.decoder, h.language_cue, h.keyword_selector, sam.prompt_encoder, sam.mask_decoder):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), type(part).__name__
        assert all(torch.isfinite(g).all() for g in grads)
    assert h.language_cue.layer_logits.grad.abs().sum() > 0
    trainable = {id(p) for p in h.trainable_parameters()}
    assert all(id(p) in trainable for p in h.parameters() if p.grad is not None)


def test_save_load_round_trip_is_identical(tmp_path, capture):
    h = _head(seed=0)
    _perturb_trainable(h)
    h.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert keys == set(h.trainable_state_dict())
    assert not any("vision_encoder" in k or "positional_embedding" in k for k in keys)
    assert any(k.startswith("refiner.sam.mask_decoder.") for k in keys)
    assert any(k.startswith("refiner.sam.prompt_encoder.") for k in keys)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["lmm"]["num_layers"] == 2 and cfg["lmm"]["num_heads"] == 3
    assert cfg["sam"]["prompt_width"] == 32

    loaded = FLMMHead.from_pretrained(tmp_path, sam_model=tiny_sam_model(seed=0))
    assert loaded.config == h.config
    a = h.predict(capture, [[0, 1], [3]], image=IMAGE)
    b = loaded.predict(capture, [[0, 1], [3]], image=IMAGE)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.masks, b.masks)
    assert torch.equal(a.scores, b.scores)
    # the untouched fresh head differs, so the equality above is the load's doing
    fresh = FLMMHead(h.config, sam_model=tiny_sam_model(seed=0)).predict(capture, [[0, 1], [3]], image=IMAGE)
    assert not torch.equal(a.logits, fresh.logits)


def test_head_without_refiner_round_trip(tmp_path, capture):
    cfg = HeadConfig.create(tiny_lmm_identity(), None, decoder_width=4)
    assert not cfg.use_refiner
    h = FLMMHead(cfg)
    _perturb_trainable(h)
    h.save_pretrained(tmp_path)
    loaded = FLMMHead.from_pretrained(tmp_path)
    a, b = h.predict(capture, [[1, 2]]), loaded.predict(capture, [[1, 2]])
    assert a.masks.shape == (1, *IMAGE_HW) and a.refiner_scores is None
    assert torch.equal(a.logits, b.logits)


def test_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        FLMMHead.from_pretrained(tmp_path / "nowhere", local_files_only=True)
    with pytest.raises(ConfigError):
        FLMMHead.from_pretrained("flmm-test/not-a-repo", local_files_only=True)


def test_lmm_with_other_layers_x_heads_is_rejected(head, capture):
    other = LMMIdentity("other-lmm", "llava", 4, 8, 16)
    with pytest.raises(ConfigError) as e:
        head.check_compatible(other)
    msg = str(e.value)
    assert "tiny-lmm" in msg and "other-lmm" in msg
    assert "2 layers x 3 heads" in msg and "4 layers x 8 heads" in msg
    head.check_compatible(tiny_lmm_identity())  # the same identity passes
    wrong = random_capture(LMMIdentity("other-lmm", "llava", 4, 8, 16), [GEOM])
    with pytest.raises(ConfigError, match="4 layers x 8 heads"):
        head([GroundingQuery(wrong, [[0]], head.embed_image(IMAGE))])


def test_sam_of_another_shape_is_rejected(head):
    with pytest.raises(ConfigError, match="prompt_width"):
        FLMMHead(head.config, sam_model=tiny_sam_model(width=16))


def test_sam_of_the_same_shape_under_another_name_warns_at_the_callers_line(head):
    named = dataclasses.replace(head.config, sam=dataclasses.replace(head.config.sam, name="org/sam-a"))
    sam = tiny_sam_model()
    sam.name_or_path = "org/sam-b"
    with pytest.warns(UserWarning, match="'org/sam-a', running with 'org/sam-b'") as rec:
        FLMMHead(named, sam_model=sam)
    (named_warning,) = [w for w in rec if "org/sam-a" in str(w.message)]
    assert named_warning.filename == __file__  # points at the user's call, not inside flmm
    sam.name_or_path = "elsewhere/sam-a"  # same checkpoint name in another folder: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FLMMHead(named, sam_model=sam)


def test_nan_attention_raises_and_zero_attention_gives_finite_masks(head, capture):
    bad = random_capture(tiny_lmm_identity(), [GEOM], seed=2)
    bad.attentions[0][1, 0, 2, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        head.predict(bad, [[1]], image=IMAGE)
    bad = random_capture(tiny_lmm_identity(), [GEOM], seed=2)
    bad.hidden_states[0, 1, 3] = float("inf")
    with pytest.raises(InputError, match="hidden states"):
        head.predict(bad, [[1]], image=IMAGE)
    zero = random_capture(tiny_lmm_identity(), [GEOM], seed=2)
    zero.attentions[0].zero_()
    res = head.predict(zero, [[0, 1]], image=IMAGE)
    assert torch.isfinite(res.logits).all() and torch.isfinite(res.scores).all()


def test_bad_token_indices_and_missing_embedding(head, capture):
    with pytest.raises(SpanError):
        head.predict(capture, [[7]], image=IMAGE)
    with pytest.raises(SpanError):
        head.predict(capture, [[]], image=IMAGE)
    with pytest.raises(SpanError):
        head.predict(capture, [[0, -1]], image=IMAGE)
    with pytest.raises(InputError):
        head.predict(capture, [[0]])
    with pytest.raises(InputError):
        head([GroundingQuery(capture, [[0]], None)])


def test_image_embedding_is_computed_once_per_image(head, capture):
    calls = []
    hook = head.refiner.sam.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        res = head.predict(capture, [[0], [1, 2], [3], [4]], image=IMAGE)
        assert len(calls) == 1 and res.masks.shape == (4, *IMAGE_HW)
        emb = head.embed_image(IMAGE)
        head.predict(capture, [[0]], image_embedding=emb)
        head.predict(capture, [[2, 3]], image_embedding=emb)
        assert len(calls) == 2
    finally:
        hook.remove()


def test_score_is_low_when_the_decoder_finds_nothing(capture):
    h = _head()
    with torch.no_grad():
        h.decoder.out.weight.zero_()
        h.decoder.out.bias.fill_(-8.0)
    res = h.predict(capture, [[0, 1]], image=IMAGE)
    assert not res.decoder_masks.any()
    assert res.decoder_scores.item() == pytest.approx(torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-4)
    assert res.scores.item() <= res.decoder_scores.item() < 0.01
    with torch.no_grad():
        h.decoder.out.bias.fill_(8.0)
    res = h.predict(capture, [[0, 1]], image=IMAGE)
    assert res.decoder_masks.all() and res.decoder_scores.item() > 0.99
    assert res.scores.item() == pytest.approx(min(res.decoder_scores.item(), res.refiner_scores.item()))


def test_empty_ground_truth_and_keyword_only_batches(capture):
    h = _head()
    emb = h.embed_image(IMAGE)
    out = h([GroundingQuery(capture, [[0], [1]], emb)])
    losses = h.compute_losses(out, [torch.zeros(2, *IMAGE_HW)])
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in h.trainable_parameters() if p.grad is not None)
    out = h([GroundingQuery(capture, [], None)])
    assert out.num_objects == 0
    losses = h.compute_losses(out, [torch.zeros(0, *IMAGE_HW)], [torch.zeros(5)])
    losses["loss"].backward()
    assert h.keyword_selector.linear.weight.grad.abs().sum() > 0
    with pytest.raises(InputError):
        h.compute_losses(out, [torch.zeros(2, *IMAGE_HW)])


def test_select_keywords_uses_offsets_and_threshold(head):
    cap = random_capture(tiny_lmm_identity(), [GEOM], num_tokens=4, text="A red car.")
    cap.offsets = torch.tensor([[0, 1], [1, 5], [5, 9], [9, 10]])
    cap.last_hidden = torch.zeros(4, 16)
    cap.last_hidden[1:3, 0] = 1.0
    with torch.no_grad():
        head.keyword_selector.linear.weight.zero_()
        head.keyword_selector.linear.weight[0, 0] = 10.0
        head.keyword_selector.linear.bias.fill_(-5.0)
    phrases = head.select_keywords(cap)
    assert [(p.token_indices, p.text, p.span) for p in phrases] == [([1, 2], "red car", (2, 9))]
    assert head.select_keywords(cap, threshold=0.999) == []


def test_multi_grid_lmm(tmp_path):
    lmm = tiny_lmm_identity(num_grids=2)
    sam = tiny_sam_model()
    h = FLMMHead(HeadConfig.create(lmm, sam, decoder_width=4), sam_model=sam)
    base = GridGeometry((4, 4), pad_to_square_box(IMAGE_HW), IMAGE_HW, "base")
    high = GridGeometry((6, 9), image_box(IMAGE_HW), IMAGE_HW, "highres")
    cap = random_capture(lmm, [base, high])
    res = h.predict(cap, [[0, 1]], image=IMAGE)
    assert res.masks.shape == (1, *IMAGE_HW)
    with pytest.raises(ConfigError, match="2 visual grid"):
        h.predict(random_capture(lmm, [base]), [[0]], image=IMAGE)


def test_loading_without_sam_model_names_the_missing_sam(tmp_path):
    h = _head()
    h.config.sam.name = "/nonexistent/sam-model"  # a path, so nothing is looked up on the network
    h.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="sam-model"):
        FLMMHead.from_pretrained(tmp_path)


def test_language_conditioned_decoder(tmp_path, capture):
    """decoder_cue_width > 0: the phrase's hidden states steer the U-Net (same maps, other words -> other
    mask), gradients reach the cue, and the head round-trips through its checkpoint."""
    h = _head(decoder_cue_width=8)
    assert h.decoder_cue is not None and len(h.decoder.film) == 7  # stem, 3 down, 3 up
    h.train()
    emb = h.embed_image(IMAGE)
    out = h([GroundingQuery(capture, [[0, 1], [3]], emb)])
    gt = torch.zeros(2, *IMAGE_HW, dtype=torch.bool)
    gt[0, 5:30, 10:40] = True
    h.compute_losses(out, [gt], [torch.tensor([1.0, 1, 0, 1, 0])])["loss"].backward()
    assert all(f.weight.grad.abs().sum() > 0 for f in h.decoder.film)
    _perturb_trainable(h)  # non-zero FiLM weights, so the cue now reaches the logits
    h.eval()
    other = random_capture(tiny_lmm_identity(), [GEOM], num_tokens=5, seed=1)
    other.hidden_states = other.hidden_states + 1.0  # same attention maps, different words
    with torch.no_grad():
        a = h([GroundingQuery(capture, [[0, 1]], emb)]).decoder_logits
        b = h([GroundingQuery(other, [[0, 1]], emb)]).decoder_logits
    assert torch.equal(capture.attentions[0], other.attentions[0]) and not torch.allclose(a, b)
    h.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["decoder_cue_width"] == 8
    assert any(k.startswith("decoder_cue.") for k in load_file(str(tmp_path / "model.safetensors")))
    loaded = FLMMHead.from_pretrained(tmp_path, sam_model=tiny_sam_model(seed=0))
    assert torch.equal(
        h.predict(capture, [[0, 1]], image=IMAGE).logits,
        loaded.predict(capture, [[0, 1]], image=IMAGE).logits,
    )


def test_decoder_cue_is_required_exactly_when_configured():
    maps = torch.rand(2, 6, 16, 16)
    plain, cued = UNetDecoder(6, 4), UNetDecoder(6, 4, cue_width=3)
    assert cued(maps, torch.rand(2, 3)).shape == (2, 16, 16)
    with pytest.raises(InputError, match="conditioned: pass cue"):
        cued(maps)
    with pytest.raises(InputError, match="conditioned: pass cue"):
        cued(maps, torch.rand(1, 3))
    with pytest.raises(InputError, match="no language conditioning"):
        plain(maps, torch.rand(2, 3))
    with pytest.raises(ConfigError, match="decoder_cue_width"):
        HeadConfig.create(tiny_lmm_identity(), None, decoder_cue_width=-1)
