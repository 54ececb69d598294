"""The colour-gated shape loss of the vision warm-up's phase ``bind`` (flmm.shapes.binding_loss)."""

from __future__ import annotations

import math

import pytest
import torch

from flmm.errors import InputError
from flmm.shapes.binding_loss import colour_gated_shape_loss


def _pairs(named: list[tuple[int, int]], colours: int = 3, shapes: int = 4) -> torch.Tensor:
    out = torch.zeros(1, colours, shapes)
    for c, s in named:
        out[0, c, s] = 1.0
    return out


def test_tokens_of_a_colour_with_one_shape_are_weighed_by_their_colour():
    # 3 tokens, 3 colours, 4 shapes; colour 0 is named with shape 2 only, colour 1 with shapes 0 and 1
    big = 20.0  # sigmoid(20) = 1, sigmoid(-20) = 0 to float precision
    colour = torch.full((1, 3, 3), -big)
    colour[0, 0, 0] = colour[0, 1, 0] = big  # tokens 0 and 1 show colour 0
    colour[0, 2, 1] = big  # token 2 shows colour 1 (two shapes named: ignored)
    shape = torch.zeros(1, 3, 4)
    shape[0, 0, 2] = math.log(3.0)  # token 0: p(shape 2) = 3 / 6 = 0.5, and its top shape
    shape[0, 2, 2] = 5.0  # token 2 says shape 2 strongly, but carries no weight for colour 0
    loss, accuracy = colour_gated_shape_loss(colour, shape, _pairs([(0, 2), (1, 0), (1, 1)]))
    expected = -(math.log(0.5) + math.log(0.25)) / 2  # token 1 is uniform over 4 shapes
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert accuracy.item() == pytest.approx(0.5)  # token 0 right, token 1 a tie resolved to shape 0


def test_a_confident_right_token_costs_almost_nothing_and_colours_get_no_gradient():
    colour = torch.tensor([[[10.0], [-10.0]]], requires_grad=True)  # (1, 2 tokens, 1 colour)
    shape = torch.tensor([[[8.0, 0.0], [0.0, 8.0]]], requires_grad=True)  # token 0 says shape 0
    loss, accuracy = colour_gated_shape_loss(colour, shape, torch.tensor([[[1.0, 0.0]]]))
    assert loss.item() < 0.05 and accuracy.item() > 0.95
    loss.backward()
    assert colour.grad is None or not colour.grad.any()
    assert shape.grad is not None and shape.grad.abs().sum() > 0


def test_no_colour_with_exactly_one_shape_gives_none():
    colour, shape = torch.zeros(1, 5, 3), torch.zeros(1, 5, 4)
    assert colour_gated_shape_loss(colour, shape, _pairs([])) is None
    assert colour_gated_shape_loss(colour, shape, _pairs([(2, 0), (2, 3)])) is None


def test_shapes_that_do_not_fit_raise():
    with pytest.raises(InputError, match="do not fit"):
        colour_gated_shape_loss(torch.zeros(1, 5, 3), torch.zeros(1, 4, 4), _pairs([(0, 0)]))
    with pytest.raises(InputError, match="do not fit"):
        colour_gated_shape_loss(torch.zeros(1, 5, 3), torch.zeros(1, 5, 4), torch.zeros(1, 4, 3))
