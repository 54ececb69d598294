"""Keyword grouping on hand-made scores and keyword labels from spans."""

import pytest
import torch

from flmm.errors import InputError
from flmm.head.keyword import KeywordSelector, group_keywords, keyword_labels

TEXT = "A red car and the blue sky."
# word-piece tokens with BPE-style leading spaces: "A", " red", " car", " and", " the", " bl", "ue", " sky", "."
OFFSETS = torch.tensor([[0, 1], [1, 5], [5, 9], [9, 13], [13, 17], [17, 20], [20, 22], [22, 26], [26, 27]])


def test_adjacent_positive_tokens_form_phrases_with_spans():
    probs = torch.tensor([0.1, 0.9, 0.8, 0.2, 0.05, 0.6, 0.31, 0.95, 0.0])
    phrases = group_keywords(probs, 0.3, offsets=OFFSETS, text=TEXT)
    assert [p.token_indices for p in phrases] == [[1, 2], [5, 6, 7]]
    assert [p.text for p in phrases] == ["red car", "blue sky"]
    assert [p.span for p in phrases] == [(2, 9), (18, 26)]
    assert phrases[0].score == pytest.approx((0.9 + 0.8) / 2)
    assert phrases[1].score == pytest.approx((0.6 + 0.31 + 0.95) / 3)


def test_threshold_is_strict_and_configurable():
    probs = torch.tensor([0.3, 0.3000001, 0.1, 0.5])
    assert [p.token_indices for p in group_keywords(probs, 0.3)] == [[1], [3]]
    assert [p.token_indices for p in group_keywords(probs, 0.05)] == [[0, 1, 2, 3]]
    assert group_keywords(probs, 0.6) == []


def test_gaps_in_positions_split_phrases():
    probs = torch.tensor([0.9, 0.9, 0.9])
    positions = torch.tensor([4, 5, 9])  # token 2 is not next to token 1 in the sequence
    phrases = group_keywords(probs, 0.3, positions=positions)
    assert [p.token_indices for p in phrases] == [[0, 1], [2]]
    assert all(p.span is None for p in phrases)


def test_unknown_offsets_give_no_span():
    offsets = OFFSETS.clone()
    offsets[2] = -1
    phrases = group_keywords(torch.tensor([0.0, 0.9, 0.9, 0, 0, 0, 0, 0, 0]), 0.3, offsets=offsets, text=TEXT)
    assert phrases[0].token_indices == [1, 2] and phrases[0].span is None


def test_bad_scores_raise():
    with pytest.raises(InputError):
        group_keywords(torch.tensor([0.5, float("nan")]))
    with pytest.raises(InputError):
        group_keywords(torch.tensor([0.5, 0.6]), positions=torch.tensor([1]))


def test_keyword_labels_from_character_spans():
    labels = keyword_labels(OFFSETS, [(2, 9), (18, 26)])
    assert labels.tolist() == [0, 1, 1, 0, 0, 1, 1, 1, 0]
    with pytest.raises(InputError):
        keyword_labels(OFFSETS, [(5, 5)])


def test_selector_shapes_and_hidden_size_check():
    sel = KeywordSelector(8)
    assert sel(torch.randn(5, 8)).shape == (5,)
    assert sel(torch.randn(2, 5, 8)).shape == (2, 5)
    with pytest.raises(InputError):
        sel(torch.randn(5, 7))
