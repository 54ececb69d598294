"""The command line of the shapes-world LMM stage: ``python -m flmm.shapes.train_lmm --help``."""

from __future__ import annotations

import argparse
from dataclasses import replace

from flmm.errors import ConfigError
from flmm.shapes.lmm_stage_config import ATTENTIONS, PHASES, LMMStageConfig
from flmm.shapes.stage import add_loop_args, loop_config
from flmm.shapes.vision_warmup import PLACEMENTS, WORD_POOLS


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
        "--bind-weight",
        type=float,
        default=d.vision.bind_weight,
        help="weight of the colour-gated shape loss in the warm-up's 'bind' phase",
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
            bind_weight=a.bind_weight,
            word_pool=a.vision_word_pool,
        )
    except ConfigError as e:
        p.error(
            f"{e} (--vision-phases, --vision-steps, --vision-lr, --relation-weight, --address-weight, --bind-weight)"
        )
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
