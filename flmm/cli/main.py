"""``flmm`` command: dispatches to one module per sub-command.

Each module in :data:`COMMANDS` defines ``register(subparsers)`` which adds its parser and sets
``func`` (called with the parsed namespace, returns an exit code). Modules are imported lazily so that
``flmm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from flmm.errors import FlmmError

# sub-command name -> module path (one line per command)
COMMANDS: dict[str, str] = {
    "world": "flmm.cli.world",
    "ground": "flmm.cli.ground",
    "chat": "flmm.cli.chat",
    "serve": "flmm.cli.serve",
    "train": "flmm.cli.train",
    "eval": "flmm.cli.eval",
    "compare": "flmm.cli.compare",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flmm", description="Pixel grounding for frozen LMMs (F-LMM).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FlmmError as e:
        print(f"flmm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
