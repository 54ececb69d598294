"""GroundingPipeline on tiny random models: contracts, shapes, one-pass chat, streaming, tasks, misuse.

Tiny random models give meaningless masks: these tests check what the pipeline promises, not quality.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest
import torch

from flmm.errors import ConfigError, ImageError, InputError, NotReadyError, SpanError
from flmm.pipeline import GROUNDERS, Grounder, GroundingPipeline, register_grounder
from flmm.pipeline.grounders import FLMMGrounder
from flmm.pipeline.types import Grounding
from tests.pipeline_tiny import scene_image, tiny_pipeline


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the CPUs are shared: two torch threads fighting other jobs are ~50x slower than one
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def base():
    return tiny_pipeline(min_score=0.0)


@pytest.fixture
def pipe(base):
    p = base.fork()
    p.set_image(scene_image(0))
    return p


class Counter:
    """Wraps methods of an object and counts their calls (restored by monkeypatch)."""

    def __init__(self, monkeypatch, obj, names):
        self.calls = {n: 0 for n in names}
        for n in names:
            orig = getattr(obj, n)

            def wrapped(*a, _n=n, _orig=orig, **k):
                self.calls[_n] += 1
                return _orig(*a, **k)

            monkeypatch.setattr(obj, n, wrapped)


LMM_CALLS = ("generate", "capture", "capture_batch", "logits", "encode_batch")


# ------------------------------------------------------------------ ground
def test_ground_one_expression_shapes(pipe):
    g = pipe.ground("the red circle")
    assert isinstance(g, Grounding) and len(g) == 1
    assert g.masks.shape == (1, 128, 128) and g.masks.dtype == bool
    assert g.boxes.shape == (1, 4) and g.boxes.dtype == np.float32
    assert g.scores.shape == (1,) and g.scores.dtype == np.float32 and 0 <= g.scores[0] <= 1
    assert g.phrases == ["the red circle"] and g.spans == [(0, 14)] and g.text == "the red circle"
    assert g.method == "f-lmm" and g.image_size == (128, 128)
    ys, xs = np.nonzero(g.masks[0])
    if len(ys):  # the box is the mask's pixel-edge box
        assert g.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_ground_list_is_one_narrative_with_one_object_each(pipe, monkeypatch):
    seen = {}
    orig = pipe.lmm.capture

    def spy(image, messages, spans=None, token_indices=None):
        seen["answer"] = messages[-1]["content"][0]["text"]
        seen["question"] = messages[0]["content"][-1]["text"]
        return orig(image, messages, spans=spans, token_indices=token_indices)

    monkeypatch.setattr(pipe.lmm, "capture", spy)
    g = pipe.ground(["the red circle", " a blue square "])
    sep = pipe.head.config.phrase_separator
    assert seen["answer"] == "the red circle" + sep + "a blue square"
    assert seen["question"] == pipe.head.config.question
    assert g.phrases == ["the red circle", "a blue square"]
    assert [g.text[s:e] for s, e in g.spans] == g.phrases
    assert g.masks.shape == (2, 128, 128)
    # each object is exactly the tokens of its own expression
    off = g.capture.offsets
    for (s, e), idx in zip(g.spans, g.token_indices):
        assert all(off[i, 0] >= s and off[i, 1] <= e for i in idx)
    assert set(g.token_indices[0]).isdisjoint(g.token_indices[1])


def test_masks_are_at_the_image_size(base):
    p = base.fork()
    p.set_image(np.random.RandomState(0).randint(0, 255, (50, 90, 3), dtype=np.uint8))
    g = p.ground(["the dog", "the sky"])
    assert g.masks.shape == (2, 50, 90) and g.image_size == (50, 90)
    assert (g.boxes[:, [0, 2]] <= 90).all() and (g.boxes[:, [1, 3]] <= 50).all()


def test_same_input_same_result(pipe):
    a, b = pipe.ground("the red circle"), pipe.ground("the red circle")
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)


def test_ground_spans_narrative(pipe):
    text = "  a red circle is left of the blue square. "
    spans = [(text.index("red"), text.index(" is")), (text.index("the"), text.index("."))]
    g = pipe.ground_spans(text, spans)
    assert g.text == text and g.spans == spans
    assert g.phrases == ["red circle", "the blue square"]
    assert g.masks.shape == (2, 128, 128)


def test_min_score_empties_masks_but_reports_scores(pipe):
    low = pipe.ground("the red circle", min_score=0.0)
    high = pipe.ground("the red circle", min_score=1.0)
    assert np.array_equal(low.scores, high.scores)  # the score is reported whatever the threshold
    assert high.kept.tolist() == [False] and not high.masks.any()
    assert high.boxes.tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert high.to_dict()["objects"][0]["kept"] is False


def test_default_min_score_is_documented_value(base):
    from flmm.pipeline import DEFAULT_MIN_SCORE

    p = tiny_pipeline()
    assert p.min_score == DEFAULT_MIN_SCORE == 0.5
    assert base.min_score == 0.0


def test_phrase_not_in_picture_gets_low_score_and_no_mask(base):
    """A grounder that finds nothing (score 0.1) must not yield a mask under the default threshold."""

    class Nothing(FLMMGrounder):
        name = "nothing"

        def predict(self, capture, objects, image, image_state):
            res = super().predict(capture, objects, image, image_state)
            res.scores = torch.full((len(objects),), 0.1)
            res.masks = torch.ones_like(res.masks)  # a confident-looking mask ...
            return res

    p = GroundingPipeline(base.lmm, base.head, grounder=Nothing(base.head))
    p.set_image(scene_image(1))
    g = p.ground("a purple elephant")
    assert g.scores.tolist() == pytest.approx([0.1])
    assert not g.masks.any() and g.kept.tolist() == [False]  # ... is not shown


# ------------------------------------------------------------------ chat
def test_chat_is_one_generate_and_no_second_pass(pipe, monkeypatch):
    lmm_calls = Counter(monkeypatch, pipe.lmm, LMM_CALLS)
    head_calls = Counter(monkeypatch, pipe.head, ("predict", "select_keywords", "embed_image"))
    lengths = []
    orig_forward = pipe.lmm.model.forward

    @functools.wraps(orig_forward)  # generate() checks its kwargs against forward's signature
    def forward(*a, **k):
        ids = k.get("input_ids")
        lengths.append(ids.shape[1] if ids is not None else k["inputs_embeds"].shape[1])
        return orig_forward(*a, **k)

    monkeypatch.setattr(pipe.lmm.model, "forward", forward)
    r = pipe.chat("what color is the circle ?")
    # one prompt encoding and one generate; the answer is never re-read by a teacher-forced pass
    assert lmm_calls.calls == {
        "generate": 1,
        "capture": 0,
        "capture_batch": 0,
        "logits": 0,
        "encode_batch": 1,
    }
    assert sum(n > 1 for n in lengths) == 1  # the prefill; every other forward feeds one cached token
    assert len(lengths) <= len(pipe.lmm.adapter.tokenizer(r.text)["input_ids"]) + 2
    assert head_calls.calls["select_keywords"] == 1
    assert head_calls.calls["embed_image"] == 0  # cached by set_image
    assert head_calls.calls["predict"] == (1 if len(r.grounding) else 0)


def test_chat_result_contract(pipe):
    r = pipe.chat("what color is the circle ?")
    assert isinstance(r.text, str) and r.text
    g = r.grounding
    assert g.text == r.text and g.masks.shape == (len(g), 128, 128)
    for (s, e), phrase in zip(g.spans, g.phrases):
        assert r.text[s:e] == phrase and phrase.strip()
    assert r.history == [("what color is the circle ?", r.text)]


def test_chat_phrases_come_from_the_keyword_selector(base):
    p = base.fork()
    p.set_image(scene_image(0))
    lin = p.head.keyword_selector.linear
    saved = lin.bias.detach().clone()
    try:
        with torch.no_grad():
            lin.bias.fill_(-100.0)
        none = p.chat("what color is the circle ?")
        with torch.no_grad():
            lin.bias.fill_(100.0)
        every = p.chat("what color is the circle ?")
    finally:
        with torch.no_grad():
            lin.bias.copy_(saved)
    assert len(none.grounding) == 0 and none.grounding.masks.shape == (0, 128, 128)
    # every token is a keyword: adjacent tokens form one phrase covering the whole answer
    assert every.grounding.phrases == [every.text.strip()]


def test_chat_without_grounding(pipe, monkeypatch):
    seen = {}
    orig = pipe.lmm.generate

    def spy(*a, **k):
        seen.update(k)
        return orig(*a, **k)

    monkeypatch.setattr(pipe.lmm, "generate", spy)
    r = pipe.chat("what color is the circle ?", ground=False)
    assert r.grounding is None and seen["capture_attention"] is False and r.text


def test_streaming_gives_the_same_text(pipe):
    plain = pipe.chat("what color is the circle ?")
    chunks: list[str] = []
    cb = pipe.chat("what color is the circle ?", stream=chunks.append)
    stream = pipe.chat_stream("what color is the circle ?")
    it_chunks = list(stream)
    res = stream.result()
    assert len(chunks) > 1  # really streamed, not one final blob
    assert "".join(chunks) == cb.text == plain.text
    assert "".join(it_chunks) == res.text == plain.text
    assert res.grounding.phrases == plain.grounding.phrases
    assert np.array_equal(res.grounding.masks, plain.grounding.masks)


def test_chat_history_continues_the_conversation(pipe, monkeypatch):
    first = pipe.chat("what color is the circle ?")
    seen = {}
    orig = pipe.lmm.generate

    def spy(image, messages, **k):
        seen["messages"] = messages
        return orig(image, messages, **k)

    monkeypatch.setattr(pipe.lmm, "generate", spy)
    second = pipe.chat("is there a star ?", history=first.history)
    msgs = seen["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[1]["content"][0]["text"] == first.text
    assert sum(p["type"] == "image" for m in msgs for p in m["content"]) == 1
    assert second.history == [*first.history, ("is there a star ?", second.text)]


def test_stream_errors_surface_in_the_caller(pipe, monkeypatch):
    def boom(*a, **k):
        raise InputError("broken on purpose")

    monkeypatch.setattr(pipe.lmm, "generate", boom)
    stream = pipe.chat_stream("what color is the circle ?")
    with pytest.raises(InputError, match="broken on purpose"):
        list(stream)


# ------------------------------------------------------------------ composite tasks
def test_reason_segment_grounds_keywords_or_whole_answer(base, monkeypatch):
    p = base.fork()
    p.set_image(scene_image(2))
    lin = p.head.keyword_selector.linear
    saved = lin.bias.detach().clone()
    calls = Counter(monkeypatch, p.lmm, LMM_CALLS)
    try:
        with torch.no_grad():
            lin.bias.fill_(-100.0)
        r = p.reason_segment("what is the red thing ?")
    finally:
        with torch.no_grad():
            lin.bias.copy_(saved)
    assert calls.calls["generate"] == 1 and calls.calls["capture"] == 0
    assert r.whole_answer and r.parts.phrases == [r.answer.strip()]
    assert r.mask.shape == (128, 128) and np.array_equal(r.mask, r.parts.masks.any(0))
    assert r.box.shape == (4,) and r.box.dtype == np.float32
    assert r.score == (float(r.parts.scores.max()) if r.parts.kept.any() else 0.0)


def test_visual_cot_crops_and_asks_again(pipe, monkeypatch):
    asked = []
    orig = pipe.lmm.generate

    def spy(image, messages, **k):
        asked.append((image.size, messages[-1]["content"][-1]["text"]))
        return orig(image, messages, **k)

    monkeypatch.setattr(pipe.lmm, "generate", spy)
    v = pipe.visual_cot("what color is the circle ?", margin=0.1)
    assert len(asked) == 2
    assert "most relevant" in asked[0][1] and asked[1][1] == "what color is the circle ?"
    x0, y0, x1, y1 = v.crop_box.tolist()
    assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and v.crop_box.dtype == np.float32
    assert asked[1][0] == (x1 - x0, y1 - y0) and v.crop.shape == (y1 - y0, x1 - x0, 3)
    if v.phrase:  # the crop contains the object's box
        ox0, oy0, ox1, oy1 = v.object_box.tolist()
        assert x0 <= ox0 and y0 <= oy0 and ox1 <= x1 and oy1 <= y1
    assert isinstance(v.thought, str) and isinstance(v.answer, str)


def test_visual_cot_without_a_mask_uses_the_whole_image(pipe):
    v = pipe.visual_cot("what color is the circle ?", min_score=1.0)
    assert v.phrase == "" and not v.mask.any() and v.score == 0.0
    assert v.crop_box.tolist() == [0, 0, 128, 128] and v.crop.shape == (128, 128, 3)


# ------------------------------------------------------------------ misuse
def test_not_ready_before_set_image(base):
    p = base.fork()
    for call in (
        lambda: p.ground("x"),
        lambda: p.chat("x"),
        lambda: p.chat_stream("x"),
        lambda: p.image_size,
    ):
        with pytest.raises(NotReadyError, match="set_image"):
            call()


@pytest.mark.parametrize("bad", ["", "   ", [], [""], ["the dog", " "], None, 3])
def test_empty_expression(pipe, bad):
    with pytest.raises(InputError):
        pipe.ground(bad)


@pytest.mark.parametrize("q", ["", "  \n", None])
def test_empty_question(pipe, q):
    for call in (pipe.chat, pipe.chat_stream, pipe.reason_segment, pipe.visual_cot):
        with pytest.raises(InputError, match="empty"):
            call(q)


def test_bad_spans_and_options(pipe):
    with pytest.raises(SpanError):
        pipe.ground_spans("a red circle", [(5, 50)])
    with pytest.raises(SpanError):
        pipe.ground_spans("a red circle", [])
    with pytest.raises(SpanError):
        pipe.ground_spans("a red circle", [(1, 2)])  # a blank span
    with pytest.raises(InputError):
        pipe.ground_spans("  ", [(0, 1)])
    with pytest.raises(InputError, match="min_score"):
        pipe.ground("the dog", min_score=1.5)
    with pytest.raises(InputError, match="history"):
        pipe.chat("hello ?", history=[("only a question",)])
    with pytest.raises(InputError, match="template"):
        pipe.reason_segment("what ?", template="{answer}")
    with pytest.raises(InputError, match="margin"):
        pipe.visual_cot("what ?", margin=-0.5)


def test_bad_images(base, tmp_path):
    p = base.fork()
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError):
        p.set_image(tmp_path / "notes.png")
    from PIL import Image

    Image.fromarray(scene_image(0)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError):
        p.set_image(tmp_path / "cut.png")
    p.max_image_pixels = 100 * 100
    with pytest.raises(ImageError, match="MP"):
        p.set_image(np.zeros((101, 100, 3), np.uint8))
    assert p.image is None  # nothing half-set


# ------------------------------------------------------------------ many users
def test_forks_share_models_and_lock_not_images(base):
    a, b = base.fork(), base.fork()
    a.set_image(scene_image(0))
    assert b.image is None and a.lmm is b.lmm and a._lock is b._lock


def test_concurrent_users_get_their_own_results(base, monkeypatch):
    images = [scene_image(3), np.ascontiguousarray(scene_image(4)[:, ::-1][:96])]
    exprs = ["the red circle", "the blue square"]
    expected = []
    for img, e in zip(images, exprs):
        p = base.fork()
        p.set_image(img)
        expected.append(p.ground(e))
    inside, peak = [0], [0]
    orig = base.lmm.capture

    def guarded(*a, **k):
        inside[0] += 1
        peak[0] = max(peak[0], inside[0])
        try:
            return orig(*a, **k)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(base.lmm, "capture", guarded)
    barrier = threading.Barrier(2)
    results: dict[int, list] = {0: [], 1: []}

    def user(i):
        p = base.fork()
        p.set_image(images[i])
        barrier.wait()
        for _ in range(3):
            results[i].append(p.ground(exprs[i]))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1  # model access serialised
    for i in range(2):
        assert len(results[i]) == 3
        for g in results[i]:
            assert g.phrases == [exprs[i]] and g.image_size == expected[i].image_size
            assert np.array_equal(g.masks, expected[i].masks) and np.array_equal(g.scores, expected[i].scores)


# ------------------------------------------------------------------ methods
def test_method_registry(base, monkeypatch):
    with pytest.raises(ConfigError, match="unknown grounding method"):
        GroundingPipeline(base.lmm, base.head, method="nope")
    with pytest.raises(ConfigError, match="needs a trained mask head"):
        GroundingPipeline(base.lmm, None)

    class Fixed(Grounder):
        name = "fixed"

        @classmethod
        def from_parts(cls, lmm, head, **options):
            return cls()

        def embed(self, image):
            return image.size

        def predict(self, capture, objects, image, image_state):
            from flmm.head.types import GroundingResult

            w, h = image_state
            m = torch.zeros(len(objects), h, w, dtype=torch.bool)
            m[:, :2, :3] = True
            s = torch.full((len(objects),), 0.75)
            return GroundingResult(m, m.float(), s, s)

    monkeypatch.setitem(GROUNDERS, "fixed", Fixed)
    register_grounder("fixed", Fixed)
    p = GroundingPipeline(base.lmm, base.head, method="fixed")
    p.set_image(scene_image(0))
    g = p.ground(["the dog", "the cat"])
    assert g.method == "fixed" and g.scores.tolist() == [0.75, 0.75]
    assert g.boxes.tolist() == [[0, 0, 3, 2]] * 2


def test_attend_and_segment_is_registered():
    from flmm.baselines.attend_and_segment import AttendAndSegmentGrounder
    from flmm.pipeline.grounders import grounder_class

    assert grounder_class("attend-and-segment") is AttendAndSegmentGrounder
    assert "attend-and-segment" in GROUNDERS


def test_captures_feed_the_attention_pictures_or_can_be_dropped(base):
    from flmm.viz import attention_clusters, phrase_heatmaps

    p = base.fork()
    p.set_image(scene_image(0))
    g = p.ground(["the red circle", "a blue square"])
    heat = phrase_heatmaps(g.capture, g.token_indices)
    assert heat.shape == (2, 128, 128) and heat.dtype == np.float32 and (heat >= 0).all()
    grid = g.capture.geometries[0].grid_hw
    assert attention_clusters(g.capture, g.token_indices[0], n_clusters=2).shape == grid
    lean = GroundingPipeline(base.lmm, base.head, min_score=0.0, keep_capture=False)
    lean.set_image(scene_image(0))
    g2 = lean.ground(["the red circle", "a blue square"])
    assert g2.capture is None and np.array_equal(g2.masks, g.masks)


def test_keyword_phrases_leave_out_special_tokens(pipe):
    lin = pipe.head.keyword_selector.linear
    saved = lin.bias.detach().clone()
    try:
        with torch.no_grad():
            lin.bias.fill_(100.0)  # every token is a keyword
        cap = pipe.chat("what color is the circle ?").grounding.capture
        t = len(cap.offsets)
        cap.offsets = cap.offsets.clone()
        cap.offsets[-1] = torch.tensor([len(cap.text), len(cap.text)])  # as a special token (EOS) has
        phrases = pipe.grounder.select_phrases(cap)
    finally:
        with torch.no_grad():
            lin.bias.copy_(saved)
    assert [p.token_indices for p in phrases] == [list(range(t - 1))]
