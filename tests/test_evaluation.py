"""Evaluation metrics (hand-computed), the `evaluate` module, scoring data sets, and `sprm eval` end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, ROOT
from modeling_sprm.evaluation import (
    DEFAULT_THRESHOLDS,
    METRIC_PATH,
    _first_below,
    auroc,
    best_of_n_accuracy,
    choose_threshold,
    evaluation_report,
    expected_calibration_error,
    majority_vote_accuracy,
    outcome_auroc,
    predict_first_error,
    processbench_f1,
    sample_per_group,
    score_records,
    step_auroc,
)

# -- ProcessBench -------------------------------------------------------------------------------------------------


def test_predict_first_error():
    assert predict_first_error([0.9, 0.4, 0.2], 0.5) == 1
    assert predict_first_error([0.9, None, 0.3], 0.5) == 2  # the unscored (truncated) step is skipped
    assert predict_first_error([0.6, 0.7], 0.5) == -1
    assert predict_first_error([0.5], 0.5) == -1  # equal to the threshold is not below it
    assert predict_first_error([], 0.5) == -1


def test_processbench_f1_by_hand():
    # Erroneous solutions (label != -1): #0 1 == 1 yes, #1 2 vs 0 no, #3 -1 vs 3 no -> error_acc 1/3.
    # Correct solutions (label == -1): #2 yes, #4 predicted 0 no -> correct_acc 1/2.
    # F1 = 2 * (1/3) * (1/2) / (1/3 + 1/2) = (1/3) / (5/6) = 0.4
    result = processbench_f1([1, 2, -1, -1, 0], [1, 0, -1, 3, -1])
    assert result["error_acc"] == pytest.approx(1 / 3) and result["correct_acc"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.4)
    assert (result["n"], result["n_error"], result["n_correct"]) == (5, 3, 2)
    assert processbench_f1([0, 1], [1, -1])["f1"] == 0.0  # both accuracies 0: F1 0, not a division by zero
    one_sided = processbench_f1([-1, 0], [-1, -1])  # no erroneous solution: error_acc and F1 undefined
    assert (one_sided["error_acc"], one_sided["correct_acc"], one_sided["f1"]) == (None, 0.5, None)
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        processbench_f1([0, 1], [1])
    with pytest.raises(ValueError, match="-1"):
        processbench_f1([0], [-2])


# Three solutions: A errs at step 1, B is correct, C errs at step 0.
SCORES = [[0.9, 0.3], [0.8, 0.6], [0.45, 0.9]]
LABELS = [1, -1, 0]


def test_choose_threshold_by_hand():
    # Predictions (first step below t): A: -1 if t <= 0.3, 1 if 0.3 < t <= 0.9, else 0.
    #                                   B: -1 if t <= 0.6, 1 if 0.6 < t <= 0.8, else 0.   C: -1 if t <= 0.45, else 0.
    # t=0.2: A no, C no (error_acc 0), B yes -> F1 0.      t=0.4: A yes, C no (1/2), B yes (1) -> F1 2/3.
    # t=0.5: A, C, B all right -> F1 1.                    t=0.7: B predicted 1 -> correct_acc 0 -> F1 0.
    assert choose_threshold(SCORES, LABELS, candidates=[0.2, 0.4, 0.5, 0.7, 0.95]) == 0.5
    # 0.5, 0.55 and 0.6 all give F1 1: the smallest wins, whatever the order of the candidates.
    assert choose_threshold(SCORES, LABELS, candidates=[0.6, 0.55, 0.5]) == 0.5
    # Per group: group x (A, B) reaches F1 1 from t > 0.3; group y (C alone) has no F1 and does not count.
    assert choose_threshold(SCORES, LABELS, candidates=[0.2, 0.4, 0.5], groups=["x", "x", "y"]) == 0.4
    # Unknown labels are left out.
    assert choose_threshold(SCORES + [[0.1]], LABELS + [None], candidates=[0.4, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both with and without an error"):
        choose_threshold([[0.9]], [-1])
    with pytest.raises(ValueError, match="one entry per solution"):
        choose_threshold(SCORES, LABELS[:2])


def test_vectorised_predictions_equal_the_loop():
    rng = np.random.default_rng(0)
    thresholds = np.asarray(DEFAULT_THRESHOLDS)
    for _ in range(50):
        scores = [None if rng.random() < 0.1 else float(s) for s in rng.random(rng.integers(0, 8))]
        expected = [predict_first_error(scores, t) for t in thresholds]
        assert _first_below(scores, thresholds).tolist() == expected


def test_ties_with_the_threshold_are_not_errors_in_either_rule():
    scores = [0.75, 0.5, 0.25]
    thresholds = np.array([0.25, 0.5, 0.75])
    assert [predict_first_error(scores, t) for t in thresholds] == [-1, 2, 1]
    assert _first_below(scores, thresholds).tolist() == [-1, 2, 1]


# -- AUROC --------------------------------------------------------------------------------------------------------


def test_auroc_by_hand():
    # Positives {0.35, 0.8} vs negatives {0.1, 0.4}: 0.35 > 0.1, 0.35 < 0.4, 0.8 > both -> 3 of 4 pairs.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # Ties count one half: positive 0.5 ties both negatives (1/2 + 1/2), positive 0.9 beats both (2) -> 3 / 4.
    assert auroc([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert auroc([0.3, 0.3], [0, 1]) == 0.5
    assert auroc([0.2, 0.9], [1, 0]) == 0.0
    assert auroc([0.2, 0.9], [1, 1]) is None  # one class only
    with pytest.raises(ValueError, match="0/1 labels"):
        auroc([0.2, 0.9], [0.5, 1])
    with pytest.raises(ValueError, match="NaN"):
        auroc([float("nan"), 0.9], [0, 1])


def test_step_and_outcome_auroc_by_hand():
    # Known (score, label) pairs: (0.9, 1), (0.2, 0), (0.6, 1); the None score, None label and unlabelled
    # solution are skipped. Both positives beat the negative -> 1.0.
    scores = [[0.9, 0.2, 0.7], [0.6, None], [0.1]]
    labels = [[1, 0, None], [1, 1], None]
    assert step_auroc(scores, labels) == 1.0
    with pytest.raises(ValueError, match="solution 0: 3 step scores for 2 labels"):
        step_auroc([[0.9, 0.2, 0.7]], [[1, 0]])
    # Outcome: 0.8 (label 1) above 0.2 (label 0); the unknown outcome is skipped.
    assert outcome_auroc([0.2, 0.8, 0.5], [0, 1, None]) == 1.0


# -- Best-of-N, majority vote, calibration ------------------------------------------------------------------------


def test_best_of_n_by_hand():
    q1_scores, q1_correct = [0.1, 0.9, 0.3, 0.2, 0.5], [1, 0, 1, 1, 0]
    q2_scores, q2_correct = [0.4, 0.4, 0.1, 0.7], [1, 0, 0, 1]
    # n=2. q1: K = 5 // 2 = 2 groups, [0, 1] picks #1 (0.9, wrong), [2, 3] picks #2 (0.3, right); #4 unused -> 1/2.
    #      q2: [0, 1] tie -> first, #0 (right); [2, 3] picks #3 (right) -> 1.   Mean (1/2 + 1) / 2 = 0.75.
    assert best_of_n_accuracy([q1_scores, q2_scores], [q1_correct, q2_correct], n=2) == pytest.approx(0.75)
    # n=4: one group each; q1 picks #1 (wrong), q2 picks #3 (right) -> 0.5.
    assert best_of_n_accuracy([q1_scores, q2_scores], [q1_correct, q2_correct], n=4) == pytest.approx(0.5)
    # n=1: every sample is its own group: the mean correctness.
    assert best_of_n_accuracy([q1_scores], [q1_correct], n=1) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="question 1: 4 samples, fewer than n=5"):
        best_of_n_accuracy([q1_scores, q2_scores], [q1_correct, q2_correct], n=5)
    with pytest.raises(ValueError, match="question 0: 2 scores for 1"):
        best_of_n_accuracy([[0.1, 0.2]], [[1]], n=1)


def test_majority_vote_by_hand():
    answers = [["18", "18.0", "17", None, "17"], [None, None]]
    correct = [[1, 1, 0, 0, 0], [0, 0]]
    # q1: "18" and "18.0" are one answer (2 votes), "17" has 2, None does not vote: a tie, "18" came first -> right.
    # q2: no answer at all -> wrong.  Mean (1 + 0) / 2 = 0.5.
    assert majority_vote_accuracy(answers, correct) == pytest.approx(0.5)
    # Weighted by scores: "18" 0.1 + 0.1 = 0.2, "17" 0.5 + 0.5 = 1.0 -> q1 wrong.
    weights = [[0.1, 0.1, 0.5, 0.9, 0.5], [1.0, 1.0]]
    assert majority_vote_accuracy(answers[:1], correct[:1], weights=weights[:1]) == 0.0
    # n=2 disjoint groups of q1: [0, 1] -> "18" right; [2, 3] -> "17" wrong; #4 unused -> 0.5.
    assert majority_vote_accuracy(answers[:1], correct[:1], n=2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="question 0"):
        majority_vote_accuracy([["1", "2"]], [[1]])


def test_expected_calibration_error_by_hand():
    # Bins of width 0.1: 0.05 -> bin 0, 0.15 -> bin 1, 0.82 and 0.85 -> bin 8, 0.95 -> bin 9.
    # bin 0: |0 - 0.05| * 1/5 = 0.01      bin 1: |1 - 0.15| * 1/5 = 0.17
    # bin 8: |0.5 - 0.835| * 2/5 = 0.134  bin 9: |1 - 0.95| * 1/5 = 0.01      ECE = 0.324
    probs, labels = [0.05, 0.15, 0.95, 0.85, 0.82], [0, 1, 1, 1, 0]
    assert expected_calibration_error(probs, labels) == pytest.approx(0.324)
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == 0.0  # 1.0 falls in the last bin
    assert expected_calibration_error([0.2, 0.6], [1, 0], n_bins=1) == pytest.approx(0.1)  # |0.5 - 0.4|
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        expected_calibration_error([1.2], [1])
    with pytest.raises(ValueError, match="equally many"):
        expected_calibration_error([0.2], [1, 0])


# -- reports ------------------------------------------------------------------------------------------------------


def record(id, group, first_error, step_labels, outcome):
    return {"id": id, "group": group, "first_error": first_error, "step_labels": step_labels, "outcome_label": outcome}


def scored(step_scores, score, truncated=False):
    return {"step_scores": step_scores, "score": score, "truncated": truncated}


def test_evaluation_report_by_hand():
    records = [
        record("r1", "a", 1, [1, 0], 0.0),
        record("r2", "a", -1, [1, 1], 1.0),
        record("r3", "b", 0, [0, None], 0.0),
        record("r4", "b", -1, [1], 1.0),
        record("r5", "b", None, None, None),
    ]
    results = [
        scored([0.9, 0.2], 0.4),
        scored([0.8, 0.7], 0.75),
        scored([0.6, 0.1], 0.3, truncated=True),
        scored([0.4], 0.4),
        scored([0.9], 0.9),
    ]
    report = evaluation_report(records, results, threshold=0.5)
    # Group a: r1 predicted 1 (right), r2 predicted -1 (right) -> F1 1; steps 0.9, 0.8, 0.7 (correct) all above
    # 0.2 (wrong) -> step AUROC 1; outcome 0.75 (right) above 0.4 (wrong) -> 1.
    a = report["per_group"]["a"]
    assert (a["f1"], a["error_acc"], a["correct_acc"], a["step_auroc"], a["outcome_auroc"]) == (1, 1, 1, 1, 1)
    # Group b: r3 predicted 1 but errs at 0, r4 predicted 0 but is correct -> accuracies 0, F1 0; step 0.4
    # (correct) below 0.6 (wrong) -> step AUROC 0; outcome 0.4 (right) above 0.3 (wrong) -> 1; r5 is unlabelled.
    b = report["per_group"]["b"]
    assert (b["f1"], b["error_acc"], b["correct_acc"], b["step_auroc"], b["outcome_auroc"]) == (0, 0, 0, 0, 1)
    assert (b["n"], b["n_unlabelled"], b["truncated"]) == (3, 1, 1)
    # Top level: the mean over the two groups.
    assert (report["f1"], report["error_acc"], report["correct_acc"]) == (0.5, 0.5, 0.5)
    assert (report["step_auroc"], report["outcome_auroc"]) == (0.5, 1.0)
    assert (report["n"], report["truncated"], report["threshold"]) == (5, 1, 0.5)


def test_sample_per_group():
    records = [{"id": i, "group": "ab"[i % 2]} for i in range(10)]
    sample = sample_per_group(records, 3, seed=1)
    assert [r["group"] for r in sample].count("a") == 3 and [r["group"] for r in sample].count("b") == 3
    assert [r["id"] for r in sample] == sorted(r["id"] for r in sample)  # original order kept
    assert sample == sample_per_group(records, 3, seed=1)
    assert sample != sample_per_group(records, 3, seed=2)  # the seed decides the draw
    assert len(sample_per_group(records, 100)) == 10


# -- the evaluate module ------------------------------------------------------------------------------------------


def test_evaluate_module_loads_offline_and_matches_the_functions():
    import evaluate

    metric = evaluate.load(METRIC_PATH)
    result = metric.compute(predictions=SCORES, references=LABELS, threshold=0.4)
    # As in test_choose_threshold_by_hand at t=0.4: error_acc 1/2, correct_acc 1, F1 2/3.
    assert result["f1"] == pytest.approx(2 / 3) and result["error_acc"] == 0.5 and result["correct_acc"] == 1.0
    # Step labels from the first errors: A [1, 0], B [1, 1], C [0, None]: positives 0.9, 0.8, 0.6 vs negatives
    # 0.3, 0.45 -> all 6 pairs ordered -> 1.0.
    assert result["step_auroc"] == 1.0 and result["threshold"] == 0.4
    for scores, label in zip(SCORES, LABELS):  # batches, with an unscored step
        metric.add_batch(predictions=[scores], references=[label])
    metric.add_batch(predictions=[[0.9, None, 0.1]], references=[2])
    batched = metric.compute(threshold=0.5)
    expected = processbench_f1([predict_first_error(s, 0.5) for s in SCORES + [[0.9, None, 0.1]]], LABELS + [2])
    assert {k: batched[k] for k in expected} == expected
    with pytest.raises(ValueError, match="reference 0 is 5"):
        metric.compute(predictions=[[0.9]], references=[5])


# -- scoring with a model, and `sprm eval` --------------------------------------------------------------------------


def test_score_records_batched_equals_one_by_one(tiny_sprm):
    from transformers import pipeline

    from modeling_sprm.data import load_processbench

    model, tokenizer = tiny_sprm
    records = load_processbench(str(FIXTURES / "processbench" / "gsm8k.json"))
    results = score_records(model, tokenizer, records, batch_size=4)
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    for record, result in zip(records, results):
        single = scorer({"question": record["question"], "steps": record["steps"]})
        assert result["step_scores"] == pytest.approx([s["score"] for s in single["steps"]], abs=1e-5)
        assert result["score"] == pytest.approx(single["score"], abs=1e-5)
    # Steps the think-span rules drop are left out, not misaligned: the 'think' span scores the first step only
    # (the second's score is read after </think>).
    think = dict(records[0], steps=["<think> a", "b </think>", "c"], step_labels=None)
    assert len(score_records(model, tokenizer, [think])[0]["step_scores"]) == 1
    assert len(score_records(model, tokenizer, [think], score_span="both")[0]["step_scores"]) == 3


def run_cli(capsys, *args):
    from modeling_sprm.apps.cli import main

    main(list(args))
    return capsys.readouterr()


def test_sprm_eval_json_matches_the_functions(saved_tiny, capsys):
    from transformers import AutoTokenizer, pipeline

    from modeling_sprm import SPRMForStepScoring
    from modeling_sprm.data import load_processbench

    out = run_cli(capsys, "eval", "--model", str(saved_tiny), "--data", str(FIXTURES / "processbench"),
                  "--format", "processbench", "--json", "--batch-size", "4")
    report = json.loads(out.out)
    keys = {"f1", "error_acc", "correct_acc", "step_auroc", "outcome_auroc", "threshold", "n", "per_group"}
    assert set(report) >= keys
    assert report["n"] == 24 and report["threshold"] == 0.5 and report["threshold_source"] == "config.threshold"
    assert list(report["per_group"]) == ["gsm8k", "math", "olympiadbench", "omnimath"]
    assert "untrained" in out.err
    # The same numbers from the pipeline, one solution at a time, and the metric functions.
    model = SPRMForStepScoring.from_pretrained(saved_tiny)
    scorer = pipeline("step-scoring", model=model, tokenizer=AutoTokenizer.from_pretrained(saved_tiny))
    records = load_processbench(str(FIXTURES / "processbench"))
    outputs = [scorer({"question": r["question"], "steps": r["steps"]}) for r in records]
    step_scores = [[s["score"] for s in out["steps"]] for out in outputs]
    f1s = []
    for group, metrics in report["per_group"].items():
        idx = [i for i, r in enumerate(records) if r["group"] == group]
        expected = processbench_f1(
            [predict_first_error(step_scores[i], 0.5) for i in idx], [records[i]["first_error"] for i in idx]
        )
        assert {k: metrics[k] for k in expected} == expected
        assert metrics["step_auroc"] == pytest.approx(
            step_auroc([step_scores[i] for i in idx], [records[i]["step_labels"] for i in idx])
        )
        f1s.append(expected["f1"])
    assert report["f1"] == pytest.approx(np.mean(f1s))


def test_sprm_eval_table_and_threshold_from(saved_tiny, capsys):
    data = str(FIXTURES / "bbm")
    out = run_cli(capsys, "eval", "--model", str(saved_tiny), "--data", data, "--format", "bbm", "--limit", "2",
                  "--threshold", "0.7")
    assert "mean over groups" in out.out and "dyck_languages" in out.out and "threshold: 0.7 (--threshold)" in out.out
    # The threshold chosen on another data set: ProcessBench's gsm8k split, 2 records (--limit applies to both; with
    # seed 1 the draw holds an erroneous and a correct solution; with seed 0 only correct ones: no F1 to maximise).
    tune = str(FIXTURES / "processbench" / "gsm8k.json")
    args = ["eval", "--model", str(saved_tiny), "--data", data, "--format", "bbm", "--limit", "2", "--threshold-from",
            tune, "--threshold-format", "processbench", "--json"]
    report = json.loads(run_cli(capsys, *args, "--seed", "1").out)
    assert report["threshold_source"] == f"chosen on {tune} (processbench)"
    assert report["threshold"] in DEFAULT_THRESHOLDS and report["n"] == 10
    with pytest.raises(SystemExit):
        run_cli(capsys, *args, "--seed", "0")
    assert "cannot choose a threshold on --threshold-from" in capsys.readouterr().err


def test_sprm_eval_refuses_tuning_on_the_test_data(saved_tiny, capsys):
    data = FIXTURES / "processbench"
    for tune in (data, data / "math.json"):
        with pytest.raises(SystemExit) as exit:
            run_cli(capsys, "eval", "--model", str(saved_tiny), "--data", str(data), "--format", "processbench",
                    "--threshold-from", str(tune))
        assert exit.value.code == 2
        assert "tuning the threshold on the test data is not allowed" in capsys.readouterr().err
    for bad, message in ((["--threshold", "1.5"], "--threshold must be in [0, 1]"),
                         (["--threshold-format", "bbm"], "--threshold-format needs --threshold-from"),
                         (["--limit", "0"], "--limit must be >= 1")):
        with pytest.raises(SystemExit):
            run_cli(capsys, "eval", "--data", str(data), "--format", "processbench", *bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(capsys, "eval", "--model", str(saved_tiny), "--data", str(data / "nope"), "--format", "processbench")
    assert "cannot load --data" in capsys.readouterr().err


def test_sprm_eval_in_a_fresh_process_on_prmbench(saved_tiny):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "modeling_sprm", "eval", "--model", str(saved_tiny), "--data",
         str(FIXTURES / "prmbench"), "--format", "prmbench", "--json", "--limit", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sorted(report["per_group"]) == ["test_p1", "test_p2", "train_p1"] and report["n"] == 5
    assert "left out 1 rows" in out.stderr  # the misaligned PRMBench row is reported, not silently dropped


# -- what the hand-computed cases above leave open ------------------------------------------------------------------


def test_bad_input_among_good_input_is_refused():
    with pytest.raises(ValueError, match="-1"):
        processbench_f1([0, -2], [1, -1])  # one bad prediction among good ones
    with pytest.raises(ValueError, match="-1"):
        processbench_f1([0, 1], [-2, 1])  # one bad label among good ones
    for n in (0, -1):
        with pytest.raises(ValueError, match="n must be >= 1"):
            best_of_n_accuracy([[0.1, 0.2]], [[1, 0]], n=n)
    with pytest.raises(ValueError, match="one .*list of samples per question"):
        best_of_n_accuracy([[0.1]], [[1], [1]], n=1)
    with pytest.raises(ValueError, match="one list of samples per question"):
        majority_vote_accuracy([["1"]], [[1], [1]])
    with pytest.raises(ValueError, match="one list of samples per question"):
        majority_vote_accuracy([["1"]], [[1]], weights=[[1.0], [1.0]])
    for probs in ([0.5, -0.1], [0.5, float("nan")], [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            expected_calibration_error(probs, [1, 0])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)


def test_one_candidate_threshold_is_a_choice():
    assert choose_threshold(SCORES, LABELS, candidates=[0.5]) == 0.5


def test_best_of_n_picks_the_highest_score():
    # (The hand cases above give the same numbers when the lowest score is picked.)
    assert best_of_n_accuracy([[0.2, 0.8], [0.9, 0.3]], [[0, 1], [1, 0]], n=2) == 1.0


def test_majority_vote_counts_votes_without_weights():
    assert majority_vote_accuracy([["1", "2", "2"]], [[0, 1, 1]]) == 1.0  # "2" has two votes, "1" one


def test_a_probability_of_one_shares_the_last_bin():
    # Both in bin 9: |mean label 0.5 - mean score 0.975| = 0.475 (apart they would give 0.5 * 1 + 0.5 * 0.05).
    assert expected_calibration_error([1.0, 0.95], [0, 1]) == pytest.approx(0.475)


def test_the_evaluate_module_is_self_contained_and_a_valid_space(tmp_path):
    """A copy of the metric folder, outside the package, loads with `evaluate.load` in a process where
    `import modeling_sprm` fails: what a metric Space runs. Its card meets the Hub's Space rules."""
    import shutil

    import yaml
    from hub_server import card_errors

    folder = tmp_path / "sprm_processbench"
    shutil.copytree(METRIC_PATH, folder, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    script = ("import sys, json; sys.modules['modeling_sprm'] = None; import evaluate; "
              "m = evaluate.load(sys.argv[1]); "
              "print(json.dumps(m.compute(predictions=[[0.9, 0.2, 0.8], [0.7, 0.9]], references=[1, -1])))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["f1"] == 1.0
    front = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert card_errors(front, "space") == [] and (folder / front["app_file"]).is_file()


def test_one_auroc_matches_mann_whitney_and_one_first_error_rule():
    from scipy.stats import mannwhitneyu

    from modeling_sprm.aggregation import first_error_step
    from modeling_sprm.evaluation.sprm_processbench.processbench import first_below

    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.integers(0, 5, size=30) / 4  # ties on purpose
        labels = rng.integers(0, 2, size=30)
        if 0 < labels.sum() < 30:
            u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
            assert auroc(scores, labels) == pytest.approx(u / (labels.sum() * (30 - labels.sum())))
        steps = [None if rng.random() < 0.2 else float(s) for s in rng.random(6)]
        expected = first_error_step(steps, 0.4)
        assert first_below(steps, 0.4) == (-1 if expected is None else expected)
