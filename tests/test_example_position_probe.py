"""examples/position_probe.py: the table of grid-position read-outs of the shipped tiny LMM."""

from __future__ import annotations

from tests.examples_loader import load_example


def test_shipped_tower_reads_position_at_the_embeddings_but_the_projector_does_not(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = load_example("position_probe")
    assert module.main(["--fit", "12", "--test", "6"]) == 0
    rows = {
        line.split("|")[1].strip(): [float(x) for x in line.split("|")[2:4]]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ") and line.split("|")[2].strip()[:1].isdigit()
    }
    assert list(rows) == ["0", "1", "2", "3", "4", "projector"]
    # the shipped tower (vision_feature_layer -1) keeps the column at its patch embeddings only
    # (docs/training-log.md, session 6): the LM cannot read left from right off the tokens' content
    assert rows["0"][1] > 40.0 and rows["projector"][1] < 15.0
