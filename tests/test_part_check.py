"""Each part of a mask shown alone to the frozen LMM (flmm.lmm.part_check, HeadConfig.part_check)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from flmm.assets_path import resolve
from flmm.errors import ConfigError, InputError
from flmm.geometry import fit_long_side
from flmm.head import FLMMHead, GroundingQuery, HeadConfig
from flmm.head.keyword import text_of
from flmm.head.prep import box_hw, canvas_image_mask
from flmm.head.selector import find_parts
from flmm.head.tiny import random_capture, tiny_lmm_identity, tiny_sam_model
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.part_check import PartCheck, PartVerifier, isolate
from flmm.lmm.presence import PresenceCheck
from flmm.shapes.train_head import PART_CHECK, PRESENCE_NOUNS, PRESENCE_QUESTION
from flmm.world import render
from flmm.world.spec import SceneSpec
from tests.test_head_selector import GEOM, IMAGE, IMAGE_HW, _FixedDecoder, _two_blobs

PRESENCE = PresenceCheck("is there {indefinite} ?")


def test_the_question_leaves_out_place_and_relation():
    assert PART_CHECK.question_phrase("the left-most big star") == "the big star"
    assert PART_CHECK.question_phrase("the star right of the small purple triangle") == "the star"
    assert PART_CHECK.question_phrase("the Top-Most circle above the red square") == "the circle"
    assert PART_CHECK.question_phrase("a big purple triangle") == "a big purple triangle"
    assert PartCheck().question_phrase("the left-most star") == "the left-most star"  # no words: all asked


def test_rescoring_adds_whole_answers_and_only_marks_down_partial_ones():
    check = PartCheck(weight=0.5)
    logits = torch.tensor([1.0, 2.0])
    whole = check.rescore(logits, torch.tensor([4.0, -2.0]), whole=True)
    assert torch.allclose(whole, torch.tensor([3.0, 1.0]))
    # the question asked only what the phrase says of the thing: a yes leaves a part as it was
    assert torch.allclose(check.rescore(logits, torch.tensor([4.0, -2.0]), False), torch.tensor([1.0, 1.0]))
    # no to every part: each is marked down by how far it falls below the best one
    assert torch.allclose(check.rescore(logits, torch.tensor([-1.0, -3.0]), False), torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": 0.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"place_words": "left-most"}, "list of words"),
        ({"relation_words": ["left", ""]}, "list of words"),
        ({"dilate": -1}, "dilate"),
        ({"fill": 300}, "fill"),
    ],
)
def test_bad_part_checks_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PartCheck(**kwargs)


def test_the_check_lives_in_the_head_config(tmp_path):
    sam = tiny_sam_model(seed=0)
    with pytest.raises(ConfigError, match="part_selector=True and a presence check"):
        HeadConfig.create(tiny_lmm_identity(), sam, part_selector=True, part_check=PART_CHECK)
    cfg = HeadConfig.create(
        tiny_lmm_identity(), sam, part_selector=True, presence=PRESENCE, part_check=PART_CHECK
    )
    cfg.save(tmp_path / "config.json")
    back = HeadConfig.load(tmp_path / "config.json")
    assert back.part_check == PART_CHECK and back.part_check.place_words == PART_CHECK.place_words
    # a recipe's "head" overrides name both as plain JSON
    recipe = {"presence": {"question": "Is there {expression}?"}, "part_check": {"relation_words": ["next"]}}
    made = HeadConfig.create(tiny_lmm_identity(), sam, part_selector=True, **recipe)
    assert made.part_check == PartCheck(relation_words=("next",))


def test_isolate_greys_all_but_the_dilated_mask():
    img = np.full((10, 12, 3), 200, dtype=np.uint8)
    mask = np.zeros((10, 12), dtype=bool)
    mask[4:6, 5:7] = True
    out = isolate(img, mask, dilate=1, fill=128)
    kept = (out == 200).all(-1)
    assert kept[3:7, 5:7].all() and kept[4:6, 4:8].all()  # the mask and one 4-connected step around it
    assert not kept[3, 4] and (out[~kept] == 128).all() and kept.sum() == 4 + 8
    assert (isolate(img, np.zeros_like(mask)) == 128).all()  # an empty part shows nothing
    with pytest.raises(InputError, match="share"):
        isolate(img, mask[:5])


def test_the_phrase_is_the_text_its_tokens_span():
    text, offsets = "the red circle .", torch.tensor([[0, 3], [4, 7], [8, 14], [-1, -1]])
    assert text_of([3, 2, 1], offsets, text) == "red circle"
    assert text_of([3], offsets, text) is None  # a token without a place in the text
    assert text_of([0], offsets, "") is None


class _Verifier:
    """Prefers the part with the larger mask column (the right one) by a margin the selector can't beat."""

    def __init__(self, wants=True):
        self.calls, self._wants = [], wants

    def wants(self, k):
        return self._wants

    def __call__(self, k, part_logits, masks):
        self.calls.append((k, masks))
        cols = torch.tensor([float(np.nonzero(m.numpy().any(0))[0].mean()) for m in masks])
        return part_logits + 100.0 * (cols == cols.max()).float() - 50.0


def _head(use_refiner):
    sam = tiny_sam_model(seed=0)
    cfg = HeadConfig.create(
        tiny_lmm_identity(), sam if use_refiner else None, decoder_width=4, part_selector=True
    )
    head = FLMMHead(cfg, sam_model=sam if use_refiner else None).eval()
    s = cfg.canvas_size
    on_image = canvas_image_mask(fit_long_side(box_hw(GEOM.box), s), GEOM, s)
    top = int(np.nonzero(on_image.any(1).numpy())[0][0])
    head.decoder = _FixedDecoder(_two_blobs(s, top))
    sel = head.part_selector
    with torch.no_grad():  # the selector alone keeps the left part (as in test_head_selector)
        for layer in (sel.parts[0], sel.parts[2], sel.query[1]):
            layer.weight.zero_()
            layer.bias.zero_()
        sel.parts[0].weight[0, 6], sel.parts[2].weight[0, 0] = 1.0, 1.0
        sel.query[1].bias[0], sel.query[1].bias[-1] = -10.0, 1.0
    return head, find_parts(_two_blobs(s, top), on_image)


@pytest.mark.parametrize("use_refiner", [False, True])
def test_the_verifier_sees_each_part_alone_and_moves_the_choice(use_refiner):
    head, canvas = _head(use_refiner)
    assert canvas.count == 2
    capture = random_capture(tiny_lmm_identity(), [GEOM], num_tokens=5, seed=1)
    emb = head.embed_image(IMAGE) if use_refiner else None
    query = GroundingQuery(capture, [[0, 1]], emb)
    plain = head([query])
    assert (plain.selected_logits[0][canvas.labels == 2] <= -10).all()  # left kept, right dropped
    verifier = _Verifier()
    out = head([query], verifier=verifier)
    ((k, masks),) = verifier.calls
    assert k == 0 and masks.dtype == torch.bool and tuple(masks.shape) == (2, *IMAGE_HW)
    if not use_refiner:  # the U-Net's parts, one per mask, in part order
        cols = [np.nonzero(m.numpy().any(0))[0] for m in masks]
        assert len(cols[0]) and len(cols[1]) and cols[0].max() < cols[1].min()
        assert (out.selected_logits[0][canvas.labels == 1] <= -10).all()  # now the right one is kept
        assert torch.equal(
            out.selected_logits[0][canvas.labels == 2], out.decoder_logits[0][canvas.labels == 2]
        )
    quiet = _Verifier(wants=False)
    assert (
        torch.equal(head([query], verifier=quiet).selected_logits, plain.selected_logits) and not quiet.calls
    )
    with pytest.raises(InputError, match="one query"):
        head([query, query], verifier=verifier)


def test_predict_asks_only_with_an_lmm_and_an_image():
    head, _ = _head(use_refiner=False)
    capture = random_capture(tiny_lmm_identity(), [GEOM], num_tokens=5, seed=1)
    head.config.presence, head.config.part_check = PRESENCE, PART_CHECK
    with pytest.raises(InputError, match="image"):
        head.predict(capture, [[0, 1]], lmm=object())
    # no lmm: the selector alone, as before
    assert head.predict(capture, [[0, 1]]).decoder_masks.shape == (1, *IMAGE_HW)


@pytest.fixture(scope="module")
def lmm():
    return FrozenLMM.from_pretrained(resolve("flmm:shapes/lmm"))


def test_the_shipped_lmm_tells_two_things_apart_when_each_is_shown_alone(lmm):
    """A red circle beside a red square, the same colour and size: only the shape tells them apart."""
    thing = {"color": "red", "size": "big"}
    spec = SceneSpec.from_json(
        {
            "things": [
                {**thing, "shape": "circle", "center": [40.0, 84.0]},
                {**thing, "shape": "square", "center": [88.0, 84.0]},
            ],
            "stuff_top": "sky",
            "stuff_bottom": "sand",
        }
    )
    scene = render(spec)
    masks = torch.from_numpy(scene.thing_masks)
    presence = PresenceCheck(PRESENCE_QUESTION, nouns=PRESENCE_NOUNS)
    image = Image.fromarray(scene.image)
    phrases = ["the red circle", "the red square", "the left-most red object", "the sky"]
    verifier = PartVerifier(lmm, presence, PART_CHECK, image, phrases)
    assert [verifier.wants(k) for k in range(4)] == [True, True, True, False]
    circle = verifier(0, torch.zeros(2), masks)
    square = verifier(1, torch.zeros(2), masks)
    assert circle[0] > circle[1] and square[1] > square[0]
    assert verifier.asked[0][0] > 0 > verifier.asked[0][1]  # yes to the circle, no to the square
    # "the left-most red object" is asked as "a red object": both are, so neither is marked down
    assert torch.equal(verifier(2, torch.tensor([0.5, -0.5]), masks), torch.tensor([0.5, -0.5]))
    with pytest.raises(InputError, match="part masks"):
        verifier(0, torch.zeros(3), masks)
