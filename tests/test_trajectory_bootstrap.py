"""Cluster-bootstrap helpers of the trajectory analysis (benchmarks/trajectory/bootstrap.py)."""

import numpy as np
import pytest

from benchmarks.trajectory.bootstrap import (
    interval,
    problem_weights,
    resample_counts,
    resampled_mean,
    weighted_auroc,
)
from modeling_sprm.evaluation import auroc


def test_weighted_auroc_with_unit_weights_is_auroc_ties_included():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(float)  # many ties
    labels = (rng.random(200) < 0.4).astype(float)
    assert weighted_auroc(scores, labels, np.ones(200)) == pytest.approx(auroc(scores, labels))


def test_integer_weights_are_repeated_items():
    rng = np.random.default_rng(1)
    scores, labels = rng.random(50), (rng.random(50) < 0.5).astype(float)
    weights = rng.integers(0, 4, size=50)
    repeated = auroc(np.repeat(scores, weights), np.repeat(labels, weights))
    batch = weighted_auroc(scores, labels, np.stack([weights, np.ones(50)]))
    assert batch[0] == pytest.approx(repeated) and batch[1] == pytest.approx(auroc(scores, labels))


def test_weighted_auroc_is_nan_without_both_classes():
    assert np.isnan(weighted_auroc([0.1, 0.2], [1.0, 0.0], [1.0, 0.0]))
    assert np.isnan(weighted_auroc([], [], np.ones(0)))
    with pytest.raises(ValueError):
        weighted_auroc([0.1], [0.5], [1.0])


def test_resamples_keep_problems_whole_and_cover_the_truth():
    counts = resample_counts(40, 2000, seed=3)
    assert counts.shape == (2000, 40) and (counts.sum(1) == 40).all()
    assert problem_weights([0, 0, 39], counts).shape == (2000, 3)
    values = np.random.default_rng(4).normal(0.5, 0.2, size=40)
    summary = interval(float(values.mean()), resampled_mean(values, counts))
    se = values.std(ddof=1) / np.sqrt(40)
    assert summary["low"] < values.mean() < summary["high"]
    assert summary["high"] - summary["low"] == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_interval_of_an_undefined_metric():
    assert interval(None, np.array([0.1]))["value"] is None
    assert interval(float("nan"), np.array([0.1]))["value"] is None
    summary = interval(0.5, np.array([np.nan, 0.4, 0.6]))
    assert summary["resamples"] == 2 and summary["low"] >= 0.4
