"""The metrics of step scorers, as small pure functions (numpy). ``modeling_sprm.evaluation.report`` scores data sets
with a model and reports these metrics per group.

* **ProcessBench F1** (``processbench_f1``): the predicted first error of a solution is the first step scoring
  below a threshold (``predict_first_error``); ``error_acc`` is the share of erroneous solutions whose first error
  is found exactly, ``correct_acc`` the share of correct solutions predicted error-free, F1 their harmonic mean.
  The threshold is a free parameter: choose it on training data (``choose_threshold``), never on the test split.
* **AUROC** (``auroc``, ``step_auroc``, ``outcome_auroc``): how well scores rank correct above wrong, per step
  (steps with a known label) or per solution (the aggregated score against the outcome label).
* **Best-of-N** (``best_of_n_accuracy``, MetaStone-S1's disjoint groups), **majority vote**
  (``majority_vote_accuracy``), **calibration** (``expected_calibration_error``).

The same ProcessBench metric is an ``evaluate`` module: ``evaluate.load(modeling_sprm.evaluation.METRIC_PATH)``. It
is self-contained (it can be published as a metric Space), so the functions it needs (``processbench_f1``,
``auroc``, ``step_auroc``) live next to it in ``sprm_processbench/processbench.py`` (numpy only) and are imported
here: one implementation.

Why no scikit-learn for AUROC and calibration: a dependency of about 40 MB (with joblib and threadpoolctl) for two
functions of ten lines each; ``auroc`` is the Mann-Whitney statistic with average ranks, and the tests check it
against ``scipy.stats.mannwhitneyu``.
Training monitors (``modeling_sprm.training.monitoring``) use the same ``auroc``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..aggregation import first_error_step
from ..answers import answer_keys
from .sprm_processbench.processbench import auroc, processbench_f1, step_auroc  # noqa: F401 (re-exported)

METRIC_PATH = str(Path(__file__).parent / "sprm_processbench")
DEFAULT_THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(1, 100))  # 0.01, 0.02, ..., 0.99


# -- ProcessBench -------------------------------------------------------------------------------------------------


def predict_first_error(step_scores: Sequence[float | None], threshold: float) -> int:
    """Index of the first step scoring strictly below ``threshold`` (`aggregation.first_error_step`), -1 if none
    does. Steps without a score (``None``: cut off by truncation) are skipped, so an error after the cut goes
    unseen."""
    first = first_error_step(step_scores, threshold)
    return -1 if first is None else first


def _first_below(step_scores: Sequence[float | None], thresholds: np.ndarray) -> np.ndarray:
    """``predict_first_error`` for many thresholds at once: the running minimum of the scores does not increase,
    so the first step below ``t`` is found by binary search on it (``side="right"`` keeps a score equal to ``t``
    from counting: strictly below, as ``predict_first_error``)."""
    values = np.array([np.inf if s is None else s for s in step_scores], dtype=float)
    if values.size == 0:
        return np.full(thresholds.shape, -1)
    negated_running_min = -np.minimum.accumulate(values)  # non-decreasing
    index = np.searchsorted(negated_running_min, -thresholds, side="right")
    return np.where(index == values.size, -1, index)


def choose_threshold(
    step_scores: Sequence[Sequence[float | None]],
    labels: Sequence[int | None],
    candidates: Sequence[float] = DEFAULT_THRESHOLDS,
    groups: Sequence[str] | None = None,
) -> float:
    """The candidate threshold with the highest ProcessBench F1 on the data given (the smallest one on a tie).
    With ``groups``, the F1 is averaged over groups (ProcessBench's average over splits). Solutions with an
    unknown first error (label None) are left out.

    Give it **training** data only: a threshold tuned on the test split inflates the test F1.
    """
    if len(step_scores) != len(labels) or (groups is not None and len(groups) != len(labels)):
        raise ValueError("step_scores, labels (and groups) must have one entry per solution")
    known = [i for i, label in enumerate(labels) if label is not None]
    thresholds = np.unique(np.asarray(candidates, dtype=float))  # sorted: on a tie the smallest wins
    if thresholds.size == 0:
        raise ValueError("no candidate thresholds")
    predictions = np.stack([_first_below(step_scores[i], thresholds) for i in known], axis=1) if known else None
    known_labels = np.array([labels[i] for i in known])
    known_groups = [groups[i] if groups is not None else "" for i in known]
    masks = [np.array([g == group for g in known_groups]) for group in dict.fromkeys(known_groups)]
    best, best_f1 = None, -1.0
    for t, row in enumerate(predictions if predictions is not None else []):
        f1s = [processbench_f1(row[mask], known_labels[mask])["f1"] for mask in masks]
        f1s = [f for f in f1s if f is not None]
        if f1s and float(np.mean(f1s)) > best_f1:
            best, best_f1 = float(thresholds[t]), float(np.mean(f1s))
    if best is None:
        raise ValueError("choosing a threshold needs solutions both with and without an error (in some group)")
    return best


# -- AUROC --------------------------------------------------------------------------------------------------------


def outcome_auroc(scores: Sequence[float], outcome_labels: Sequence[float | None]) -> float | None:
    """AUROC of solution scores (the aggregated step scores) against outcome labels; unknown labels skipped."""
    if len(scores) != len(outcome_labels):
        raise ValueError(f"{len(scores)} scores for {len(outcome_labels)} outcome labels")
    pairs = [(s, y) for s, y in zip(scores, outcome_labels) if y is not None]
    return auroc([s for s, _ in pairs], [y for _, y in pairs])


# -- Best-of-N, majority vote, calibration ------------------------------------------------------------------------


def _disjoint_groups(num_samples: int, n: int, question: int) -> list[range]:
    """MetaStone-S1's groups: K = floor(num_samples / n) consecutive, disjoint groups of n samples."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    k = num_samples // n
    if k == 0:
        raise ValueError(f"question {question}: {num_samples} samples, fewer than n={n}")
    return [range(g * n, (g + 1) * n) for g in range(k)]


def best_of_n_accuracy(
    scores: Sequence[Sequence[float]], correct: Sequence[Sequence[float]], n: int
) -> float:
    """Best-of-N accuracy with MetaStone-S1's disjoint groups: per question, its samples (in the given order) are
    cut into K = floor(num_samples / n) groups of n (left-over samples unused); each group picks its
    highest-scoring sample (the first one on a tie); the question's accuracy is the mean correctness of the K
    picks; the result is the mean over questions.

    ``scores[q][i]`` / ``correct[q][i]``: score and correctness (0/1, or a soft value) of sample i of question q.
    """
    if len(scores) != len(correct) or not scores:
        raise ValueError("scores and correct need one (equally long) list of samples per question, and a question")
    per_question = []
    for q, (s, c) in enumerate(zip(scores, correct)):
        if len(s) != len(c):
            raise ValueError(f"question {q}: {len(s)} scores for {len(c)} correctness values")
        picks = [c[group[int(np.argmax([s[i] for i in group]))]] for group in _disjoint_groups(len(s), n, q)]
        per_question.append(float(np.mean(picks)))
    return float(np.mean(per_question))


def majority_vote_accuracy(
    answers: Sequence[Sequence[str | None]],
    correct: Sequence[Sequence[float]],
    n: int | None = None,
    weights: Sequence[Sequence[float]] | None = None,
) -> float:
    """Majority-vote (self-consistency) accuracy: per group of samples, the most frequent final answer wins (numbers
    compare by value, ``"1,000"`` == ``"1000"``, other answers by `answers.answers_match` (math-verify); None = no
    answer, no vote; on a tie the answer seen first) and
    the group is as correct as a sample giving that answer; a group without answers counts as wrong. ``weights``
    (e.g. solution scores) turn it into a weighted vote. ``n``: vote within MetaStone-S1's disjoint groups of n
    samples (as ``best_of_n_accuracy``, so the two compare); None = one vote over all samples of a question.
    """
    if len(answers) != len(correct) or not answers or (weights is not None and len(weights) != len(answers)):
        raise ValueError("answers, correct (and weights) need one list of samples per question, and a question")
    per_question = []
    for q, (a, c) in enumerate(zip(answers, correct)):
        w = weights[q] if weights is not None else [1.0] * len(a)
        if not len(a) == len(c) == len(w):
            raise ValueError(f"question {q}: answers, correct and weights differ in length")
        groups = [range(len(a))] if n is None else _disjoint_groups(len(a), n, q)
        results = []
        for group in groups:
            votes: Counter = Counter()
            first_sample: dict[str, int] = {}
            for i, key in zip(group, answer_keys([a[i] for i in group])):
                if key is not None:
                    votes[key] += w[i]
                    first_sample.setdefault(key, i)
            if not votes:
                results.append(0.0)
                continue
            top = max(votes.values())
            winner = min((first_sample[k] for k, v in votes.items() if v == top))  # the first-seen of the tied
            results.append(float(c[winner]))
        per_question.append(float(np.mean(results)))
    return float(np.mean(per_question))


def bootstrap_mean(
    values: Sequence[float], num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """The mean of ``values`` (one per problem) and its percentile bootstrap interval over problems: the problems
    are resampled with replacement ``num_resamples`` times, and ``low`` / ``high`` are the (1 - confidence) / 2 and
    (1 + confidence) / 2 quantiles of the resampled means. Ten lines of numpy rather than ``scipy.stats.bootstrap``:
    scipy is a test dependency only."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"need at least one finite value, got {values.size} values")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(num_resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high)}


def expected_calibration_error(probs: Sequence[float], labels: Sequence[float], n_bins: int = 10) -> float:
    """ECE: the scores are put in ``n_bins`` equal-width bins ``[k/n, (k+1)/n)`` (1.0 in the last); ECE is the
    sum over bins of (share of samples in the bin) * |mean label - mean score| in the bin. Labels may be soft."""
    probs, labels = np.asarray(probs, dtype=float).reshape(-1), np.asarray(labels, dtype=float).reshape(-1)
    if probs.shape != labels.shape or probs.size == 0:
        raise ValueError(f"need equally many probabilities and labels, got {probs.size} and {labels.size}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if np.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probabilities must be in [0, 1]")
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs(labels[inside].mean() - probs[inside].mean())
    return float(ece)
