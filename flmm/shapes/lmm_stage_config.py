"""The settings of the shapes-world LMM stage (:mod:`flmm.shapes.train_lmm`), saved as ``stage_config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from flmm.errors import ConfigError
from flmm.shapes.lmm import ShapesLMMConfig
from flmm.shapes.lmm_data import ChatDataConfig
from flmm.shapes.text_pretrain import TextPretrainConfig
from flmm.shapes.vision_warmup import VisionWarmupConfig, shipped_warmup
from flmm.train import TrainConfig

#: the phases of :func:`flmm.shapes.train_lmm.train_lmm` in order (``stop_after="lmm"``, the default,
#: runs them all)
PHASES = ("vision", "text", "align", "lmm")

#: transformers attention implementations the stage may train with (LMMStageConfig.attention)
ATTENTIONS = ("eager", "sdpa")


@dataclass
class LMMStageConfig:
    """Stage-1 settings (saved as ``stage_config.json`` in the run folder); the defaults are the shipped run
    (its own file ships as ``flmm/assets/shapes/lmm/stage_config.json``).

    Attributes:
        model: sizes of the tiny LMM.
        data: conversation mix.
        train: the loop's config (``train.output_dir`` is the run folder).
        train_scenes: training conversations (one scene each, seeds ``split_seeds("train", n)``).
        eval_scenes / probe_scenes: ``val`` scenes for QA accuracy / the grounding probe.
        init_seed: model initialisation seed.
        export_dtype: ``"float16"`` or ``"float32"`` weights in the exported folder.
        threads: torch intra-op threads (0: torch's default).
        concept_weight: weight of the image-level caption-concept loss (0: off); see
            :mod:`flmm.shapes.concepts`.
        address_weight: weight of a token-address loss on the projected visual tokens (0: off, the
            shipped); see :class:`flmm.shapes.relations.TokenAddress`.
        vision: the vision tower's warm-up on caption words before the LMM stage (no phases: off,
            ``--vision-phases "" --vision-steps ""`` on the command line); see
            :mod:`flmm.shapes.vision_warmup`.
        freeze_vision: keep the vision tower fixed in the LMM stage (as LLaVA does with its CLIP tower);
            without it the LM's loss rewrites the warmed-up tower (measured: docs/training-log.md).
        text: a text-only phase of the language model on scenes told in words, after the vision
            warm-up and before the multimodal stage (``steps=0``: off); see
            :mod:`flmm.shapes.text_pretrain`.
        align_steps: steps of a projector-only phase (language model frozen, LLaVA's first stage) on
            the LMM stage's conversations, after the text phase (0: off; the shipped run ``ddp2``: 900); see
            :mod:`flmm.shapes.align`.
        attention: transformers' attention implementation of the Llama while training, ``"eager"`` or
            ``"sdpa"`` (the same computation: eager trains it 1.06x / 1.42x faster in the LMM stage /
            text phase on a 2-core CPU, ``python -m benchmarks.train_attention``; the shipped run
            ``ddp2`` used eager, ``t1MA9`` before it sdpa). The vision tower keeps sdpa (eager gained
            nothing there). The exported model does not keep it: it loads with sdpa.
    """

    model: ShapesLMMConfig = field(default_factory=ShapesLMMConfig)
    data: ChatDataConfig = field(
        default_factory=lambda: ChatDataConfig(p_caption=0.25, p_packed=0.5, p_simple=0.25)
    )
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            output_dir="runs/shapes_lmm",
            max_steps=1200,
            batch_size=16,
            lr=1e-3,
            mixed_precision="auto",  # bf16 where native (the shipped run), else fp32
            save_every_steps=250,
            eval_every_steps=600,
            log_every_steps=25,
            num_workers=1,  # renders the next batch beside the step: 1.31x faster (docs/benchmarks.md)
        )
    )
    train_scenes: int = 60_000
    eval_scenes: int = 120
    probe_scenes: int = 16
    init_seed: int = 0
    export_dtype: str = "float16"
    threads: int = 0
    concept_weight: float = 1.0
    address_weight: float = 0.0
    vision: VisionWarmupConfig = field(default_factory=shipped_warmup)
    freeze_vision: bool = True
    text: TextPretrainConfig = field(default_factory=lambda: TextPretrainConfig(steps=800))
    align_steps: int = 900
    attention: str = "eager"

    def __post_init__(self) -> None:
        if self.align_steps < 0:
            raise ConfigError(f"align_steps must be >= 0, got {self.align_steps}")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")

    def to_dict(self) -> dict:
        return asdict(self)
