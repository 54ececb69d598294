"""Paired comparison of two evaluation runs: objects.json written per run, matched by sample id."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.evaluation.paired import compare_runs, main, per_object_scores
from flmm.evaluation.state import TaskState
from flmm.metrics import PngAccumulator, ResAccumulator


def _run(tmp_path, name: str, shift: int, order: list[int]) -> str:
    """An eval folder whose masks spill 0 (``shift`` 0: exact) to ``3 * shift`` rows past the truth."""
    res, dec, png = ResAccumulator(), ResAccumulator(), PngAccumulator()
    for i in order:  # objects in another order in each run: pairing is by id, not position
        gt = np.zeros((12, 12), bool)
        gt[2:8, 1 + i % 4 : 6 + i % 4] = True
        pred = np.zeros_like(gt)
        pred[2 : 8 + shift * (1 + i % 3), 1 + i % 4 : 6 + i % 4] = True
        res.update(pred, gt, sample_id=f"s{i}#0")
        dec.update(None, gt, sample_id=f"s{i}#0")  # a method without decoder masks: stage left out
        png.update(pred, gt, is_thing=True, is_plural=False, sample_id=f"n{i}#0")
    states = [
        TaskState(
            "res/toy", "res", "toy", accumulators={"mask": res.state_dict(), "decoder": dec.state_dict()}
        ),
        TaskState("narrative/toy", "narrative", "toy", accumulators={"mask": png.state_dict()}),
    ]
    out = tmp_path / name
    out.mkdir()
    (out / "objects.json").write_text(json.dumps(per_object_scores(states)))
    return str(out)


def test_two_runs_are_compared_object_by_object(tmp_path, capsys):
    a = _run(tmp_path, "a", 0, list(range(30)))
    b = _run(tmp_path, "b", 2, list(reversed(range(30))))  # B's masks spill 2-6 rows past the truth
    rows = {(r["task"], r["stage"]): r for r in compare_runs(a, b)}
    assert set(rows) == {("res/toy", "mask"), ("narrative/toy", "mask")}
    res = rows[("res/toy", "mask")]
    assert res["objects"] == 30 and res["a"] > res["b"]
    assert 0 < res["diff_ci95"][0] <= res["diff"] <= res["diff_ci95"][1]
    assert rows[("narrative/toy", "mask")]["diff"] > 0
    assert compare_runs(a, a)[0]["diff_ci95"] == [0.0, 0.0]
    assert main([a, b]) == 0 and "| res/toy | mask | cIoU | 30 |" in capsys.readouterr().out
    from flmm.cli.main import main as flmm

    assert flmm(["compare", a, str(tmp_path / "nowhere")]) == 1  # a clear error, no traceback
    assert "objects.json" in capsys.readouterr().err


def test_runs_that_cannot_be_paired_are_refused(tmp_path):
    a = _run(tmp_path, "a", 0, list(range(10)))
    with pytest.raises(InputError, match="objects.json"):
        compare_runs(a, tmp_path / "nowhere")
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((tmp_path / "a" / "objects.json").read_text())
    for task in data.values():
        task["mask"]["ids"] = [f"x{i}" for i in range(len(task["mask"]["ids"]))]
    (other / "objects.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="share 0 objects"):
        compare_runs(a, other)
    (other / "objects.json").write_text("{not json")
    with pytest.raises(InputError, match="not an objects.json"):
        compare_runs(a, other)
