"""A human-readable report of a scene (its language with the masks they point at), for ``flmm world show``."""

from __future__ import annotations

import numpy as np

from flmm.world.language import narrative
from flmm.world.qa import qa_items
from flmm.world.refer import referring_expressions
from flmm.world.scene import Scene, overlay, upscale


def report(scene: Scene) -> str:
    """Multi-line text: the things, the narrative with ``[bracketed]`` spans, referring expressions, QA."""
    lines = [
        f"stuff: top={scene.spec.stuff_top} bottom={scene.spec.stuff_bottom} horizon={scene.spec.horizon:g}"
    ]
    for k, (t, box) in enumerate(zip(scene.spec.things, scene.boxes())):
        area = int(scene.thing_masks[k].sum())
        lines.append(
            f"thing {k}: {t.label} center=({t.center[0]:.1f}, {t.center[1]:.1f}) box={box.tolist()} px={area}"
        )
    n = narrative(scene)
    marked, last = [], 0
    for s in n.segments:
        who = f"stuff {s.stuff_id}" if s.stuff_id is not None else "things " + ",".join(map(str, s.thing_ids))
        marked += [n.text[last : s.start], f"[{n.text[s.start : s.end]}]({who})"]
        last = s.end
    lines.append("narrative: " + "".join(marked) + n.text[last:])
    for r in referring_expressions(scene):
        lines.append(f"refer ({r.kind}): {r.text} -> things {','.join(map(str, r.thing_ids))}")
    for q in qa_items(scene):
        lines.append(f"qa ({q.kind}): {q.question} -> {q.answer}")
    return "\n".join(lines)


def side_by_side(scene: Scene, scale: int = 3) -> np.ndarray:
    """``(128*scale, 2*128*scale + scale, 3)`` uint8: the image and its mask overlay, a thin gap between."""
    gap = np.full((128 * scale, scale, 3), 255, dtype=np.uint8)
    return np.concatenate([upscale(scene.image, scale), gap, overlay(scene, scale=scale)], axis=1)
