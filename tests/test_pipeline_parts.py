"""Pipeline pieces without a model (boxes, crops, prompts, result serialisation) and loading from folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flmm.errors import ConfigError, InputError, SpanError
from flmm.lmm.types import CaptureResult
from flmm.pipeline import GroundingPipeline, expand_box, masks_to_boxes, phrases_for_spans
from flmm.pipeline import loading as loading_mod
from flmm.pipeline.streaming import TextChunkStreamer
from flmm.pipeline.tasks import chat_messages, join_expressions, whole_text_phrase
from flmm.pipeline.types import Grounding
from tests.pipeline_tiny import scene_image, tiny_parts


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_masks_to_boxes_pixel_edges():
    m = np.zeros((3, 10, 20), bool)
    m[0, 2:5, 3:9] = True
    m[1, 9, 19] = True
    b = masks_to_boxes(m)
    assert b.dtype == np.float32 and b.tolist() == [[3, 2, 9, 5], [19, 9, 20, 10], [0, 0, 0, 0]]
    with pytest.raises(InputError):
        masks_to_boxes(np.zeros((4, 4), bool))


def test_expand_box_margin_clip_and_min_side():
    # 10 % of a 40 x 20 box on each side, inside a 200 x 100 image
    assert expand_box(np.array([50, 40, 90, 60]), 0.1, (100, 200)).tolist() == [46, 38, 94, 62]
    # clipped at the image border, not shifted
    assert expand_box(np.array([0, 0, 40, 20]), 0.5, (100, 200)).tolist() == [0, 0, 60, 30]
    # a 2-pixel mask gets a 16-pixel crop, shifted to stay in the image
    assert expand_box(np.array([198, 50, 200, 52]), 0.1, (100, 200)).tolist() == [184, 43, 200, 59]
    # an image smaller than the minimum side: the whole image
    assert expand_box(np.array([1, 1, 2, 2]), 0.1, (8, 10)).tolist() == [0, 0, 10, 8]
    with pytest.raises(InputError):
        expand_box(np.array([0, 0, 4, 4]), -0.1, (10, 10))


def test_join_expressions_spans():
    text, spans = join_expressions([" the man ", "a dog"], "; ")
    assert text == "the man; a dog" and [text[s:e] for s, e in spans] == ["the man", "a dog"]
    assert join_expressions("one", "; ") == ("one", [(0, 3)])


def test_chat_messages_put_the_image_first():
    msgs = chat_messages("q3", [("q1", "a1"), ("q2", "a2")])
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"][0] == {"type": "image"}
    assert all(p["type"] == "text" for m in msgs[1:] for p in m["content"])
    assert chat_messages("q", None)[0]["content"][0] == {"type": "image"}
    with pytest.raises(InputError):
        chat_messages("q", [("q1", 2)])


def _capture(text: str, offsets: list[tuple[int, int]]) -> CaptureResult:
    t = len(offsets)
    return CaptureResult(
        attentions=[torch.zeros(t, 1, 1, 2, 2)],
        geometries=[],
        hidden_states=torch.zeros(t, 1, 4),
        last_hidden=torch.zeros(t, 4),
        positions=torch.arange(t),
        token_ids=torch.arange(t),
        text=text,
        offsets=torch.tensor(offsets),
    )


def test_phrases_for_spans_and_whole_text():
    cap = _capture("a red circle", [(0, 1), (1, 5), (5, 12), (12, 12)])
    ph = phrases_for_spans(cap, [(2, 12), (0, 1)])
    assert [p.token_indices for p in ph] == [[1, 2], [0]] and ph[0].text == "red circle"
    with pytest.raises(SpanError):
        phrases_for_spans(cap, [(3, 30)])
    whole = whole_text_phrase(cap)
    assert whole.token_indices == [0, 1, 2] and whole.text == "a red circle"  # EOS (empty span) left out
    assert whole_text_phrase(_capture("", [(0, 0)])) is None


def test_grounding_serialisation(tmp_path):
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 0, 0] = True
    g = Grounding.build("a b", ["a", "b"], [(0, 1), (2, 3)], masks, np.array([0.9, 0.2]), 0.5, "f-lmm")
    d = json.loads(json.dumps(g.to_dict()))
    assert [o["kept"] for o in d["objects"]] == [True, False]
    assert d["objects"][0]["box"] == [2, 1, 5, 3] and d["objects"][0]["area"] == 6
    assert d["objects"][1]["area"] == 0 and d["objects"][1]["score"] == pytest.approx(0.2)
    g.save_masks(tmp_path / "m.npz")
    z = np.load(tmp_path / "m.npz")
    assert z["masks"].shape == (2, 6, 8) and z["masks"].dtype == bool
    assert np.array_equal(z["masks"][0], masks[0]) and not z["masks"][1].any()
    assert z["phrases"].tolist() == ["a", "b"] and z["spans"].tolist() == [[0, 1], [2, 3]]
    with pytest.raises(InputError):
        g.save_masks(tmp_path / "missing-dir" / "m.npz")
    e = Grounding.empty("", (6, 8), 0.5, "f-lmm")
    assert len(e) == 0 and e.masks.shape == (0, 6, 8) and e.union.shape == (6, 8)


def test_text_chunk_streamer_is_exact():
    class Tok:  # a decoder whose unfinished last word changes when the next token arrives
        words = ["ca", "t", " sat", " on", "\n", "mat"]

        def decode(self, ids, skip_special_tokens=True):
            return "".join(self.words[i] for i in ids)

    out: list[str] = []
    s = TextChunkStreamer(Tok(), out.append)
    s.put(torch.tensor([[99, 98]]))  # the prompt: skipped
    for i in range(6):
        s.put(torch.tensor([i]))
    s.end()
    assert "".join(out) == "cat sat on\nmat" and len(out) >= 3 and s.finished
    assert all(not c.endswith(("ca", "sa")) for c in out[:-1])  # never an unfinished word


# ------------------------------------------------------------------ loading from folders
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    lmm, head = tiny_parts()
    root = tmp_path_factory.mktemp("tiny-model")
    lmm.model.save_pretrained(root / "lmm")
    lmm.processor.save_pretrained(root / "lmm")
    head.refiner.sam.save_pretrained(root / "sam")
    head.save_pretrained(root / "head")
    return root, lmm, head


def test_from_pretrained_folders_match_in_memory(saved):
    root, lmm, head = saved
    pipe = GroundingPipeline.from_pretrained(
        root / "head", lmm=root / "lmm", sam=root / "sam", min_score=0.0, max_new_tokens=4
    )
    ref = GroundingPipeline(lmm, head, min_score=0.0)
    img = scene_image(5)
    pipe.set_image(img)
    ref.set_image(img)
    a, b = pipe.ground("the red circle"), ref.ground("the red circle")
    assert np.array_equal(a.masks, b.masks)
    assert np.allclose(a.scores, b.scores, atol=1e-5)
    assert pipe.max_new_tokens == 4 and pipe.min_score == 0.0


def test_default_is_the_shipped_model(saved, monkeypatch):
    root, _, _ = saved
    monkeypatch.setattr(loading_mod, "shipped_model_dir", lambda part: root / part)
    pipe = GroundingPipeline.from_pretrained()
    pipe.set_image(scene_image(0))
    assert pipe.ground("the dog").masks.shape == (1, 128, 128)


def test_missing_shipped_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loading_mod, "shipped_model_dir", lambda part: tmp_path / part)
    with pytest.raises(ConfigError, match="shipped shapes-world model is not installed"):
        GroundingPipeline.from_pretrained()
    with pytest.raises(ConfigError):
        GroundingPipeline.from_pretrained(tmp_path / "no-head-here")


def test_shipped_dirs_point_into_the_package():
    import flmm

    d = loading_mod.shipped_model_dir("head")
    assert d.parts[-3:] == ("assets", "shapes", "head") and str(d).startswith(str(flmm.__path__[0]))
    with pytest.raises(ConfigError):
        loading_mod.shipped_model_dir("weights")
