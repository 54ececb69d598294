"""flmm.shapes.align: the projector-only phase (language model frozen) on a tiny LLaVA."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from flmm.errors import ConfigError
from flmm.shapes.align import PROJECTOR, align_projector
from flmm.shapes.lmm import build_lmm
from flmm.shapes.lmm_data import ChatDataConfig, ShapesChatDataset
from flmm.shapes.train_lmm import LMMStageConfig, lm_stage_trainer, parse_args
from flmm.train import TrainConfig, read_log
from flmm.world import split_seeds
from tests.tiny.shapes_lmm import TINY_SHAPES_LMM as TINY


def _stage(tmp_path) -> LMMStageConfig:
    loop = TrainConfig(
        output_dir=str(tmp_path / "align"), max_steps=40, batch_size=4, lr=1e-2, eval_every_steps=0,
        mixed_precision="no", progress_bar=False, num_workers=0, log_every_steps=20,
    )  # fmt: skip
    return LMMStageConfig(model=TINY, data=ChatDataConfig(p_caption=0.0, max_questions=3), train=loop)


def test_phase_trains_the_projector_only_and_resumes_from_its_file(tmp_path):
    lmm, processor = build_lmm(TINY, seed=1)
    cfg = _stage(tmp_path)
    data = ShapesChatDataset(
        split_seeds("train", 4), processor, cfg.data
    )  # 4 conversations, seen again and again
    before = {k: v.clone() for k, v in lmm.state_dict().items()}
    folder = str(tmp_path / "align")
    out = align_projector(lmm, lambda: lm_stage_trainer(lmm, processor, cfg, data), folder)
    assert out == {}  # no held-out check configured
    losses = [r["loss"] for r in read_log(folder, "train")]
    assert len(losses) == 2 and losses[1] < losses[0]  # logged at steps 20 and 40
    after = lmm.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(PROJECTOR) for k in changed)  # the Llama and the tower stay
    assert all(p.requires_grad for p in lmm.parameters())  # everything trainable before is again
    saved = load_file(os.path.join(folder, "align.safetensors"))
    assert changed <= set(saved) and all(k.startswith(PROJECTOR) for k in saved)
    fresh, _ = build_lmm(TINY, seed=1)
    assert (
        align_projector(
            fresh, lambda: pytest.fail("a finished phase is not trained again"), folder, resume=True
        )
        == {}
    )
    assert all(torch.equal(fresh.state_dict()[k], after[k]) for k in after)
    other, _ = build_lmm(replace(TINY, text_hidden=64, text_intermediate=128), seed=1)
    with pytest.raises(ConfigError, match="does not fit"):
        align_projector(other, lambda: pytest.fail("not trained"), folder, resume=True)


def test_stage_flag_and_validation(capsys):
    assert parse_args(["--out", "x"])[0].align_steps == 900  # the shipped run (t1MA9)
    assert parse_args(["--out", "x", "--align-steps", "300"])[0].align_steps == 300
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--align-steps", "-1"])
    assert "--align-steps" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="align_steps"):
        LMMStageConfig(align_steps=-1)
