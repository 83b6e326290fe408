"""The statistics of the loop at power (benchmarks/selfgen/power.py): bootstrap over problems (on top of
benchmarks/trajectory/bootstrap.py, tested there), weighted F1, per-problem Best-of-N and votes, checked against the
package's unweighted metrics."""

import numpy as np
import pytest

from benchmarks.selfgen.power import (
    Bootstrap,
    difference,
    pick_accuracy,
    problem_mean,
    summary,
    vote_accuracy,
    weighted_f1,
)
from modeling_sprm.evaluation import best_of_n_accuracy, majority_vote_accuracy, processbench_f1


def test_weighted_f1_is_processbench_f1_with_items_repeated():
    predictions = np.array([-1, 2, 0, -1, 1, -1])
    labels = np.array([-1, 2, 1, 0, 1, -1])
    weights = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 3, 1, 1]], dtype=float)
    values = weighted_f1(predictions == labels, labels != -1, weights)
    assert values[0] == pytest.approx(processbench_f1(predictions, labels)["f1"])
    repeated = np.repeat(np.arange(6), weights[1].astype(int))
    assert values[1] == pytest.approx(processbench_f1(predictions[repeated], labels[repeated])["f1"])


def test_bootstrap_resamples_problems_and_row_zero_is_the_point_estimate():
    boot = Bootstrap([7, 3, 5], resamples=200, seed=1)
    assert boot.problems == [3, 5, 7] and boot.counts.shape == (201, 3)
    assert (boot.counts[0] == 1).all() and (boot.counts.sum(1) == 3).all()
    w = boot.weights([5, 5, 7])
    assert (w[:, 0] == boot.counts[:, 1]).all() and (w[:, 2] == boot.counts[:, 2]).all()
    means = problem_mean({3: 0.0, 5: 1.0, 7: 1.0}, boot)
    assert means[0] == pytest.approx(2 / 3)
    out = summary(means)
    assert out["value"] == pytest.approx(2 / 3) and 0.0 <= out["low"] <= out["high"] <= 1.0
    same = difference(means, means)
    assert same["value"] == 0 and (same["low"], same["high"]) == (0.0, 0.0) and same["share_above_0"] == 0.0


def test_per_problem_selection_matches_the_package_metrics():
    scores = [0.2, 0.9, 0.4, 0.4, 0.1, 0.3, 0.8, 0.5]
    correct = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    answers = ["1", "2", "2", "3", None, "2", "3", "2"]
    for n in (1, 2, 4, 8):
        assert pick_accuracy(scores, correct, n) == pytest.approx(best_of_n_accuracy([scores], [correct], n))
        assert vote_accuracy(answers, correct, n) == pytest.approx(majority_vote_accuracy([answers], [correct], n))
        assert vote_accuracy(answers, correct, n, scores) == pytest.approx(
            majority_vote_accuracy([answers], [correct], n, weights=[scores])
        )
    assert pick_accuracy(scores, correct, 4) == 0.5  # groups pick 0.9 (right) and 0.8 (wrong)
