"""Evaluation runner wiring with hand-built grounders (no models): oracle, empty, broken, sharded."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import DataError, FlmmError, InputError
from flmm.evaluation import (
    ChatGrounding,
    SpanGrounding,
    TaskSpec,
    build_tasks,
    evaluate,
    evaluate_shard,
    markdown_table,
    merge_shards,
    summarize,
)
from flmm.metrics import TokenF1Similarity

world = pytest.importorskip("flmm.world")

FAST = {"similarity": TokenF1Similarity(), "meteor_backend": "flmm", "progress": False}
GROUNDING_TASKS = "res,png,keywords,gcg,reason"


def _key(image) -> str:
    return hashlib.sha1(np.asarray(image).tobytes()).hexdigest()


class OracleGrounder:
    """Answers with the ground truth of the samples it was shown: masks per span, GCG captions."""

    name = "oracle"
    question = None

    def __init__(self, specs, empty: bool = False) -> None:
        self.spans: dict = {}
        self.chat: dict = {}
        self.empty = empty
        for spec in specs:
            for s in spec.dataset:
                k = _key(s.load_image())
                for o in s.objects:
                    self.spans[(k, s.answer, tuple(o.spans))] = o.get_mask()
                phrases = [(s.answer[a:b], (a, b)) for o in s.objects for a, b in o.spans[:1]]
                masks = np.stack([o.get_mask() for o in s.objects])
                # ReasonSeg: the answer is the expression (no spans), grounded whole
                self.chat[(k, s.question)] = (s.answer or s.meta.get("text", "it"), phrases, masks)
        self.image = None

    def set_image(self, image) -> None:
        self.image = _key(image)
        self.hw = np.asarray(image).shape[:2]

    def _out(self, masks):
        masks = np.zeros_like(masks) if self.empty else masks
        return masks, np.ones(len(masks), np.float32)

    def ground_spans(self, question, answer, spans_per_object):
        masks = np.stack([self.spans[(self.image, answer, tuple(sp))] for sp in spans_per_object])
        masks, scores = self._out(masks)
        gold = [tuple(sp[0]) for sp in spans_per_object]
        return SpanGrounding(masks, scores, {"decoder_masks": masks.copy(), "keyword_spans": gold})

    def chat_ground(self, question, max_new_tokens):
        text, phrases, masks = self.chat[(self.image, question)]
        if not phrases:  # reason task: one phrase covering the answer
            phrases = [(text, (0, len(text)))]
            masks = np.logical_or.reduce(masks)[None]
        masks, scores = self._out(masks)
        return ChatGrounding(text, phrases, masks, scores)


@pytest.fixture(scope="module")
def specs():
    return build_tasks("shapes", n=2, tasks=GROUNDING_TASKS)


def _metrics(results, prefix):
    (task,) = [t for name, t in results["tasks"].items() if name.startswith(prefix)]
    return task


def test_oracle_scores_one(specs):
    res = evaluate("shapes", OracleGrounder(specs), n=2, tasks=GROUNDING_TASKS, **FAST)
    r = _metrics(res, "res/")
    assert set(r["metrics"]) == {"refined", "decoder"}
    for stage in r["metrics"].values():
        assert stage["ciou"] == stage["giou"] == 1.0 and stage["count"] > 2 and stage["missing"] == 0
    png = _metrics(res, "narrative/")
    for stage in png["metrics"].values():
        for g in ("", "_thing", "_stuff"):
            assert stage[f"average_recall{g}"] == pytest.approx(1.0, abs=2e-5)
    assert png["keywords"]["selector"]["f1"] == 1.0
    assert 0.0 <= png["keywords"]["noun_phrases"]["f1"] <= 1.0
    gcg = _metrics(res, "gcg/")["metrics"]["mask"]
    assert gcg["miou"] == 1.0 and gcg["recall"] == 1.0 and gcg["meteor"] > 0.9
    assert gcg["meteor_impl"] and gcg["similarity"] == "token-f1"
    reason = _metrics(res, "reasonseg/")["metrics"]["mask"]
    assert reason["giou"] == reason["ciou"] == 1.0
    assert all(t["failed"] == 0 for t in res["tasks"].values())


def test_empty_masks_score_zero(specs):
    res = evaluate("shapes", OracleGrounder(specs, empty=True), n=2, tasks=GROUNDING_TASKS, **FAST)
    for stage in _metrics(res, "res/")["metrics"].values():
        assert stage["ciou"] == 0.0 and stage["giou"] == 0.0 and stage["missing"] == 0
    for stage in _metrics(res, "narrative/")["metrics"].values():
        assert stage["average_recall"] < 1e-3  # IoU 0 scores the reference's 1e-5
    assert _metrics(res, "gcg/")["metrics"]["mask"]["miou"] == 0.0
    assert _metrics(res, "reasonseg/")["metrics"]["mask"]["giou"] == 0.0


class Deterministic(OracleGrounder):
    """Masks that depend on the sample only (a box whose size depends on the answer), for sharding."""

    def ground_spans(self, question, answer, spans_per_object):
        h, w = self.hw
        masks = np.zeros((len(spans_per_object), h, w), dtype=bool)
        for k, sp in enumerate(spans_per_object):
            side = 8 + (sum(map(ord, answer)) + 7 * sp[0][0]) % (h - 8)
            masks[k, :side, :side] = True
        return SpanGrounding(
            masks, np.ones(len(masks), np.float32), {"keyword_spans": [sp[0] for sp in spans_per_object[:1]]}
        )


def test_sharded_equals_unsharded(specs):
    g = Deterministic(specs)
    kw = {"similarity": FAST["similarity"], "meteor_backend": "flmm"}
    whole = evaluate_shard(specs, g, rank=0, world_size=1, **kw)
    parts = [evaluate_shard(specs, g, rank=r, world_size=2, **kw) for r in range(2)]
    assert all(p.samples < w.samples for p, w in zip(parts[0], whole))
    a = summarize(merge_shards([whole], **kw), **kw)
    b = summarize(merge_shards(parts, **kw), **kw)
    for name, ta in a["tasks"].items():
        tb = b["tasks"][name]
        assert ta["samples"] == tb["samples"]
        for stage, ma in ta["metrics"].items():
            for key, va in ma.items():
                vb = tb["metrics"][stage][key]
                assert vb == (pytest.approx(va, abs=1e-9) if isinstance(va, float) else va), (
                    name,
                    stage,
                    key,
                )
    # the same shard twice is caught: accumulators refuse a sample id seen in two shards
    with pytest.raises(InputError, match="overlap"):
        merge_shards([parts[0], parts[0]], **kw)


def _sample(sid, mask, answer="the red circle", question="Please give me a description of the image."):
    img = Image.fromarray(np.full((*mask.shape, 3), 128, np.uint8))
    obj = GroundedObject(spans=[(0, len(answer))], mask=mask)
    return GroundingSample(sid, "", mask.shape, question, answer, [obj], {}, image_loader=lambda: img)


class Scripted:
    """Returns, per answer, a scripted behaviour: 'gt', 'small' (wrong size), 'few' (no mask), 'raise'."""

    name, question = "scripted", None

    def __init__(self, script, gts):
        self.script, self.gts = script, gts

    def set_image(self, image):
        pass

    def ground_spans(self, question, answer, spans_per_object):
        what, gt = self.script.get(answer, "raise"), self.gts.get(answer)
        if what == "raise":
            raise RuntimeError("the grounder crashed")
        masks = {"gt": gt[None], "small": gt[None, :-1], "few": gt[None][:0]}[what]
        return SpanGrounding(masks, np.ones(len(masks), np.float32), {})


def test_bad_predictions_are_missing_and_reported():
    m = np.zeros((12, 12), bool)
    m[2:6, 2:6] = True
    script = {"a": "gt", "b": "small", "c": "few", "d": "raise"}
    samples = [_sample(f"s{k}", m, answer=k) for k in script]
    spec = TaskSpec("res/toy", "res", samples)
    states = evaluate_shard([spec], Scripted(script, {k: m for k in script}))
    out = summarize(merge_shards([states]))["tasks"]["res/toy"]
    metrics = out["metrics"]["mask"]  # no decoder masks were given: one stage only
    assert set(out["metrics"]) == {"mask"}
    assert metrics["count"] == 4 and metrics["missing"] == 3
    assert metrics["giou"] == pytest.approx(0.25)  # one perfect object out of four
    assert out["failed"] == 3 and [f["sample_id"] for f in out["failures"]] == ["sb", "sc", "sd"]
    errors = " ".join(f["error"] for f in out["failures"])
    assert "size" in errors and "shape (0, 12, 12)" in errors and "crashed" in errors
    with pytest.raises(InputError, match="size"):
        evaluate_shard([spec], Scripted(script, {k: m for k in script}), strict=True)
    table = markdown_table(summarize(merge_shards([states])))
    assert "First failures" in table and "sb" in table


def test_every_sample_failing_raises_with_the_error():
    m = np.ones((6, 6), bool)
    spec = [_sample("only", m, answer="x")]
    g = Scripted({"x": "raise"}, {"x": m})
    with pytest.raises(FlmmError, match="crashed"):
        evaluate("shapes", g, n=1, tasks="res", limit=1, **FAST)
    states = evaluate_shard([TaskSpec("res/one", "res", spec)], g)
    assert states[0].samples == 1 and len(states[0].failures) == 1


def test_empty_ground_truth_and_duplicate_ids():
    empty = np.zeros((8, 8), bool)
    full = np.ones((8, 8), bool)
    samples = [_sample("e", empty, answer="e"), _sample("f", full, answer="f")]
    g = Scripted({"e": "gt", "f": "gt"}, {"e": empty, "f": full})
    out = summarize(merge_shards([evaluate_shard([TaskSpec("res/t", "res", samples)], g)]))
    m = out["tasks"]["res/t"]["metrics"]["mask"]
    assert m["empty_gt"] == 1 and m["giou"] == 1.0  # empty-vs-empty counts 1 (LISA/GRES rule)
    dup = [_sample("same", full, answer="f"), _sample("same", full, answer="f")]
    with pytest.raises(DataError, match="twice"):
        evaluate_shard([TaskSpec("res/d", "res", dup)], g)


def test_outputs_written(tmp_path, specs):
    res = evaluate(
        "shapes", OracleGrounder(specs, empty=True), n=2, tasks="res,png", out_dir=tmp_path, k_cases=2, **FAST
    )
    files = res["files"]
    with Image.open(files["cases"]) as im:
        im.verify()
    with Image.open(files["cases"]) as im:
        arr = np.asarray(im.convert("RGB"))
    assert im.format == "PNG" and arr.shape[0] > 200
    # predicted (red) and ground-truth (green) colours are drawn
    assert ((arr[..., 1] > 200) & (arr[..., 0] < 80)).any()
    assert json.loads((tmp_path / "results.json").read_text())["tasks"].keys() == res["tasks"].keys()
    table = (tmp_path / "table.md").read_text()
    assert "### Referring segmentation" in table and "### Narrative grounding" in table
    assert "| res/shapes-res/test | refined |" in table
    objects = json.loads((tmp_path / "objects.json").read_text())  # what flmm.evaluation.paired compares
    m = res["tasks"]["res/shapes-res/test"]["metrics"]["refined"]
    assert len(objects["res/shapes-res/test"]["mask"]["ids"]) == m["count"]
    assert set(objects) == {"res/shapes-res/test", "narrative/shapes-narrative/test"}


def test_benchmark_options_are_checked(tmp_path):
    with pytest.raises(FlmmError, match="benchmark"):
        build_tasks("coco")
    with pytest.raises(FlmmError, match="data-root"):
        build_tasks("refcoco")
    with pytest.raises(FlmmError, match="shapes task"):
        build_tasks("shapes", n=1, tasks="res,segment")
    with pytest.raises(FlmmError, match="unknown RefCOCO dataset"):
        build_tasks("refcoco", data_root=str(tmp_path), dataset="refclef")


class Silent:
    """Answers every question with an empty text and no phrase (an empty prediction, not a failure)."""

    name, question = "silent", None

    def set_image(self, image):
        self.hw = np.asarray(image).shape[:2]

    def ground_spans(self, question, answer, spans_per_object):
        raise AssertionError("not used: the answer is empty")

    def chat_ground(self, question, max_new_tokens):
        return ChatGrounding("", [], np.zeros((0, *self.hw), bool), np.zeros(0, np.float32))


def test_sharded_reader_skips_counted_once(tmp_path):
    from tests.fixtures_data import write_reasonseg

    write_reasonseg(str(tmp_path))
    specs = build_tasks("reasonseg", data_root=str(tmp_path))
    parts = [evaluate_shard(specs, Silent(), rank=r, world_size=2) for r in range(2)]
    task = summarize(merge_shards(parts))["tasks"]["reasonseg/reasonseg/val"]
    assert task["skipped"] == {"missing_image": 1}  # c.json, counted by the reader before sharding
    m = task["metrics"]["mask"]
    assert task["samples"] == 2 and m["count"] == 2 and m["missing"] == 0 and m["giou"] == 0.0
