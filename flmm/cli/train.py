"""``flmm train CONFIG [--resume]``: cache the frozen LMM's features, then train the head."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("train", help="train an F-LMM head from a recipe JSON (see configs/)")
    p.add_argument("config")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from flmm.recipes.run import main

    return main([args.config] + (["--resume"] if args.resume else []))
