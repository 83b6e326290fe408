"""Metrics and their uncertainty: ProcessBench F1 from step scores, step AUROC (also within step-length deciles),
and a bootstrap over problems that is paired across methods.

Point metrics come from ``modeling_sprm.evaluation`` (``predict_first_error``, ``processbench_f1``, ``auroc``,
``choose_threshold``). The bootstrap resamples the solutions of each held-out split with replacement (one problem
= one solution in ProcessBench and BIG-Bench Mistake); every method is evaluated on the same resamples, so the
difference of two methods on each resample gives a paired interval. A resample's metric is computed exactly as
the point metric with each solution (and its steps) counted as often as it was drawn.
"""

from __future__ import annotations

import numpy as np

from modeling_sprm.evaluation import auroc, choose_threshold, predict_first_error, processbench_f1

METRICS = ("f1", "error_acc", "correct_acc", "step_auroc")


def split_scores(scores: np.ndarray, offsets: np.ndarray) -> list[list[float]]:
    return [scores[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def pick_threshold(scores: np.ndarray, offsets: np.ndarray, first_error: np.ndarray, groups: np.ndarray) -> float:
    """The package's F1-maximising threshold (F1 averaged over groups) on these (training) solutions."""
    return choose_threshold(split_scores(scores, offsets), first_error.tolist(), groups=groups.tolist())


def predictions(scores: np.ndarray, offsets: np.ndarray, threshold: float) -> np.ndarray:
    return np.array([predict_first_error(s, threshold) for s in split_scores(scores, offsets)])


def point_metrics(scores: np.ndarray, offsets: np.ndarray, first_error: np.ndarray, step_label: np.ndarray,
                  threshold: float) -> dict:
    f1 = processbench_f1(predictions(scores, offsets, threshold), first_error)
    known = ~np.isnan(step_label)
    return {"f1": f1["f1"], "error_acc": f1["error_acc"], "correct_acc": f1["correct_acc"],
            "step_auroc": auroc(scores[known], step_label[known])}


def auroc_within_bins(scores: np.ndarray, step_label: np.ndarray, values: np.ndarray, bins: int = 10) -> float | None:
    """Mean over the ``bins`` quantile bins of ``values`` (e.g. step length) of the step AUROC inside each bin
    (bins lacking one class are skipped): what a score tells apart among steps of about the same length."""
    known = ~np.isnan(step_label)
    scores, labels, values = scores[known], step_label[known], values[known]
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, values, side="right")
    per_bin = [auroc(scores[which == b], labels[which == b]) for b in range(bins)]
    per_bin = [v for v in per_bin if v is not None]
    return float(np.mean(per_bin)) if per_bin else None


# -- bootstrap ------------------------------------------------------------------------------------------------------


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[R, n]``: how often each of ``n`` solutions is drawn in each of ``R`` resamples."""
    draws = rng.integers(0, n, size=(resamples, n))
    counts = np.zeros((resamples, n), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(resamples), n), draws.reshape(-1)), 1)
    return counts


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-300), np.nan)


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of ``scores`` vs binary ``labels`` (``[N]``) under each row of ``weights`` (``[R, N]``, how often each
    item counts), ties counting one half, as ``modeling_sprm.evaluation.auroc`` with items repeated. ``[R]``."""
    order = np.argsort(scores, kind="stable")
    scores, labels, weights = scores[order], labels[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])  # runs of equal scores
    positives = np.add.reduceat(weights * labels, starts, axis=1)
    negatives = np.add.reduceat(weights * (1 - labels), starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    numerator = (positives * (below + 0.5 * negatives)).sum(axis=1)
    return _ratio(numerator, positives.sum(axis=1) * negatives.sum(axis=1))


def bootstrap_metrics(counts: np.ndarray, scores: np.ndarray, offsets: np.ndarray, first_error: np.ndarray,
                      step_label: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Each metric of ``point_metrics`` on each resample: ``{metric: [R]}`` (``counts`` from ``resample_counts``)."""
    hit = (predictions(scores, offsets, threshold) == first_error).astype(np.float64)
    has_error = (first_error != -1).astype(np.float64)
    error_acc = _ratio(counts @ (hit * has_error), counts @ has_error)
    correct_acc = _ratio(counts @ (hit * (1 - has_error)), counts @ (1 - has_error))
    f1 = np.where(error_acc + correct_acc > 0, _ratio(2 * error_acc * correct_acc, error_acc + correct_acc), 0.0)
    f1 = np.where(np.isnan(error_acc) | np.isnan(correct_acc), np.nan, f1)
    known = ~np.isnan(step_label)
    solution_of_step = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    step_weights = counts[:, solution_of_step[known]]
    step_auroc = weighted_auroc(scores[known], step_label[known], step_weights)
    return {"f1": f1, "error_acc": error_acc, "correct_acc": correct_acc, "step_auroc": step_auroc}


def interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval of bootstrap values (nan values, e.g. an undefined AUROC, are left out)."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = (1 - level) / 2
    return [float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))]
