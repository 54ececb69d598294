"""The evaluation suite end to end with tiny random models: shapes world, benchmark fixtures, QA, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flmm.errors import ConfigError, NotReadyError
from flmm.evaluation import (
    BENCHMARKS,
    GROUNDERS,
    SHAPES_TASKS,
    CaptureGrounder,
    FLMMGrounder,
    Grounder,
    build_grounder,
    evaluate,
    markdown_table,
    plain_sdpa,
)
from flmm.evaluation.grounder import _build_from_pipeline
from flmm.head.tiny import tiny_sam_model
from flmm.lmm.capture import ATTN_IMPLEMENTATION
from flmm.lmm.frozen import Generation
from flmm.metrics import TokenF1Similarity
from tests.fixtures_data import write_grandf, write_reasonseg, write_refcoco
from tests.pipeline_tiny import tiny_parts

pytest.importorskip("flmm.world")

FAST = {
    "similarity": TokenF1Similarity(),
    "meteor_backend": "flmm",
    "progress": False,
    "max_new_tokens": 6,
    "qa_max_new_tokens": 3,
}
# keys of each accumulator's result that are not fractions
COUNT_KEYS = {"count", "missing", "empty_gt", "intersection", "union", "images", "gt_phrases", "matched"}
COUNT_KEYS |= {"pred_phrases", "correct", "identical", "texts", "words", "pred_spans", "gold_spans"}


@pytest.fixture(scope="module")
def grounder():
    lmm, head = tiny_parts()
    return FLMMGrounder(lmm, head)


def _fractions(metrics: dict) -> list[float]:
    out = []
    for key, value in metrics.items():
        if (
            isinstance(value, float)
            and key not in COUNT_KEYS
            and not key.startswith(("count", "word_", "exact_"))
        ):
            out.append(value)
    return out


def _task(results, prefix):
    (task,) = [t for name, t in results["tasks"].items() if name.startswith(prefix)]
    return task


def test_shapes_end_to_end(grounder):
    res = evaluate("shapes", grounder, n=2, limit=2, tasks=",".join(SHAPES_TASKS), **FAST)
    kinds = {t["kind"] for t in res["tasks"].values()}
    assert kinds == {"res", "narrative", "reasonseg", "gcg", "qa", "presence"}
    assert res["method"] == "f-lmm" and res["chat_preserved"] is True
    r = _task(res, "res/")
    assert set(r["metrics"]) == {"refined", "decoder"}  # the tiny head has a SAM refiner
    assert r["samples"] == 2 and r["metrics"]["refined"]["count"] == 2 and r["failed"] == 0
    png = _task(res, "narrative/")
    n_segments = png["metrics"]["refined"]["count"]
    assert n_segments > 2 and png["metrics"]["decoder"]["count"] == n_segments
    assert png["metrics"]["refined"]["count_thing"] + png["metrics"]["refined"]["count_stuff"] == n_segments
    assert set(png["keywords"]) == {"selector", "noun_phrases"} and png["keywords"]["selector"]["texts"] == 2
    assert _task(res, "gcg/")["metrics"]["mask"]["images"] == 2
    assert _task(res, "reasonseg/")["metrics"]["mask"]["count"] == 2
    qa = _task(res, "qa/")["metrics"]
    assert qa["identical"]["identical"] == qa["identical"]["count"] == qa["bare"]["count"] == 2
    for task in res["tasks"].values():
        groups = list(task["metrics"].values()) + list(task.get("keywords", {}).values())
        values = [v for m in groups for v in _fractions(m) if v is not None]
        assert values and all(0.0 <= v <= 1.0 for v in values), task["dataset"]
    table = markdown_table(res)
    assert _task(res, "presence/")["metrics"]["score"]["count"] == 2
    headings = (
        "Referring",
        "Narrative",
        "Keyword",
        "Reasoning",
        "Grounded conversation",
        "Expressions",
        "Chat",
    )
    for heading in headings:
        assert f"### {heading}" in table


def test_qa_check_detects_a_changed_token(grounder, monkeypatch):
    lmm = grounder.lmm
    original = lmm.generate
    calls = []

    def tampered(*args, **kwargs):
        gen = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second question's answer gets one different token
            ids = gen.token_ids.clone()
            ids[0] = (int(ids[0]) + 1) % len(lmm.adapter.tokenizer)
            return Generation(gen.text, ids, gen.capture)
        return gen

    monkeypatch.setattr(lmm, "generate", tampered)
    res = evaluate("shapes", grounder, n=1, limit=3, tasks="qa", **FAST)
    qa = _task(res, "qa/")
    assert qa["preserved"] is False and res["chat_preserved"] is False
    assert qa["metrics"]["identical"]["identical"] == 2 and qa["metrics"]["identical"]["count"] == 3
    assert len(qa["differing"]) == 1
    assert "**NO**" in markdown_table(res)


def test_plain_sdpa_switches_back(grounder):
    cfg = grounder.lmm.adapter.text_config()
    assert cfg._attn_implementation_internal == ATTN_IMPLEMENTATION
    with plain_sdpa(grounder.lmm.model):
        assert cfg._attn_implementation_internal == "sdpa"
    assert cfg._attn_implementation_internal == ATTN_IMPLEMENTATION


def test_refcoco_fixture(grounder, tmp_path):
    write_refcoco(str(tmp_path))
    res = evaluate("refcoco", grounder, data_root=str(tmp_path), split="all", **FAST)
    assert set(res["tasks"]) == {"res/refcoco/val", "res/refcoco/testA", "res/refcoco/testB"}
    val = res["tasks"]["res/refcoco/val"]
    # ref 3 has two sentences; ref 6's mask is empty: the reader skips it and the runner reports it
    assert val["metrics"]["refined"]["count"] == 2 and val["samples"] == 2
    assert val["skipped"].get("empty_mask", 0) >= 1
    assert res["tasks"]["res/refcoco/testA"]["metrics"]["decoder"]["count"] == 1


def test_reasonseg_fixture(grounder, tmp_path):
    write_reasonseg(str(tmp_path))
    res = evaluate("reasonseg", grounder, data_root=str(tmp_path), **FAST)
    task = res["tasks"]["reasonseg/reasonseg/val"]
    m = task["metrics"]["mask"]
    assert m["count"] == 2 and task["failed"] == 0 and 0.0 <= m["giou"] <= 1.0
    assert task["skipped"] == {"missing_image": 1}  # c.json has no image


def test_gcg_fixture(grounder, tmp_path):
    write_grandf(str(tmp_path))
    res = evaluate("gcg", grounder, data_root=str(tmp_path), **FAST)
    task = res["tasks"]["gcg/gcg/val"]
    m = task["metrics"]["mask"]
    assert m["images"] == 1 and m["gt_phrases"] == 2 and m["meteor_impl"]
    assert task["skipped"] == {"label_mask_mismatch": 1}  # sa_8: two labels, one mask


def test_pipeline_strategy_adapter_matches(grounder):
    from flmm.pipeline.grounders import FLMMGrounder as PipelineFLMM

    adapted = CaptureGrounder(grounder.lmm, PipelineFLMM(grounder.head), question=grounder.question)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    answer = "the red circle left of the blue square"
    spans = [[(0, 14)], [(27, 38)]]
    outs = []
    for g in (grounder, adapted):
        g.set_image(image)
        outs.append(g.ground_spans(grounder.question, answer, spans))
    (a, sa, ea), (b, sb, eb) = outs
    assert a.shape == (2, 40, 56) and a.dtype == bool
    assert (
        np.array_equal(a, b)
        and np.allclose(sa, sb)
        and np.array_equal(ea["decoder_masks"], eb["decoder_masks"])
    )


def test_method_registry(grounder, monkeypatch):
    assert isinstance(build_grounder("f-lmm", grounder.lmm, grounder.head), FLMMGrounder)
    assert isinstance(grounder, Grounder)
    with pytest.raises(ConfigError, match="unknown grounding method"):
        build_grounder("magic", grounder.lmm, grounder.head)
    with pytest.raises(ConfigError, match="takes no options"):
        build_grounder("f-lmm", grounder.lmm, grounder.head, sam="x")
    monkeypatch.setitem(GROUNDERS, "later", _build_from_pipeline("later"))  # registered, not implemented
    with pytest.raises(NotReadyError, match="not available yet"):
        build_grounder("later", grounder.lmm, grounder.head)
    with pytest.raises(NotReadyError, match="set_image"):
        FLMMGrounder(grounder.lmm, grounder.head).ground_spans("q", "a red dot", [[(0, 5)]])


def test_cli_prints_json(grounder, monkeypatch, capsys, tmp_path):
    from flmm.cli import eval as eval_cli
    from flmm.cli.main import main

    assert eval_cli.BENCHMARK_NAMES == BENCHMARKS and eval_cli.SHAPES_TASK_NAMES == SHAPES_TASKS
    monkeypatch.setattr(eval_cli, "load_grounder", lambda args: grounder)
    argv = ["eval", "shapes", "--n", "2", "--limit", "1", "--tasks", "res,qa", "--json", "--no-progress"]
    argv += ["--meteor", "flmm", "--qa-max-new-tokens", "2", "--out", str(tmp_path)]
    torch.manual_seed(0)
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "shapes" and set(out["files"]) == {"json", "table", "cases", "objects"}
    assert out["tasks"]["res/shapes-res/test"]["metrics"]["refined"]["count"] == 1
    assert (tmp_path / "table.md").read_text().startswith("## flmm eval: shapes (f-lmm)")
    assert main(["eval", "refcoco", "--no-progress"]) == 1  # no --data-root: a clear error, exit 1
    assert "data-root" in capsys.readouterr().err


def test_attend_and_segment_through_the_pipeline_registry(grounder):
    pytest.importorskip("flmm.baselines.attend_and_segment")
    g = build_grounder("attend-and-segment", grounder.lmm, grounder.head, sam=tiny_sam_model(seed=1))
    assert g.name == "attend-and-segment" and isinstance(g, Grounder)
    res = evaluate("shapes", g, n=1, limit=2, tasks="res,gcg", **FAST)
    r = _task(res, "res/")
    assert set(r["metrics"]) == {"mask"}  # no mask decoder: one stage
    assert r["metrics"]["mask"]["count"] == 2 and r["failed"] == 0 and res["method"] == "attend-and-segment"
    assert _task(res, "gcg/")["metrics"]["mask"]["images"] == 1
