"""The relation-question probe of the vision warm-up (flmm.shapes.relations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from flmm.errors import ConfigError
from flmm.shapes.lmm import build_lmm
from flmm.shapes.relations import QUERY_WORDS, RelationProbe, TokenAddress, parse_relation, relation_rows
from flmm.shapes.vision_warmup import SceneImages, VisionWarmupConfig, VisionWarmupObjective, collate_batch
from flmm.world import COLORS, SHAPES, render, sample_spec, split_seeds
from flmm.world import describe as d
from tests.tiny.shapes_lmm import TINY_SHAPES_LMM as TINY

W = {w: i for i, w in enumerate(QUERY_WORDS)}


def test_a_relation_question_is_parsed_from_its_text():
    row = parse_relation("is the big red circle left of the square ?", "no")
    assert row == [W["big"], W["red"], W["circle"], 0, 0, W["square"], 0, 0]
    assert parse_relation("is the blue object below the small green star ?", "yes") == [
        0, W["blue"], 0, W["small"], W["green"], W["star"], 3, 1,
    ]  # fmt: skip
    assert parse_relation("is there a red circle ?", "yes") is None
    assert parse_relation("what color is the star ?", "red") is None


def _descriptor(ids: list[int]) -> d.Descriptor:
    size, color, shape = (QUERY_WORDS[i] if i else None for i in ids)
    return size, color, shape


def test_every_row_is_true_of_its_scene_and_answers_are_balanced():
    answers = []
    for seed in split_seeds("train", 40):
        scene = render(sample_spec(seed))
        things = scene.spec.things
        for row in relation_rows(scene).tolist():
            if row[6] < 0:
                assert row == [-1] * 8  # padding
                continue
            (a,), (b,) = (d.members(things, _descriptor(row[k : k + 3])) for k in (0, 3))
            assert d.relation_state(things[a], things[b], d.RELATIONS[row[6]]) == bool(row[7])
            answers.append(row[7])
    assert len(answers) > 100 and np.mean(answers) == pytest.approx(0.5)


def _oracle_tokens(seeds: list[int], with_place: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens that show exactly what is where: per 8-px cell, the colour and shape of the thing covering
    it (one-hot) and, if ``with_place``, the cell's (x, y) / 16. ``(S, 256, 32)``, rows ``(S, 8, 8)``."""
    tokens, rows = [], []
    for seed in seeds:
        scene = render(sample_spec(seed))
        grid = torch.zeros(16, 16, 32)
        for k, thing in enumerate(scene.spec.things):
            mask = torch.as_tensor(np.asarray(scene.thing_masks[k]), dtype=torch.float32)
            cells = mask.reshape(16, 8, 16, 8).mean((1, 3)) > 0.3
            grid[cells, COLORS.index(thing.color)] = 1.0
            grid[cells, 16 + SHAPES.index(thing.shape)] = 1.0
        if with_place:
            grid[..., 30] = torch.arange(16.0)[None, :] / 16
            grid[..., 31] = torch.arange(16.0)[:, None] / 16
        tokens.append(grid.reshape(256, 32))
        rows.append(relation_rows(scene))
    return torch.stack(tokens), torch.stack(rows)


def _fit(tokens: torch.Tensor, rows: torch.Tensor, epochs: int = 25) -> RelationProbe:
    torch.manual_seed(0)
    probe = RelationProbe(tokens.shape[-1])
    opt = torch.optim.AdamW(probe.parameters(), 1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(len(tokens)).split(32):
            out = probe(tokens[idx], rows[idx])
            if out is not None:
                opt.zero_grad()
                out[0].backward()
                opt.step()
    return probe


@pytest.mark.parametrize("with_place", [True, False])
def test_the_probe_answers_only_when_the_tokens_hold_the_place(with_place):
    train = _oracle_tokens(split_seeds("train", 500), with_place)
    test = _oracle_tokens(split_seeds("val", 150), with_place)
    probe = _fit(*train)
    with torch.no_grad():
        accuracy = float(probe(*test)[1])  # type: ignore[index]
    # the same tokens without their place: no read-out can say which thing is further left
    assert accuracy > 0.85 if with_place else accuracy < 0.62


def test_the_relations_phase_adds_the_loss_and_old_phase_files_still_load(tmp_path):
    model, processor = build_lmm(TINY, seed=1)
    objective = VisionWarmupObjective(model.model.vision_tower, relation_weight=1.0)
    seeds = [s for s in split_seeds("train", 30) if (relation_rows(render(sample_spec(s)))[:, 6] >= 0).any()]
    data = SceneImages(seeds[:4], processor.image_processor, 32, mix=False, relations=True)
    out = objective(collate_batch([data[i] for i in range(4)]))
    assert {"relation_acc", "address_row_acc", "address_col_acc"} <= set(out) and torch.isfinite(out["loss"])
    # a phase file from before the relation probe (no relation_probe.* keys) loads; a foreign key does not
    state = {k: v for k, v in objective.state_dict().items() if not k.startswith("relation_probe.")}
    save_file(state, str(tmp_path / "old.safetensors"))
    objective.load_phase(str(tmp_path / "old.safetensors"))
    save_file({**state, "other.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="re-run the phase"):
        objective.load_phase(str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="loss weights"):
        VisionWarmupConfig(relation_weight=-1.0)


def test_token_address_reads_the_grid_and_rejects_another_token_count():
    torch.manual_seed(0)
    probe = TokenAddress(hidden=32, grid=4)
    # tokens that hold their address (a fixed random code per position) and noise; then only noise
    code = torch.randn(16, 32)
    opt = torch.optim.AdamW(probe.parameters(), 3e-2)
    for _ in range(150):
        loss, _, _ = probe(code + 0.1 * torch.randn(8, 16, 32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, row, col = probe(code + 0.1 * torch.randn(8, 16, 32))
    assert row == 1.0 and col == 1.0
    _, row, col = probe(torch.randn(64, 16, 32))  # tokens without their address: about chance (1/4)
    assert row < 0.4 and col < 0.4
    with pytest.raises(ConfigError, match="4x4 grid"):
        probe(torch.zeros(1, 15, 32))


def test_the_lmm_stage_cli_sets_the_relation_phase_weights():
    from flmm.shapes.train_lmm import parse_args

    argv = [
        "--out",
        "x",
        "--vision-phases",
        "scenes,relations",
        "--vision-steps",
        "2,2",
        "--vision-lr",
        "1e-3",
    ]
    cfg = parse_args([*argv, "--relation-weight", "0.5", "--address-weight", "2"])[0]
    assert cfg.vision.phases == ("scenes", "relations")
    assert (cfg.vision.relation_weight, cfg.vision.address_weight) == (0.5, 2.0)
    with pytest.raises(SystemExit):
        parse_args([*argv, "--address-weight", "-1"])
    with pytest.raises(SystemExit):
        parse_args([*argv, "--projector-address-weight", "-1"])
    assert parse_args([*argv, "--projector-address-weight", "0.5"])[0].address_weight == 0.5
