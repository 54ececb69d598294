"""``flmm ground``: segment referring expressions on an image.

flmm ground IMAGE "the red circle" ["the blue square" ...] [--out overlay.png] [--json]
           [--masks-out masks.npz] [--model HEAD] [--lmm ID] [--sam ID] [--device cpu] [--min-score 0.5]

Several expressions are grounded together (one object each). ``--json`` prints phrases, boxes (xyxy
pixels) and scores; ``--masks-out`` writes the ``(K, H, W)`` masks at the image's size.
Also holds the model options shared by ``flmm chat`` and ``flmm serve``.
"""

from __future__ import annotations

import argparse
import json

from flmm.pipeline.types import DEFAULT_MIN_SCORE


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The options that choose and place the model (shared by ground, chat and serve)."""
    g = p.add_argument_group("model (default: the shipped shapes-world model)")
    g.add_argument("--model", metavar="HEAD", help="trained mask head: folder or hub repo id")
    g.add_argument("--lmm", metavar="ID", help="the frozen LMM (default: the one the head was trained on)")
    g.add_argument("--sam", metavar="ID", help="the SAM checkpoint (default: the one the head names)")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="LMM dtype (default float32)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow the LMM's own code from the hub")
    g.add_argument(
        "--method", default="f-lmm", help="grounding method: f-lmm (default) or attend-and-segment"
    )
    g.add_argument(
        "--min-score",
        type=float,
        default=DEFAULT_MIN_SCORE,
        help=f"masks scoring below this are emptied (scores are still printed; default {DEFAULT_MIN_SCORE})",
    )
    g.add_argument("--max-new-tokens", type=int, default=128, help="answer length limit (default 128)")


def load_pipeline(args: argparse.Namespace):
    """The :class:`GroundingPipeline` the model options describe."""
    from flmm.pipeline import GroundingPipeline

    return GroundingPipeline.from_pretrained(
        args.model,
        lmm=args.lmm,
        sam=args.sam,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        method=args.method,
        min_score=args.min_score,
        max_new_tokens=args.max_new_tokens,
    )


def _run(args: argparse.Namespace) -> int:
    from flmm.image import load_image
    from flmm.viz import draw_grounding, save_png

    image = load_image(args.image)  # fail on a bad image before loading the model
    pipe = load_pipeline(args)
    pipe.set_image(image)
    g = pipe.ground(args.expressions)
    if args.json:
        print(json.dumps(g.to_dict(), indent=2))
    else:
        for obj in g.to_dict()["objects"]:
            note = "" if obj["kept"] else f"  (below {g.min_score:.2f}: no mask)"
            if "presence" in obj:  # the LMM's own answer to "is it there?" caps the score
                note = f"  LMM says there: {obj['presence']:.3f}{note}"
            print(f"{obj['phrase']}: score {obj['score']:.3f} box {obj['box']} area {obj['area']} px{note}")
    if args.masks_out:
        g.save_masks(args.masks_out)
    if args.out:
        save_png(draw_grounding(image, g, scale=args.scale), args.out)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("ground", help="segment referring expressions on an image")
    p.add_argument("image", help="image file (PNG, JPEG, WebP, ...)")
    p.add_argument("expressions", nargs="+", metavar="EXPR", help="referring expression(s), one object each")
    p.add_argument("--out", help="PNG to write: the masks over the image, with boxes and a legend")
    p.add_argument(
        "--json", action="store_true", help="print phrases, boxes (xyxy pixels) and scores as JSON"
    )
    p.add_argument(
        "--masks-out", help="npz to write: masks (K,H,W) bool, boxes, scores, kept, phrases, spans"
    )
    p.add_argument(
        "--scale",
        type=int,
        default=0,
        help="integer upscaling of the overlay (default 0: automatic, small images to >= 384 px)",
    )
    add_model_arguments(p)
    p.set_defaults(func=_run)
