"""``flmm serve``: the web demo (Gradio) on http://127.0.0.1:7860 by default.

flmm serve [--host 127.0.0.1] [--port 7860] [--model HEAD ...] [--max-upload-mb 20] [--max-megapixels 40]
"""

from __future__ import annotations

import argparse

from flmm.cli.ground import add_model_arguments, load_pipeline
from flmm.errors import InputError


def _run(args: argparse.Namespace) -> int:
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        raise InputError("--max-upload-mb and --max-megapixels must be positive")
    try:
        from flmm.demo.app import launch
    except ImportError as e:
        raise InputError(f"the web demo needs Gradio: pip install 'flmm[demo]' ({e})") from e
    pipe = load_pipeline(args)
    limits = {"max_bytes": int(args.max_upload_mb * 2**20), "max_pixels": int(args.max_megapixels * 1e6)}
    launch(pipe, args.host, args.port, backend_kwargs=limits)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the web demo (upload an image, chat, ground phrases)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest accepted upload (default 20 MB)")
    p.add_argument("--max-megapixels", type=float, default=40, help="largest accepted image (default 40 MP)")
    add_model_arguments(p)
    p.set_defaults(func=_run)
