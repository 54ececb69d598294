"""The learned part selector between the U-Net and the refiner (HeadConfig.part_selector)."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from flmm.geometry import GridGeometry, fit_long_side, pad_to_square_box
from flmm.head import FLMMHead, GroundingQuery, HeadConfig
from flmm.head.prep import box_hw, canvas_image_mask, canvas_logits_to_image
from flmm.head.selector import (
    PART_FEATURES,
    SUPPRESSED,
    PartSelector,
    find_parts,
    kept_parts,
    part_targets,
    suppress_parts,
    true_parts,
)
from flmm.head.tiny import random_capture, tiny_lmm_identity, tiny_sam_model

IMAGE_HW = (40, 60)
GEOM = GridGeometry((6, 6), pad_to_square_box(IMAGE_HW), IMAGE_HW)
IMAGE = np.random.RandomState(0).randint(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)


def _two_blobs(s=16, top=0):
    """Canvas logits ``(s, s)``: a left blob and a right blob below row ``top``, and above it (where a
    processor's padding would lie) a strip of foreground that is not on the image."""
    lg = torch.full((s, s), -5.0)
    lg[top + 2 : top + 5, 1:4] = 3.0  # left, 9 cells
    lg[top + 8 : top + 12, 10:14] = 2.0  # right, 16 cells
    lg[:top] = 4.0
    return lg


def _on(s=16, top=0):
    m = torch.zeros(s, s)
    m[top:] = 1
    return m


def test_parts_are_the_components_on_the_image_with_their_places():
    parts = find_parts(_two_blobs(top=3), _on(top=3))
    assert parts.count == 2 and parts.features.shape == (2, PART_FEATURES)
    assert set(parts.labels.unique().tolist()) == {0, 1, 2} and (parts.labels[:3] == 0).all()
    left, right = (0, 1) if parts.features[0, 0] < parts.features[1, 0] else (1, 0)
    f = parts.features
    assert f[left, 6] == 0 and f[right, 7] == 0  # distance from the left-most / right-most centre
    assert f[left, 7] == pytest.approx(f[right, 6].item()) and f[left, 7] > 0
    assert f[right, 2] > f[left, 2]  # area share
    assert find_parts(torch.full((8, 8), -1.0), _on(8)).count == 0


def test_dropped_parts_are_suppressed_and_kept_ones_untouched():
    lg = _two_blobs().requires_grad_()
    parts = find_parts(lg.detach(), _on())
    out = suppress_parts(lg[None], [parts], [torch.tensor([True, False])])[0]
    on_first, on_second = parts.labels == 1, parts.labels == 2
    assert torch.equal(out[on_first], lg[on_first]) and (out[on_second] <= SUPPRESSED).all()
    assert torch.equal(out[parts.labels == 0], lg[parts.labels == 0])
    out.sum().backward()
    assert (lg.grad[on_first] == 1).all() and (lg.grad[on_second] == 0).all()
    # every part scored below 0: the best one is kept, so the mask never goes empty by selection
    assert kept_parts(torch.tensor([-3.0, -1.0])).tolist() == [False, True]


def test_part_targets_say_which_parts_the_truth_covers():
    lg = _two_blobs()
    parts = find_parts(lg, _on())
    target = torch.zeros(16, 16)
    target[8:12, 10:14] = 1.0  # the right blob exactly
    labels = part_targets([parts], target[None])[0]
    right = parts.labels[9, 11] - 1
    assert labels[right] == 1 and labels.sum() == 1
    assert true_parts([parts], target[None])[0].tolist() == labels.bool().tolist()
    assert true_parts([parts], torch.zeros(1, 16, 16))[0].all()  # the truth covers no part: keep them all
    assert part_targets([find_parts(torch.full((8, 8), -1.0), _on(8))], torch.zeros(1, 8, 8))[0].numel() == 0


class _FixedDecoder(nn.Module):
    """Stands in for the U-Net: the same two-blob logits for every object (plus a trainable zero)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.out = nn.Conv2d(1, 1, 1)  # the head reads decoder.out.weight for empty batches

    def forward(self, maps, cue=None):
        return self.logits.expand(maps.shape[0], -1, -1) + 0.0 * self.out.weight.sum()


def test_head_refines_and_returns_only_the_selected_part(tmp_path):
    """Wiring: with a selector that keeps the left-most part, the decoder mask the head returns holds only
    that part, the refiner is prompted with it, the selector trains, and the head round-trips."""
    sam = tiny_sam_model(seed=0)
    cfg = HeadConfig.create(tiny_lmm_identity(), sam, decoder_width=4, part_selector=True)
    head = FLMMHead(cfg, sam_model=sam)
    s = cfg.canvas_size
    on_image = canvas_image_mask(fit_long_side(box_hw(GEOM.box), s), GEOM, s)
    top = int(np.nonzero(on_image.any(1).numpy())[0][0])  # the image's rows start below the padding
    unet, head.decoder = head.decoder, _FixedDecoder(_two_blobs(s, top))
    sel = head.part_selector
    with torch.no_grad():  # score = -10 * (distance from the left-most centre) + 1: keep the left part
        for layer in (sel.parts[0], sel.parts[2], sel.query[1]):
            layer.weight.zero_()
            layer.bias.zero_()
        sel.parts[0].weight[0, 6], sel.parts[2].weight[0, 0] = 1.0, 1.0
        sel.query[1].bias[0], sel.query[1].bias[-1] = -10.0, 1.0
    capture = random_capture(tiny_lmm_identity(), [GEOM], num_tokens=5, seed=1)
    result = head.predict(capture, [[0, 1]], image=IMAGE)  # predict selects whatever the module's mode
    canvas = find_parts(_two_blobs(s, top), on_image)
    assert canvas.count == 2
    head.eval()
    out = head([GroundingQuery(capture, [[0, 1]], head.embed_image(IMAGE))])
    assert (
        out.selected_logits is not None and (out.selected_logits[0][canvas.labels == 2] <= SUPPRESSED).all()
    )
    cols = np.nonzero(result.decoder_masks[0].numpy().any(0))[0]
    assert len(cols) and cols.max() < IMAGE_HW[1] / 2  # only the left blob's columns

    head.train()
    right = (canvas.labels == 2).float()[None] * 20 - 10  # the right blob as canvas logits
    gt = canvas_logits_to_image(right, [fit_long_side(box_hw(GEOM.box), s)], [GEOM])[0][None] > 0
    query = GroundingQuery(capture, [[0, 1]], head.embed_image(IMAGE))
    assert head([query]).selected_logits is None  # training without ground truth: the whole mask
    out = head([query], gt_masks=[gt])  # teacher forcing: the refiner is prompted with the true part
    assert (out.selected_logits[0][canvas.labels == 1] <= SUPPRESSED).all()
    assert torch.equal(out.selected_logits[0][canvas.labels == 2], out.decoder_logits[0][canvas.labels == 2])
    terms = head.compute_losses(out, [gt], None)
    assert terms["selector_bce"] > 0.5
    terms["loss"].backward()
    assert all(p.grad is not None for p in sel.parameters()) and sel.query[1].bias.grad.abs().sum() > 0

    head.decoder = unet  # a checkpoint holds the real U-Net
    head.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["part_selector"] is True
    loaded = FLMMHead.from_pretrained(tmp_path, sam_model=tiny_sam_model(seed=0))
    for (k, a), (_, b) in zip(
        head.part_selector.state_dict().items(), loaded.part_selector.state_dict().items()
    ):
        assert torch.equal(a, b), k


def test_selector_scores_only_objects_with_a_choice_and_reads_each_word():
    sel = PartSelector(num_layers=2, hidden_size=5)
    one = find_parts(torch.cat([torch.full((8, 4), 2.0), torch.full((8, 4), -2.0)], 1), _on(8))
    two = find_parts(_two_blobs(), _on())
    phrase = torch.randn(3, 2, 5)
    scores = sel([one, two], [phrase, phrase])
    assert one.count == 1 and scores[0].numel() == 0 and scores[1].shape == (2,)
    # max-pooled over tokens: another word in the phrase changes the scores
    other = phrase.clone()
    other[1] = torch.randn(2, 5) * 3
    assert not torch.allclose(sel([two], [other])[0], scores[1])
