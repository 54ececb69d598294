"""Keyword-selection P/R/F1 on hand-made spans, and the noun-phrase baseline."""

import numpy as np
import pytest

from flmm.errors import InputError, SpanError
from flmm.metrics import KeywordAccumulator, keyword_scores, noun_phrase_spans, word_spans

TEXT = "a red car near the big tree"
#       0123456789012345678901234567
GOLD = [(2, 9), (19, 27)]  # "red car", "big tree"
PRED = [(0, 9), (15, 22)]  # "a red car", "the big"


def spans_text(text, spans):
    return [text[a:b] for a, b in spans]


def test_word_spans():
    assert spans_text(TEXT, word_spans(TEXT)) == TEXT.split()
    assert word_spans("  two  words ") == [(2, 5), (7, 12)]


def test_word_span_and_overlap_levels_by_hand():
    out = keyword_scores([TEXT], [PRED], [GOLD])
    # words predicted: a red car the big (5); gold: red car big tree (4); common: red car big (3)
    assert (out["word_tp"], out["word_fp"], out["word_fn"]) == (3, 2, 1)
    assert out["precision"] == pytest.approx(3 / 5)
    assert out["recall"] == pytest.approx(3 / 4)
    assert out["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert out["word_f1"] == out["f1"]
    # no predicted span equals a gold span
    assert out["span_exact_precision"] == 0.0 and out["span_exact_recall"] == 0.0
    assert out["span_exact_f1"] == 0.0
    # but every predicted span touches a gold span and vice versa
    assert out["span_overlap_precision"] == 1.0 and out["span_overlap_recall"] == 1.0


def test_exact_spans_ignore_surrounding_space_and_punctuation():
    text = "a red car, and sky"
    out = keyword_scores([text], [[(1, 10), (15, 18)]], [[(2, 9)]])  # " red car," and "sky"
    assert out["span_exact_precision"] == pytest.approx(1 / 2)
    assert out["span_exact_recall"] == 1.0


def test_accumulates_micro_counts_and_merges():
    acc = KeywordAccumulator()
    acc.update(TEXT, PRED, GOLD, sample_id=0)
    other = KeywordAccumulator()
    other.update("the sky", [(4, 7)], [(4, 7)], sample_id=1)
    acc.merge(other)
    out = acc.compute()
    assert (out["word_tp"], out["word_fp"], out["word_fn"]) == (4, 2, 1)
    assert out["precision"] == pytest.approx(4 / 6) and out["recall"] == pytest.approx(4 / 5)
    assert out["span_exact_precision"] == pytest.approx(1 / 3)
    assert out["texts"] == 2 and out["gold_spans"] == 3
    # duplicate spans count once; numpy ints are fine
    again = keyword_scores([TEXT], [[(np.int64(2), np.int64(9)), (2, 9)]], [GOLD])
    assert again["pred_spans"] == 1


def test_bad_spans():
    with pytest.raises(SpanError):
        keyword_scores([TEXT], [[(5, 100)]], [GOLD])
    with pytest.raises(SpanError):
        keyword_scores([TEXT], [[(4, 4)]], [GOLD])
    with pytest.raises(SpanError):
        keyword_scores([TEXT], [[(0.0, 3)]], [GOLD])
    with pytest.raises(SpanError):
        keyword_scores([TEXT], [[(1, 2, 3)]], [GOLD])
    with pytest.raises(SpanError):
        keyword_scores([TEXT], [[5]], [GOLD])
    with pytest.raises(InputError):
        keyword_scores([TEXT], [PRED], [])
    empty = keyword_scores([TEXT], [[]], [[]])
    assert np.isnan(empty["precision"]) and np.isnan(empty["recall"]) and np.isnan(empty["f1"])


def test_noun_phrase_baseline_takes_every_noun_phrase():
    text = "in this image we can see a person standing on the road. in the background there are trees."
    assert spans_text(text, noun_phrase_spans(text)) == [
        "this image",
        "a person",
        "the road",
        "the background",
        "trees",
    ]
    assert spans_text(
        "a building and two small brown dogs", noun_phrase_spans("a building and two small brown dogs")
    ) == [
        "a building",
        "two small brown dogs",
    ]


def test_noun_phrase_baseline_with_lexicon():
    text = "the big dog sees a cat near the old tree"
    spans = noun_phrase_spans(text, nouns={"dog", "cat"}, adjectives={"big"})
    assert spans_text(text, spans) == ["the big dog", "a cat"]


def test_baseline_is_high_recall_low_precision():
    text = "in this image we can see a person standing on the road. in the background there are trees."
    gold = [(text.index("person"), text.index("person") + 6), (text.index("road"), text.index("road") + 4)]
    out = keyword_scores([text], [noun_phrase_spans(text)], [gold])
    assert out["recall"] == 1.0
    assert out["precision"] < 0.5
