"""Hyper-parameters of the F-LMM mask head, saved as ``config.json`` beside its weights.

The config also records the identity of the frozen LMM (layers x heads, hidden size, number of visual
grids) and of the SAM checkpoint the head was trained with, so that a checkpoint refuses to run on a
model it does not fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from flmm.errors import ConfigError
from flmm.lmm.part_check import PartCheck
from flmm.lmm.presence import PresenceCheck
from flmm.lmm.types import LMMIdentity

MERGE_MODES = ("mean", "max")
CONFIG_FORMAT = 1
# the U-Net halves the canvas three times, so the canvas side must divide by 2**3
CANVAS_MULTIPLE = 8


def _pick(cls: type, d: dict) -> dict:
    """Keep only the keys that are fields of dataclass ``cls`` (newer configs may carry more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


@dataclass
class SamIdentity:
    """What the head needs to know about the SAM it was trained with.

    Attributes:
        name: hub id or local path of the SamModel checkpoint (``""`` when unknown, e.g. a test model).
        prompt_width: hidden size of SAM's prompt encoder and mask decoder (256 for released SAMs).
        frame_size: side of SAM's square input frame in pixels (1024 for released SAMs).
        embedding_size: side of SAM's image embedding grid (64 for released SAMs).
        vision_hidden_size: hidden size of the vision encoder (768 base, 1024 large, 1280 huge).
        vision_num_layers: depth of the vision encoder (12 base, 24 large, 32 huge).
    """

    name: str
    prompt_width: int
    frame_size: int
    embedding_size: int
    vision_hidden_size: int
    vision_num_layers: int

    @classmethod
    def from_model(cls, sam_model: Any, name: str | None = None) -> SamIdentity:
        """Read the identity of a transformers ``SamModel`` from its config."""
        cfg = sam_model.config
        pe = cfg.prompt_encoder_config
        if name is None:
            name = str(getattr(sam_model, "name_or_path", "") or getattr(cfg, "_name_or_path", "") or "")
        return cls(
            name=name,
            prompt_width=int(pe.hidden_size),
            frame_size=int(pe.image_size),
            embedding_size=int(pe.image_embedding_size),
            vision_hidden_size=int(cfg.vision_config.hidden_size),
            vision_num_layers=int(cfg.vision_config.num_hidden_layers),
        )

    def describe(self) -> str:
        return (
            f"SAM {self.name or '<unnamed>'} (vision {self.vision_num_layers} layers x "
            f"{self.vision_hidden_size} wide, prompt width {self.prompt_width}, frame {self.frame_size} px, "
            f"embedding {self.embedding_size}x{self.embedding_size})"
        )

    def mismatch(self, other: SamIdentity) -> list[str]:
        """Architecture fields that differ (the name alone is not an architecture difference)."""
        keys = ("prompt_width", "frame_size", "embedding_size", "vision_hidden_size", "vision_num_layers")
        return [k for k in keys if getattr(self, k) != getattr(other, k)]


@dataclass
class LossWeights:
    """Weights of the loss terms (the paper uses 1 for the four mask terms; ``selector_bce`` applies only
    with ``HeadConfig.part_selector``)."""

    decoder_bce: float = 1.0
    decoder_dice: float = 1.0
    refiner_bce: float = 1.0
    refiner_dice: float = 1.0
    keyword_bce: float = 1.0
    selector_bce: float = 1.0


def describe_lmm(lmm: LMMIdentity) -> str:
    """One-line description used in error messages, e.g. ``'x' (32 layers x 32 heads = 1024 maps)``."""
    maps = lmm.num_layers * lmm.num_heads
    return (
        f"{lmm.name or '<unnamed>'!r} (family {lmm.family!r}, {lmm.num_layers} layers x {lmm.num_heads} heads "
        f"= {maps} attention maps per grid, {lmm.num_grids} grid(s), hidden size {lmm.hidden_size})"
    )


@dataclass
class HeadConfig:
    """Everything needed to rebuild an :class:`~flmm.head.model.FLMMHead`.

    Attributes:
        lmm: identity of the frozen LMM the head reads (M layers, N heads, d hidden, grids).
        sam: identity of the SAM used by the refiner; ``None`` when ``use_refiner`` is False.
        decoder_width: base width of the U-Net (64 -> 64/128/256/512 channels).
        decoder_cue_width: 0 (the paper) or the width of a language cue that conditions the U-Net: the
            phrase's hidden states (layer-mixed, projected, averaged over its tokens) modulate every
            U-Net stage, and coordinate channels join the maps (an flmm extension for phrases that pick
            a thing by its place; see :mod:`flmm.head.unet`).
        part_selector: False (the paper) or True: a learned step between the U-Net and the refiner keeps
            the parts of the U-Net's mask that the phrase asks for ("the LEFT-MOST square" of two
            squares; an flmm extension, see :mod:`flmm.head.selector`).
        part_threshold: the part selector keeps the parts it scores above this logit (the best one when
            none is); :func:`flmm.head.calibrate.calibrate_part_threshold` chooses it on held-out data.
        canvas_size: side of the square canvas the attention maps are resized (long side) and padded to.
        merge: how the maps of a multi-token phrase are combined: ``"mean"`` (paper) or ``"max"``.
        keyword_threshold: sigmoid score above which a token is a keyword.
        use_refiner: run the SAM-based refiner after the U-Net.
        mask_prompt, box_prompt, text_prompt: which prompts feed the refiner (paper: all three).
        loss_weights: weights of the loss terms.
        dice_smooth: additive smoothing of the Dice loss (numerator and denominator), in canvas cells.
        question: the user turn the head was trained with; the referring expression / caption to ground
            is teacher-forced as the assistant's answer to it (the paper's "Please give me a description
            of the image."). Grounding with another question shifts the attention the head reads.
        phrase_separator: how several referring expressions are joined into one answer (paper: "; ").
        presence: None (the paper) or a :class:`~flmm.lmm.presence.PresenceCheck`: the frozen LMM is
            asked whether each phrase given to ground is in the image, and a phrase's score becomes the
            smaller of the mask's and the LMM's yes-probability (an flmm extension: phrases that
            denote nothing get a low score instead of a confident mask on a look-alike).
        part_check: None or a :class:`~flmm.lmm.part_check.PartCheck` (needs ``part_selector`` and
            ``presence``): at inference each part of a mask is shown alone to the frozen LMM, asked the
            presence question, and the answer moves the part selector's choice (an flmm extension).
        format_version: version of this file layout.
    """

    lmm: LMMIdentity
    sam: SamIdentity | None = None
    decoder_width: int = 64
    decoder_cue_width: int = 0
    part_selector: bool = False
    part_threshold: float = 0.0
    canvas_size: int = 64
    merge: str = "mean"
    keyword_threshold: float = 0.3
    use_refiner: bool = True
    mask_prompt: bool = True
    box_prompt: bool = True
    text_prompt: bool = True
    loss_weights: LossWeights = field(default_factory=LossWeights)
    dice_smooth: float = 1.0
    question: str = "Please give me a description of the image."
    phrase_separator: str = "; "
    presence: PresenceCheck | None = None
    part_check: PartCheck | None = None
    format_version: int = CONFIG_FORMAT

    def __post_init__(self) -> None:
        # configs read back from JSON (or by huggingface_hub's mixin) carry plain dicts
        if isinstance(self.lmm, dict):
            self.lmm = LMMIdentity(**_pick(LMMIdentity, self.lmm))
        if isinstance(self.sam, dict):
            self.sam = SamIdentity(**_pick(SamIdentity, self.sam))
        if isinstance(self.presence, dict):
            self.presence = PresenceCheck(**_pick(PresenceCheck, self.presence))
        elif self.presence is not None and not isinstance(self.presence, PresenceCheck):
            raise ConfigError(
                f"HeadConfig.presence must be null or an object with a 'question', got {self.presence!r}"
            )
        if isinstance(self.part_check, dict):
            self.part_check = PartCheck(**_pick(PartCheck, self.part_check))
        elif self.part_check is not None and not isinstance(self.part_check, PartCheck):
            raise ConfigError(f"HeadConfig.part_check must be null or an object, got {self.part_check!r}")
        if isinstance(self.loss_weights, dict):
            self.loss_weights = LossWeights(**_pick(LossWeights, self.loss_weights))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` when a value is out of range."""
        lmm = self.lmm
        if not isinstance(lmm, LMMIdentity):
            raise ConfigError(f"HeadConfig.lmm must be an LMMIdentity, got {type(lmm).__name__}")
        for key in ("num_layers", "num_heads", "hidden_size", "num_grids"):
            if int(getattr(lmm, key)) < 1:
                raise ConfigError(f"HeadConfig.lmm.{key} must be >= 1, got {getattr(lmm, key)}")
        if self.merge not in MERGE_MODES:
            raise ConfigError(f"HeadConfig.merge must be one of {MERGE_MODES}, got {self.merge!r}")
        if self.canvas_size < CANVAS_MULTIPLE or self.canvas_size % CANVAS_MULTIPLE:
            raise ConfigError(
                f"HeadConfig.canvas_size must be a positive multiple of {CANVAS_MULTIPLE} "
                f"(the U-Net downsamples three times), got {self.canvas_size}"
            )
        if self.decoder_width < 1:
            raise ConfigError(f"HeadConfig.decoder_width must be >= 1, got {self.decoder_width}")
        if self.decoder_cue_width < 0:
            raise ConfigError(
                f"HeadConfig.decoder_cue_width must be >= 0 (0: off), got {self.decoder_cue_width}"
            )
        if not 0.0 < self.keyword_threshold < 1.0:
            raise ConfigError(
                f"HeadConfig.keyword_threshold must lie in (0, 1), got {self.keyword_threshold}"
            )
        if not math.isfinite(self.part_threshold):
            raise ConfigError(f"HeadConfig.part_threshold must be a finite logit, got {self.part_threshold}")
        if self.dice_smooth <= 0:
            raise ConfigError(f"HeadConfig.dice_smooth must be > 0, got {self.dice_smooth}")
        if any(w < 0 for w in asdict(self.loss_weights).values()):
            raise ConfigError(f"loss weights must be >= 0, got {asdict(self.loss_weights)}")
        if self.use_refiner and self.sam is None:
            raise ConfigError("HeadConfig.use_refiner is True but no SAM identity is given: pass sam=...")
        if self.part_check is not None and not (self.part_selector and self.presence is not None):
            raise ConfigError(
                "HeadConfig.part_check checks the part selector's parts with the presence question: "
                "it needs part_selector=True and a presence check"
            )
        if self.format_version > CONFIG_FORMAT:
            raise ConfigError(
                f"config format {self.format_version} is newer than this flmm understands ({CONFIG_FORMAT}): "
                "upgrade flmm"
            )

    @property
    def maps_per_grid(self) -> int:
        """M * N attention maps per visual grid."""
        return self.lmm.num_layers * self.lmm.num_heads

    @property
    def num_input_maps(self) -> int:
        """Input channels of the U-Net: num_grids * M * N."""
        return self.lmm.num_grids * self.maps_per_grid

    @classmethod
    def create(cls, lmm: LMMIdentity, sam_model: Any | None = None, **overrides: Any) -> HeadConfig:
        """Config for a head over ``lmm``; with ``sam_model`` (a transformers SamModel) the refiner is on."""
        sam = SamIdentity.from_model(sam_model) if sam_model is not None else None
        overrides.setdefault("use_refiner", sam is not None)
        return cls(lmm=lmm, sam=sam, **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HeadConfig:
        if not isinstance(d, dict) or "lmm" not in d:
            raise ConfigError("not an flmm head config: it has no 'lmm' entry")
        try:
            return cls(**_pick(cls, d))
        except TypeError as e:
            raise ConfigError(f"malformed flmm head config: {e}") from e

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> HeadConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read head config {path}: {e}") from e
        return cls.from_dict(d)
