"""Feature cache: records match live captures, builds resume, the head trains on it."""

from __future__ import annotations

import pytest
import torch

from flmm.data.shapes import ShapesRefNarratives
from flmm.features import FeatureCache, build_cache
from flmm.head.config import HeadConfig
from flmm.head.keyword import keyword_labels
from flmm.head.model import FLMMHead
from flmm.head.tiny import tiny_sam_model
from flmm.head.types import GroundingQuery
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from flmm.recipes.head import train_head
from flmm.train import TrainConfig
from tests.tiny.llava import tiny_llava


@pytest.fixture(scope="module")
def parts():
    model, proc = tiny_llava()
    lmm = FrozenLMM(model, proc, name="tiny-llava")
    sam = tiny_sam_model()
    head = FLMMHead(HeadConfig.create(lmm.identity, sam, decoder_width=8), sam_model=sam)
    data = ShapesRefNarratives("train", 6, max_expressions=3)
    return lmm, head, data


def test_cache_matches_live_capture_and_resumes(parts, tmp_path):
    lmm, head, data = parts
    samples = [data[i] for i in range(len(data))]
    first = build_cache(
        lmm,
        samples[:3],
        tmp_path,
        embed_image=head.embed_image,
        batch_size=2,
        shard_size=2,
        rank=0,
        world_size=1,
        progress=False,
    )
    assert first["written"] == 3
    again = build_cache(
        lmm,
        samples,
        tmp_path,
        embed_image=head.embed_image,
        batch_size=2,
        shard_size=2,
        rank=0,
        world_size=1,
        progress=False,
    )
    assert again["present"] == 3 and again["written"] == len(samples) - 3
    cache = FeatureCache(tmp_path)
    assert len(cache) == len(samples) and cache.info["merge"] == "mean"

    s = samples[0]
    rec = cache.get(s.sample_id)
    assert rec.masks.shape == (len(s.objects), *s.image_hw) and torch.equal(
        rec.masks, torch.from_numpy(s.masks())
    )
    live = lmm.capture(s.load_image(), conversation(s.question, s.answer))
    head.eval()
    with torch.no_grad():
        objs = [torch.nonzero(keyword_labels(live.offsets, ob.spans)).flatten().tolist() for ob in s.objects]
        emb = head.embed_image(s.load_image())
        a = head([GroundingQuery(live, objs, emb)])
        b = head([rec.to_query()])
    # fp16 storage of the maps is the only difference
    torch.testing.assert_close(a.decoder_logits, b.decoder_logits, atol=2e-2, rtol=1e-2)
    assert len(b.keyword_logits[0]) == len(live.positions)
    assert rec.keyword_labels.sum() > 0


def test_head_trains_on_cache(parts, tmp_path):
    lmm, head, data = parts
    samples = [data[i] for i in range(len(data))]
    build_cache(
        lmm,
        samples,
        tmp_path / "cache",
        embed_image=head.embed_image,
        batch_size=3,
        rank=0,
        world_size=1,
        progress=False,
    )
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        max_steps=12,
        batch_size=2,
        lr=3e-3,
        warmup_ratio=0.0,
        mixed_precision="no",
        save_every_steps=0,
        progress_bar=False,
        log_every_steps=1,
    )
    result = train_head(head, [tmp_path / "cache"], cfg)
    from flmm.train import read_log

    losses = [r["loss"] for r in read_log(str(tmp_path / "run")) if "loss" in r]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert (tmp_path / "run" / "head" / "model.safetensors").exists()
    assert result is not None
