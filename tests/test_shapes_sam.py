"""Tests of the tiny shapes-world SAM: config, prompts data, training stage, evaluation, shipped weights."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import SamModel, SamProcessor

from flmm.errors import ConfigError, ImageError, InputError
from flmm.shapes.sam import (
    ShapesSamConfig,
    build_sam,
    decode,
    default_sam_path,
    load_sam,
    pixel_values,
    save_sam,
)
from flmm.shapes.sam_data import (
    BOX_MASK,
    PromptCollator,
    SamDataConfig,
    ShapesSegDataset,
    centre_points,
    jitter_boxes,
    mask_boxes,
    noisy_mask_prompts,
    random_points,
)
from flmm.shapes.sam_eval import EVAL_PROMPTS, evaluate_sam
from flmm.shapes.train_sam import SamObjective, SamStageConfig, parse_args
from flmm.train import TrainConfig, Trainer, read_log
from flmm.world import sample_scene, split_seeds

TINY = ShapesSamConfig(vision_hidden=32, vision_layers=2, vision_heads=2, prompt_hidden=32, decoder_mlp=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # on the shared 2-core box, OpenMP threads that spin-wait make 2 threads ~10x slower than 1
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_sam():
    return build_sam(TINY, seed=0)


@pytest.fixture(scope="module")
def scene():
    return sample_scene(split_seeds("test", 3)[2])


def test_config_sizes_follow_the_frame(tiny_sam):
    model, _ = tiny_sam
    cfg = model.config
    assert cfg.vision_config.image_size == cfg.prompt_encoder_config.image_size == 128
    assert cfg.prompt_encoder_config.image_embedding_size == TINY.embedding_size == 16
    assert TINY.mask_size == 64
    assert cfg.vision_config.output_channels == cfg.prompt_encoder_config.hidden_size == 32
    assert cfg.mask_decoder_config.hidden_size == 32


def test_init_is_usable_from_scratch(tiny_sam):
    model, _ = tiny_sam
    pe = model.shared_image_embedding.positional_embedding
    assert pe is model.prompt_encoder.shared_embedding.positional_embedding  # tied, as in SAM
    assert 0.5 < float(pe.detach().std()) < 2.0  # SAM's Fourier scale 1, not transformers' hidden/2
    qkv = model.vision_encoder.layers[0].attn.qkv.weight
    assert float(qkv.detach().std()) > 1e-3  # transformers' vision default (1e-10) would leave the ViT dead
    # Xavier decoder init: std sqrt(2 / (fan_in + fan_out)), far above transformers' 0.02
    q = model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.q_proj.weight
    assert abs(float(q.detach().std()) - (2 / sum(q.shape)) ** 0.5) < 0.3 * (2 / sum(q.shape)) ** 0.5
    plain, _ = build_sam(ShapesSamConfig(**{**TINY.to_dict(), "xavier_decoder": False}), seed=0)
    q_plain = plain.mask_decoder.transformer.layers[0].cross_attn_token_to_image.q_proj.weight
    assert float(q_plain.detach().std()) < 0.03
    a, _ = build_sam(TINY, seed=0)
    b, _ = build_sam(TINY, seed=1)
    torch.testing.assert_close(a.vision_encoder.layers[0].attn.qkv.weight, qkv)
    assert not torch.equal(b.vision_encoder.layers[0].attn.qkv.weight, qkv)


def test_bad_config_raises():
    with pytest.raises(ConfigError):
        build_sam(ShapesSamConfig(image_size=100, patch_size=8))
    with pytest.raises(ConfigError):
        build_sam(ShapesSamConfig(prompt_hidden=40))


def test_forward_box_and_point_shapes(tiny_sam, scene):
    model, processor = tiny_sam
    boxes = scene.boxes().tolist()
    inputs = processor(images=scene.image, input_boxes=[boxes], return_tensors="pt")
    with torch.inference_mode():
        out = model(**{k: inputs[k] for k in ("pixel_values", "input_boxes")}, multimask_output=False)
    k = len(boxes)
    assert tuple(out.pred_masks.shape) == (1, k, 1, 64, 64)
    assert tuple(out.iou_scores.shape) == (1, k, 1)
    points = [[[float(b[0] + b[2]) / 2, float(b[1] + b[3]) / 2]] for b in boxes]
    inputs = processor(images=scene.image, input_points=[points], return_tensors="pt")
    with torch.inference_mode():
        out = model(pixel_values=inputs["pixel_values"], input_points=inputs["input_points"])
    assert tuple(out.pred_masks.shape) == (1, k, 3, 64, 64)
    full = processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    assert tuple(full[0].shape) == (k, 3, 128, 128)


def test_decode_matches_the_model_forward(tiny_sam, scene):
    model, processor = tiny_sam
    boxes = torch.from_numpy(scene.boxes())
    pix = pixel_values(scene.image)
    with torch.inference_mode():
        ref = model(pixel_values=pix, input_boxes=boxes[None], multimask_output=False)
        emb = model.get_image_embeddings(pix)
        logits, iou = decode(model, emb, torch.zeros(len(boxes), dtype=torch.long), boxes=boxes)
        dense = torch.zeros(len(boxes), 64, 64)
        mixed, _ = decode(
            model, emb, torch.zeros(len(boxes), dtype=torch.long), boxes=boxes, mask_prompts=dense
        )
    torch.testing.assert_close(logits, ref.pred_masks[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(iou, ref.iou_scores[0], atol=1e-5, rtol=1e-4)
    assert mixed.shape == logits.shape and not torch.allclose(mixed, logits)
    with pytest.raises(InputError):
        decode(model, emb, torch.zeros(1, dtype=torch.long))
    with pytest.raises(InputError):
        decode(model, emb, torch.zeros(1, dtype=torch.long), mask_prompts=torch.zeros(1, 32, 32))


def test_pixel_values_equal_the_processor(tiny_sam, scene):
    _, processor = tiny_sam
    ref = processor(images=scene.image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixel_values(scene.image), ref)
    with pytest.raises(ImageError):
        pixel_values(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ImageError):
        pixel_values(np.zeros((128, 128, 3), np.float32))


def test_save_load_round_trip_offline(tiny_sam, scene, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, processor = tiny_sam
    save_sam(model, processor, str(tmp_path / "sam"))
    assert {"config.json", "model.safetensors"} <= set(os.listdir(tmp_path / "sam"))
    loaded = SamModel.from_pretrained(str(tmp_path / "sam"))
    proc = SamProcessor.from_pretrained(str(tmp_path / "sam"))
    inputs = proc(images=scene.image, input_boxes=[scene.boxes().tolist()], return_tensors="pt")
    with torch.inference_mode():
        a = model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"]).pred_masks
        b = loaded(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"]).pred_masks
    torch.testing.assert_close(a, b)
    assert (
        loaded.prompt_encoder.shared_embedding.positional_embedding
        is loaded.shared_image_embedding.positional_embedding
    )
    with pytest.raises(ConfigError):
        load_sam(str(tmp_path / "missing"))


def test_prompt_geometry(scene):
    masks = torch.from_numpy(np.concatenate([scene.thing_masks, scene.stuff_masks]))
    boxes = mask_boxes(masks)
    np.testing.assert_array_equal(boxes[: len(scene.thing_masks)].numpy(), scene.boxes())
    g = torch.Generator().manual_seed(0)
    jit = jitter_boxes(boxes, 0.1, 6.0, 128, g)
    assert (jit >= 0).all() and (jit <= 128).all()
    assert ((jit[:, 2:] - jit[:, :2]) >= 1).all()
    assert (jit - boxes).abs().max() <= 6.0 + 1e-4 and not torch.equal(jit, boxes)
    for pts in (random_points(masks, g), centre_points(masks)):
        x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
        assert masks[torch.arange(len(masks)), y, x].all()
    noisy = noisy_mask_prompts(masks, 64, 4.0, 0.15, g)
    coarse = torch.nn.functional.adaptive_avg_pool2d(masks.float()[:, None], 64)[:, 0] > 0.5
    pred = noisy > 0
    iou = (pred & coarse).flatten(1).sum(1) / (pred | coarse).flatten(1).sum(1)
    assert noisy.shape == (len(masks), 64, 64)
    assert float(iou.mean()) > 0.4 and float(iou.mean()) < 0.999  # corrupted, yet still the object


def test_collate_batch_layout():
    ds = ShapesSegDataset(split_seeds("train", 3))
    torch.manual_seed(0)
    batch = PromptCollator(SamDataConfig(p_box=0, p_point=0, p_box_mask=1))([ds[i] for i in range(3)])
    t = sum(len(ds[i]["masks"]) for i in range(3))
    assert batch["pixel_values"].shape == (3, 3, 128, 128)
    assert batch["targets"].shape == (t, 128, 128) and batch["mask_prompts"].shape == (t, 64, 64)
    assert (batch["kind"] == BOX_MASK).all() and batch["mask_prompts"].abs().sum() > 0
    assert batch["image_index"].tolist() == sorted(batch["image_index"].tolist())
    assert int(batch["is_stuff"].sum()) == 6
    with pytest.raises(ConfigError):
        PromptCollator(SamDataConfig(p_box=0, p_point=0, p_box_mask=0))


def test_training_stage_reduces_the_loss(tmp_path):
    model, _ = build_sam(TINY, seed=0)
    objective = SamObjective(model)
    assert not model.shared_image_embedding.positional_embedding.requires_grad
    dataset = ShapesSegDataset(split_seeds("train", 4))
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=40,
        batch_size=2,
        lr=3e-3,
        warmup_ratio=0.0,
        schedule="constant",
        mixed_precision="no",
        save_every_steps=0,
        log_every_steps=1,
        progress_bar=False,
    )
    result = Trainer(objective, dataset, PromptCollator(SamDataConfig()), cfg).train()
    assert result.state.global_step == 40
    losses = [r["loss"] for r in read_log(cfg.output_dir, "train")]
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8])


def test_evaluation_reports_every_prompt(tiny_sam):
    model, _ = tiny_sam
    model.train()
    out = evaluate_sam(model, split_seeds("val", 2), progress=False)
    for name in EVAL_PROMPTS:
        for part in ("thing", "stuff"):
            assert 0.0 <= out[f"{name}_{part}_miou"] <= 1.0
    assert out["n_stuff"] == 4 and out["n_things"] >= 2
    assert model.training  # the caller's mode is restored
    with pytest.raises(InputError):
        evaluate_sam(model, [], progress=False)


def test_cli_builds_the_stage_config():
    cfg, resume, export = parse_args(["--out", "x", "--steps", "7", "--export", "y", "--resume"])
    assert isinstance(cfg, SamStageConfig)
    assert cfg.train.max_steps == 7 and cfg.train.output_dir == "x" and resume and export == "y"


def test_refiner_accepts_the_tiny_sam(tiny_sam, scene):
    refiner_mod = pytest.importorskip("flmm.head.refiner")
    model, _ = build_sam(TINY, seed=0)
    refiner = refiner_mod.SamRefiner(model)
    assert refiner.mask_size == 64 and refiner.frame_size == 128
    emb = refiner.embed_image(scene.image)
    assert tuple(emb.shape) == (1, 32, 16, 16)


def _box_ious(model, processor, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """IoU of each ``(K, H, W)`` mask with SAM's single mask from its GT box, via the stock HF API."""
    boxes = mask_boxes(torch.from_numpy(masks)).tolist()
    inputs = processor(images=image, input_boxes=[boxes], return_tensors="pt")
    with torch.inference_mode():
        out = model(**{k: inputs[k] for k in ("pixel_values", "input_boxes")}, multimask_output=False)
    pred = processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )[0][:, 0].numpy()
    return (pred & masks).sum((1, 2)) / (pred | masks).sum((1, 2))


def test_shipped_sam_segments_held_out_scenes(monkeypatch):
    if not os.path.isfile(os.path.join(default_sam_path(), "model.safetensors")):
        pytest.skip("the shapes-world SAM is not shipped yet (python -m flmm.shapes.train_sam --export ...)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = SamModel.from_pretrained(default_sam_path())
    processor = SamProcessor.from_pretrained(default_sam_path())
    things, stuff = [], []
    # fresh held-out scenes, far past the 200 test seeds of the training log's evaluation
    for seed in split_seeds("test", 5000)[-8:]:
        scene = sample_scene(seed)
        things.append(_box_ious(model, processor, scene.image, scene.thing_masks))
        stuff.append(_box_ious(model, processor, scene.image, scene.stuff_masks))
    things_iou, stuff_iou = np.concatenate(things), np.concatenate(stuff)
    # the median, not every thing: small stars come out as rounded blobs (IoU ~0.7, see training log)
    assert np.median(things_iou) >= 0.8, f"thing IoUs {np.round(things_iou, 3)}"
    assert stuff_iou.min() >= 0.8, f"stuff IoUs {np.round(stuff_iou, 3)}"
