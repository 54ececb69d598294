"""``flmm compare EVAL_A EVAL_B``: is model A better than model B on the same samples?

The paired comparison of two ``flmm eval --out`` folders (:mod:`flmm.evaluation.paired`): both scores
per task and mask stage, their difference and its paired 95 % bootstrap interval.
"""

from __future__ import annotations


def register(subparsers) -> None:
    from flmm.evaluation.paired import add_arguments, run

    p = subparsers.add_parser(
        "compare", help="compare two flmm eval runs object by object (paired intervals)"
    )
    add_arguments(p)
    p.set_defaults(func=run)
