"""The SAM refiner on tiny random SamModels: preprocessing, frame geometry, prompts, batching."""

import numpy as np
import pytest
import torch

from flmm.errors import ImageError, InputError
from flmm.geometry import GridGeometry, pad_to_square_box
from flmm.head.refiner import SamRefiner
from flmm.head.sam_frame import frame_logits_to_image, image_masks_to_frame, preprocess_image, sam_frame
from flmm.head.tiny import tiny_sam_model


@pytest.fixture(scope="module")
def refiner():
    return SamRefiner(tiny_sam_model(frame_size=128, patch_size=16, width=32))


def test_preprocessing_matches_transformers_sam_processor():
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    img = np.random.RandomState(0).randint(0, 256, (40, 60, 3), dtype=np.uint8)
    ref = SamImageProcessorPil(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})
    expected = ref(images=img, return_tensors="pt")
    mine, frame = preprocess_image(img, 128)
    assert mine.shape == expected["pixel_values"].shape == (1, 3, 128, 128)
    assert torch.allclose(mine, expected["pixel_values"], atol=1e-5)
    assert list(frame.resized_hw) == expected["reshaped_input_sizes"][0].tolist()


def test_bad_images_raise():
    with pytest.raises(ImageError):
        preprocess_image(np.zeros((10, 10, 3), dtype=np.float32), 128)
    with pytest.raises(ImageError):
        preprocess_image(np.zeros((10, 10, 2), dtype=np.uint8), 128)
    with pytest.raises(ImageError):
        preprocess_image("not an image", 128)


def test_frame_geometry():
    frame = sam_frame((40, 60), 128)
    assert frame.resized_hw == (85, 128)  # int(40 * 128 / 60 + 0.5) = 85
    assert frame.box == pytest.approx((0.0, 0.0, 60.0, 128 * 40 / 85))
    assert frame.to_input_coords((6.0, 4.0, 30.0, 20.0)) == pytest.approx((12.8, 8.5, 64.0, 42.5))


def test_frame_round_trip_on_image_pixels():
    frame = sam_frame((40, 60), 128)
    mask = torch.zeros(40, 60)
    mask[5:33, 12:50] = 1
    on_frame = image_masks_to_frame(mask, frame, 256)
    back = frame_logits_to_image((on_frame - 0.5) * 20, frame)
    assert torch.equal(back > 0, mask > 0)


@pytest.mark.parametrize("frame_size, patch", [(128, 16), (64, 16), (128, 32)])
def test_sizes_derive_from_the_sam_config(frame_size, patch):
    ref = SamRefiner(tiny_sam_model(frame_size=frame_size, patch_size=patch, width=16))
    e = frame_size // patch
    assert (ref.frame_size, ref.embedding_size, ref.mask_size, ref.prompt_width) == (frame_size, e, 4 * e, 16)
    img = np.zeros((30, 20, 3), dtype=np.uint8)
    emb = ref.embed_image(img)
    assert emb.shape == (1, 16, e, e)
    logits, iou = ref(
        emb, torch.zeros(1, dtype=torch.long), torch.zeros(1, 4 * e, 4 * e), torch.tensor([[0, 0, 5.0, 5]])
    )
    assert logits.shape == (1, 4 * e, 4 * e) and iou.shape == (1,)


def test_vision_encoder_is_frozen(refiner):
    assert not any(p.requires_grad for p in refiner.sam.vision_encoder.parameters())
    assert not refiner.sam.shared_image_embedding.positional_embedding.requires_grad
    assert all(p.requires_grad for p in refiner.sam.mask_decoder.parameters())
    assert refiner.sam.prompt_encoder.mask_embed.conv1.weight.requires_grad
    refiner.train()
    assert refiner.training and not refiner.sam.vision_encoder.training


def test_mask_prompt_lands_on_the_right_frame_cells(refiner):
    image_hw = (40, 60)
    geom = GridGeometry((6, 6), pad_to_square_box(image_hw), image_hw)  # spans y in [-10, 50)
    canvas = torch.full((1, 64, 64), -10.0)
    canvas[0, 16:48, :] = 10.0  # y in [-10 + 16 * 60/64, -10 + 48 * 60/64) = [5, 35)
    prompt = refiner.mask_prompts(canvas, [(64, 64)], [geom])
    r = refiner.mask_size
    assert prompt.shape == (1, r, r)
    frame = refiner.frame(image_hw)
    ys = (torch.arange(r) + 0.5) * frame.box[3] / r
    xs = (torch.arange(r) + 0.5) * frame.box[2] / r
    expected_rows = (ys >= 5) & (ys < 35)
    on_image = (ys < 40)[:, None] & (xs < 60)[None, :]
    assert torch.equal(prompt[0] > 0, expected_rows[:, None] & on_image)
    # SAM's padding below the image is confident background
    assert prompt[0][~on_image].max() <= -1.0


def test_box_prompt_from_mask_and_whole_image_when_empty(refiner):
    frame = refiner.frame((40, 60))
    r = refiner.mask_size
    prompts = torch.full((2, r, r), -5.0)
    prompts[0, 3:10, 4:20] = 5.0
    boxes = refiner.box_prompts(prompts, [frame, frame])
    cw, ch = frame.box[2] / r, frame.box[3] / r
    sx, sy = frame.scale_xy
    assert boxes[0].tolist() == pytest.approx(
        [4 * cw * sx, 3 * ch * sy, 20 * cw * sx, 10 * ch * sy], rel=1e-5
    )
    assert boxes[1].tolist() == pytest.approx([0.0, 0.0, 128.0, 85.0])


def test_objects_with_different_text_lengths_do_not_affect_each_other(refiner):
    torch.manual_seed(0)
    emb = refiner.embed_image(np.random.RandomState(1).randint(0, 256, (40, 60, 3), dtype=np.uint8))
    r, p = refiner.mask_size, refiner.prompt_width
    masks = torch.randn(3, r, r)
    boxes = torch.tensor([[0.0, 0, 50, 40], [10, 10, 100, 80], [5, 5, 60, 60]])
    text = [torch.randn(2, p), torch.randn(1, p), torch.randn(3, p)]
    with torch.no_grad():
        all_logits, all_iou = refiner(emb, torch.zeros(3, dtype=torch.long), masks, boxes, text)
        one_logits, one_iou = refiner(emb, torch.zeros(1, dtype=torch.long), masks[:1], boxes[:1], text[:1])
    assert torch.allclose(all_logits[0], one_logits[0], atol=1e-5)
    assert torch.allclose(all_iou[0], one_iou[0], atol=1e-5)
    assert not torch.allclose(all_logits[0], all_logits[1])


def test_embedding_shape_is_checked(refiner):
    with pytest.raises(InputError):
        refiner(torch.zeros(1, 8, 8, 8), torch.zeros(1, dtype=torch.long))


def test_released_sam_sizes_with_a_shallow_encoder():
    # the frame/embedding/mask sizes and prompt width of the released SAMs (1024 / 64 / 256 / 256), with a
    # one-layer narrow vision encoder so it stays fast on CPU
    from transformers import SamConfig, SamModel, SamVisionConfig

    vision = SamVisionConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, global_attn_indexes=[0]
    )
    torch.manual_seed(0)
    ref = SamRefiner(SamModel(SamConfig(vision_config=vision)).eval())
    assert (ref.frame_size, ref.embedding_size, ref.mask_size, ref.prompt_width) == (1024, 64, 256, 256)
    image_hw = (300, 500)
    emb = ref.embed_image(np.zeros((*image_hw, 3), dtype=np.uint8))
    assert emb.shape == (1, 256, 64, 64)
    geom = GridGeometry((24, 24), pad_to_square_box(image_hw), image_hw)
    canvas = torch.full((1, 64, 64), -4.0)
    canvas[0, 20:40, 10:30] = 4.0
    prompts = ref.mask_prompts(canvas, [(64, 64)], [geom])
    frame = ref.frame(image_hw)
    boxes = ref.box_prompts(prompts, [frame])
    x0, y0, x1, y1 = boxes[0].tolist()
    # canvas cols 10..29 span x in [78.1, 234.4) px, rows 20..39 y in [56.25, 212.5) px of the 500-px square box;
    # SAM's frame has 1024/500 input px per image px and the box snaps to 256-cell edges (~1.95 px)
    s = 1024 / 500
    assert abs(x0 - 78.125 * s) < 4.1 and abs(x1 - 234.375 * s) < 4.1
    assert abs(y0 - 56.25 * s) < 4.1 and abs(y1 - 212.5 * s) < 4.1
    logits, iou = ref(emb, torch.zeros(1, dtype=torch.long), prompts, boxes, [torch.randn(3, 256)])
    assert logits.shape == (1, 256, 256) and iou.shape == (1,)
    assert torch.isfinite(logits).all()
