"""Family-specific checks of the LMM adapters: grid layouts against the real model/processor arithmetic,
cell-exact geometry with planted patches, left padding and generation capture of every token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.image_utils import PILImageResampling

from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from tests.tiny import BUILDERS, make_vision_local

FAMILIES = sorted(BUILDERS)
Q = "what color is the circle ?"
A = "the big circle is red and the small square is blue ."


def _image(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=FAMILIES)
def lmm(request):
    model, proc = BUILDERS[request.param]()
    return FrozenLMM(model, proc, name=f"tiny-{request.param}")


# --- geometry: planted patches land exactly on their cells ---------------------------------------------
def _local_lmm(family: str) -> FrozenLMM:
    """A tiny LMM whose visual tokens each see only their own pixels, with nearest-neighbour resizing so a
    planted patch does not blur into neighbouring cells."""
    model, proc = BUILDERS[family]()
    lmm = FrozenLMM(model, proc)
    inner = lmm.model.model
    vision = next(getattr(inner, n) for n in ("vision_tower", "visual", "vision_model") if hasattr(inner, n))
    make_vision_local(lmm.model, vision)
    proc.image_processor.resample = PILImageResampling.NEAREST
    return lmm


def _visual_embeddings(lmm: FrozenLMM, images: list[np.ndarray]):
    """LM input embeddings at every visual token of each image: list of ``(K, d)``, and the encodings."""
    encs = lmm.encode_batch(images, [conversation(Q, A)] * len(images))
    grabbed = {}

    def pre_hook(_m, _args, kwargs):
        grabbed["x"] = kwargs["inputs_embeds"]

    h = lmm.adapter.language_model().register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad():
            lmm.model(**lmm._model_inputs(encs[0].inputs), use_cache=False)
    finally:
        h.remove()
    return [grabbed["x"][e.index, e.key_index] for e in encs], encs


def _cells_overlapping(geom, box) -> set[int]:
    """Row-major indices of the cells of ``geom`` whose region overlaps the xyxy ``box`` (original pixels)."""
    gh, gw = geom.grid_hw
    bx0, by0, bx1, by1 = geom.box
    cw, ch = (bx1 - bx0) / gw, (by1 - by0) / gh
    x0, y0, x1, y1 = box
    out = set()
    for r in range(gh):
        for c in range(gw):
            cx0, cy0 = bx0 + c * cw, by0 + r * ch
            if cx0 < x1 and cx0 + cw > x0 and cy0 < y1 and cy0 + ch > y0:
                out.add(r * gw + c)
    return out


CORNERS = [(0.12, 0.1), (0.15, 0.72), (0.68, 0.14), (0.6, 0.66), (0.4, 0.42)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("hw", [(40, 60), (60, 36), (24, 80), (80, 24)])
def test_planted_patches_change_exactly_their_cells(family, hw):
    """Each grid's changed cells lie within the patch grown by a resampling margin, and every cell that
    overlaps the patch shrunk by that margin changed: off-by-one-cell and tile-order errors fail."""
    lmm = _local_lmm(family)
    h, w = hw
    s = max(6, min(h, w) // 4)
    base = np.full((h, w, 3), 90, np.uint8)
    images, patches = [base], []
    for fy, fx in CORNERS:
        y0, x0 = min(int(h * fy), h - s), min(int(w * fx), w - s)
        im = base.copy()
        im[y0 : y0 + s, x0 : x0 + s] = 250
        images.append(im)
        patches.append((x0, y0, x0 + s, y0 + s))
    embs, encs = _visual_embeddings(lmm, images)
    grids = encs[0].grids
    for emb, enc, (x0, y0, x1, y1) in zip(embs[1:], encs[1:], patches):
        assert [g.geometry for g in enc.grids] == [g.geometry for g in grids]
        changed = ((embs[0] - emb).abs().amax(-1) > 1e-4).nonzero().flatten().tolist()
        assert changed, "planting a patch changed no visual token"
        start = 0
        for g in grids:
            n = g.positions.numel()
            got = {k - start for k in changed if start <= k < start + n}
            gh, gw = g.geometry.grid_hw
            bx0, by0, bx1, by1 = g.geometry.box
            cw, ch = (bx1 - bx0) / gw, (by1 - by0) / gh
            # nearest-neighbour sampling (possibly twice) shifts content by at most ~1 source pixel per
            # resize plus one processed pixel; cells here are 8 processed pixels wide
            mx, my = 2.0 + cw / 8, 2.0 + ch / 8
            must = (
                _cells_overlapping(g.geometry, (x0 + mx, y0 + my, x1 - mx, y1 - my))
                if x1 - x0 > 2 * mx
                else set()
            )
            if family == "llava_onevision" and g.geometry.name == "highres":
                # its high-res features are shrunk by bilinear interpolation, which mixes each output
                # cell with neighbouring input cells: allow one more cell around the patch
                mx, my = mx + cw, my + ch
            may = _cells_overlapping(g.geometry, (x0 - mx, y0 - my, x1 + mx, y1 + my))
            assert got <= may, (family, g.geometry.name, hw, (x0, y0), sorted(got - may))
            assert must <= got, (family, g.geometry.name, hw, (x0, y0), sorted(must - got))
            start += n
        assert start == len(embs[0])


# --- LLaVA-NeXT -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llava_next():
    model, proc = BUILDERS["llava_next"]()
    return FrozenLMM(model, proc)


@pytest.mark.parametrize(
    "hw", [(40, 60), (60, 36), (33, 97), (97, 33), (50, 50), (64, 64), (31, 62), (7, 300)]
)
def test_llava_next_highres_grid_is_the_models_unpadded_grid(llava_next, hw):
    from transformers.image_processing_utils import select_best_resolution
    from transformers.models.llava_next.modeling_llava_next import unpad_image

    cfg = llava_next.model.config
    side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    enc = llava_next.encode(_image(*hw), conversation(Q, A))
    base, high = enc.grids
    assert (base.geometry.name, high.geometry.name) == ("base", "highres")
    assert base.geometry.grid_hw == (side, side) and base.geometry.box == (
        0.0,
        0.0,
        float(hw[1]),
        float(hw[0]),
    )
    ch, cw = select_best_resolution(hw, cfg.image_grid_pinpoints)
    feat = torch.zeros(
        1, ch // cfg.vision_config.image_size * side, cw // cfg.vision_config.image_size * side
    )
    assert high.geometry.grid_hw == tuple(unpad_image(feat, list(hw)).shape[1:])
    # base tokens come first; every high-res row is followed by one newline token that is skipped
    ids = enc.inputs["input_ids"][0]
    image_pos = torch.nonzero(ids == cfg.image_token_id).flatten()
    assert torch.equal(base.positions, image_pos[: side * side])
    skipped = sorted(set(image_pos.tolist()) - set(enc.key_index.tolist()))
    assert len(skipped) == high.geometry.grid_hw[0]
    rows = high.positions.reshape(high.geometry.grid_hw)
    assert skipped == (rows[:, -1] + 1).tolist()
    # the un-padded grid covers the image: its box reaches into each image side by less than one cell
    x0, y0, x1, y1 = high.geometry.box
    gh, gw = high.geometry.grid_hw
    if gh == 0 or gw == 0:  # extreme aspect ratios: unpad_image keeps no row (or column) at all
        return
    assert x0 < (x1 - x0) / gw and y0 < (y1 - y0) / gh
    assert x1 > hw[1] - (x1 - x0) / gw and y1 > hw[0] - (y1 - y0) / gh


def test_llava_next_unpadding_removes_rows_or_columns(llava_next):
    wide = llava_next.encode(_image(40, 60), conversation(Q, A)).grids[1].geometry.grid_hw
    tall = llava_next.encode(_image(60, 36), conversation(Q, A)).grids[1].geometry.grid_hw
    cfg = llava_next.model.config
    side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    # both images pick a square canvas of 2x2 tiles: the wide one loses rows, the tall one columns
    assert wide[1] == 2 * side and wide[0] < 2 * side
    assert tall[0] == 2 * side and tall[1] < 2 * side


# --- Idefics3 / SmolVLM ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_tile_layout_matches_the_image_processor(family):
    from flmm.lmm.families.idefics3 import tile_layout

    _, proc = BUILDERS[family]()
    ip = proc.image_processor
    sizes = [(40, 60), (60, 36), (24, 80), (80, 24), (33, 33), (5, 200), (200, 5), (64, 65), (97, 31)]
    for hw in sizes:
        out = ip(images=[[_image(*hw)]], return_row_col_info=True)
        assert tile_layout(ip, hw) == (out["rows"][0][0], out["cols"][0][0]), hw


@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_grids_with_and_without_splitting(family):
    from tests.tiny.idefics3 import tiny_idefics3, tiny_smolvlm

    build = {"idefics3": tiny_idefics3, "smolvlm": tiny_smolvlm}[family]
    on = FrozenLMM(*build())
    enc = on.encode(_image(24, 80), conversation(Q, A))
    tiles, glob = enc.grids
    n = glob.geometry.grid_hw[0]
    assert on.identity.num_grids == 2 and (tiles.geometry.name, glob.geometry.name) == ("tiles", "global")
    assert tiles.geometry.grid_hw == (n, 2 * n)  # one row of two tiles, stitched side by side
    ids = enc.inputs["input_ids"][0]
    image_pos = torch.nonzero(ids == on.model.config.image_token_id).flatten()
    assert torch.equal(glob.positions, image_pos[-n * n :])
    # stitched row 0 = first row of tile 1 then first row of tile 2
    assert torch.equal(tiles.positions[: 2 * n], torch.cat([image_pos[:n], image_pos[n * n : n * n + n]]))

    off = FrozenLMM(*build(do_image_splitting=False))
    msgs = conversation(Q, A)
    enc = off.encode(_image(24, 80), msgs)
    assert off.identity.num_grids == 1 and len(enc.grids) == 1
    assert enc.grids[0].geometry.name == "global" and enc.grids[0].geometry.grid_hw == (n, n)
    cap = off.capture(_image(24, 80), msgs)
    assert len(cap.attentions) == 1 and cap.attentions[0].shape[-2:] == (n, n)


@pytest.mark.parametrize("family", ["idefics3", "smolvlm"])
def test_idefics3_single_tile_image_reuses_the_global_view(family):
    """With splitting on but an image no larger than one tile, the processor makes only the global
    view; both grids then name its tokens so a head trained with two grids still gets two."""
    from tests.tiny.idefics3 import TILE, tiny_idefics3, tiny_smolvlm

    build = {"idefics3": tiny_idefics3, "smolvlm": tiny_smolvlm}[family]
    lmm = FrozenLMM(*build())
    lmm.processor.image_processor.size = {"longest_edge": TILE}
    enc = lmm.encode(_image(20, 30), conversation(Q, A))
    tiles, glob = enc.grids
    assert torch.equal(tiles.positions, glob.positions) and tiles.geometry.grid_hw == glob.geometry.grid_hw


# --- left padding and generation -------------------------------------------------------------------
# families whose positions depend on the padding: M-RoPE indices, bidirectional image blocks, anyres packing
LEFT_PAD = [f for f in ("qwen2_vl", "qwen2_5_vl", "gemma3", "llava_next") if f in BUILDERS]


@pytest.mark.parametrize("family", LEFT_PAD)
def test_left_padded_batch_matches_single(family):
    lmm = FrozenLMM(*BUILDERS[family]())
    tok = lmm.adapter.tokenizer
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        imgs = [_image(40, 60, 2), _image(50, 30, 3)]
        convs = [conversation(Q, A), conversation("describe the image .", "a dog .")]
        batch = lmm.capture_batch(imgs, convs)
        encs = lmm.encode_batch(imgs, convs)
        assert (encs[1].inputs["attention_mask"][1] == 0).nonzero().max() < encs[1].answer_positions.min()
        for img, msgs, got in zip(imgs, convs, batch):
            single = lmm.capture(img, msgs)
            assert torch.equal(single.token_ids, got.token_ids)
            for a, b in zip(single.attentions, got.attentions):
                assert (a - b).abs().max().item() <= 1e-5
            assert (single.hidden_states - got.hidden_states).abs().max().item() <= 1e-4
    finally:
        tok.padding_side = old


def test_generation_captures_every_generated_token(lmm):  # every family
    """Without EOS, the last generated token is fed once more with the cache to get its row (M-RoPE
    models must continue from their cached position deltas); it must match teacher forcing."""
    img = _image(40, 60, 5)
    gen = lmm.generate(img, conversation(Q), max_new_tokens=5)
    assert len(gen.token_ids) == 5 and int(gen.token_ids[-1]) != lmm.adapter.tokenizer.eos_token_id
    assert len(gen.capture.positions) == len(gen.token_ids)
    tf = lmm.capture(img, conversation(Q, gen.text))
    assert torch.equal(tf.token_ids, gen.capture.token_ids)
    for a, b in zip(tf.attentions, gen.capture.attentions):
        assert (a - b).abs().max().item() <= 1e-5


# --- Gemma3 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gemma3():
    model, proc = BUILDERS["gemma3"]()
    return FrozenLMM(model, proc)


def test_gemma3_capture_uses_the_sliding_window_mask(gemma3):
    """Layer 0 is a sliding-window layer: answer tokens see only image keys inside their window."""
    cfg = gemma3.model.config.text_config
    assert cfg.layer_types[0] == "sliding_attention" and cfg.layer_types[1] == "full_attention"
    enc = gemma3.encode(_image(40, 60), conversation(Q, A))
    cap = gemma3.capture(_image(40, 60), conversation(Q, A))
    keys = enc.key_index
    for t, p in enumerate(cap.positions.tolist()):
        rows = cap.attentions[0][t].flatten(-2)  # (M, H, K)
        inside = keys > p - cfg.sliding_window
        assert (rows[0][:, ~inside] == 0).all() and (rows[0][:, inside] > 0).all()
        assert (rows[1] > 0).all()
    assert (~(keys > cap.positions.max() - cfg.sliding_window)).any(), "the window never cut an image token"


def test_gemma3_image_tokens_attend_bidirectionally(gemma3):
    """Captured rows of image-token queries include later image tokens: the model's own mask is used."""
    enc = gemma3.encode(_image(40, 60), conversation(Q, A))
    keys = enc.key_index
    with torch.no_grad(), gemma3._capture_ctx(keys[None], positions=keys[None]) as state:
        gemma3.model(**gemma3._model_inputs(enc.inputs), use_cache=False)
    _, rows, _, _ = state.stack()  # (1, M, H, S, K)
    later = keys[None, :] > keys[:, None]  # (S, K): key after query
    assert (rows[0, 1][:, later] > 0).all()


# --- LLaVA-OneVision --------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(40, 60), (60, 36), (30, 30), (20, 64), (64, 64), (7, 300)])
def test_llava_onevision_highres_grid_matches_the_model_packing(hw):
    """The model's own ``pack_image_features`` on features of the right shape yields exactly the
    base grid plus our high-res grid with one newline per row (interpolated or not)."""
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    model, proc = BUILDERS["llava_onevision"]()
    lmm = FrozenLMM(model, proc)
    cfg = model.config
    side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    enc = lmm.encode(_image(*hw), conversation(Q, A))
    base, high = enc.grids
    n_tiles = image_size_to_num_patches(list(hw), cfg.image_grid_pinpoints, cfg.vision_config.image_size)
    feats = torch.zeros(n_tiles, side * side, 8)
    newline, ratio = model.model.image_newline[:8], cfg.vision_aspect_ratio
    packed, _ = model.model.pack_image_features(
        [feats], torch.tensor([hw]), newline, vision_aspect_ratio=ratio
    )
    gh, gw = high.geometry.grid_hw
    assert packed[0].shape[0] == side * side + gh * (gw + 1)
    assert base.geometry.grid_hw == (side, side)


def test_llava_onevision_caps_large_grids():
    model, proc = BUILDERS["llava_onevision"]()
    lmm = FrozenLMM(model, proc)
    side = model.config.vision_config.image_size // model.config.vision_config.patch_size
    small = lmm.encode(_image(30, 30), conversation(Q, A)).grids[1].geometry
    large = lmm.encode(_image(40, 60), conversation(Q, A)).grids[1].geometry
    assert small.grid_hw == (side, side)  # one tile: nothing to cap
    # 2x2 tiles un-padded to 6x8 features exceed anyres_max_2 (2 tiles = 32 features) and are shrunk
    assert large.grid_hw[0] * large.grid_hw[1] <= 2 * side * side < 6 * 8


# --- InternVL -------------------------------------------------------------------------------------
def test_internvl_tile_layout_matches_the_processor():
    from flmm.lmm.families.internvl import tile_layout

    _, proc = BUILDERS["internvl"]()
    for hw in [(40, 60), (60, 36), (24, 80), (80, 24), (33, 33), (5, 200), (200, 5), (64, 65), (97, 31)]:
        out = proc(images=[_image(*hw)], text=["<IMG_CONTEXT>"], return_tensors="pt")
        rows, cols = tile_layout(proc, hw)
        assert out["pixel_values"].shape[0] == (rows * cols + 1 if rows else 1), hw
        if rows:  # the arrangement follows the image's aspect ratio
            assert (cols >= rows) == (hw[1] >= hw[0]) or rows == cols, hw


def test_internvl_grids_with_and_without_tiles():
    from tests.tiny.internvl import tiny_internvl

    on = FrozenLMM(*tiny_internvl())
    enc = on.encode(_image(24, 80), conversation(Q, A))
    tiles, glob = enc.grids
    n = glob.geometry.grid_hw[0]
    assert on.identity.num_grids == 2 and (tiles.geometry.name, glob.geometry.name) == ("tiles", "global")
    rows, cols = tiles.geometry.grid_hw[0] // n, tiles.geometry.grid_hw[1] // n
    assert rows == 1 and cols > 1  # a wide image gets one row of tiles
    image_pos = torch.nonzero(enc.inputs["input_ids"][0] == on.model.config.image_token_id).flatten()
    assert torch.equal(glob.positions, image_pos[-n * n :])
    # stitched row 0 = first row of tile 1, then first row of tile 2, ...
    first_rows = torch.cat([image_pos[k * n * n : k * n * n + n] for k in range(cols)])
    assert torch.equal(tiles.positions[: cols * n], first_rows)
    single = on.encode(_image(32, 32), conversation(Q, A)).grids  # one tile: no thumbnail
    assert torch.equal(single[0].positions, single[1].positions)

    off = FrozenLMM(*tiny_internvl(crop_to_patches=False))
    msgs = conversation(Q, A)
    enc = off.encode(_image(24, 80), msgs)
    assert off.identity.num_grids == 1 and [g.geometry.grid_hw for g in enc.grids] == [(n, n)]
    cap = off.capture(_image(24, 80), msgs)
    assert len(cap.attentions) == 1 and cap.attentions[0].shape[-2:] == (n, n)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "llava"])
def test_image_token_count_mismatch_is_a_config_error(family):
    """A processor that does not match the model (here: one image token dropped) is reported, never
    mapped to wrong cells."""
    from flmm.errors import ConfigError

    lmm = FrozenLMM(*BUILDERS[family]())
    enc = lmm.encode(_image(40, 60), conversation(Q, A))
    ids = enc.inputs["input_ids"].clone()
    ids[0, enc.key_index[-1]] = lmm.adapter.tokenizer.pad_token_id
    with pytest.raises(ConfigError, match="processor"):
        lmm.adapter.visual_grids({**enc.inputs, "input_ids": ids}, 0, (40, 60))
