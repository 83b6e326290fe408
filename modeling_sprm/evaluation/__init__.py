"""Evaluating step scorers: the metrics as pure functions (`metrics`) and scoring a data set with a model and
reporting them per group (`report`, what ``sprm eval`` runs). Everything is importable from here."""

from .metrics import (
    DEFAULT_THRESHOLDS,
    METRIC_PATH,
    _first_below,  # noqa: F401  (tested directly)
    auroc,
    best_of_n_accuracy,
    choose_threshold,
    expected_calibration_error,
    majority_vote_accuracy,
    outcome_auroc,
    predict_first_error,
    processbench_f1,
    step_auroc,
)
from .report import (
    choose_threshold_for_model,
    evaluate_model,
    evaluation_report,
    group_metrics,
    sample_per_group,
    score_records,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METRIC_PATH",
    "auroc",
    "best_of_n_accuracy",
    "choose_threshold",
    "choose_threshold_for_model",
    "evaluate_model",
    "evaluation_report",
    "expected_calibration_error",
    "group_metrics",
    "majority_vote_accuracy",
    "outcome_auroc",
    "predict_first_error",
    "processbench_f1",
    "sample_per_group",
    "score_records",
    "step_auroc",
]
