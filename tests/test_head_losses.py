"""Loss values on known inputs."""

import math

import pytest
import torch

from flmm.head.losses import bce_loss, dice_loss, keyword_loss


def _perfect_logits(target):
    return torch.where(target > 0, 100.0, -100.0)


def test_dice_is_zero_for_a_perfect_prediction():
    target = torch.zeros(3, 16, 16)
    target[0, 2:9, 3:12] = 1
    target[1, :, :4] = 1
    # object 2 is absent: an all-background prediction of an empty target is perfect too
    loss = dice_loss(_perfect_logits(target), target)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_dice_and_bce_known_values_at_zero_logits():
    target = torch.zeros(1, 4, 4)
    target[0, :2, :2] = 1  # 4 of 16 cells
    logits = torch.zeros(1, 4, 4)  # p = 0.5 everywhere
    # Dice = 1 - (2 * 0.5 * 4 + 1) / (0.5 * 16 + 4 + 1)
    assert dice_loss(logits, target, smooth=1.0).item() == pytest.approx(1 - 5 / 13)
    assert bce_loss(logits, target).item() == pytest.approx(math.log(2))


def test_wrong_prediction_costs_more_than_right_one():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    good, bad = _perfect_logits(target) / 20, -_perfect_logits(target) / 20
    assert dice_loss(bad, target) > 0.9 > dice_loss(good, target)
    assert bce_loss(bad, target) > bce_loss(good, target)


def test_weights_ignore_cells():
    target = torch.zeros(1, 4, 4)
    logits = torch.full((1, 4, 4), -100.0)
    logits[0, 0, 0] = 100.0  # wrong, but ignored
    weights = torch.ones(1, 4, 4)
    weights[0, 0, 0] = 0
    assert bce_loss(logits, target, weights).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(logits, target, weights).item() == pytest.approx(0.0, abs=1e-6)
    assert bce_loss(logits, target).item() == pytest.approx(100 / 16, rel=1e-4)


def test_empty_ground_truth_gives_finite_losses_and_gradients():
    target = torch.zeros(2, 8, 8)
    logits = torch.randn(2, 8, 8, requires_grad=True)
    loss = bce_loss(logits, target) + dice_loss(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_no_objects_gives_zero_loss():
    logits = torch.zeros(0, 8, 8, requires_grad=True)
    assert bce_loss(logits, torch.zeros(0, 8, 8)).item() == 0.0
    assert dice_loss(logits, torch.zeros(0, 8, 8)).item() == 0.0


def test_keyword_loss_known_value():
    logits = [torch.zeros(3), torch.zeros(2)]
    labels = [torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 0.0])]
    assert keyword_loss(logits, labels).item() == pytest.approx(math.log(2))
    confident = [torch.tensor([20.0, -20.0, 20.0]), torch.tensor([-20.0, -20.0])]
    assert keyword_loss(confident, labels).item() < 1e-8
