"""The collapse alarm (`modeling_sprm.training.monitoring`): the rule on hand-built training logs, the warning and
the verdict in ``training.json``."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from modeling_sprm.training.monitoring import (
    COLLAPSE_PATIENCE,
    MIN_STEP_SCORE_STD,
    ONE_CLASS_SHARE,
    CollapseAlarm,
    RunningScoreMetrics,
    collapse_signs,
    collapse_verdict,
    collapse_warning,
    record_collapse_verdict,
)

MONITOR_LOGGER = "modeling_sprm.training.monitoring"


def train_log(step: int, positive: float, spread: float, agreement: float = 0.5) -> dict:
    """One training log as `SPRMTrainer.log` writes it (loss, learning rate and the training-batch metrics)."""
    return {"step": step, "loss": 0.5, "learning_rate": 1e-3, "train_step_positive_fraction": positive,
            "train_step_score_std": spread, "train_filter_agreement": agreement}


# Measured on the synthetic data of tests/test_train_synthetic.py (seed 0, logging every 10 steps): SPR drifts to
# "every step right" with ever flatter scores; outcome_bce passes through "every step wrong" once, at step 20.
SPR_COLLAPSING = [train_log(10, 0.998, 0.0731), train_log(20, 1.0, 0.0684), train_log(30, 1.0, 0.0191),
                  train_log(40, 1.0, 0.0065), train_log(50, 1.0, 0.0032)]
OUTCOME_BCE_HEALTHY = [train_log(10, 0.697, 0.0216), train_log(20, 0.01, 0.0351), train_log(30, 0.374, 0.0758),
                       train_log(40, 0.427, 0.1364), train_log(50, 0.478, 0.2183)]


# -- the rule ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("positive", "spread", "signs"),
    [
        (0.45, 0.29, []),
        (ONE_CLASS_SHARE, 0.2, ["one_class"]),
        (1 - ONE_CLASS_SHARE, 0.2, ["one_class"]),
        (ONE_CLASS_SHARE - 0.01, 0.2, []),
        (0.03 + 0.01, 0.2, []),
        (0.5, MIN_STEP_SCORE_STD / 2, ["flat_scores"]),
        (0.5, MIN_STEP_SCORE_STD, []),
        (1.0, 0.001, ["one_class", "flat_scores"]),
    ],
)
def test_collapse_signs_of_one_log(positive, spread, signs):
    assert collapse_signs(train_log(10, positive, spread)) == signs


def test_a_log_without_the_metrics_shows_no_sign():
    assert collapse_signs({"step": 10, "loss": 0.3}) == []
    assert collapse_signs({"step": 10, "train_step_positive_fraction": 1.0}) == ["one_class"]  # an older log


def test_spr_drifting_to_one_class_is_collapsed():
    verdict = collapse_verdict(SPR_COLLAPSING)
    assert verdict["collapsed"] is True and verdict["since_step"] == 10
    assert verdict["signs"] == ["one_class", "flat_scores"]
    assert verdict["step"] == 50 and verdict["step_positive_fraction"] == 1.0 and verdict["step_score_std"] == 0.0032
    assert verdict["training_logs"] == 5
    assert verdict["rule"] == {"one_class_share": ONE_CLASS_SHARE, "min_step_score_std": MIN_STEP_SCORE_STD,
                               "patience": COLLAPSE_PATIENCE}
    json.dumps(verdict)  # goes into training.json and config.json as it is


def test_a_healthy_run_passing_through_one_class_is_not_collapsed():
    verdict = collapse_verdict(OUTCOME_BCE_HEALTHY)
    assert verdict["collapsed"] is False and verdict["since_step"] is None and verdict["signs"] == []
    # ...nor is any prefix of it that the alarm judges while training
    for end in range(COLLAPSE_PATIENCE, len(OUTCOME_BCE_HEALTHY) + 1):
        assert collapse_verdict(OUTCOME_BCE_HEALTHY[:end])["collapsed"] is False


def test_patience_counts_consecutive_training_logs_only():
    healthy = [train_log(10 * i, 0.4, 0.2) for i in range(1, 5)]
    flat = [train_log(10 * i, 0.5, 0.001) for i in range(5, 5 + COLLAPSE_PATIENCE)]
    evaluation = {"step": 60, "eval_loss": 0.4, "eval_score_correct_mean": 0.7, "epoch": 1.0}
    history = healthy + flat[:1] + [evaluation] + flat[1:]  # evaluation logs in between do not break the run
    assert collapse_verdict(history[:-1])["collapsed"] is False  # one log short
    verdict = collapse_verdict(history)
    assert verdict["collapsed"] is True and verdict["since_step"] == 50 and verdict["signs"] == ["flat_scores"]
    # A run that recovers is not collapsed at the end, however long it was collapsed before.
    recovered = history + [train_log(100 + 10 * i, 0.4, 0.2) for i in range(COLLAPSE_PATIENCE)]
    assert collapse_verdict(recovered)["collapsed"] is False
    # One healthy log in the last COLLAPSE_PATIENCE is enough to clear it.
    assert collapse_verdict(history + [train_log(100, 0.4, 0.2)] + flat[:1])["collapsed"] is False


def test_too_few_training_logs_are_not_judged():
    verdict = collapse_verdict(SPR_COLLAPSING[: COLLAPSE_PATIENCE - 1] + [{"step": 20, "train_loss": 0.1}])
    assert verdict["collapsed"] is None and verdict["training_logs"] == COLLAPSE_PATIENCE - 1
    assert collapse_verdict([])["collapsed"] is None


def test_the_rule_reads_the_prefix_it_is_given():
    evaluation = [{f"eval_{k[len('train_'):]}" if k.startswith("train_") else k: v for k, v in e.items()}
                  for e in SPR_COLLAPSING]
    assert collapse_verdict(evaluation)["collapsed"] is None  # no training logs
    assert collapse_verdict(evaluation, prefix="eval_")["collapsed"] is True


# -- the running metric it reads ---------------------------------------------------------------------------------------


def test_running_metrics_report_the_spread_of_the_step_scores():
    torch.manual_seed(0)
    metrics = RunningScoreMetrics()
    kept = []
    for _ in range(3):  # three batches between two logs
        step_scores, step_mask = torch.rand(4, 5), torch.rand(4, 5) > 0.3
        outputs = SimpleNamespace(scores=torch.rand(4), step_scores=step_scores, step_mask=step_mask)
        metrics.update(outputs, torch.tensor([1.0, 0.0, 1.0, float("nan")]))
        kept.append(step_scores[step_mask])
    result = metrics.compute(prefix="train_")
    assert result["train_step_score_std"] == pytest.approx(float(np.std(torch.cat(kept).numpy())), rel=1e-6)
    mask = torch.ones(2, 3, dtype=torch.bool)
    constant = SimpleNamespace(scores=torch.rand(2), step_scores=torch.full((2, 3), 0.7), step_mask=mask)
    metrics.update(constant, torch.tensor([1.0, 0.0]))
    assert metrics.compute()["step_score_std"] == pytest.approx(0.0, abs=1e-7)


# -- the warning -------------------------------------------------------------------------------------------------------


def test_the_warning_is_one_line_naming_the_loss_and_what_to_try():
    message = collapse_warning(collapse_verdict(SPR_COLLAPSING), "spr")
    assert "\n" not in message
    assert "'spr' loss" in message and "since optimizer step 10" in message
    assert "100.0% of the training steps right" in message and "0.0032" in message
    assert "SPR filter keeps almost only steps of one class" in message
    assert "Try --loss outcome_bce, --loss mil or a head with feature_normalization='standardize'" in message
    other = collapse_warning(collapse_verdict(SPR_COLLAPSING), "outcome_bce", standardized=True)
    assert "--loss outcome_bce" not in other and "--loss mil" in other and "standardize" not in other


def test_the_alarm_warns_at_the_onset_and_at_the_end_not_at_every_log(caplog):
    alarm = CollapseAlarm("spr")
    state = SimpleNamespace(log_history=[], is_world_process_zero=True)
    history = OUTCOME_BCE_HEALTHY + SPR_COLLAPSING + [train_log(60 + 10 * i, 0.45, 0.2) for i in range(2)] + [
        train_log(80 + 10 * i, 1.0, 0.001) for i in range(COLLAPSE_PATIENCE + 2)
    ]
    warned_at = []
    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        for entry in history:
            state.log_history.append(entry)
            before = len(caplog.records)
            alarm.on_log(None, state, None, logs=entry)
            if len(caplog.records) > before:
                warned_at.append(entry["step"])
            alarm.on_log(None, state, None, logs={"eval_loss": 0.3})  # evaluation logs are not judged
        assert warned_at == [30, 100]  # the first collapse (3rd collapsed log), then the second after recovery
        alarm.on_train_end(None, state, None)
        assert len(caplog.records) == 3 and "since optimizer step 80" in caplog.records[-1].getMessage()
    assert all(r.levelno == logging.WARNING and r.name == MONITOR_LOGGER for r in caplog.records)


def test_only_the_main_process_warns(caplog):
    alarm = CollapseAlarm("spr")
    state = SimpleNamespace(log_history=list(SPR_COLLAPSING), is_world_process_zero=False)
    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        alarm.on_log(None, state, None, logs=SPR_COLLAPSING[-1])
        alarm.on_train_end(None, state, None)
    assert not caplog.records


# -- the record: training.json -----------------------------------------------------------------------------------------


def test_the_verdict_is_added_to_training_json(tmp_path, caplog):
    verdict = collapse_verdict(SPR_COLLAPSING)
    path = tmp_path / "training.json"
    record_collapse_verdict(path, verdict)
    assert json.loads(path.read_text()) == {"collapse": verdict}
    path.write_text(json.dumps({"command": "sprm train ...", "collapse": {"collapsed": False}}))
    record_collapse_verdict(path, verdict)  # an experiment's description keeps its fields; the verdict is replaced
    assert json.loads(path.read_text()) == {"command": "sprm train ...", "collapse": verdict}
    path.write_text("[1, 2]")
    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        record_collapse_verdict(path, verdict)
    assert path.read_text() == "[1, 2]" and "is not a JSON object" in caplog.text
