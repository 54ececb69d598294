"""Markdown tables of evaluation results (what ``flmm eval`` prints and writes to ``table.md``).

One table per kind of task, one row per task (dataset/split). Scores are shown in percent with one
decimal, as in the paper's tables; ``-`` marks a value that is undefined (a ratio over nothing). RES
cIoU, narrative average recall and QA accuracy come with a 95 % bootstrap interval over objects
(:mod:`flmm.metrics.bootstrap`): a difference between two models well inside it is not a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def pct(value: Any) -> str:
    """A fraction in [0, 1] as percent with one decimal; ``-`` for None/NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{100.0 * float(value):.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def interval(ci: Any) -> str:
    """A ``[low, high]`` fraction interval as ``"38.1-46.8"`` percent; ``-`` when there is none."""
    if not ci:
        return "-"
    return f"{pct(ci[0])}-{pct(ci[1])}"


def _problems(task: dict[str, Any]) -> str:
    skipped = sum(task.get("skipped", {}).values())
    return f"{task.get('failed', 0)} / {skipped}"


def _res_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for stage, m in t["metrics"].items():
        rows.append(
            [
                name,
                stage,
                m["count"],
                pct(m["ciou"]),
                interval(m.get("ciou_ci95")),
                pct(m["giou"]),
                pct(m.get("precision@0.5")),
                m["missing"],
                _problems(t),
            ]
        )
    return rows


def _png_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for stage, m in t["metrics"].items():
        groups = [pct(m.get(f"average_recall{g}")) for g in ("", "_thing", "_stuff", "_singular", "_plural")]
        ci = interval(m.get("average_recall_ci95"))
        rows.append(
            [
                name,
                stage,
                m["count"],
                groups[0],
                ci,
                *groups[1:],
                pct(m["recall@0.5"]),
                m["missing"],
                _problems(t),
            ]
        )
    return rows


def _keyword_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    labels = {"selector": "keyword selector", "noun_phrases": "noun-phrase baseline"}
    return [
        [
            name,
            labels.get(k, k),
            m["texts"],
            pct(m["precision"]),
            pct(m["recall"]),
            pct(m["f1"]),
            pct(m["span_exact_f1"]),
        ]
        for k, m in t.get("keywords", {}).items()
    ]


def _reason_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    m = t["metrics"]["mask"]
    return [[name, m["count"], pct(m["giou"]), pct(m["ciou"]), m["missing"], _problems(t)]]


def _gcg_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    m = t["metrics"]["mask"]
    return [
        [
            name,
            m["images"],
            pct(m["meteor"]),
            pct(m["miou"]),
            pct(m["recall"]),
            m["meteor_impl"],
            m["similarity"],
            _problems(t),
        ]
    ]


def _qa_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    if t.get("preserved") is None:
        return [[name, "-", "-", "-", "-", "-", t.get("note", "not run")]]
    m = t["metrics"]
    ident = m["identical"]
    verdict = (
        "yes" if t["preserved"] else f"**NO** ({len(t.get('differing', []))} differ, {t['failed']} failed)"
    )
    return [
        [
            name,
            m["bare"]["count"],
            pct(m["bare"]["accuracy"]),
            interval(m["bare"].get("accuracy_ci95")),
            pct(m["flmm"]["accuracy"]),
            f"{ident['identical']}/{ident['count']}",
            verdict,
        ]
    ]


def _presence_rows(name: str, t: dict[str, Any]) -> list[list[Any]]:
    m = t["metrics"]["score"]
    return [
        [
            name,
            m["present"],
            m["absent"],
            pct(m["auroc"]),
            pct(m["absent_shown"]),
            interval(m.get("absent_shown_ci95")),
            pct(m["present_shown"]),
            m["missing"],
            _problems(t),
        ]
    ]


SECTIONS: list[tuple[str, str, list[str], Callable[[str, dict], list[list[Any]]]]] = [
    (
        "Referring segmentation",
        "res",
        ["task", "masks", "objects", "cIoU", "cIoU 95% CI", "gIoU", "P@0.5", "missing", "failed / skipped"],
        _res_rows,
    ),
    (
        "Narrative grounding (average recall)",
        "narrative",
        [
            "task",
            "masks",
            "segments",
            "all",
            "all 95% CI",
            "thing",
            "stuff",
            "singular",
            "plural",
            "R@0.5",
            "missing",
            "failed / skipped",
        ],
        _png_rows,
    ),
    (
        "Keyword selection (word level)",
        "narrative",
        ["task", "method", "texts", "precision", "recall", "F1", "span F1"],
        _keyword_rows,
    ),
    (
        "Reasoning segmentation (ask, then ground)",
        "reasonseg",
        ["task", "images", "gIoU", "cIoU", "missing", "failed / skipped"],
        _reason_rows,
    ),
    (
        "Grounded conversation generation",
        "gcg",
        [
            "task",
            "images",
            "METEOR",
            "mIoU",
            "recall",
            "METEOR impl",
            "phrase similarity",
            "failed / skipped",
        ],
        _gcg_rows,
    ),
    (
        "Expressions that denote nothing (score >= 0.5 = a mask is shown)",
        "presence",
        [
            "task",
            "present",
            "absent",
            "AUROC",
            "absent shown",
            "absent shown 95% CI",
            "present shown",
            "missing",
            "failed / skipped",
        ],
        _presence_rows,
    ),
    (
        "Chat preservation (QA exact match)",
        "qa",
        ["task", "questions", "bare LMM acc", "acc 95% CI", "flmm acc", "identical generations", "preserved"],
        _qa_rows,
    ),
]


def markdown_table(results: dict[str, Any]) -> str:
    """The results of :func:`flmm.evaluation.evaluate` as markdown: a title line and one table per kind of
    task present (scores in percent)."""
    tasks: dict[str, dict[str, Any]] = results.get("tasks", {})
    title = f"## flmm eval: {results.get('benchmark', '?')} ({results.get('method', '?')})"
    lines = [title, "", "Scores in percent; 'missing' = objects without a prediction (scored 0)."]
    for heading, kind, header, rows_of in SECTIONS:
        rows = [row for name, t in tasks.items() if t["kind"] == kind for row in rows_of(name, t)]
        if rows:
            lines += ["", f"### {heading}", "", *_table(header, rows)]
    failures = [(name, f) for name, t in tasks.items() for f in t.get("failures", [])[:3]]
    if failures:
        lines += ["", "### First failures (scored as missing)", ""]
        lines += [f"- {name}: `{f['sample_id']}`: {f['error']}" for name, f in failures]
    if results.get("chat_preserved") is False:
        lines += ["", "**WARNING: flmm changed the LMM's answers (see 'identical generations').**"]
    return "\n".join(lines)
