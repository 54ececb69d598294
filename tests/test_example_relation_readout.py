"""examples/relation_readout.py and flmm.shapes.relation_readout on the shipped tiny LMM's tower."""

from __future__ import annotations

import pytest

from flmm.assets_path import resolve
from flmm.errors import ConfigError
from flmm.shapes.lmm import load_lmm
from flmm.shapes.relation_readout import relation_readout
from flmm.world import split_seeds
from tests.examples_loader import load_example


def test_the_shipped_tower_finds_the_things_but_not_their_place(monkeypatch, capsys):
    """The measured split (docs/training-log.md, session 7): given each token's exact place, a probe
    on the shipped tower's last layer answers most relation questions; with a place it must read from
    the tokens, it stays at chance. Update if a tower that keeps its place ships."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = load_example("relation_readout")
    assert module.main(["--place", "exact", "--fit", "600", "--test", "150"]) == 0
    exact = float(capsys.readouterr().out.split("test ")[1].split(" %")[0])
    assert exact > 70.0
    model, processor = load_lmm(resolve("flmm:shapes/lmm"))
    learned = relation_readout(model.float(), processor, split_seeds("train", 600), split_seeds("val", 150))
    assert learned["test_questions"] > 300 and learned["test_acc"] < 0.6
    with pytest.raises(ConfigError, match="place must be one of"):
        relation_readout(model, processor, [1], [2], place="oracle")
