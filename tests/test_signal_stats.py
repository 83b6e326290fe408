"""benchmarks/signal/stats.py: the bootstrap reproduces the point metrics, weighted AUROC = AUROC with repeats."""

import numpy as np

from benchmarks.signal import stats
from modeling_sprm.evaluation import auroc


def test_weighted_auroc_equals_auroc_on_repeated_items():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = (rng.random(40) < 0.4).astype(float)
    weights = rng.integers(0, 4, (3, 40)).astype(float)
    got = stats.weighted_auroc(scores, labels, weights)
    for row, value in zip(weights, got):
        repeat = row.astype(int)
        assert np.isclose(value, auroc(np.repeat(scores, repeat), np.repeat(labels, repeat)))


def test_bootstrap_with_every_solution_once_is_the_point_metric():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 6, 30)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    first_error = np.array([rng.integers(-1, n) for n in lengths])
    labels = np.concatenate([[1.0] * f + [0.0] + [np.nan] * (n - f - 1) if f >= 0 else [1.0] * n
                             for f, n in zip(first_error, lengths)])
    scores = rng.random(offsets[-1])
    point = stats.point_metrics(scores, offsets, first_error, labels, 0.3)
    boot = stats.bootstrap_metrics(np.ones((1, 30)), scores, offsets, first_error, labels, 0.3)
    for metric in stats.METRICS:
        assert np.isclose(boot[metric][0], point[metric])


def test_resample_counts_draw_n_solutions_each_time():
    counts = stats.resample_counts(7, 50, np.random.default_rng(2))
    assert counts.shape == (50, 7) and np.all(counts.sum(1) == 7)
    assert stats.interval(np.array([np.nan, 1.0, 2.0, 3.0])) is not None
