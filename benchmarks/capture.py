"""Cost of capturing word->image attention: plain SDPA vs flmm capture vs eager ``output_attentions``.

    python -m benchmarks.capture --json

A random mid-size Llama decoder (default 8 layers, hidden 1024, 8 heads of 128 dims as in LLaMA) runs on sequences laid out
like LLaVA-1.5 (576 image tokens + 64 text, ~640) and LLaVA-NeXT (2880 image tokens + 64 text,
~2900). ``S`` text tokens (default 32) are captured. Times are medians of interleaved repeats (the
three modes alternate, so machine load drifts hit all of them alike). Peak memory per mode
is weights + the peak of the tensors the forward allocates (CUDA: ``max_memory_allocated``; CPU: the
profiler's memory timeline). The extra memory of capture is essentially the captured maps themselves,
``layers * heads * S * image_tokens * 4`` bytes, reported as ``captured_maps_mb``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import LlamaConfig, LlamaForCausalLM

from flmm.lmm.capture import ATTN_IMPLEMENTATION, capture

MODES = ("plain", "capture", "eager")


def build(layers: int, hidden: int, heads: int, device: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=1000,
        hidden_size=hidden,
        intermediate_size=int(hidden * 2.6875),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=8192,
    )
    return LlamaForCausalLM(cfg).eval().to(device)


def run_once(model, mode: str, embeds: torch.Tensor, n_img: int, n_sel: int) -> None:
    """One forward in ``mode`` (``plain`` | ``capture`` | ``eager``)."""
    cfg = model.config
    length = embeds.shape[1]
    with torch.inference_mode():
        if mode == "plain":
            cfg._attn_implementation_internal = "sdpa"
            model(inputs_embeds=embeds, use_cache=False)
        elif mode == "eager":
            cfg._attn_implementation_internal = "eager"
            out = model(inputs_embeds=embeds, use_cache=False, output_attentions=True)
            # what the reference does with them: slice the rows of the text tokens over the image keys
            [a[:, :, length - n_sel :, :n_img].float() for a in out.attentions]
        else:
            cfg._attn_implementation_internal = ATTN_IMPLEMENTATION
            inner = model.model
            key_index = torch.arange(n_img, device=embeds.device)[None]
            positions = torch.arange(length - n_sel, length, device=embeds.device)[None]
            with capture(
                list(inner.layers), [ly.self_attn for ly in inner.layers], inner.norm, key_index, positions
            ) as st:
                model(inputs_embeds=embeds, use_cache=False)
            st.stack()


def measure_memory(model, mode: str, embeds: torch.Tensor, n_img: int, n_sel: int) -> float:
    """Peak memory (MB) one forward in ``mode`` needs: weights + the peak of tensors it allocates.

    On CUDA: ``max_memory_allocated``. On CPU: torch's profiler memory timeline (every tensor
    allocation and free, replayed to find the peak) -- exact and deterministic, unlike process RSS.
    """
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    run_once(model, mode, embeds, n_img, n_sel)  # warm-up
    if embeds.is_cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(model, mode, embeds, n_img, n_sel)
        return weights + (torch.cuda.max_memory_allocated() - base) / 2**20
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        run_once(model, mode, embeds, n_img, n_sel)
    cur = peak = 0
    for _t, action, _key, size in prof._memory_profile().timeline:
        if action.name == "CREATE":
            cur += size
        elif action.name == "DESTROY":
            cur -= size
        peak = max(peak, cur)
    return weights + peak / 2**20


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print a JSON object after the table")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--select", type=int, default=32, help="text tokens whose rows are captured")
    p.add_argument("--image-tokens", type=int, nargs="+", default=[576, 2880])
    p.add_argument("--text-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="ratios from wall time, or from process CPU time (robust on a shared machine; use with --threads 1)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build(args.layers, args.hidden, args.heads, args.device)
    results: dict = {
        "config": {k: getattr(args, k) for k in ("layers", "hidden", "heads", "select", "device")}
    }
    rows = []
    for n_img in args.image_tokens:
        length = n_img + args.text_tokens
        embeds = torch.randn(1, length, args.hidden, device=args.device)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        for m in MODES:  # warm-up
            run_once(model, m, embeds, n_img, args.select)
        for _ in range(args.repeats):
            for m in MODES:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                run_once(model, m, embeds, n_img, args.select)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[m].append(time.perf_counter() - t0)
                cpu[m].append(time.process_time() - c0)
        wall = {m: statistics.median(v) for m, v in times.items()}
        cpu_med = {m: statistics.median(v) for m, v in cpu.items()}
        # on a shared CPU, process CPU time is the work done; wall time also counts waiting for cores
        med = cpu_med if args.clock == "cpu" else wall
        mem = {m: measure_memory(model, m, embeds, n_img, args.select) for m in MODES}
        maps_mb = args.layers * args.heads * args.select * n_img * 4 / 2**20
        r = {
            "seq_len": length,
            "clock": args.clock,
            "time_s": med,
            "wall_s": wall,
            "cpu_s": cpu_med,
            "peak_mb": mem,
            "capture_over_plain_time": med["capture"] / med["plain"],
            "capture_extra_memory_frac": (mem["capture"] - mem["plain"]) / mem["plain"],
            "eager_over_capture_time": med["eager"] / med["capture"],
            "eager_over_capture_memory": mem["eager"] / mem["capture"],
            "captured_maps_mb": maps_mb,
        }
        results[str(length)] = r
        rows.append(r)
    print(
        f"{'seq':>6} | {'plain s':>8} {'capture s':>9} {'eager s':>8} | {'cap/plain':>9} {'eager/cap':>9} | "
        f"{'plain MB':>8} {'capture MB':>10} {'eager MB':>8} {'extra mem':>9}"
    )
    for r in rows:
        t, mm = r["time_s"], r["peak_mb"]
        print(
            f"{r['seq_len']:>6} | {t['plain']:8.3f} {t['capture']:9.3f} {t['eager']:8.3f} | "
            f"{r['capture_over_plain_time']:9.3f} {r['eager_over_capture_time']:9.2f} | "
            f"{mm['plain']:8.1f} {mm['capture']:10.1f} {mm['eager']:8.1f} {100 * r['capture_extra_memory_frac']:8.2f}%"
        )
    if args.json:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
