"""What the frozen-LMM feature cache saves: head-training epochs with and without it, and its size.

    python -m benchmarks.cache --json

On the shapes world (the shipped tiny LMM if present, else a random LMM of the same architecture and
size), one epoch over ``--samples`` referring-narrative samples is timed three ways with the same head
and the same loss code:

- ``uncached``: every step runs the frozen LMM (and SAM's encoder) on the batch, as the reference code
  does at every step of every epoch;
- ``build``: the one-off cache build (LMM + SAM encoder once per sample, written to disk);
- ``cached``: an epoch read from the cache (no LMM forward).

``later_epoch_speedup`` = uncached / cached epoch time. It also writes one cache record with
LLaVA-1.5-7B + SAM ViT-L dimensions (32 layers x 32 heads, 24x24 grid, d = 4096, 256x64x64 SAM
embedding) with random values and reports its bytes per sample.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from flmm.data.shapes import ShapesRefNarratives
from flmm.features import CachedSample, CacheWriter, FeatureCache, build_cache, cached_sample
from flmm.geometry import GridGeometry
from flmm.head.config import HeadConfig
from flmm.head.model import FLMMHead
from flmm.head.types import ObjectFeatures
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation


def shapes_lmm() -> tuple[FrozenLMM, object, str]:
    """The shipped shapes LMM + SAM, or random ones of the same architecture."""
    from transformers import SamModel

    from flmm.assets_path import resolve

    try:
        lmm = FrozenLMM.from_pretrained(resolve("flmm:shapes/lmm"))
        sam = SamModel.from_pretrained(resolve("flmm:shapes/sam"))
        return lmm, sam.eval(), "shipped"
    except Exception:  # noqa: BLE001 (fall back to same-size random models)
        from flmm.head.tiny import tiny_sam_model
        from flmm.shapes.lmm import ShapesLMMConfig, build_lmm

        model, proc = build_lmm(ShapesLMMConfig())
        return FrozenLMM(model, proc, name="random-shapes-lmm"), tiny_sam_model(128, 8, 64), "random"


def train_epoch(head: FLMMHead, batches, make_queries) -> float:
    """One epoch of head training; ``make_queries(batch) -> (queries, masks, labels)``."""
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=1e-4)
    t0 = time.perf_counter()
    for batch in batches:
        queries, masks, labels = make_queries(batch)
        loss = head.compute_losses(head(queries), masks, labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Llava7BDims:
    """LLaVA-1.5-7B + SAM ViT-L sizes used by the cache benchmarks."""

    layers: int = 32
    heads: int = 32
    hidden: int = 4096
    grid: int = 24
    image_hw: tuple[int, int] = (480, 640)
    sam_channels: int = 256
    sam_side: int = 64


LLAVA_7B = Llava7BDims()


def llava_7b_record(objects: int = 3, tokens_per_object: int = 4, answer_tokens: int = 30) -> CachedSample:
    """One cache record with LLaVA-1.5-7B + SAM ViT-L dimensions and random values: per object maps
    ``(1, 32, 32, 24, 24)`` and states ``(T_obj, 32, 4096)``, a 480x640 image (its 336-px square crop as the
    grid's box, xyxy pixels), answer states ``(30, 4096)`` and a ``(1, 256, 64, 64)`` SAM embedding."""
    m, n, d, g, hw = LLAVA_7B.layers, LLAVA_7B.heads, LLAVA_7B.hidden, LLAVA_7B.grid, LLAVA_7B.image_hw
    geom = GridGeometry((g, g), (0.0, -80.0, 640.0, 560.0), hw)
    objs = [
        ObjectFeatures([torch.rand(1, m, n, g, g)], torch.randn(tokens_per_object, m, d))
        for _ in range(objects)
    ]
    emb = torch.randn(1, LLAVA_7B.sam_channels, LLAVA_7B.sam_side, LLAVA_7B.sam_side)
    return CachedSample(
        "s",
        [geom],
        objs,
        torch.rand(objects, *hw) > 0.5,
        torch.randn(answer_tokens, d),
        torch.zeros(answer_tokens),
        emb,
    )


def llava_7b_bytes(tmp: Path, objects: int = 3) -> dict:
    """Bytes of one cache record at LLaVA-1.5-7B + SAM ViT-L dimensions (random values)."""
    sample = llava_7b_record(objects)
    sizes = {}
    for name, emb in (("with_sam_embedding", True), ("without_sam_embedding", False)):
        root = tmp / name
        w = CacheWriter(root, shard_size=1)
        w.add(sample if emb else CachedSample(**{**sample.__dict__, "image_embedding": None}))
        w.close()
        sizes[name] = sum(p.stat().st_size for p in root.glob("shard-*"))
    g = LLAVA_7B.grid
    return {
        "objects": objects,
        "tokens_per_object": int(sample.objects[0].hidden_states.shape[0]),
        "answer_tokens": int(sample.keyword_hidden.shape[0]),
        "maps_bytes_per_object": LLAVA_7B.layers * LLAVA_7B.heads * g * g * 2,
        **{f"bytes_{k}": v for k, v in sizes.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=96, help="samples per epoch")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    lmm, sam, which = shapes_lmm()
    # the shipped head's sizes (U-Net width and canvas), so the epoch costs what the shapes recipe costs
    head = FLMMHead(HeadConfig.create(lmm.identity, sam, decoder_width=16, canvas_size=32), sam_model=sam)
    data = ShapesRefNarratives("train", args.samples)
    samples = [data[i] for i in range(min(args.samples, len(data)))]
    batches = [samples[i : i + args.batch_size] for i in range(0, len(samples), args.batch_size)]

    def live(batch):
        images = [s.load_image() for s in batch]
        caps = lmm.capture_batch(images, [conversation(s.question, s.answer) for s in batch])
        recs = [cached_sample(s, c, "mean", head.embed_image(im)) for s, c, im in zip(batch, caps, images)]
        return [r.to_query() for r in recs], [r.masks for r in recs], [r.keyword_labels for r in recs]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cache"
        t_uncached = train_epoch(head, batches, live)
        t0 = time.perf_counter()
        build_cache(
            lmm,
            samples,
            root,
            "mean",
            head.embed_image,
            batch_size=args.batch_size,
            rank=0,
            world_size=1,
            progress=False,
        )
        t_build = time.perf_counter() - t0
        cache = FeatureCache(root)
        ids = [[s.sample_id for s in b] for b in batches]

        def cached(batch_ids):
            recs = [cache.get(i) for i in batch_ids]
            return [r.to_query() for r in recs], [r.masks for r in recs], [r.keyword_labels for r in recs]

        t_cached = train_epoch(head, ids, cached)
        disk = sum(f.stat().st_size for f in root.glob("shard-*"))
        big = llava_7b_bytes(Path(tmp))
    res = {
        "lmm": which,
        "samples": len(samples),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "uncached_epoch_s": t_uncached,
        "cache_build_s": t_build,
        "cached_epoch_s": t_cached,
        "later_epoch_speedup": t_uncached / t_cached,
        "shapes_bytes_per_sample": disk / len(samples),
        "llava_1_5_7b": big,
    }
    print(f"shapes world ({which} LMM), {len(samples)} samples, batch {args.batch_size}:")
    print(
        f"  epoch without cache {t_uncached:7.2f} s | cache build {t_build:7.2f} s | epoch from cache "
        f"{t_cached:7.2f} s | later epochs {res['later_epoch_speedup']:.1f}x faster"
    )
    print(
        f"  cache size {res['shapes_bytes_per_sample'] / 1024:.1f} KiB/sample on the shapes world; LLaVA-1.5-7B "
        f"dims: {big['bytes_with_sam_embedding'] / 2**20:.2f} MiB/sample with the SAM ViT-L embedding, "
        f"{big['bytes_without_sam_embedding'] / 2**20:.2f} MiB without ({big['objects']} objects)"
    )
    if args.json:
        print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
