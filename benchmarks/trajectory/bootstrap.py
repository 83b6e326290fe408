"""95% intervals over problems by the cluster bootstrap: resample the problems with replacement, keep all of a
problem's samples and steps together, recompute the metric, take the 2.5th and 97.5th percentiles.

A resample is a row of multiplicities (how often each problem was drawn), so a metric is computed once per resample
as a weighted metric: the mean of per-problem values is ``counts @ values / P``, and AUROC is the weighted
Mann-Whitney statistic (``weighted_auroc``), computed for all resamples at once after one sort. Paired intervals
("A beats B") use the same resamples for both, on the per-resample difference.
"""

from __future__ import annotations

import numpy as np

CONFIDENCE = 0.95


def resample_counts(num_problems: int, num_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``[num_resamples, num_problems]`` multiplicities of the problems in each bootstrap resample."""
    if num_problems < 1:
        raise ValueError("the bootstrap needs at least one problem")
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_problems, np.full(num_problems, 1.0 / num_problems), size=num_resamples).astype(
        np.float32)


def weighted_auroc(scores, labels, weights) -> np.ndarray:
    """AUROC with item weights: ``sum_{i pos, j neg} w_i w_j (1[s_i > s_j] + 0.5 * 1[s_i == s_j]) /
    (sum_pos w * sum_neg w)``. ``weights`` is ``[n]`` or ``[B, n]`` (one row per resample); returns ``[]`` or
    ``[B]``, NaN where a class has no weight. With unit weights it is ``evaluation.auroc``."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    weights = np.asarray(weights, dtype=float)
    single = weights.ndim == 1
    weights = np.atleast_2d(weights)
    if scores.ndim != 1 or scores.shape != labels.shape or weights.shape[1] != scores.size:
        raise ValueError(f"{scores.size} scores, {labels.size} labels, weights of shape {weights.shape}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if scores.size == 0:
        out = np.full(weights.shape[0], np.nan)
        return out[0] if single else out
    order = np.argsort(scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # groups of tied scores
    w = weights[:, order]
    positive = np.add.reduceat(w * sorted_labels, starts, axis=1)
    negative = np.add.reduceat(w * (1 - sorted_labels), starts, axis=1)
    below = np.cumsum(negative, axis=1) - negative  # negative weight strictly below each group
    numerator = (positive * (below + 0.5 * negative)).sum(axis=1)
    denominator = positive.sum(axis=1) * negative.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)
    return out[0] if single else out


def interval(point: float | None, resampled: np.ndarray) -> dict:
    """``{"value", "low", "high", "resamples"}``: the point estimate and the percentile interval of the resampled
    values (NaN resamples, where the metric is undefined, are left out and counted)."""
    values = np.asarray(resampled, dtype=float)
    values = values[~np.isnan(values)]
    if point is None or (isinstance(point, float) and np.isnan(point)) or values.size == 0:
        return {"value": None, "low": None, "high": None, "resamples": int(values.size)}
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"value": float(point), "low": float(low), "high": float(high), "resamples": int(values.size)}


def resampled_mean(per_problem, counts: np.ndarray) -> np.ndarray:
    """``[B]``: the mean over problems of ``per_problem`` (``[P]``) in each resample."""
    return counts @ np.asarray(per_problem, dtype=float) / counts.sum(axis=1)


def problem_weights(problems, counts: np.ndarray) -> np.ndarray:
    """``[B, n]`` item weights: each item (a step, a trace) weighs as often as its problem was drawn.
    ``problems[i]`` is the index (0..P-1) of item i's problem."""
    return counts[:, np.asarray(problems, dtype=int)]
