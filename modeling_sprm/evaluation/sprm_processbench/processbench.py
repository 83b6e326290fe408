"""The ProcessBench metric's computations, numpy only (no import of the ``modeling_sprm`` package), so that the
``evaluate`` module beside this file is self-contained and can be published as a metric Space.
``modeling_sprm.evaluation.metrics`` imports these functions: they are the package's one implementation."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def first_below(step_scores: Sequence[float | None], threshold: float) -> int:
    """Index of the first step scoring strictly below ``threshold``, -1 if none; unscored steps (None) are skipped
    (the rule of ``modeling_sprm.aggregation.first_error_step``, which the package's tests hold it to)."""
    return next((i for i, s in enumerate(step_scores) if s is not None and s < threshold), -1)


def _harmonic_mean(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def processbench_f1(predictions: Sequence[int], labels: Sequence[int]) -> dict:
    """ProcessBench's metric (QwenLM/ProcessBench ``run_eval.py``) from predicted and true first-error indices
    (-1 = no error): ``error_acc`` = mean(prediction == label) over solutions with an error (label != -1),
    ``correct_acc`` = the same over solutions without one (label == -1), ``f1`` = their harmonic mean (0 when both
    are 0). An accuracy with no solution to average over is None, and so is ``f1`` then.

    Returns ``{"f1", "error_acc", "correct_acc", "n", "n_error", "n_correct"}``.
    """
    predictions, labels = np.asarray(predictions, dtype=int).reshape(-1), np.asarray(labels, dtype=int).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if (labels < -1).any() or (predictions < -1).any():
        raise ValueError("first-error indices are -1 (no error) or a step index >= 0")
    has_error = labels != -1
    error_acc = float(np.mean(predictions[has_error] == labels[has_error])) if has_error.any() else None
    correct_acc = float(np.mean(predictions[~has_error] == -1)) if (~has_error).any() else None
    return {
        "f1": _harmonic_mean(error_acc, correct_acc),
        "error_acc": error_acc,
        "correct_acc": correct_acc,
        "n": int(labels.size),
        "n_error": int(has_error.sum()),
        "n_correct": int((~has_error).sum()),
    }


def auroc(scores: Sequence[float], labels: Sequence[float]) -> float | None:
    """Area under the ROC curve: the probability that a random positive (label 1) scores above a random negative
    (label 0), ties counting one half (Mann-Whitney U with average ranks). None when one class is absent."""
    scores, labels = np.asarray(scores, dtype=float).reshape(-1), np.asarray(labels, dtype=float).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores for {labels.size} labels")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("AUROC needs 0/1 labels (round soft labels first)")
    positive = labels == 1.0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank, averaged over each group of ties
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def step_auroc(
    step_scores: Sequence[Sequence[float | None]], step_labels: Sequence[Sequence[float | None] | None]
) -> float | None:
    """AUROC over all steps that have both a score and a known label (ProcessBench labels: the steps before the
    first error are correct, the first error is wrong, later ones unknown). Solutions without labels are skipped."""
    if len(step_scores) != len(step_labels):
        raise ValueError(f"{len(step_scores)} solutions of step scores for {len(step_labels)} of step labels")
    scores, labels = [], []
    for i, (solution_scores, solution_labels) in enumerate(zip(step_scores, step_labels)):
        if solution_labels is None:
            continue
        if len(solution_scores) != len(solution_labels):
            raise ValueError(f"solution {i}: {len(solution_scores)} step scores for {len(solution_labels)} labels")
        for score, label in zip(solution_scores, solution_labels):
            if score is not None and label is not None:
                scores.append(score)
                labels.append(label)
    return auroc(scores, labels)


