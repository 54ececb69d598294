"""The web demo's logic without a browser: upload limits, handlers, per-user sessions, the Gradio app."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from flmm.demo import DemoBackend, highlight_html, read_upload
from flmm.errors import ImageError
from flmm.pipeline.types import Grounding
from flmm.viz import hex_color
from tests.pipeline_tiny import scene_image, tiny_pipeline


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def backend():
    return DemoBackend(tiny_pipeline(min_score=0.0))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    d = tmp_path_factory.mktemp("uploads")
    for i in (0, 1):
        Image.fromarray(scene_image(i)).save(d / f"scene{i}.png")
    return d


# ------------------------------------------------------------------ uploads
def test_read_upload_ok(pngs):
    im = read_upload(pngs / "scene0.png")
    assert im.mode == "RGB" and im.size == (128, 128)
    assert np.array_equal(np.asarray(im), scene_image(0))


def test_read_upload_rejects_bad_files(pngs, tmp_path):
    (tmp_path / "text.png").write_text("hello, not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    data = (pngs / "scene0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cases = {
        None: "no file",
        tmp_path / "gone.png": "gone",
        tmp_path / "empty.png": "empty",
        tmp_path / "text.png": "not an image",
        tmp_path / "cut.png": "truncated",
    }
    for path, msg in cases.items():
        with pytest.raises(ImageError, match=msg):
            read_upload(path)
    with pytest.raises(ImageError, match="limit is"):
        read_upload(pngs / "scene0.png", max_bytes=1000)


def test_read_upload_refuses_huge_images_before_decoding(tmp_path):
    # 8000 x 6000 = 48 MP of one-bit pixels: a few KB on disk, over the 40 MP default limit
    Image.new("1", (8000, 6000)).save(tmp_path / "huge.png")
    assert (tmp_path / "huge.png").stat().st_size < 100_000
    with pytest.raises(ImageError, match="48.0 MP"):
        read_upload(tmp_path / "huge.png")


# ------------------------------------------------------------------ handlers
def test_upload_handler(backend, pngs, tmp_path):
    sess, preview, status = backend.upload(str(pngs / "scene0.png"), None)
    assert sess is not None and sess.has_image and preview.shape == (128, 128, 3)
    assert "Image loaded (128x128)" in status
    (tmp_path / "bad.png").write_text("nope")
    same, preview2, status2 = backend.upload(str(tmp_path / "bad.png"), sess)
    assert same is sess and preview2 is None and status2.startswith("Cannot use this file")
    assert np.array_equal(np.asarray(sess.pipe.image), scene_image(0))  # the old image stays
    assert backend.upload(None, None)[2] == "Upload an image first."


def test_chat_handler_streams_then_grounds(backend, pngs):
    sess, _, _ = backend.upload(str(pngs / "scene0.png"), None)
    updates = list(backend.chat("what color is the circle ?", [], sess))
    final = updates[-1]
    ref = backend.pipe.fork()
    ref.set_image(scene_image(0))
    expected = ref.chat("what color is the circle ?")
    assert len(updates) >= 3  # several streamed chunks before the final update
    streamed = [u.messages[-1]["content"] for u in updates[:-1]]
    assert all(b.startswith(a) for a, b in zip(streamed, streamed[1:]))  # text only grows
    assert final.messages[-2:] == [
        {"role": "user", "content": "what color is the circle ?"},
        {"role": "assistant", "content": expected.text},
    ]
    assert final.overlay is not None and final.overlay.dtype == np.uint8 and final.overlay.shape[1] == 384
    assert final.answer_html.count("<mark") == len(expected.grounding)
    assert sess.history == expected.history
    second = list(backend.chat("is there a star ?", final.messages, sess))[-1]
    assert len(second.messages) == 4 and len(sess.history) == 2


def test_chat_handler_bad_input(backend, pngs):
    assert list(backend.chat("hello ?", [], None))[-1].status == "Upload an image first."
    sess, _, _ = backend.upload(str(pngs / "scene0.png"), None)
    upd = list(backend.chat("   ", [{"role": "user", "content": "x"}], sess))
    assert len(upd) == 1 and "empty" in upd[0].status and len(upd[0].messages) == 1


def test_ground_handler_and_low_scores(backend, pngs):
    sess, _, _ = backend.upload(str(pngs / "scene1.png"), None)
    overlay, html, status = backend.ground("the red circle", sess)
    assert overlay.shape[1] == 384 and "the red circle" in html and "score" in status
    overlay, html, status = backend.ground("a purple elephant", sess, min_score=1.0)
    assert "probably not in the image" in status and 'data-kept="false"' in html
    assert backend.ground("", sess)[2].startswith("Error:")
    assert backend.ground("the dog", None)[2] == "Upload an image first."


def test_sessions_never_mix(backend, pngs):
    """Two users, two images, grounding at the same time: each gets the result for their own image."""
    sessions = [backend.upload(str(pngs / f"scene{i}.png"), None)[0] for i in (0, 1)]
    expected = []
    for i in (0, 1):
        p = backend.pipe.fork()
        p.set_image(scene_image(i))
        expected.append(p.ground("the red circle"))
    barrier = threading.Barrier(2)
    got: dict[int, list] = {0: [], 1: []}

    def user(i):
        barrier.wait()
        for _ in range(3):
            got[i].append(sessions[i].pipe.ground("the red circle"))

    threads = [threading.Thread(target=user, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not np.array_equal(expected[0].masks, expected[1].masks)  # the two images do differ
    for i in (0, 1):
        assert len(got[i]) == 3 and all(np.array_equal(g.masks, expected[i].masks) for g in got[i])


# ------------------------------------------------------------------ rendering
def test_highlight_html_colours_and_escapes():
    text = "a <b>red</b> circle & a star"
    masks = np.ones((2, 4, 4), bool)
    spans = [(text.index("red"), text.index("red") + 3), (text.index("a star"), len(text))]
    g = Grounding.build(text, ["red", "a star"], spans, masks, np.array([0.8, 0.3]), 0.5, "f-lmm")
    html = highlight_html(text, g)
    assert "<b>" not in html and "&lt;b&gt;" in html and "&amp;" in html
    assert html.count("<mark") == 2
    assert f"border-bottom:3px solid {hex_color(0)}" in html  # phrase 0 in mask 0's colour
    assert 'data-k="1" data-kept="false"' in html  # below the threshold: grey, flagged
    assert highlight_html("plain", None) == '<div class="flmm-answer">plain</div>'


def test_gradio_app_builds(backend):
    gr = pytest.importorskip("gradio")
    from flmm.demo.app import _is_loopback, build_demo

    demo = build_demo(backend)
    assert isinstance(demo, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"upload", "question", "send", "answer", "overlay", "phrase", "ground", "status", "chatbot"} <= ids
    states = [b for b in demo.blocks.values() if isinstance(b, gr.State)]
    assert len(states) == 1 and states[0].value is None  # per-user state, no shared default object
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and not _is_loopback("0.0.0.0")


def test_status_reports_what_the_lmm_said_about_each_phrase():
    import numpy as np

    from flmm.demo.render import grounding_status
    from flmm.pipeline.types import Grounding

    masks = np.ones((3, 8, 8), dtype=bool)
    g = Grounding.build(
        "the red circle ; the blue square ; the sky",
        ["the red circle", "the blue square", "the sky"],
        [(0, 14), (17, 32), (35, 42)],
        masks,
        np.array([0.9, 0.02, 0.8]),
        0.5,
        "f-lmm",
        presence=np.array([0.95, 0.02, np.nan]),
    )
    lines = grounding_status(g).splitlines()
    assert "the LMM says it is there: 0.95" in lines[0] and "no mask" not in lines[0]
    assert "the LMM says it is there: 0.02" in lines[1] and "probably not in the image" in lines[1]
    assert "LMM" not in lines[2]  # not asked about
