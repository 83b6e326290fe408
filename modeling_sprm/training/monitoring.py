"""Watching an SPRM head learn: score metrics for ``Trainer.compute_metrics``, the JSON training log, and the plot
of MetaStone-S1's "aha moment" curves (mean solution score of correct vs incorrect solutions over training).

Pure numpy on the metric side (the AUROC is `evaluation.metrics.auroc`; an outcome or step label >= 0.5 counts as
correct, as everywhere in training); matplotlib (Agg canvas, no global backend switch) for the plot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..evaluation.metrics import auroc

CURVES = ("score_correct_mean", "score_incorrect_mean")


def correct_labels(labels: np.ndarray) -> np.ndarray:
    """0/1 labels from outcome or step labels in [0, 1]: >= 0.5 is correct (soft labels are cut at 0.5)."""
    return (np.asarray(labels, dtype=np.float64) >= 0.5).astype(np.float64)


def score_metrics(
    scores: np.ndarray,
    outcomes: np.ndarray,
    step_scores: np.ndarray | None = None,
    step_labels: np.ndarray | None = None,
    step_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of solution scores ``[N]`` against outcome labels ``[N]`` (NaN = unknown), and, when given, of
    step scores ``[N, S]`` against step labels ``[N, S]`` (NaN = unknown) where ``step_mask`` is True:

    * ``score_correct_mean`` / ``score_incorrect_mean``: mean solution score of solutions with outcome >= 0.5 /
      < 0.5, and ``score_gap`` their difference (MetaStone-S1's ``fc/correct_prob``, ``fc/false_prob``,
      ``fc/diff_prob``);
    * ``outcome_auroc``: how well the solution score separates correct from incorrect solutions;
    * ``step_auroc``: how well step scores separate correct from wrong steps (where step labels are known);
    * ``step_accuracy``: the share of those steps on the right side of 0.5 (calibration: a head can rank steps
      perfectly with every score below 0.5).
    """
    scores, outcomes = np.asarray(scores, dtype=np.float64), np.asarray(outcomes, dtype=np.float64)
    metrics: dict[str, float] = {}
    known = ~np.isnan(outcomes)
    correct, incorrect = known & (outcomes >= 0.5), known & (outcomes < 0.5)
    if correct.any():
        metrics["score_correct_mean"] = float(scores[correct].mean())
    if incorrect.any():
        metrics["score_incorrect_mean"] = float(scores[incorrect].mean())
    if correct.any() and incorrect.any():
        metrics["score_gap"] = metrics["score_correct_mean"] - metrics["score_incorrect_mean"]
        metrics["outcome_auroc"] = auroc(scores[known], correct_labels(outcomes[known]))
    if step_scores is not None and step_labels is not None:
        step_labels = np.asarray(step_labels, dtype=np.float64)
        valid = ~np.isnan(step_labels)
        if step_mask is not None:
            valid &= np.asarray(step_mask, dtype=bool)
        step_scores = np.asarray(step_scores, dtype=np.float64)[valid]
        value = auroc(step_scores, correct_labels(step_labels[valid]))
        if value is not None:
            metrics["step_auroc"] = value
        if valid.any():
            metrics["step_accuracy"] = float(((step_scores > 0.5) == (step_labels[valid] >= 0.5)).mean())
    return metrics


def compute_score_metrics(eval_pred) -> dict[str, float]:
    """``compute_metrics`` for the SPRM trainers: predictions ``(scores, step_scores, step_mask)``, labels
    ``(outcome_labels, step_labels)``, as their ``prediction_step`` returns them. The evaluation loop pads the step
    dimension with -100 when it joins batches; padding is recognised through ``step_mask != 1``."""
    scores, step_scores, step_mask = (np.asarray(x) for x in eval_pred.predictions)
    outcomes, step_labels = (np.asarray(x, dtype=np.float64) for x in eval_pred.label_ids)
    step_labels = np.where(step_labels == -100, np.nan, step_labels)
    return score_metrics(scores, outcomes, step_scores, step_labels, step_mask == 1)


class RunningScoreMetrics:
    """Sums over the training batches since the last log, kept on the training device (read, one sync, only when
    logging): the mean solution score of correct and of incorrect solutions (the "aha" curves), the share of steps
    the head calls right (near 0 or 1: collapsed), and the share of steps whose pseudo-label (score >
    ``threshold``) agrees with their solution's outcome (what the SPR filter keeps, for hard labels)."""

    NAMES = ("correct_score_sum", "correct_count", "incorrect_score_sum", "incorrect_count", "positive_steps",
             "agreeing_steps", "steps")  # fmt: skip

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.sums = torch.zeros(len(self.NAMES), dtype=torch.float64)

    def update(self, outputs: Any, outcomes: torch.Tensor) -> None:
        """Add one batch: ``outputs`` of the model (``scores``, ``step_scores``, ``step_mask``), ``outcomes``
        ``[B]`` (NaN = unknown: neither correct nor incorrect)."""
        scores, outcomes = outputs.scores.detach().double(), outcomes.detach().double().to(outputs.scores.device)
        mask = outputs.step_mask.detach()
        pseudo = outputs.step_scores.detach()[mask] > self.threshold
        step_outcomes = outcomes.unsqueeze(-1).expand_as(mask)[mask]
        correct, incorrect = outcomes >= 0.5, outcomes < 0.5
        agrees = (pseudo & (step_outcomes >= 0.5)) | (~pseudo & (step_outcomes < 0.5))
        values = {
            "correct_score_sum": scores[correct].sum(),
            "correct_count": correct.sum(),
            "incorrect_score_sum": scores[incorrect].sum(),
            "incorrect_count": incorrect.sum(),
            "positive_steps": pseudo.sum(),
            "agreeing_steps": agrees.sum(),
            "steps": mask.sum(),
        }
        self.sums = self.sums.to(scores.device) + torch.stack([values[name].double() for name in self.NAMES])

    def compute(self, global_sum: Callable[[torch.Tensor], torch.Tensor] | None = None, prefix: str = "") -> dict:
        """The metrics since the last call (summed over processes with ``global_sum``), then start again:
        ``score_correct_mean``, ``score_incorrect_mean``, ``score_gap``, ``step_positive_fraction``,
        ``filter_agreement`` (each only where defined), named with ``prefix``."""
        sums = dict(zip(self.NAMES, (global_sum(self.sums) if global_sum else self.sums).tolist()))
        self.sums = torch.zeros_like(self.sums)
        metrics = {}
        if sums["correct_count"]:
            metrics["score_correct_mean"] = sums["correct_score_sum"] / sums["correct_count"]
        if sums["incorrect_count"]:
            metrics["score_incorrect_mean"] = sums["incorrect_score_sum"] / sums["incorrect_count"]
        if sums["correct_count"] and sums["incorrect_count"]:
            metrics["score_gap"] = metrics["score_correct_mean"] - metrics["score_incorrect_mean"]
        if sums["steps"]:
            metrics["step_positive_fraction"] = sums["positive_steps"] / sums["steps"]
            metrics["filter_agreement"] = sums["agreeing_steps"] / sums["steps"]
        return {prefix + k: v for k, v in metrics.items()}


# -- the training log and its plot ---------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_training_log(path: str | Path, log_history: list[dict], **info: Any) -> Path:
    """Write ``{**info, "log_history": [...]}`` as JSON (the Trainer's log history: losses, learning rates, the
    score curves, evaluation metrics)."""
    path = Path(path)
    path.write_text(json.dumps(_clean({**info, "log_history": log_history}), indent=2, default=str) + "\n")
    return path


def score_curves(log_history: list[dict], prefix: str) -> dict[str, tuple[list[int], list[float]]]:
    """``{curve: (steps, values)}`` of the correct/incorrect mean scores logged with ``prefix`` ("eval_" or
    "train_")."""
    curves = {}
    for name in CURVES:
        points = [(entry["step"], entry[prefix + name]) for entry in log_history if entry.get(prefix + name) is not None]
        if points:
            curves[name] = ([s for s, _ in points], [v for _, v in points])
    return curves


def plot_score_curves(log_history: list[dict], path: str | Path, title: str = "SPRM training") -> Path | None:
    """Plot mean solution score of correct vs incorrect solutions against the optimizer step, from the evaluation
    logs (solid) and the training batches (dashed), and save a PNG. Returns None when nothing was logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = [(prefix, score_curves(log_history, prefix)) for prefix in ("eval_", "train_")]
    if not any(curves for _, curves in series):
        return None
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colors = {"score_correct_mean": "tab:green", "score_incorrect_mean": "tab:red"}
    for prefix, curves in series:
        for name, (steps, values) in curves.items():
            label = f"{'held-out' if prefix == 'eval_' else 'training batches'}: {name.split('_')[1]} solutions"
            axes.plot(
                steps, values, color=colors[name], linestyle="-" if prefix == "eval_" else "--", marker=".", label=label
            )
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("mean solution score")
    axes.set_ylim(0, 1)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    return path
