"""Chat-preservation helpers: exact-match accuracy and identical generations."""

import json

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.metrics import (
    ExactMatchAccumulator,
    GenerationMatchAccumulator,
    ResAccumulator,
    count_identical,
    differing_indices,
    exact_match,
    exact_match_accuracy,
    normalize_answer,
)


def test_normalize_answer():
    assert normalize_answer("  Yes.") == "yes"
    assert normalize_answer("(B)  Cat!") == "b cat"
    assert normalize_answer("The Cat", drop_articles=True) == "cat"
    with pytest.raises(InputError):
        normalize_answer(None)


def test_exact_match_and_accuracy():
    assert exact_match("YES", "yes.")
    assert exact_match("a dog", ["cat", "A  dog"])
    assert not exact_match("dogs", "dog")
    # 2 of 4 right; the unanswered one counts wrong
    assert exact_match_accuracy(["Yes", "no", None, "B"], ["yes", "yes", "no", ["b", "(b)"]]) == 0.5
    with pytest.raises(InputError):
        exact_match_accuracy(["yes"], [])


def test_exact_match_accumulator_merge_and_missing():
    a, b = ExactMatchAccumulator(), ExactMatchAccumulator()
    a.update("yes", "Yes", sample_id="q1")
    b.update(None, "no", sample_id="q2")
    a.merge(json.loads(json.dumps(b.state_dict())))
    assert a.compute() == {
        "accuracy": 0.5,
        "accuracy_ci95": [0.0, 1.0],
        "correct": 1,
        "count": 2,
        "missing": 1,
    }
    with pytest.raises(InputError):
        a.merge(ResAccumulator())
    with pytest.raises(InputError):
        a.merge(ExactMatchAccumulator(drop_articles=True))
    with pytest.raises(InputError, match="missing keys"):
        a.merge({"correct": 1})


def test_identical_generations_token_for_token():
    run_a = [[1, 2, 3], np.array([4, 5]), "same text", [7]]
    run_b = [[1, 2, 3], [4, 6], "same text", [7, 8]]
    assert differing_indices(run_a, run_b) == [1, 3]
    assert count_identical(run_a, run_b) == 2
    with pytest.raises(InputError):
        count_identical([[1]], [[1], [2]])
    with pytest.raises(InputError):
        count_identical([[1.5, "x"]], [[1]])
    acc = GenerationMatchAccumulator()
    for i, (x, y) in enumerate(zip(run_a, run_b)):
        acc.update(x, y, sample_id=i)
    assert acc.compute() == {"identical_fraction": 0.5, "identical": 2, "count": 4}
