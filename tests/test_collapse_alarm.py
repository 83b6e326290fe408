"""The collapse alarm (`modeling_sprm.training.monitoring`): the rule on hand-built training logs, the warning, the
verdict in ``training.json``, ``config.head_training`` and the model card, and a tiny synthetic run that collapses
(MetaStone-S1's SPR filter, `tests/test_train_synthetic.py`) next to one that does not (`outcome_bce`)."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import PrinterCallback

from modeling_sprm import SPRMConfig
from modeling_sprm.cards import collapse_note, render_model_card
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments
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
    assert "'spr' loss (since optimizer step 10): at step 50 the head calls 100.0% of the training steps right and " \
           "its step scores spread 0.0032 (standard deviation)" in message
    assert "SPR filter keeps almost only steps of one class" in message
    assert "Try --loss outcome_bce, --loss mil or a head with feature_normalization='standardize'" in message
    other = collapse_warning(collapse_verdict(SPR_COLLAPSING), "outcome_bce", standardized=True)
    assert other.endswith("Try --loss mil.")
    step = collapse_warning(collapse_verdict(SPR_COLLAPSING), "step_bce", labels="step")
    assert "'step_bce' loss" in step and "SPR filter" not in step and "--loss" not in step
    assert step.endswith("Try --class_balance or a head with feature_normalization='standardize' (SPRMConfig).")


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


# -- the record: training.json and the card ----------------------------------------------------------------------------


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


def _config(head_training: dict) -> SPRMConfig:
    from transformers import LlamaConfig

    text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=100)
    return SPRMConfig(text_config=text, backbone_name_or_path="tiny", head_training=head_training)


def test_the_card_warns_about_a_collapsed_head():
    config = _config({"loss": "spr", "collapse": collapse_verdict(SPR_COLLAPSING)})
    text = render_model_card(config, "alice/collapsed").text
    training = text[text.index("## Training"): text.index("## Evaluation")]
    assert "**Warning: this head's training collapsed** (from optimizer step 10 on). In the last training log (step " \
           "50) the head calls 100.0% of the training steps right and its step scores spread 0.0032 (standard " \
           "deviation)" in training
    assert f"in each of the last {COLLAPSE_PATIENCE} training logs" in training
    assert '"collapsed"' not in text  # said in a sentence, not dumped as JSON


def test_the_card_states_a_passed_or_unjudged_check_and_says_nothing_without_one():
    config = _config({"loss": "outcome_bce", "collapse": collapse_verdict(OUTCOME_BCE_HEALTHY)})
    passed = render_model_card(config, "a/b")
    assert "Collapse check: passed. In the last training log (optimizer step 50) the head calls 52.2% of the " \
           "training steps wrong" in passed.text
    assert "Warning" not in passed.text
    short = collapse_note(collapse_verdict(SPR_COLLAPSING[:1]))
    assert short == ("Collapse check: not judged (the run has 1 training logs with step metrics; the rule needs "
                     f"{COLLAPSE_PATIENCE}).")
    assert collapse_note(None) == "" and "Collapse check" not in render_model_card(_config({"loss": "spr"}), "a/b").text
    # training.json (the experiment's) wins over config.head_training, as for every other field
    overridden = render_model_card(_config({"collapse": collapse_verdict(OUTCOME_BCE_HEALTHY)}), "a/b",
                                   training={"collapse": collapse_verdict(SPR_COLLAPSING)})
    assert "Warning: this head's training collapsed" in overridden.text


# -- a tiny training run -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_features(smollm2_tokenizer):
    """Cached step features of 300 synthetic solutions (benchmarks/synthetic_spr.py: a step is wrong exactly when
    its rule word is a "bad" one, visible at the token the head reads)."""
    from benchmarks.synthetic_spr import synthetic_records, tiny_model
    from modeling_sprm.training.features import extract_step_features

    return extract_step_features(tiny_model(smollm2_tokenizer), smollm2_tokenizer, synthetic_records(300, seed=1),
                                 batch_size=32)


def train_synthetic(tokenizer, features, loss: str, out) -> SPRMTrainer:
    """Train a fresh head with ``loss`` (the synthetic benchmark's recipe: 10 epochs of 10 batches, learning rate
    1e-2, a log every 10 steps) and save it to ``out``."""
    from benchmarks.synthetic_spr import tiny_model

    args = SPRMTrainingArguments(
        output_dir=str(out), use_cpu=True, save_strategy="no", disable_tqdm=True, report_to="none", seed=0,
        num_train_epochs=10, per_device_train_batch_size=32, learning_rate=1e-2, logging_steps=10, loss=loss,
    )
    trainer = SPRMTrainer(tiny_model(tokenizer), args, train_dataset=features)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(str(out))
    return trainer


@pytest.mark.usefixtures("one_torch_thread")
def test_a_collapsing_spr_run_warns_and_records_it_while_outcome_bce_does_not(
    smollm2_tokenizer, synthetic_features, tmp_path, caplog
):
    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        spr = train_synthetic(smollm2_tokenizer, synthetic_features, "spr", tmp_path / "spr")
    warnings = [r.getMessage() for r in caplog.records if r.name == MONITOR_LOGGER]
    assert spr.state.global_step == 100 and len([e for e in spr.state.log_history if "loss" in e]) == 10
    assert len(warnings) == 2, warnings  # the onset and the end of training, not one per log
    assert all("collapsed with the 'spr' loss" in w and "--loss outcome_bce" in w for w in warnings)
    recorded = json.loads((tmp_path / "spr" / "training.json").read_text())["collapse"]
    assert recorded["collapsed"] is True and recorded["since_step"] <= 30 and recorded["step"] == 100
    assert "one_class" in recorded["signs"]
    config = SPRMConfig.from_pretrained(tmp_path / "spr")  # the head-only checkpoint's config.json
    assert config.head_training["collapse"] == recorded
    assert "Warning: this head's training collapsed" in render_model_card(config, "alice/spr").text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=MONITOR_LOGGER):
        bce = train_synthetic(smollm2_tokenizer, synthetic_features, "outcome_bce", tmp_path / "bce")
    assert not [r for r in caplog.records if r.name == MONITOR_LOGGER]
    recorded = json.loads((tmp_path / "bce" / "training.json").read_text())["collapse"]
    assert recorded["collapsed"] is False and recorded["training_logs"] == 10
    assert 0.2 < recorded["step_positive_fraction"] < 0.8 and recorded["step_score_std"] > 0.1
    assert "Collapse check: passed" in render_model_card(bce.model.config, "alice/bce").text
