"""What the feature cache saves at real scale: one training step of F-LMM on LLaVA-1.5-7B + SAM ViT-L,
with and without the cache, timed part by part on this machine.

    python -m benchmarks.cache_scale --json

A 7B model cannot run a whole epoch on a CPU, so every frozen model is timed on a few of its layers at
the real widths and sequence lengths (random weights, no_grad, fp32) and scaled by its layer count:

- LLaVA-1.5-7B language model: Llama layers of width 4096 / MLP 11008 / 32 heads on 576 image + 64 text
  tokens, x 32 layers;
- its CLIP ViT-L/14-336 tower: 577 tokens of width 1024, x 24 layers;
- SAM ViT-L's image encoder: 1024 px, 64x64 tokens of width 1024; 20 windowed + 4 global layers, plus
  its patch embedding and neck;
- the F-LMM head (decoder width 64, 64-px canvas, SAM ViT-L refiner) trained on one sample with 3
  objects (the paper's batch of 1 per GPU): forward, backward and AdamW step, timed whole;
- reading one cache record of those dimensions (``benchmarks.cache.llava_7b_record``) from disk.

``projected_speedup`` = (frozen models + head step) / (cache read + head step): the speed-up of every
epoch after the first. It is a projection from measured parts (layer stacks scale linearly with depth;
embedding lookups and the LM head are left out, which only lowers the uncached side), not a timed epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.cache import LLAVA_7B, llava_7b_record
from flmm.features import CacheWriter, FeatureCache
from flmm.head.config import HeadConfig
from flmm.head.model import FLMMHead
from flmm.lmm.types import LMMIdentity


def timed(fn, repeat: int) -> float:
    """Median wall time (s) of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def llama_layer_s(tokens: int, repeat: int) -> float:
    """Seconds of one LLaVA-1.5-7B (Llama-2-7B) decoder layer over ``tokens`` positions."""
    from transformers import LlamaConfig, LlamaModel

    cfg = LlamaConfig(
        vocab_size=64, hidden_size=4096, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=32
    )
    model = LlamaModel(cfg).eval()
    x = torch.randn(1, tokens, 4096)
    return timed(lambda: model(inputs_embeds=x), repeat) / 2


@torch.no_grad()
def clip_layer_s(repeat: int) -> float:
    """Seconds of one CLIP ViT-L/14-336 layer (577 tokens)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_attention_heads=16, image_size=336, patch_size=14
    )
    cfg.num_hidden_layers = 2
    model = CLIPVisionModel(cfg).eval()
    x = torch.randn(1, 3, 336, 336)
    return timed(lambda: model(pixel_values=x), repeat) / 2


@torch.no_grad()
def sam_encoder_s(repeat: int) -> dict[str, float]:
    """Seconds of SAM ViT-L's image encoder parts: patch embedding + neck, a windowed and a global layer."""
    from transformers import SamVisionConfig
    from transformers.models.sam.modeling_sam import SamVisionEncoder

    def encoder(global_idx: list[int], layers: int) -> float:
        cfg = SamVisionConfig(
            hidden_size=1024,
            num_hidden_layers=layers,
            num_attention_heads=16,
            mlp_dim=4096,
            global_attn_indexes=global_idx,
        )
        model = SamVisionEncoder(cfg).eval()
        x = torch.randn(1, 3, 1024, 1024)
        return timed(lambda: model(x), repeat)

    one_windowed = encoder([], 1)
    two_windowed = encoder([], 2)
    windowed_then_global = encoder([1], 2)
    w = two_windowed - one_windowed
    return {
        "embed_and_neck": max(0.0, one_windowed - w),
        "windowed_layer": w,
        "global_layer": windowed_then_global - one_windowed,
    }


def head_step_s(repeat: int) -> tuple[float, float]:
    """(head training step, cache read) seconds for one 7B-dims sample with 3 objects."""
    from transformers import SamConfig, SamModel, SamVisionConfig

    sam_cfg = SamConfig(
        vision_config=SamVisionConfig(hidden_size=1024, num_hidden_layers=1, num_attention_heads=16)
    )
    sam = SamModel(sam_cfg).eval()  # the refiner uses only its prompt encoder and mask decoder
    identity = LMMIdentity("llava-1.5-7b", "llava", LLAVA_7B.layers, LLAVA_7B.heads, LLAVA_7B.hidden)
    head = FLMMHead(HeadConfig.create(identity, sam, decoder_width=64, canvas_size=64), sam_model=sam)
    opt = torch.optim.AdamW(head.trainable_parameters(), lr=1e-4)
    with tempfile.TemporaryDirectory() as tmp:
        w = CacheWriter(Path(tmp) / "c", shard_size=1)
        w.add(llava_7b_record())
        w.close()
        cache = FeatureCache(Path(tmp) / "c")
        read = timed(lambda: cache.get("s"), repeat)
        rec = cache.get("s")

    def step() -> None:
        out = head([rec.to_query()])
        loss = head.compute_losses(out, [rec.masks], [rec.keyword_labels])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return timed(step, repeat), read


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=2, help="timed calls per part (median), after one warm-up")
    p.add_argument("--text-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    tokens = LLAVA_7B.grid**2 + args.text_tokens
    sam_parts = sam_encoder_s(args.repeat)
    parts = {
        "llm_32_layers_s": 32 * llama_layer_s(tokens, args.repeat),
        "clip_vit_l_24_layers_s": 24 * clip_layer_s(args.repeat),
        "sam_vit_l_encoder_s": sam_parts["embed_and_neck"]
        + 20 * sam_parts["windowed_layer"]
        + 4 * sam_parts["global_layer"],
    }
    head_s, read_s = head_step_s(args.repeat)
    frozen = sum(parts.values())
    res = {
        "threads": torch.get_num_threads(),
        "sequence_tokens": tokens,
        **parts,
        "sam_parts_s": sam_parts,
        "head_step_s": head_s,
        "cache_read_s": read_s,
        "uncached_step_s": frozen + head_s,
        "cached_step_s": read_s + head_s,
        "projected_speedup": (frozen + head_s) / (read_s + head_s),
    }
    print(
        f"LLaVA-1.5-7B + SAM ViT-L, one sample ({tokens} tokens, 3 objects), CPU x{res['threads']}:\n"
        f"  frozen models {frozen:7.1f} s (LM {parts['llm_32_layers_s']:.1f}, CLIP {parts['clip_vit_l_24_layers_s']:.1f}, "
        f"SAM encoder {parts['sam_vit_l_encoder_s']:.1f}) | head step {head_s:.2f} s | cache read {read_s * 1e3:.0f} ms\n"
        f"  step without cache {res['uncached_step_s']:.1f} s, with cache {res['cached_step_s']:.2f} s: "
        f"later epochs ~{res['projected_speedup']:.0f}x faster (projected from the measured parts)"
    )
    if args.json:
        print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
