"""The web demo driven by a real headless Chromium (Debian's ``chromium`` + the ``playwright`` package).

The server runs in this process on 127.0.0.1 with a free port, over the shipped shapes-world model when
it is installed and the tiny random models otherwise. Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "what color is the circle ?"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM}"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pipe():
    from flmm.pipeline import GroundingPipeline, shipped_model_available

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPUs are shared: one thread is much faster than two fighting
    if shipped_model_available():
        p = GroundingPipeline.from_pretrained(max_new_tokens=24)
    else:
        from tests.pipeline_tiny import tiny_pipeline

        p = tiny_pipeline(min_score=0.0, max_new_tokens=8)
    yield p
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def server(pipe):
    from flmm.demo.app import launch

    port = _free_port()
    demo = launch(pipe, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def scene_png(tmp_path_factory) -> Path:
    from flmm.world import sample_scene

    path = tmp_path_factory.mktemp("upload") / "scene.png"
    Image.fromarray(sample_scene(7).image).save(path)
    return path


@pytest.fixture
def page(tmp_path):
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile per test
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return ARTIFACTS / name


def _upload(page, url: str, file: Path) -> None:
    page.goto(url)
    page.locator("#upload input[type=file]").set_input_files(str(file))


def _overlay_size(page) -> tuple[int, int]:
    img = page.locator("#overlay img")
    img.wait_for(state="visible", timeout=60_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('#overlay img'); return i && i.naturalWidth > 0 }"
    )
    return img.evaluate("i => [i.naturalWidth, i.naturalHeight]")


def test_upload_chat_and_overlay(page, server, pipe, scene_png, tmp_path):
    _upload(page, server, scene_png)
    status = page.locator("#status")
    sync_api.expect(status).to_contain_text("Image loaded (128x128)", timeout=60_000)
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#send").click()
    answer = page.locator("#answer .flmm-answer")
    answer.wait_for(timeout=120_000)
    w, h = _overlay_size(page)
    shot = _shot(page, tmp_path, "demo_chat.png")
    # the same question on the same image through the API: greedy decoding gives the same answer
    ref = pipe.fork()
    ref.set_image(np.asarray(Image.open(scene_png).convert("RGB")))
    expected = ref.chat(QUESTION, min_score=pipe.min_score)
    assert expected.text.strip()
    assert " ".join(answer.inner_text().split()).startswith(expected.text.split()[0])
    bot = page.locator("#chatbot").inner_text()
    assert expected.text in " ".join(bot.split())
    # one <mark> per grounded phrase, each in its mask's colour
    assert page.locator("#answer mark.flmm-phrase").count() == len(expected.grounding)
    assert w >= 128 and h >= 128 and w % 128 == 0  # the overlay (upscaled) plus its legend below
    assert shot.stat().st_size > 10_000


def test_ground_a_phrase(page, server, scene_png, tmp_path):
    _upload(page, server, scene_png)
    sync_api.expect(page.locator("#status")).to_contain_text("Image loaded", timeout=60_000)
    page.locator("#phrase textarea").fill("the red circle")
    page.locator("#ground").click()
    sync_api.expect(page.locator("#status")).to_contain_text("the red circle", timeout=60_000)
    assert _overlay_size(page)[0] >= 128
    assert page.locator("#answer").inner_text().startswith("the red circle")
    _shot(page, tmp_path, "demo_ground.png")


def test_bad_upload_gets_a_clear_message(page, server, tmp_path):
    fake = tmp_path / "not_an_image.png"
    fake.write_bytes(b"this is text, not a PNG" * 10)
    _upload(page, server, fake)
    sync_api.expect(page.locator("#status")).to_contain_text("not an image", timeout=60_000)
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#send").click()
    sync_api.expect(page.locator("#status")).to_contain_text("Upload an image first", timeout=60_000)
    _shot(page, tmp_path, "demo_bad_upload.png")
