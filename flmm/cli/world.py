"""``flmm world``: render, sample and look at shapes-world scenes (see :mod:`flmm.world`).

flmm world render SCENE.json --out scene.png [--masks masks.npz] [--overlay overlay.png]
flmm world sample --seed N --out scene.png [--json scene.json] [--masks masks.npz] [--overlay ov.png]
flmm world show (SCENE.json | --seed N) --out view.png      # image | masks, and all its language
"""

from __future__ import annotations

import argparse

from flmm.errors import InputError


def _add_outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="PNG image to write (128x128 unless --scale)")
    p.add_argument("--masks", help="npz to write: things (K,H,W) bool, stuff (2,H,W) bool, labels, boxes")
    p.add_argument("--overlay", help="PNG to write with every mask tinted over the image")
    p.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling of the PNGs (default 1)")


def _write(scene, args: argparse.Namespace) -> None:
    from flmm.world import overlay, save_image, save_masks

    save_image(scene.image, args.out, args.scale)
    if args.masks:
        save_masks(scene, args.masks)
    if args.overlay:
        save_image(overlay(scene, scale=args.scale), args.overlay)


def _render(args: argparse.Namespace) -> int:
    from flmm.world import render
    from flmm.world.spec import load_spec

    _write(render(load_spec(args.scene)), args)
    return 0


def _sample(args: argparse.Namespace) -> int:
    from flmm.world import sample_scene
    from flmm.world.spec import save_spec

    scene = sample_scene(args.seed)
    _write(scene, args)
    if args.json:
        save_spec(scene.spec, args.json)
    return 0


def _show(args: argparse.Namespace) -> int:
    from flmm.world import render, sample_scene, save_image
    from flmm.world.report import report, side_by_side
    from flmm.world.spec import load_spec

    if (args.scene is None) == (args.seed is None):
        raise InputError("give exactly one of SCENE.json or --seed N")
    scene = render(load_spec(args.scene)) if args.scene else sample_scene(args.seed)
    save_image(side_by_side(scene, args.scale), args.out)
    print(report(scene))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("world", help="procedural shapes world: scenes, masks and language")
    sub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)

    r = sub.add_parser("render", help="render a scene spec (JSON) to an image and masks")
    r.add_argument("scene", help="scene spec JSON (see flmm.world.spec)")
    _add_outputs(r)
    r.set_defaults(func=_render)

    s = sub.add_parser("sample", help="sample a random scene by seed")
    s.add_argument(
        "--seed", type=int, required=True, help="non-negative int (splits: see flmm.world.split_seeds)"
    )
    s.add_argument("--json", help="write the sampled scene spec here (re-renderable with 'world render')")
    _add_outputs(s)
    s.set_defaults(func=_sample)

    v = sub.add_parser("show", help="write image | mask overlay side by side and print the scene's language")
    v.add_argument("scene", nargs="?", help="scene spec JSON (or use --seed)")
    v.add_argument("--seed", type=int, help="sample the scene with this seed instead")
    v.add_argument("--out", required=True, help="PNG to write")
    v.add_argument("--scale", type=int, default=3, help="upscaling (default 3)")
    v.set_defaults(func=_show)
