"""Shared pieces of flmm.data: span location, expression joining, mask decoding, image access, base class."""

import numpy as np
import pytest
from PIL import Image

from flmm.data.base import GroundingDataset, SkipSample
from flmm.data.images import image_size, open_image
from flmm.data.masks import coco_segmentation_to_mask, polygon_to_mask
from flmm.data.spans import find_phrase, join_expressions, locate_in_order
from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import DataError, ImageError
from tests.fixtures_data import rle_compressed, rle_uncompressed, stripes


def test_find_phrase_exact_then_case_and_space_insensitive():
    text = "A  Red bike and a red bike."
    assert find_phrase(text, "a red bike") == (16, 26)
    assert find_phrase(text, "a red bike", 17) is None
    assert find_phrase(text, "a RED bike", 1) == (16, 26)
    assert find_phrase(text, "A red bike") == (0, 11)  # double space in the text
    assert find_phrase(text, "  ") is None


def test_locate_in_order_does_not_let_optional_words_jump_ahead():
    caption = "a man and a dog near the man ."
    spans = locate_in_order(caption, ["a man", "and", "a dog", "near", "the man", "."])
    assert [caption[s:e] for s, e in spans] == ["a man", "and", "a dog", "near", "the man", "."]
    # an ungrounded utterance that is not next in the caption must not move the cursor past "a dog"
    spans = locate_in_order(caption, ["a man", "the", "a dog"], required=[True, False, True])
    assert spans[1] is None and caption[slice(*spans[2])] == "a dog"


def test_join_expressions_spans_and_punctuation():
    text, spans = join_expressions(["The man in blue T-shirt", "The girl who is smiling."])
    assert text == "The man in blue T-shirt; The girl who is smiling."
    assert [text[s:e] for s, e in spans] == ["The man in blue T-shirt", "The girl who is smiling"]
    text, spans = join_expressions(["a red circle", "the sky"], separator=" ; ", terminator=" .")
    assert text == "a red circle ; the sky ." and text[slice(*spans[1])] == "the sky"


def test_coco_segmentation_forms():
    m = stripes(16, 15)
    assert np.array_equal(coco_segmentation_to_mask(rle_compressed(m), 16, 15), m)
    assert np.array_equal(coco_segmentation_to_mask(rle_uncompressed(m), 16, 15), m)
    both = [rle_compressed(m), rle_compressed(np.fliplr(m))]
    assert np.array_equal(coco_segmentation_to_mask(both, 16, 15), m | np.fliplr(m))
    with pytest.raises(DataError, match="does not match the image size"):
        coco_segmentation_to_mask(rle_compressed(m), 15, 16)
    with pytest.raises(DataError, match="corrupt RLE"):
        coco_segmentation_to_mask({"size": [16, 15], "counts": [3, 4]}, 16, 15)
    with pytest.raises(DataError):
        coco_segmentation_to_mask("nope", 16, 15)


def test_polygon_rasterisation_matches_lisa_conventions():
    # truncated vertices, interior plus outline (cv2.fillPoly + polylines)
    m = polygon_to_mask([[2.9, 3.7], [10.2, 3.1], [10.99, 8.5], [2.1, 8.9]], 12, 14)
    expected = np.zeros((12, 14), dtype=bool)
    expected[3:9, 2:11] = True
    assert np.array_equal(m, expected)
    yy, xx = np.mgrid[:16, :16]
    tri = polygon_to_mask([[2, 2], [12, 2], [2, 12]], 16, 16)
    assert np.array_equal(tri, (xx >= 2) & (yy >= 2) & (xx + yy <= 14))
    with pytest.raises(DataError):
        polygon_to_mask([[1, 2, 3]], 5, 5)


def test_images_open_as_rgb_and_errors(tmp_path):
    p = tmp_path / "gray16.png"
    Image.fromarray(np.full((6, 9), 40000, dtype=np.uint16)).save(p)
    im = open_image(p)
    assert im.mode == "RGB" and im.size == (9, 6)
    assert image_size(p) == (6, 9)
    with pytest.raises(ImageError):
        open_image(tmp_path / "missing.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError):
        image_size(tmp_path / "bad.jpg")


class _Toy(GroundingDataset):
    """Three samples: good, empty mask, bad (skipped in _build)."""

    name = "toy"

    def __init__(self):
        super().__init__()
        self._items = [0, 1, 2]

    def _build(self, index):
        if index == 2:
            raise SkipSample("unlocatable_span", "toy")
        m = np.zeros((4, 5), dtype=bool)
        m[1, 1] = index == 0
        img = Image.new("RGB", (5, 4))
        return GroundingSample(
            f"toy/{index}", "", (4, 5), "q", "a", [GroundedObject([(0, 1)], m)], image_loader=lambda: img
        )


def test_base_skips_and_substitutes(caplog):
    ds = _Toy()
    assert [s.sample_id for s in ds] == ["toy/0"]
    assert ds.skipped == {"empty_mask": 1, "no_objects": 1, "unlocatable_span": 1}
    assert "toy: skipped empty_mask=1, no_objects=1, unlocatable_span=1" in caplog.text
    assert ds[1].sample_id == "toy/0"  # bad index -> next good one, wrapping around
    assert ds[-1].sample_id == "toy/0"
    with pytest.raises(IndexError):
        ds[3]
    assert ds[0].masks().shape == (1, 4, 5)
