"""The part selector's own phase after the head's training (flmm.recipes.selector)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file
from torch.utils.data import ConcatDataset

from flmm.data.shapes import ShapesRefNarratives
from flmm.errors import ConfigError
from flmm.features import FeatureCache, build_cache
from flmm.head.config import HeadConfig
from flmm.head.model import FLMMHead
from flmm.head.selector import PART_FEATURES, PartSelector
from flmm.head.tiny import tiny_sam_model
from flmm.lmm.frozen import FrozenLMM
from flmm.recipes.config import RecipeConfig
from flmm.recipes.head import train_head
from flmm.recipes.selector import (
    PartSample,
    PartSamples,
    SelectorFit,
    SelectorObjective,
    collect_part_samples,
    fit_selector,
    object_hidden,
)
from flmm.train import TrainConfig, Trainer, read_log
from tests.tiny.llava import tiny_llava


class _TwoBlobs(nn.Module):
    """Stands in for the U-Net: every object's mask has a left and a right part on the image."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.out = nn.Conv2d(1, 1, 1)  # the head reads decoder.out.weight
        lg = torch.full((size, size), -5.0)
        lg[size // 2 - 3 : size // 2 + 3, 2:8] = 3.0
        lg[size // 2 - 3 : size // 2 + 3, size - 8 : size - 2] = 3.0
        self.logits = lg

    def forward(self, maps, cue=None):
        return self.logits.expand(maps.shape[0], -1, -1) + 0.0 * self.out.weight.sum()


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    model, proc = tiny_llava()
    lmm = FrozenLMM(model, proc, name="tiny-llava")
    root = tmp_path_factory.mktemp("sel") / "cache"
    data = ShapesRefNarratives("train", 4, max_expressions=3)
    build_cache(lmm, [data[i] for i in range(len(data))], root, rank=0, world_size=1, progress=False)
    return lmm, root


def _head(lmm, refiner=False):
    sam = tiny_sam_model() if refiner else None
    head = FLMMHead(HeadConfig.create(lmm.identity, sam, decoder_width=4, part_selector=True), sam_model=sam)
    head.decoder = _TwoBlobs(head.config.canvas_size)
    return head


def _config(out, **kw) -> TrainConfig:
    base = dict(output_dir=str(out), mixed_precision="no", save_every_steps=0, progress_bar=False)
    return TrainConfig(**{**base, **kw})


def test_collect_reads_the_unet_parts_without_the_refiner(cached):
    lmm, root = cached
    cache = FeatureCache(root)
    head = _head(lmm, refiner=True)  # no image embedding in this cache: the refiner must not run
    samples = collect_part_samples(head, cache, range(len(cache)), batch_size=3, progress=False)
    objects = sum(len(cache[i].objects) for i in range(len(cache)))
    assert len(samples) == objects  # every object's mask has the two parts
    s = samples[0]
    assert s.features.shape == (2, PART_FEATURES) and s.targets.shape == (2,) and s.hidden is None
    assert set(torch.cat([x.targets for x in samples]).unique().tolist()) <= {0.0, 1.0}
    # the records say where each object is; its hidden states are read from the cache when needed
    last = samples[-1]
    read = PartSamples(cache, samples)[len(samples) - 1].hidden
    assert torch.equal(read, cache[last.sample].objects[last.obj].hidden_states)
    both = ConcatDataset([cache, cache])
    assert torch.equal(object_hidden(both, len(cache) + last.sample, last.obj), read)
    assert head.training  # its mode is given back
    # the records are ordinary tensors: a step can backpropagate through them straight away
    batch = [PartSamples(cache, samples)[i] for i in range(4)]
    SelectorObjective(head.part_selector)(batch)["loss"].backward()
    assert head.part_selector.query[1].weight.grad is not None


def test_the_phase_learns_a_rule_that_needs_the_word(tmp_path):
    """Target: the left part when the phrase's word says "left", else the right one; the features alone
    cannot tell, so a score that beats chance by far reads the word."""
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(256):
        x = torch.rand(2, generator=g) * 2 - 1
        feats = torch.zeros(2, PART_FEATURES)
        feats[:, 0] = x
        feats[:, 6] = x - x.min()
        feats[:, 7] = x.max() - x
        left = bool(torch.rand(1, generator=g) < 0.5)
        hidden = torch.randn(3, 2, 8, generator=g) * 0.1
        hidden[1, :, 0] = 1.0 if left else -1.0  # the telling word, one token of three
        t = (x == (x.min() if left else x.max())).float()
        samples.append(PartSample(feats, t, 0, 0, hidden.half()))
    sel = PartSelector(2, 8, width=16)
    cfg = _config(tmp_path, epochs=15, batch_size=16, lr=1e-2, log_every_steps=1)
    Trainer(SelectorObjective(sel), samples, list, cfg).train()
    losses = [r["selector_bce"] for r in read_log(str(tmp_path), "train")]
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        right = sum(int(sel.score(s.features, s.hidden).argmax() == s.targets.argmax()) for s in samples)
    assert right / len(samples) > 0.9


def test_train_head_fits_the_selector_after_the_head(cached, tmp_path):
    lmm, root = cached
    head = _head(lmm)
    before = {k: v.clone() for k, v in head.part_selector.state_dict().items()}
    cfg = _config(tmp_path / "run", max_steps=2, batch_size=2, lr=1e-3, log_every_steps=1)
    result = train_head(head, [root], cfg, selector_fit=SelectorFit(epochs=3, batch_size=4))
    assert not result.interrupted
    phase = tmp_path / "run" / "selector"
    assert (phase / "parts-r0.pt").is_file()
    assert len(read_log(str(phase), "train")) >= 3
    saved = load_file(str(tmp_path / "run" / "head" / "model.safetensors"))
    now = head.part_selector.state_dict()
    assert [k for k, v in now.items() if not torch.equal(v, before[k])]  # the phase changed it
    assert all(torch.equal(saved["part_selector." + k], v) for k, v in now.items())  # and it was saved

    # no phase: the selector is what the head's own two steps made of it
    head = _head(lmm)
    train_head(
        head,
        [root],
        _config(tmp_path / "run0", max_steps=2, batch_size=2),
        selector_fit=SelectorFit(epochs=0),
    )
    assert not (tmp_path / "run0" / "selector").exists()


def test_bad_settings_are_config_errors(cached, tmp_path):
    lmm, root = cached
    with pytest.raises(ConfigError, match="epochs >= 0"):
        SelectorFit(epochs=-1).validate()
    plain = FLMMHead(HeadConfig.create(lmm.identity, None, decoder_width=4))
    with pytest.raises(ConfigError, match="no part selector"):
        fit_selector(plain, FeatureCache(root), SelectorFit(), _config(tmp_path))
    bad = {"lmm": {"name": "x"}, "data": [], "cache_dir": "c", "selector_fit": {"epoch": 3}}
    (tmp_path / "r.json").write_text(__import__("json").dumps(bad))
    with pytest.raises(ConfigError, match="selector_fit"):
        RecipeConfig.load(tmp_path / "r.json")


def test_an_interrupted_phase_resumes_to_the_same_selector(cached, tmp_path, monkeypatch):
    """Stopped after 3 of its steps (as on SIGINT), the phase resumes from its own checkpoint and ends
    with exactly the selector of an uninterrupted run."""
    import flmm.recipes.selector as phase

    lmm, root = cached
    data = FeatureCache(root)
    fit = SelectorFit(epochs=2, batch_size=4)
    whole = _head(lmm)
    start = {k: v.clone() for k, v in whole.part_selector.state_dict().items()}
    assert fit_selector(whole, data, fit, _config(tmp_path / "a")) is not None

    class StopsEarly(Trainer):
        def __init__(self, *args, **kwargs):
            def stop(trainer, state):
                if state.global_step == 3:
                    trainer.request_stop("test")

            super().__init__(*args, step_callback=stop, **kwargs)

    head = _head(lmm)
    head.part_selector.load_state_dict(start)
    monkeypatch.setattr(phase, "Trainer", StopsEarly)
    assert fit_selector(head, data, fit, _config(tmp_path / "b")).interrupted
    monkeypatch.setattr(phase, "Trainer", Trainer)
    again = _head(lmm)  # a new process, with other initial weights: only the checkpoint can match `whole`
    with torch.no_grad():
        for p in again.part_selector.parameters():
            p.add_(torch.randn_like(p))
    result = fit_selector(again, data, fit, _config(tmp_path / "b"), resume=True)
    assert not result.interrupted
    for k, v in whole.part_selector.state_dict().items():
        assert torch.equal(again.part_selector.state_dict()[k], v), k


def test_fewer_objects_than_a_batch_make_one_batch(cached, tmp_path):
    lmm, root = cached
    data = FeatureCache(root)
    objects = sum(len(data[i].objects) for i in range(len(data)))
    result = fit_selector(_head(lmm), data, SelectorFit(epochs=2, batch_size=2 * objects), _config(tmp_path))
    assert result is not None and result.state.global_step == 2  # one step per pass
