"""Scene specifications of the shapes world: the vocabulary of attributes and the validated spec types.

Coordinates are image pixels (see :mod:`flmm.geometry`): x grows to the right, y grows downwards, pixel
(row i, col j) covers ``x in [j, j+1), y in [i, i+1)``. A thing's ``center`` is ``(x, y)`` in those
coordinates and must lie on the canvas ``[0, IMAGE_SIZE)``.

JSON form of a :class:`SceneSpec` (what ``flmm world render`` reads)::

    {"things": [{"shape": "circle", "color": "red", "size": "big", "center": [40.0, 90.5]}, ...],
     "stuff_top": "sky", "stuff_bottom": "grass", "horizon": 64.0, "seed": 0}

``horizon`` (default 64) and ``seed`` (default 0) may be omitted; every other key is required.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flmm.errors import InputError

IMAGE_SIZE = 128
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink")
SIZES: tuple[str, ...] = ("small", "big")
STUFF_TOP: tuple[str, ...] = ("sky", "wall")
STUFF_BOTTOM: tuple[str, ...] = ("grass", "sand", "water")
MAX_THINGS = 6
# The horizon must leave a band of each stuff (the wave adds up to ~4 px either way).
HORIZON_RANGE: tuple[float, float] = (24.0, 104.0)
DEFAULT_HORIZON = 64.0


def _check_choice(what: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"unknown {what} {value!r}; allowed values: {', '.join(allowed)}")
    return value


def _check_number(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def check_seed(seed: Any) -> int:
    """``seed`` as an int; :class:`InputError` unless it is a non-negative integer (numpy ints too)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class Thing:
    """One foreground object.

    Attributes:
        shape: one of :data:`SHAPES`.
        color: one of :data:`COLORS`.
        size: one of :data:`SIZES` (small things are ~14 px across, big ones ~30 px).
        center: ``(x, y)`` in pixels, inside ``[0, IMAGE_SIZE)``; the shape may extend off the canvas.
    """

    shape: str
    color: str
    size: str
    center: tuple[float, float]

    def __post_init__(self) -> None:
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("color", self.color, COLORS)
        _check_choice("size", self.size, SIZES)
        c = self.center
        if not isinstance(c, (tuple, list)) or len(c) != 2:
            raise InputError(f"thing center must be a pair (x, y) of pixels, got {c!r}")
        x, y = _check_number("center x", c[0]), _check_number("center y", c[1])
        if not (0.0 <= x < IMAGE_SIZE and 0.0 <= y < IMAGE_SIZE):
            raise InputError(
                f"thing center ({x:g}, {y:g}) lies outside the canvas; x and y must be in [0, {IMAGE_SIZE})"
            )
        # frozen dataclass: normalise lists / ints to a float tuple once, here
        object.__setattr__(self, "center", (x, y))

    @property
    def label(self) -> str:
        """``"big red circle"``: size, colour and shape words."""
        return f"{self.size} {self.color} {self.shape}"

    def to_json(self) -> dict:
        """``{"shape", "color", "size", "center": [x, y]}``."""
        return {"shape": self.shape, "color": self.color, "size": self.size, "center": list(self.center)}

    @classmethod
    def from_json(cls, d: Any) -> Thing:
        """Parse and validate one thing of the JSON form; :class:`InputError` naming any problem."""
        if not isinstance(d, dict):
            raise InputError(f"a thing must be a JSON object with shape, color, size, center; got {d!r}")
        _check_keys("thing", d, required=("shape", "color", "size", "center"), optional=())
        return cls(d["shape"], d["color"], d["size"], d["center"])


def _check_keys(what: str, d: dict, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    missing = [k for k in required if k not in d]
    if missing:
        raise InputError(f"{what} is missing key(s) {', '.join(missing)}; required: {', '.join(required)}")
    extra = sorted(set(d) - set(required) - set(optional))
    if extra:
        raise InputError(
            f"{what} has unknown key(s) {', '.join(map(str, extra))}; allowed: {', '.join(required + optional)}"
        )


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one scene, deterministically.

    Attributes:
        things: 1 to :data:`MAX_THINGS` things, drawn in order (later ones occlude earlier ones).
        stuff_top: background above the horizon, one of :data:`STUFF_TOP`.
        stuff_bottom: background below the horizon, one of :data:`STUFF_BOTTOM`.
        horizon: mean y (pixels) where the bottom stuff starts; the rendered line is slightly wavy
            (see :func:`flmm.world.textures.horizon_line`). Must be in :data:`HORIZON_RANGE`.
        seed: non-negative int seeding textures, noise and the horizon's wave.
    """

    things: tuple[Thing, ...]
    stuff_top: str
    stuff_bottom: str
    horizon: float = DEFAULT_HORIZON
    seed: int = 0

    def __post_init__(self) -> None:
        things = tuple(self.things) if isinstance(self.things, (list, tuple)) else None
        if things is None or not all(isinstance(t, Thing) for t in things):
            raise InputError("SceneSpec.things must be a sequence of Thing")
        if not 1 <= len(things) <= MAX_THINGS:
            raise InputError(f"a scene needs 1 to {MAX_THINGS} things, got {len(things)}")
        object.__setattr__(self, "things", things)
        for where, value, allowed, other in (
            ("top", self.stuff_top, STUFF_TOP, STUFF_BOTTOM),
            ("bottom", self.stuff_bottom, STUFF_BOTTOM, STUFF_TOP),
        ):
            if isinstance(value, str) and value in other:
                raise InputError(
                    f"stuff {value!r} cannot be at the {where}; {where} stuff must be one of {', '.join(allowed)}"
                )
            _check_choice(f"{where} stuff", value, allowed)
        horizon = _check_number("horizon", self.horizon)
        lo, hi = HORIZON_RANGE
        if not lo <= horizon <= hi:
            raise InputError(
                f"horizon {horizon:g} must be in [{lo:g}, {hi:g}] so that both stuff regions show"
            )
        object.__setattr__(self, "horizon", horizon)
        object.__setattr__(self, "seed", check_seed(self.seed))

    def to_json(self) -> dict:
        """The JSON-serialisable dict described in the module docstring."""
        return {
            "things": [t.to_json() for t in self.things],
            "stuff_top": self.stuff_top,
            "stuff_bottom": self.stuff_bottom,
            "horizon": self.horizon,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, d: Any) -> SceneSpec:
        """Parse and validate a dict in the JSON form; raises :class:`InputError` naming any problem."""
        if not isinstance(d, dict):
            raise InputError(f"a scene spec must be a JSON object, got {type(d).__name__}")
        _check_keys(
            "scene spec", d, required=("things", "stuff_top", "stuff_bottom"), optional=("horizon", "seed")
        )
        if not isinstance(d["things"], list):
            raise InputError("scene spec 'things' must be a list of thing objects")
        things = tuple(Thing.from_json(t) for t in d["things"])
        return cls(
            things,
            d["stuff_top"],
            d["stuff_bottom"],
            d.get("horizon", DEFAULT_HORIZON),
            d.get("seed", 0),
        )


def load_spec(path: str | Path) -> SceneSpec:
    """Read a :class:`SceneSpec` from a JSON file; :class:`InputError` if unreadable or invalid."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"cannot read scene file {str(path)!r}: {e.strerror or e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"scene file {str(path)!r} is not valid JSON: {e}") from e
    return SceneSpec.from_json(data)


def save_spec(spec: SceneSpec, path: str | Path) -> None:
    """Write ``spec.to_json()`` to ``path`` (indented JSON)."""
    try:
        Path(path).write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    except OSError as e:
        raise InputError(f"cannot write scene file {str(path)!r}: {e.strerror or e}") from e
