"""METEOR: hand-computed sentence scores, agreement with nltk (WordNet disabled), backends."""

import shutil
from importlib.util import find_spec

import pytest

from flmm.errors import ConfigError, InputError
from flmm.metrics import available_backends, meteor, sentence_meteor, tokenize
from flmm.metrics.meteor import align, count_chunks

ALPHA, BETA, GAMMA = 0.9, 3.0, 0.5


def by_hand(m, hyp_len, ref_len, chunks):
    p, r = m / hyp_len, m / ref_len
    f = p * r / (ALPHA * p + (1 - ALPHA) * r)
    return (1 - GAMMA * (chunks / m) ** BETA) * f


def test_tokenize_drops_punctuation_and_case():
    assert tokenize("A man's Hat, on the-table.") == ["a", "man", "s", "hat", "on", "the", "table"]


def test_exact_matches_by_hand():
    hyp = tokenize("a man riding a horse")
    ref = tokenize("a man is riding a horse on the beach")
    # all 5 hypothesis words match; "a man" | "riding a horse" are 2 chunks (ref has "is" between)
    assert align(hyp, ref) == [(0, 0), (1, 1), (2, 3), (3, 4), (4, 5)]
    assert count_chunks(align(hyp, ref)) == 2
    assert sentence_meteor(hyp, [ref]) == pytest.approx(by_hand(5, 5, 9, 2))


def test_stem_stage_by_hand():
    pytest.importorskip("nltk")
    hyp, ref = ["dogs", "running"], ["dog", "runs"]
    # no exact match; Porter stems dog/dog and run/run match in order: one chunk
    assert sentence_meteor(hyp, [ref]) == pytest.approx(by_hand(2, 2, 2, 1))
    assert sentence_meteor(hyp, [ref], stem=False) == 0.0


def test_word_order_fragments():
    # "b a" vs "a b": two matches in two chunks
    assert sentence_meteor(["b", "a"], [["a", "b"]]) == pytest.approx(by_hand(2, 2, 2, 2))


def test_no_match_empty_and_best_reference():
    assert sentence_meteor(["cat"], [["dog"]]) == 0.0
    assert sentence_meteor([], [["dog"]]) == 0.0
    two_refs = [["a", "dog"], ["a", "cat"]]
    assert sentence_meteor(["a", "cat"], two_refs) == pytest.approx(by_hand(2, 2, 2, 1))
    with pytest.raises(InputError):
        sentence_meteor("a cat", two_refs)


class _NoWordNet:
    """Stands in for nltk's WordNet: no synonyms, so nltk runs its exact and stem stages only."""

    def synsets(self, word):
        return []


@pytest.mark.parametrize(
    "hyp,ref",
    [
        ("a man riding a horse", "a man is riding a horse on the beach"),
        ("the dogs are running in the park", "two dogs run through a park"),
        ("a woman holding an umbrella in the rain", "the woman holds umbrellas while it rains"),
        ("the the the cat", "the cat sat on the mat the end"),
        ("completely different words", "nothing in common here"),
    ],
)
def test_agrees_with_nltk_without_wordnet(hyp, ref):
    pytest.importorskip("nltk")
    from nltk.translate.meteor_score import meteor_score

    expected = meteor_score([tokenize(ref)], tokenize(hyp), wordnet=_NoWordNet())
    assert sentence_meteor(tokenize(hyp), [tokenize(ref)]) == pytest.approx(expected, abs=1e-12)


def test_corpus_score_is_mean_and_names_impl():
    r = meteor(
        ["a man riding a horse", "a cat"], [["a man is riding a horse on the beach"], ["a dog"]], "flmm"
    )
    assert r.per_sentence[0] == pytest.approx(by_hand(5, 5, 9, 2))
    assert r.per_sentence[1] == pytest.approx(by_hand(1, 2, 2, 1))
    assert r.score == pytest.approx(sum(r.per_sentence) / 2)
    assert r.impl in ("flmm-exact+stem", "flmm-exact")


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown"):
        meteor(["a"], [["a"]], backend="bleu")
    with pytest.raises(InputError):
        meteor(["a", "b"], [["a"]], backend="flmm")
    with pytest.raises(InputError):
        meteor(["a"], ["a"], backend="flmm")
    assert "flmm" in available_backends()


@pytest.mark.slow
@pytest.mark.skipif(
    find_spec("pycocoevalcap") is None or shutil.which("java") is None, reason="needs pycocoevalcap + java"
)
def test_coco_backend_runs_meteor_1_5():
    r = meteor(
        ["a man is riding a horse on the beach", "a cat sleeps"],
        [["a man is riding a horse on the beach"], ["two dogs play in the snow"]],
        backend="coco",
    )
    assert r.impl == "coco-meteor-1.5"
    assert r.per_sentence[0] > 0.9 and r.per_sentence[1] == 0.0
    assert 0.0 < r.score < 1.0
