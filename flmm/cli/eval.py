"""``flmm eval``: run a benchmark and print its table.

flmm eval [shapes|refcoco|png|reasonseg|gcg] [--model HEAD] [--lmm ID] [--sam ID] [--method f-lmm]
          [--split S] [--n N] [--tasks res,png,...] [--data-root DIR] [--dataset refcoco+] [--limit N]
          [--json] [--out DIR] [--device cpu]

With no arguments: the shapes-world test split with the shipped model, offline. Prints the markdown
table (or, with ``--json``, only the results as JSON); ``--out`` writes results.json, table.md and
cases.png. Under ``accelerate launch`` (GPUs, with ``--device auto``) or ``torchrun --nproc_per_node N``
(CPU) every process takes its share of the samples and the main one prints. Exit code 3 when flmm's generations differ from the bare LMM's (chat not preserved).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_CHAT_CHANGED = 3
# spelled out so that building the parser does not import the evaluation package (a test keeps these
# equal to flmm.evaluation.BENCHMARKS and SHAPES_TASKS)
BENCHMARK_NAMES = ("shapes", "refcoco", "png", "reasonseg", "gcg")
SHAPES_TASK_NAMES = ("res", "png", "keywords", "gcg", "qa", "reason", "absent")


def load_grounder(args: argparse.Namespace) -> Any:
    """The grounder the model options describe (loads LMM, SAM and head; see
    :func:`flmm.pipeline.loading.load_parts`)."""
    from flmm.evaluation import build_grounder
    from flmm.pipeline.loading import load_parts

    device = args.device
    if device == "auto":
        from flmm.evaluation.runner import process_state

        device = process_state().device
    parts = load_parts(
        args.model,
        lmm=args.lmm,
        sam=args.sam,
        device=device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )
    # a training-free method still needs a pre-trained SAM: the one given with --sam, if any
    options = {"sam": args.sam} if args.method != "f-lmm" and args.sam else {}
    return build_grounder(args.method, parts.lmm, parts.head, **options)


def _run(args: argparse.Namespace) -> int:
    from flmm.evaluation import evaluate, markdown_table
    from flmm.evaluation.runner import process_shard

    grounder = load_grounder(args)
    results = evaluate(
        args.benchmark,
        grounder,
        split=args.split,
        n=args.n,
        tasks=args.tasks,
        data_root=args.data_root,
        dataset=args.dataset,
        ann_dir=args.ann_dir,
        image_dir=args.image_dir,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        qa_max_new_tokens=args.qa_max_new_tokens,
        out_dir=args.out,
        k_cases=args.cases,
        strict=args.strict,
        progress=False if args.no_progress else None,
        meteor_backend=args.meteor,
    )
    if process_shard()[0] != 0:
        return 0
    print(json.dumps(results, indent=2) if args.json else markdown_table(results))
    if results.get("chat_preserved") is False:
        print(
            "flmm: warning: flmm's generations differ from the bare LMM's (see the QA task)", file=sys.stderr
        )
        return EXIT_CHAT_CHANGED
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate on a benchmark (default: the shapes-world test split)")
    p.add_argument(
        "benchmark", nargs="?", default="shapes", choices=BENCHMARK_NAMES, help="benchmark (default shapes)"
    )
    g = p.add_argument_group("model (default: the shipped shapes-world model)")
    g.add_argument("--model", metavar="HEAD", help="trained mask head: folder or hub repo id")
    g.add_argument("--lmm", metavar="ID", help="the frozen LMM (default: the one the head was trained on)")
    g.add_argument("--sam", metavar="ID", help="the SAM checkpoint (default: the one the head names)")
    g.add_argument(
        "--method", default="f-lmm", help="grounding method: f-lmm (default) or attend-and-segment"
    )
    g.add_argument(
        "--device", default="cpu", help="torch device, or 'auto' = accelerate's per-process device"
    )
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="LMM dtype (default float32)")
    g.add_argument("--trust-remote-code", action="store_true", help="allow the LMM's own code from the hub")
    d = p.add_argument_group("data")
    d.add_argument("--split", help="split(s), comma separated (shapes: test; refcoco: val, or 'all')")
    d.add_argument(
        "--n",
        type=int,
        default=10,
        help="shapes: scenes per task (default 10; ~10 expressions and ~15 questions each)",
    )
    d.add_argument("--tasks", help=f"shapes tasks, comma separated, from {','.join(SHAPES_TASK_NAMES)}")
    d.add_argument("--data-root", help="folder of the benchmark's files (refcoco, png, reasonseg, gcg)")
    d.add_argument("--dataset", default="refcoco", help="refcoco, refcoco+ or refcocog (comma list allowed)")
    d.add_argument("--ann-dir", help="gcg: folder of {split}_gcg_coco_{caption,mask}_gt.json")
    d.add_argument("--image-dir", help="gcg: image folder; refcoco: COCO train2014 folder")
    d.add_argument("--limit", type=int, help="evaluate only the first N samples of each task")
    r = p.add_argument_group("run and output")
    r.add_argument(
        "--max-new-tokens", type=int, default=128, help="answer limit for reasonseg/gcg (default 128)"
    )
    r.add_argument("--qa-max-new-tokens", type=int, default=16, help="answer limit for QA (default 16)")
    r.add_argument("--meteor", default="auto", help="METEOR implementation: auto, coco, nltk or flmm")
    r.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    r.add_argument("--out", metavar="DIR", help="write results.json, table.md and cases.png here")
    r.add_argument(
        "--cases", type=int, default=4, help="worst and best cases per task in cases.png (default 4)"
    )
    r.add_argument(
        "--strict", action="store_true", help="stop at the first failing sample instead of scoring it 0"
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)
