"""The vision tower's warm-up on caption words (flmm.shapes.vision_warmup)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flmm.errors import ConfigError
from flmm.shapes.concepts import CONCEPTS, concept_targets
from flmm.shapes.lmm import build_lmm
from flmm.shapes.vision_warmup import (
    GROUPS,
    SceneImages,
    SingleThingImages,
    VisionWarmupConfig,
    VisionWarmupObjective,
    collate_batch,
    held_out_accuracy,
    warm_up_vision,
    word_labels,
)
from flmm.train import TrainConfig, Trainer, read_log
from flmm.world import COLORS, SHAPES, SIZES, narrative, render, sample_spec, split_seeds
from tests.tiny.shapes_lmm import TINY_SHAPES_LMM as TINY


def test_labels_are_the_caption_words_and_missing_size_is_ignored():
    got = word_labels("a small orange circle in the sky above the sand .")
    assert got.tolist() == [COLORS.index("orange"), SHAPES.index("circle"), SIZES.index("small")]
    got = word_labels("the wall and the grass behind a red diamond .")
    assert got.tolist() == [COLORS.index("red"), SHAPES.index("diamond"), -100]


def test_placements_move_only_the_first_thing_onto_the_patch_grid():
    seeds = split_seeds("train", 20)
    proc = build_lmm(TINY)[1].image_processor
    aligned = SingleThingImages(seeds, proc, 8, "aligned")
    jitter = SingleThingImages(seeds, proc, 8, "jitter", jitter_px=2.0)
    natural = SingleThingImages(seeds, proc, 8, "random")
    for i, seed in enumerate(seeds):
        original = sample_spec(seed).things[0]
        a, j, r = aligned.spec(i).things, jitter.spec(i).things, natural.spec(i).things
        assert len(a) == len(j) == len(r) == 1
        assert r[0] == original
        assert (a[0].shape, a[0].color, a[0].size) == (original.shape, original.color, original.size)
        assert all(c % 8 == 0 and 16 <= c <= 112 for c in a[0].center)
        assert all(abs(cj - ca) <= 2.0 for cj, ca in zip(j[0].center, a[0].center))
        assert render(aligned.spec(i)).thing_masks[0].any()  # on the canvas, visible
    assert aligned.spec(3) == aligned.spec(3)  # deterministic
    item = aligned[0]
    assert item["pixel_values"].shape == (3, 32, 32) and item["labels"].shape == (3,)


def _training_losses(objective, data, folder, steps: int) -> list[float]:
    """Train ``objective`` on ``data`` for ``steps`` steps of 8 (lr 1e-2); the logged losses, in order."""
    cfg = TrainConfig(
        output_dir=str(folder), max_steps=steps, batch_size=8, lr=1e-2,
        save_every_steps=0, log_every_steps=1, progress_bar=False,
    )  # fmt: skip
    Trainer(objective, data, collate_batch, cfg).train()
    return [r["loss"] for r in read_log(cfg.output_dir, "train")]


def test_bad_configs_raise():
    with pytest.raises(ConfigError, match="2 phases but 1"):
        VisionWarmupConfig(phases=("aligned", "random"), steps=(3,))
    with pytest.raises(ConfigError, match="unknown placement"):
        VisionWarmupConfig(phases=("centred",), steps=(3,))
    with pytest.raises(ConfigError, match="unknown placement"):
        SingleThingImages([1], None, 8, "centred")
    with pytest.raises(ConfigError, match="unknown placement"):
        SingleThingImages([1], None, 8, "scenes")  # whole scenes are SceneImages
    with pytest.raises(ConfigError, match="one per phase"):
        VisionWarmupConfig(phases=("aligned", "random"), steps=(3, 3), lr=(1e-3, 1e-3, 1e-4))
    with pytest.raises(ConfigError, match="step counts must be positive"):
        VisionWarmupConfig(phases=("aligned",), steps=(0,))
    with pytest.raises(ConfigError, match="positive learning rate"):
        VisionWarmupConfig(phases=("aligned",), steps=(3,), lr=0.0)
    assert VisionWarmupConfig(phases=("random", "random"), steps=(3, 3), lr=(1e-3, 3e-4)).phase_lrs() == (
        1e-3,
        3e-4,
    )
    assert VisionWarmupConfig(phases=("random", "random"), steps=(3, 3), lr=(1e-3, 1e-3)).lr == 1e-3
    assert VisionWarmupConfig(phases=(), steps=()).phase_lrs() == ()  # off, whatever the default lr
    with pytest.raises(ConfigError, match="word_pool must be one of"):
        VisionWarmupConfig(word_pool="median")


def test_max_word_pool_scores_each_word_by_its_best_token():
    model, processor = build_lmm(TINY, seed=1)
    data = SingleThingImages(split_seeds("train", 4), processor.image_processor, 32, "random")
    batch = collate_batch([data[i] for i in range(4)])
    tower = model.model.vision_tower
    with torch.no_grad():
        tokens = tower(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states[-1][:, 1:]
        for pool, read in (("mean", lambda p: p(tokens.mean(1))), ("max", lambda p: p(tokens).amax(1))):
            objective = VisionWarmupObjective(tower, word_pool=pool)
            logits, expected, start = read(objective.probe), 0.0, 0
            for group, target in zip(GROUPS, batch["labels"].T):  # the word loss, group by group
                part, valid = logits[:, start : start + len(group)], target >= 0
                start += len(group)
                if valid.any():
                    expected += torch.nn.functional.cross_entropy(part[valid], target[valid])
            assert torch.allclose(objective(batch)["loss"], torch.as_tensor(expected))
        assert not torch.allclose(tokens.mean(1), tokens.amax(1))  # the two pools read different things


def test_scene_items_mix_whole_scenes_with_caption_concepts_and_single_things():
    seeds = split_seeds("train", 6)
    proc = build_lmm(TINY)[1].image_processor
    data = SceneImages(seeds, proc, 8)
    whole, single = data[0], data[1]
    caption = narrative(render(sample_spec(seeds[0]))).text
    named = {CONCEPTS[i] for i in torch.nonzero(whole["concepts"]).flatten().tolist()}
    for thing in sample_spec(seeds[0]).things:  # every thing's colour-shape pair, read from the caption
        assert f"{thing.color} {thing.shape}" in named
    assert torch.equal(whole["concepts"], concept_targets(caption)) and (whole["labels"] == -100).all()
    assert (single["concepts"] == -1).all() and single["labels"][1] >= 0
    assert all((SceneImages(seeds, proc, 8, mix=False)[i]["concepts"] >= 0).all() for i in (1, 3))


def test_scene_phase_lowers_the_concept_loss_and_reports_pair_f1(tmp_path):
    model, processor = build_lmm(TINY, seed=1)
    objective = VisionWarmupObjective(model.model.vision_tower)
    data = SceneImages(split_seeds("train", 8), processor.image_processor, 32)
    batch = collate_batch([data[i] for i in range(8)])
    out = objective(batch)
    assert {"loss", "colour_acc", "shape_acc", "pair_f1"} <= set(out) and torch.isfinite(out["loss"])
    losses = _training_losses(objective, data, tmp_path / "run", steps=40)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    metrics = held_out_accuracy(
        objective, SceneImages(split_seeds("val", 4), processor.image_processor, 32, False)
    )
    assert set(metrics) == {"val_pair_f1"} and 0.0 <= metrics["val_pair_f1"] <= 1.0


@pytest.mark.parametrize("word_pool", ["max", "mean"])
def test_bind_phase_adds_the_colour_gated_shape_loss_of_the_probes(tmp_path, word_pool):
    from flmm.shapes.binding_loss import colour_gated_shape_loss
    from flmm.shapes.concepts import SINGLE_CONCEPTS

    model, processor = build_lmm(TINY, seed=1)
    tower = model.model.vision_tower
    objective = VisionWarmupObjective(tower, word_pool=word_pool, bind_weight=2.0)
    data = SceneImages(split_seeds("train", 8), processor.image_processor, 32, mix=False)
    batch = collate_batch([data[i] for i in range(8)])
    with torch.no_grad():
        plain = objective(batch)
        objective.bind = True
        bound = objective(batch)
        tokens = tower(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states[-1][:, 1:]
        colours = objective.concept_probe(tokens)[..., : len(COLORS)]
        shapes = objective.probe(tokens)[..., len(COLORS) : len(COLORS) + len(SHAPES)]
        pairs = batch["concepts"][:, len(SINGLE_CONCEPTS) :].reshape(8, len(COLORS), len(SHAPES))
        gated = colour_gated_shape_loss(colours, shapes, pairs)
    assert gated is not None and "gated_shape_acc" not in plain
    assert torch.allclose(bound["loss"], plain["loss"] + 2.0 * gated[0], atol=1e-5)
    assert bound["gated_shape_acc"] == pytest.approx(float(gated[1]), abs=1e-6)
    # the phase runs through the warm-up and reports the gated accuracy on held-out scenes
    cfg = VisionWarmupConfig(
        phases=("scenes", "bind"), steps=(2, 2), batch_size=2, scenes=8, word_pool=word_pool
    )
    acc = warm_up_vision(model, processor, cfg, split_seeds("train", 20), str(tmp_path))
    assert acc is not None and 0.0 <= acc["val_gated_shape_acc"] <= 1.0
    assert os.path.isfile(os.path.join(tmp_path, "vision", "1-bind", "warmup.safetensors"))
    with pytest.raises(ConfigError, match="bind"):
        VisionWarmupConfig(bind_weight=-1.0)
    from flmm.shapes.train_lmm import parse_args

    argv = ["--out", "x", "--vision-phases", "scenes,bind", "--vision-steps", "3,3", "--vision-lr", "1e-3"]
    cfg = parse_args([*argv, "--bind-weight", "0.5"])[0]
    assert cfg.vision.phases == ("scenes", "bind") and cfg.vision.bind_weight == 0.5
    with pytest.raises(SystemExit):
        parse_args([*argv, "--bind-weight", "-1"])


def test_a_few_steps_lower_the_loss(tmp_path):
    model, processor = build_lmm(TINY, seed=1)
    objective = VisionWarmupObjective(model.model.vision_tower)
    assert objective.probe.out_features == sum(len(g) for g in GROUPS)
    data = SingleThingImages(split_seeds("train", 8), processor.image_processor, 32, "aligned")
    losses = _training_losses(objective, data, tmp_path / "run", steps=30)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])


def test_phases_write_the_tower_and_resume_skips_finished_ones(tmp_path):
    model, processor = build_lmm(TINY, seed=1)
    before = {k: v.clone() for k, v in model.model.vision_tower.state_dict().items()}
    cfg = VisionWarmupConfig(phases=("aligned", "random"), steps=(2, 2), batch_size=2, scenes=8)
    out = str(tmp_path)
    acc = warm_up_vision(model, processor, cfg, split_seeds("train", 20), out)
    assert acc is not None and {"val_colour_acc", "val_shape_acc", "val_size_acc", "val_pair_f1"} <= set(acc)
    files = [os.path.join(out, "vision", f, "warmup.safetensors") for f in ("0-aligned", "1-random")]
    assert all(os.path.isfile(f) for f in files)
    trained = model.model.vision_tower.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    saved = {k.removeprefix("tower."): v for k, v in load_file(files[1]).items() if k.startswith("tower.")}
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    # a resumed run reuses the finished phases: the tower comes back exactly, with no training
    fresh, _ = build_lmm(TINY, seed=2)
    again_acc = warm_up_vision(fresh, processor, cfg, split_seeds("train", 20), out, resume=True)
    assert again_acc is not None and again_acc.keys() == acc.keys()
    # recomputed, not read back: the single-thing accuracies come back exactly; the 2-step concept
    # probe's logits sit near 0, where float-level kernel differences can flip a few pair decisions
    assert {k: v for k, v in again_acc.items() if k != "val_pair_f1"} == {
        k: v for k, v in acc.items() if k != "val_pair_f1"
    }
    assert again_acc["val_pair_f1"] == pytest.approx(acc["val_pair_f1"], abs=0.02)
    again = fresh.model.vision_tower.state_dict()
    assert all(torch.equal(saved[k], again[k]) for k in saved)


def _tiny_lmm_stage(tmp_path, *flags: str):
    """A tiny LMM stage (two warm-up phases, text, alignment, LMM: 1-2 steps each) of ``flags``."""
    from dataclasses import replace

    from flmm.shapes.train_lmm import parse_args

    argv = ["--out", str(tmp_path), "--vision-phases", "aligned,scenes", "--vision-steps", "2,1"]
    argv += ["--vision-lr", "1e-3,3e-4", "--steps", "2", "--text-steps", "2", "--align-steps", "2", *flags]
    cfg = parse_args(argv)[0]
    return replace(
        cfg,
        model=TINY,
        vision=replace(cfg.vision, batch_size=2, scenes=8),
        text=replace(cfg.text, batch_size=2, val_conversations=2),
        train=replace(cfg.train, batch_size=2, eval_every_steps=0, save_every_steps=0, progress_bar=False),
        train_scenes=8,
        eval_scenes=2,
        probe_scenes=1,
        export_dtype="float32",
    )


def test_lmm_stage_runs_the_warm_up_and_can_keep_the_tower_frozen(tmp_path):
    from flmm.shapes.lmm import load_lmm
    from flmm.shapes.train_lmm import LMMStageConfig, parse_args, train_lmm

    cfg = _tiny_lmm_stage(tmp_path, "--freeze-vision")
    assert cfg.vision.phases == ("aligned", "scenes") and cfg.vision.steps == (2, 1) and cfg.freeze_vision
    assert cfg.vision.phase_lrs() == (1e-3, 3e-4)
    with pytest.raises(SystemExit):  # three phases, two step counts
        parse_args(["--out", "x", "--vision-phases", "aligned,jitter,random", "--vision-steps", "2,1"])
    with pytest.raises(SystemExit):  # a phase of no steps
        parse_args(["--out", "x", "--vision-phases", "aligned", "--vision-steps", "0", "--vision-lr", "1e-3"])
    assert parse_args(["--out", "x"])[0].vision == LMMStageConfig().vision  # CLI defaults = shipped settings
    final = train_lmm(cfg)
    assert {"vision_warmup_val_shape_acc", "text_phase_text_token_acc", "align_qa_acc", "qa_acc"} <= set(
        final
    )
    for phase in ("text/text", "align/align"):  # warm-up, text, alignment, then LMM
        assert os.path.isfile(os.path.join(tmp_path, f"{phase}.safetensors"))
    file = os.path.join(tmp_path, "vision", "1-scenes", "warmup.safetensors")
    warmed = {k.removeprefix("tower."): v for k, v in load_file(file).items() if k.startswith("tower.")}
    exported, _ = load_lmm(os.path.join(tmp_path, "hf"))
    tower = exported.model.vision_tower.state_dict()
    assert warmed.keys() == tower.keys() and all(
        torch.equal(warmed[k], tower[k]) for k in warmed
    )  # frozen through the LMM stage


def test_lmm_stage_stops_after_a_phase_and_goes_on_from_its_files(tmp_path):
    """train_all runs the phases under different launches: warm-up, then text + alignment, then the
    LMM stage, each later call reloading what the earlier ones wrote instead of training it again."""
    from flmm.shapes.train_lmm import PHASES, parse_args, train_lmm

    assert parse_args(["--out", "x"])[2] == "lmm"  # by default the whole stage
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--stop-after", "projector"])
    cfg = _tiny_lmm_stage(tmp_path)
    assert train_lmm(cfg, stop_after="vision") == {"stopped_after": PHASES.index("vision")}
    warm = os.path.join(tmp_path, "vision", "1-scenes", "warmup.safetensors")
    assert os.path.isfile(warm) and not os.path.exists(os.path.join(tmp_path, "text"))
    warm_written = os.path.getmtime(warm)
    assert train_lmm(cfg, resume=True, stop_after="align") == {"stopped_after": PHASES.index("align")}
    text, align = (os.path.join(tmp_path, f"{p}/{p}.safetensors") for p in ("text", "align"))
    assert os.path.isfile(text) and os.path.isfile(align) and not os.path.exists(os.path.join(tmp_path, "hf"))
    text_written = os.path.getmtime(text)
    final = train_lmm(cfg, resume=True)
    assert "qa_acc" in final and os.path.isdir(os.path.join(tmp_path, "hf"))
    # the finished phases were reloaded, not trained again
    assert os.path.getmtime(warm) == warm_written and os.path.getmtime(text) == text_written
    assert [r["step"] for r in read_log(os.path.join(tmp_path, "text"), "train")][-1] == 2
    with pytest.raises(ConfigError, match="stop_after"):
        train_lmm(cfg, stop_after="projector")


def test_lmm_stage_trains_with_eager_attention_and_exports_a_model_that_loads_with_sdpa(tmp_path):
    from dataclasses import replace

    from flmm.shapes.lmm import eager_attention, load_lmm, set_language_attention

    model, _ = build_lmm(TINY)
    set_language_attention(model, "eager")  # what the stage does: the Llama only
    parts = (model.model.vision_tower.config, model.model.language_model.config)
    assert [c._attn_implementation for c in parts] == ["sdpa", "eager"]
    with eager_attention(model):  # the grounding probe's attention weights
        assert [c._attn_implementation for c in parts] == ["eager", "eager"]
    assert [c._attn_implementation for c in parts] == ["sdpa", "eager"]  # each part's own again
    from flmm.shapes.train_lmm import LMMStageConfig, parse_args, train_lmm

    assert parse_args(["--out", "x"])[0].attention == "eager"
    assert parse_args(["--out", "x", "--attention", "sdpa"])[0].attention == "sdpa"
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--attention", "flash"])
    with pytest.raises(ConfigError, match="attention must be one of"):
        LMMStageConfig(attention="flash")
    cfg = _tiny_lmm_stage(tmp_path, "--vision-phases", "", "--vision-steps", "", "--vision-lr", "")
    cfg = replace(cfg, text=replace(cfg.text, steps=0), align_steps=0)
    assert "qa_acc" in train_lmm(cfg)
    model, _ = load_lmm(os.path.join(tmp_path, "hf"))
    assert model.config._attn_implementation == "sdpa"  # the export does not keep the training choice
    assert "attn" not in open(os.path.join(tmp_path, "hf", "config.json")).read()
