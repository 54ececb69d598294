"""Stage 1 of the shapes-world defaults: pre-train the tiny LMM on captions and QA (no grounding data).

Everything is trained from scratch. First the vision tower warms up on the caption words of single-thing
scenes, then of whole scenes (:mod:`flmm.shapes.vision_warmup`, ``<out>/vision/``); then the Llama
alone reads scenes told in words and answers about them (:mod:`flmm.shapes.text_pretrain`,
``<out>/text/``); then the tower is frozen (as LLaVA keeps its CLIP tower), the projector alone learns
captions and QA on images with the Llama frozen (:mod:`flmm.shapes.align`, ``<out>/align/``), and then
the projector and the Llama learn them together. The whole LMM is frozen later, by F-LMM.
The run folder gets the training config, a JSONL log, checkpoints (resumable) and, at the end, the
Hugging Face folder ``<out>/hf`` plus ``<out>/eval.json`` (QA accuracy and the grounding probe on
held-out ``val`` scenes).

    python -m flmm.shapes.train_lmm --out runs/shapes_lmm   # the shipped settings are the defaults
"""

from __future__ import annotations

import os

# Must precede the first torch import: on a shared CPU, OpenMP threads that spin-wait make 2 threads
# ~10x slower than 1 (measured on the 2-core box); passive waiting avoids it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field, replace  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from flmm.errors import ConfigError  # noqa: E402
from flmm.shapes.align import align_projector  # noqa: E402
from flmm.shapes.lmm import ShapesLMMConfig, build_lmm, save_lmm, set_language_attention  # noqa: E402
from flmm.shapes.lmm_data import ChatCollator, ChatDataConfig, ShapesChatDataset  # noqa: E402
from flmm.shapes.lmm_eval import grounding_probe, qa_accuracy  # noqa: E402
from flmm.shapes.lmm_objective import CausalLMObjective  # noqa: E402
from flmm.shapes.stage import (  # noqa: E402
    add_loop_args,
    finish_run,
    folder_size_mb,
    loop_config,
    main_process_alone,
    split_batch,
    start_run,
    train_timed,
)
from flmm.shapes.text_pretrain import TextPretrainConfig, pretrain_text  # noqa: E402
from flmm.shapes.vision_warmup import (
    PLACEMENTS,
    WORD_POOLS,
    VisionWarmupConfig,
    shipped_warmup,
    warm_up_vision,
)  # noqa: E402
from flmm.train import TrainConfig, Trainer  # noqa: E402
from flmm.world import split_seeds  # noqa: E402

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
            the LMM stage's conversations, after the text phase (0: off; the shipped run ``t1MA9``: 900); see
            :mod:`flmm.shapes.align`.
        attention: transformers' attention implementation of the Llama while training, ``"eager"`` or
            ``"sdpa"`` (the same computation: eager trains it 1.06x / 1.42x faster in the LMM stage /
            text phase on a 2-core CPU, ``python -m benchmarks.train_attention``; the shipped run
            ``t1MA9`` used sdpa). The vision tower keeps sdpa (eager gained nothing there). The
            exported model does not keep it: it loads with sdpa.
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


def evaluate(
    lmm: nn.Module, processor, cfg: LMMStageConfig, eval_scenes: int | None = None
) -> dict[str, float]:
    """QA exact match and grounding probes on held-out ``val`` scenes."""
    n_eval = cfg.eval_scenes if eval_scenes is None else eval_scenes
    was_training = lmm.training
    lmm.eval()
    # questions about a thing named by its place ("located") are reported on their own: qa_acc is unchanged
    results = qa_accuracy(lmm, processor, split_seeds("val", n_eval), located=2)
    probe_seeds = split_seeds("val", n_eval + cfg.probe_scenes)[n_eval:]
    results.update(grounding_probe(lmm, processor, probe_seeds, text="caption"))
    results.update(
        grounding_probe(lmm, processor, probe_seeds[: max(1, len(probe_seeds) // 2)], text="refexp")
    )
    lmm.train(was_training)
    return results


def lm_stage_trainer(lmm: nn.Module, processor, cfg: LMMStageConfig, dataset: ShapesChatDataset) -> Trainer:
    """The LMM stage's :class:`~flmm.train.Trainer` of ``lmm`` on ``dataset`` (next-token loss plus the
    configured aids; a held-out check on ``val`` scenes every ``cfg.train.eval_every_steps``)."""
    objective = CausalLMObjective(lmm, concept_weight=cfg.concept_weight, address_weight=cfg.address_weight)

    def periodic_eval(model: nn.Module) -> dict[str, float]:
        return evaluate(model.lmm, processor, cfg, eval_scenes=max(10, cfg.eval_scenes // 4))  # type: ignore[arg-type]

    eval_fn = periodic_eval if cfg.train.eval_every_steps else None
    collate = ChatCollator(processor.tokenizer.pad_token_id)
    return Trainer(objective, dataset, collate, split_batch(cfg.train), eval_fn=eval_fn)


#: the phases of :func:`train_lmm` in order (``stop_after="lmm"``, the default, runs them all)
PHASES = ("vision", "text", "align", "lmm")


def train_lmm(cfg: LMMStageConfig, resume: bool = False, stop_after: str = "lmm") -> dict[str, float]:
    """Train, export ``<out>/hf`` and return the final evaluation (also written to ``<out>/eval.json``;
    ``{}`` in the other processes of a multi-process launch).

    ``stop_after`` (one of :data:`PHASES`) ends the call once that phase's file is written (returns
    ``{"stopped_after": k}``, ``k`` its index in :data:`PHASES`); a later call with ``resume=True``
    reloads the finished phases and goes on, so that the phases can run under different launches or
    settings (``benchmarks.stage_processes`` times the text and alignment phases alone this way)."""
    if stop_after not in PHASES:
        raise ConfigError(f"stop_after must be one of {PHASES}, got {stop_after!r}")
    out = cfg.train.output_dir
    start_run(cfg.to_dict(), out, cfg.export_dtype, cfg.threads)
    lmm, processor = build_lmm(cfg.model, seed=cfg.init_seed)
    set_language_attention(lmm, cfg.attention)
    seeds = split_seeds("train", cfg.train_scenes)
    start = time.time()
    warm = warm_up_vision(
        lmm, processor, cfg.vision, seeds, out,
        seed=cfg.train.seed, resume=resume, mixed_precision=cfg.train.mixed_precision,
    )  # fmt: skip
    if warm is None:
        return _interrupted("vision warm-up")
    warm_minutes = (time.time() - start) / 60
    if stop_after == "vision":
        return _stopped(stop_after)
    start = time.time()
    text = pretrain_text(lmm, processor, cfg.text, seeds, out, cfg.train, resume=resume)
    if text is None:
        return _interrupted("text phase")
    text_minutes = (time.time() - start) / 60
    if stop_after == "text":
        return _stopped(stop_after)
    if cfg.freeze_vision:
        lmm.model.vision_tower.requires_grad_(False)
    dataset = ShapesChatDataset(seeds, processor, cfg.data)
    start = time.time()
    aligned: dict[str, float] = {}
    if cfg.align_steps:
        folder = os.path.join(out, "align")
        loop = replace(
            cfg.train, output_dir=folder, max_steps=cfg.align_steps, eval_every_steps=cfg.align_steps
        )
        got = align_projector(
            lmm, lambda: lm_stage_trainer(lmm, processor, replace(cfg, train=loop), dataset), folder, resume
        )
        if got is None:
            return _interrupted("alignment phase")
        aligned = got
    align_minutes = (time.time() - start) / 60
    if stop_after == "align":
        return _stopped(stop_after)
    trainer = lm_stage_trainer(lmm, processor, cfg, dataset)
    result, train_minutes = train_timed("train_lmm", trainer, resume)
    if result.interrupted:
        return {"interrupted": 1.0, "step": float(result.state.global_step)}
    if not main_process_alone():  # it exports and evaluates the same weights, with every core
        return {}
    folder = os.path.join(out, "hf")
    save_lmm(lmm, processor, folder, dtype=getattr(torch, cfg.export_dtype))
    final = evaluate(lmm, processor, cfg)
    final.update({f"vision_warmup_{k}": v for k, v in warm.items()})
    final.update({f"text_phase_{k}": v for k, v in text.items()})
    final.update({f"align_{k}": v for k, v in aligned.items()})
    final.update(
        vision_warmup_minutes_this_call=warm_minutes,
        text_phase_minutes_this_call=text_minutes,
        align_minutes_this_call=align_minutes,
        train_minutes_this_call=train_minutes,
        train_seconds_total=result.state.elapsed_seconds,
        steps=float(result.state.global_step),
        params_millions=sum(p.numel() for p in lmm.parameters()) / 1e6,
        size_mb=folder_size_mb(folder),
    )
    return finish_run(out, final)


def _stopped(phase: str) -> dict[str, float]:
    print(f"[train_lmm] stopped after the {phase} phase; go on with --resume")
    return {"stopped_after": float(PHASES.index(phase))}


def _interrupted(phase: str) -> dict[str, float]:
    print(f"[train_lmm] interrupted in the {phase}; resume with --resume")
    return {"interrupted": 1.0, "step": 0.0}


def _numbers(p: argparse.ArgumentParser, flag: str, text: str, kind: type) -> tuple:
    """``"400,300,700"`` -> ``(400, 300, 700)`` of ``kind``; a usage error naming ``flag`` otherwise."""
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        p.error(f"{flag} takes comma-separated numbers, got {text!r}")


def parse_args(argv: list[str] | None = None) -> tuple[LMMStageConfig, bool, str]:
    """The stage's config, ``--resume`` and ``--stop-after`` (see :func:`train_lmm`) from ``argv``."""
    p = argparse.ArgumentParser(description="Pre-train the tiny shapes-world LMM (captions + QA only).")
    d = LMMStageConfig()
    add_loop_args(p, d.train)
    p.add_argument("--train-scenes", type=int, default=d.train_scenes)
    p.add_argument("--eval-scenes", type=int, default=d.eval_scenes)
    p.add_argument("--probe-scenes", type=int, default=d.probe_scenes)
    p.add_argument(
        "--p-caption", type=float, default=d.data.p_caption, help="fraction of caption-only conversations"
    )
    p.add_argument(
        "--p-packed", type=float, default=d.data.p_packed, help="fraction of QA-then-caption conversations"
    )
    p.add_argument(
        "--max-questions",
        type=int,
        default=d.data.max_questions,
        help="questions per QA / packed conversation",
    )
    p.add_argument(
        "--qa-per-kind",
        type=int,
        default=d.data.qa_per_kind,
        help="questions per kind a scene offers to draw from",
    )
    p.add_argument(
        "--p-simple", type=float, default=d.data.p_simple, help="fraction of scenes cut to 1-2 things"
    )
    p.add_argument(
        "--located-questions",
        type=int,
        default=d.data.located_questions,
        help="questions per scene about a thing named by its place ('what color is the left-most circle ?')",
    )
    for name in (
        "vision_heads",
        "vision_hidden",
        "vision_layers",
        "text_hidden",
        "text_layers",
        "text_heads",
    ):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d.model, name))
    p.add_argument("--text-intermediate", type=int, default=d.model.text_intermediate)
    p.add_argument("--patch-size", type=int, default=d.model.patch_size)
    p.add_argument(
        "--feature-layers",
        default=",".join(str(k) for k in d.model.feature_layers),
        help="ViT hidden states the projector reads, comma-separated (0: patch embeddings, -1: last)",
    )
    p.add_argument("--export-dtype", default=d.export_dtype, choices=("float16", "float32"))
    p.add_argument(
        "--concept-weight", type=float, default=d.concept_weight, help="caption-concept loss on visual tokens"
    )
    p.add_argument(
        "--projector-address-weight",
        type=float,
        default=d.address_weight,
        help="token-address loss on the projected visual tokens in the LMM stage (0: off)",
    )
    p.add_argument(
        "--vision-phases",
        default=",".join(d.vision.phases),
        help=f"the vision warm-up's phases in order, each one of {','.join(PLACEMENTS)} (empty: no warm-up)",
    )
    p.add_argument(
        "--vision-steps",
        default=",".join(map(str, d.vision.steps)),
        help="steps of each vision warm-up phase (e.g. 400,300,700)",
    )
    p.add_argument(
        "--vision-lr",
        default=",".join(map(str, d.vision.phase_lrs())),
        help="peak learning rate of each vision warm-up phase, or one for all",
    )
    p.add_argument(
        "--relation-weight",
        type=float,
        default=d.vision.relation_weight,
        help="weight of the relation-question loss in the warm-up's 'relations' phase",
    )
    p.add_argument(
        "--address-weight",
        type=float,
        default=d.vision.address_weight,
        help="weight of the token-address loss in the warm-up's 'relations' phase",
    )
    p.add_argument(
        "--vision-word-pool",
        choices=WORD_POOLS,
        default=d.vision.word_pool,
        help="how the warm-up's word probe reads the patch tokens: their mean, or each word's best token",
    )
    p.add_argument(
        "--freeze-vision",
        action=argparse.BooleanOptionalAction,
        default=d.freeze_vision,
        help="keep the vision tower fixed in the LMM stage",
    )
    p.add_argument(
        "--text-steps",
        type=int,
        default=d.text.steps,
        help="steps of the text-only phase before the multimodal stage (0: off)",
    )
    p.add_argument(
        "--text-lr", type=float, default=d.text.lr, help="peak learning rate of the text-only phase"
    )
    p.add_argument("--text-batch-size", type=int, default=d.text.batch_size)
    p.add_argument(
        "--align-steps",
        type=int,
        default=d.align_steps,
        help="steps of a projector-only phase (language model frozen) before the LMM stage (0: off)",
    )
    p.add_argument(
        "--attention",
        choices=ATTENTIONS,
        default=d.attention,
        help="attention implementation of the Llama while training (eager is faster for these short sequences on CPU)",
    )
    p.add_argument(
        "--stop-after",
        choices=PHASES,
        default=PHASES[-1],
        help="end after this phase (its file written); a later call with --resume goes on from there",
    )
    a = p.parse_args(argv)
    if a.projector_address_weight < 0:
        p.error(f"--projector-address-weight must be >= 0, got {a.projector_address_weight}")
    if a.align_steps < 0:
        p.error(f"--align-steps must be >= 0, got {a.align_steps}")
    phases = tuple(x.strip() for x in a.vision_phases.split(",") if x.strip())
    steps = _numbers(p, "--vision-steps", a.vision_steps, int)
    lrs = _numbers(p, "--vision-lr", a.vision_lr, float)
    try:
        vision = replace(
            d.vision,
            phases=phases,
            steps=steps,
            lr=lrs[0] if len(lrs) == 1 else lrs,
            relation_weight=a.relation_weight,
            address_weight=a.address_weight,
            word_pool=a.vision_word_pool,
        )
    except ConfigError as e:
        p.error(f"{e} (--vision-phases, --vision-steps, --vision-lr, --relation-weight, --address-weight)")
    try:
        data = replace(
            d.data,
            p_caption=a.p_caption,
            p_packed=a.p_packed,
            max_questions=a.max_questions,
            qa_per_kind=a.qa_per_kind,
            p_simple=a.p_simple,
            located_questions=a.located_questions,
        )
    except ConfigError as e:
        p.error(f"{e} (--p-caption, --p-packed, --max-questions, --qa-per-kind, --located-questions)")
    try:
        text = replace(d.text, steps=a.text_steps, lr=a.text_lr, batch_size=a.text_batch_size, data=data)
    except ConfigError as e:
        p.error(f"--text-steps / --text-lr / --text-batch-size: {e}")
    model = replace(
        d.model,
        feature_layers=_numbers(p, "--feature-layers", a.feature_layers, int),
        patch_size=a.patch_size,
        vision_hidden=a.vision_hidden,
        vision_layers=a.vision_layers,
        vision_heads=a.vision_heads,
        text_hidden=a.text_hidden,
        text_layers=a.text_layers,
        text_heads=a.text_heads,
        text_intermediate=a.text_intermediate,
    )
    cfg = LMMStageConfig(
        model=model,
        data=data,
        train=loop_config(a, d.train, p),
        train_scenes=a.train_scenes,
        eval_scenes=a.eval_scenes,
        probe_scenes=a.probe_scenes,
        init_seed=a.seed,
        export_dtype=a.export_dtype,
        threads=a.threads,
        concept_weight=a.concept_weight,
        address_weight=a.projector_address_weight,
        vision=vision,
        freeze_vision=a.freeze_vision,
        text=text,
        align_steps=a.align_steps,
        attention=a.attention,
    )
    return cfg, a.resume, a.stop_after


def main(argv: list[str] | None = None) -> int:
    cfg, resume, stop_after = parse_args(argv)
    results = train_lmm(cfg, resume=resume, stop_after=stop_after)
    return 130 if results.get("interrupted") else 0


if __name__ == "__main__":
    raise SystemExit(main())
