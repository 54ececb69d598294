"""HeadConfig validation and JSON round trip."""

import pytest

from flmm.errors import ConfigError
from flmm.head.config import HeadConfig, LossWeights, SamIdentity
from flmm.head.tiny import tiny_lmm_identity, tiny_sam_model


def test_json_round_trip(tmp_path):
    cfg = HeadConfig.create(
        tiny_lmm_identity(num_grids=2),
        tiny_sam_model(),
        merge="max",
        loss_weights=LossWeights(keyword_bce=0.5),
    )
    assert cfg.use_refiner and cfg.num_input_maps == 2 * 2 * 3
    assert cfg.sam == SamIdentity("", 32, 128, 8, 32, 2)
    cfg.save(tmp_path / "config.json")
    back = HeadConfig.load(tmp_path / "config.json")
    assert back == cfg
    assert back.loss_weights.keyword_bce == 0.5 and back.lmm.num_grids == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"merge": "median"},
        {"canvas_size": 60},
        {"canvas_size": 0},
        {"keyword_threshold": 1.5},
        {"decoder_width": 0},
        {"dice_smooth": 0.0},
        {"loss_weights": LossWeights(decoder_bce=-1.0)},
        {"use_refiner": True},  # no SAM identity
        {"format_version": 99},
    ],
)
def test_bad_values_raise_config_error(overrides):
    with pytest.raises(ConfigError):
        HeadConfig(lmm=tiny_lmm_identity(), **{"use_refiner": False, **overrides})


def test_unreadable_or_foreign_config_raises(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ConfigError):
        HeadConfig.load(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"model_type": "sam"}')
    with pytest.raises(ConfigError, match="lmm"):
        HeadConfig.load(tmp_path / "b.json")
