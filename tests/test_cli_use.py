"""``flmm ground``, ``flmm chat`` and ``flmm serve`` over tiny random models saved to folders."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from flmm.cli.main import main
from tests.pipeline_tiny import scene_image, tiny_parts


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model_args(tmp_path_factory):
    lmm, head = tiny_parts()
    root = tmp_path_factory.mktemp("cli-model")
    lmm.model.save_pretrained(root / "lmm")
    lmm.processor.save_pretrained(root / "lmm")
    head.refiner.sam.save_pretrained(root / "sam")
    head.save_pretrained(root / "head")
    return ["--model", str(root / "head"), "--lmm", str(root / "lmm"), "--sam", str(root / "sam")]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-image") / "scene.png"
    Image.fromarray(scene_image(0)[:, :100]).save(path)  # 128 x 100: masks must follow the image size
    return path


def test_ground_json_masks_and_overlay(model_args, image, tmp_path, capsys):
    out, npz = tmp_path / "ov.png", tmp_path / "m.npz"
    argv = ["ground", str(image), "the red circle", "a blue square", "--json", "--min-score", "0"]
    rc = main([*argv, "--out", str(out), "--masks-out", str(npz), "--scale", "2", *model_args])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert [o["phrase"] for o in d["objects"]] == ["the red circle", "a blue square"]
    assert d["image_size"] == [128, 100] and d["min_score"] == 0.0
    assert all(len(o["box"]) == 4 and 0 <= o["score"] <= 1 for o in d["objects"])
    z = np.load(npz)
    assert z["masks"].shape == (2, 128, 100) and z["masks"].dtype == bool
    assert [int(m.sum()) for m in z["masks"]] == [o["area"] for o in d["objects"]]
    assert Image.open(out).size[0] == 200  # 100 px wide, scaled by 2; legend below


def test_ground_plain_text_output(model_args, image, capsys):
    assert main(["ground", str(image), "the dog", "--min-score", "1", *model_args]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("the dog: score") and "no mask" in line


def test_ground_bad_image_is_a_clean_error(model_args, tmp_path, capsys):
    (tmp_path / "x.png").write_text("not an image")
    assert main(["ground", str(tmp_path / "x.png"), "the dog", *model_args]) == 1
    assert "flmm: error: cannot read image" in capsys.readouterr().err


def test_ground_empty_expression_is_a_clean_error(model_args, image, capsys):
    assert main(["ground", str(image), "  ", *model_args]) == 1
    assert "empty" in capsys.readouterr().err


def test_chat_one_shot_with_grounding(model_args, image, tmp_path, capsys):
    out = tmp_path / "chat.png"
    rc = main(["chat", str(image), "what color is the circle ?", "--ground", "--out", str(out), *model_args])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].strip() and lines[-1] == f"[overlay: {out}]"
    assert out.is_file() and Image.open(out).size[0] == 300  # a 100 px image: upscaled 3x by default


def test_chat_repl(model_args, image, monkeypatch, capsys):
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("what color is the circle ?\n\n/reset\nis there a star ?\n/quit\n")
    )
    assert main(["chat", str(image), "--max-new-tokens", "4", *model_args]) == 0
    captured = capsys.readouterr()
    answers = [a for a in captured.out.splitlines() if a.strip()]
    assert len(answers) == 2  # two questions, two answers; blank lines and commands answer nothing
    assert captured.err.count("> ") == 5


def test_serve_binds_to_localhost_by_default(model_args, monkeypatch):
    seen = {}

    def fake_launch(pipe, host, port, backend_kwargs=None, **kw):
        seen.update(host=host, port=port, limits=backend_kwargs, pipe=pipe)

    monkeypatch.setattr("flmm.demo.app.launch", fake_launch)
    assert main(["serve", "--port", "7999", *model_args]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 7999
    assert seen["limits"] == {"max_bytes": 20 * 2**20, "max_pixels": 40_000_000}
    assert seen["pipe"].method == "f-lmm"
    assert main(["serve", "--max-upload-mb", "0", *model_args]) == 1
