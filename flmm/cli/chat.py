"""``flmm chat``: talk about an image; answers stream as they are generated.

flmm chat IMAGE "What is left of the star?"     # one question, then exit
flmm chat IMAGE                                 # interactive: one question per line, /reset, /quit
flmm chat IMAGE "..." --ground [--out overlay.png]   # also print grounded phrases and write an overlay
"""

from __future__ import annotations

import argparse
import sys

from flmm.cli.ground import add_model_arguments, load_pipeline
from flmm.errors import InputError

QUIT = {"/quit", "/exit", "quit", "exit"}


def _turn(pipe, image, question: str, history, args: argparse.Namespace):
    def write(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    result = pipe.chat(question, ground=args.ground, history=history, stream=write)
    sys.stdout.write("\n")
    if args.ground and result.grounding is not None:
        from flmm.viz import draw_grounding, save_png

        g = result.grounding
        if not len(g):
            print("[no phrase grounded]")
        for obj in g.to_dict()["objects"]:
            note = "" if obj["kept"] else f" (below {g.min_score:.2f}: no mask)"
            print(f"[{obj['phrase']}] score {obj['score']:.3f} box {obj['box']}{note}")
        save_png(draw_grounding(image, g, scale=args.scale), args.out)
        print(f"[overlay: {args.out}]")
    sys.stdout.flush()
    return result.history


def _run(args: argparse.Namespace) -> int:
    from flmm.image import load_image

    image = load_image(args.image)
    pipe = load_pipeline(args)
    pipe.set_image(image)
    if args.question is not None:
        _turn(pipe, image, args.question, None, args)
        return 0
    history: list = []
    print("Ask about the image; /reset forgets the conversation, /quit (or Ctrl-D) ends.", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        q = line.strip()
        if q in QUIT:
            return 0
        if q == "/reset":
            history = []
            continue
        if not q:
            continue
        try:
            history = _turn(pipe, image, q, history, args)
        except InputError as e:  # a bad line should not end the session
            print(f"flmm: {e}", file=sys.stderr)


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="chat about an image (streamed; --ground to ground the answers)")
    p.add_argument("image", help="image file (PNG, JPEG, WebP, ...)")
    p.add_argument("question", nargs="?", help="ask this one question and exit (default: interactive)")
    p.add_argument("--ground", action="store_true", help="print the answer's grounded phrases, write --out")
    p.add_argument("--out", default="chat_overlay.png", help="overlay PNG written with --ground")
    p.add_argument(
        "--scale",
        type=int,
        default=0,
        help="integer upscaling of the overlay (default 0: automatic, small images to >= 384 px)",
    )
    add_model_arguments(p)
    p.set_defaults(func=_run)
