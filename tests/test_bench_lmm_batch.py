"""benchmarks.lmm_batch: batch sizes that cannot be split over the processes are refused before any run."""

from __future__ import annotations

import json

import pytest

from benchmarks import lmm_batch


@pytest.mark.parametrize("sizes", ["7", "16,9", "0", ""])
def test_batch_sizes_that_do_not_split_over_the_processes_are_refused(sizes, monkeypatch, capsys):
    monkeypatch.setattr(lmm_batch, "run_stage", lambda *a: pytest.fail("no run may start"))
    with pytest.raises(SystemExit) as e:
        lmm_batch.main(["--batch-sizes", sizes, "--processes", "2"])
    assert e.value.code == 2
    assert "multiples of --processes (2)" in capsys.readouterr().err


def test_costs_are_per_conversation_against_the_first_size(monkeypatch, capsys):
    def fake(stage, processes, steps, out, extra):
        assert stage == "lmm" and processes == 2 and extra[0] == "--batch-size"
        return {16: 1.6, 8: 1.0}[int(extra[1])]

    monkeypatch.setattr(lmm_batch, "run_stage", fake)
    assert lmm_batch.main(["--batch-sizes", "16,8", "--repeats", "1", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["batch_sizes"]
    assert got["16"]["conversation_cost_vs_reference"] == pytest.approx(1.0)
    assert got["8"]["s_per_conversation"] == pytest.approx(1.0 / 8)
    assert got["8"]["conversation_cost_vs_reference"] == pytest.approx((1.0 / 8) / (1.6 / 16))
