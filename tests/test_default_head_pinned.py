"""Pinned outputs of the shipped default head (modeling_sprm/default_head/ on the embedded SmolLM2 backbone).

UPDATE THESE NUMBERS ONLY TOGETHER WITH THE HEAD: whoever retrains or replaces modeling_sprm/default_head/ (see
benchmarks/train_default_head.py) re-runs this file, copies the new values in, and commits both in one commit.
Anything else that changes them (loading, standardisation, step segmentation, read positions, aggregation, the
threshold rule) is a regression in the scoring path, not a reason to update the pins.

Tolerances: step and solution scores agree to 1e-4 (measured: differences below 1e-6 between 1 and 2 torch threads
and between batched and unbatched scoring on this machine's CPU; 1e-4 leaves room for other CPUs' float32 and
still catches any change of the head or its statistics). The `sprm eval` numbers are ratios of counts, pinned
exactly: the slice's step scores are at least 0.015 from the threshold 0.44, and its correct and wrong steps at
least 0.037 apart, so no score moves across either within the tolerance above.
The two solutions: one right, one whose first step is wrong (3 * 4 = 7). This head (outcome_bce on ProcessBench +
BIG-Bench Mistake) scores the wrong solution slightly *higher*: the pins record what it does, not what it should.
"""

import hashlib
import json

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"
RIGHT = ["Tom has 3 * 4 = 12 apples.", "He eats 2, so 12 - 2 = 10 apples are left.", "The answer is 10."]
WRONG = ["Tom has 3 * 4 = 7 apples.", "He eats 2, so 7 - 2 = 5 apples are left.", "The answer is 5."]
SLICE = ROOT / "modeling_sprm" / "examples" / "processbench_slice.json"
TOLERANCE = 1e-4

PINNED = {
    "threshold": 0.44,
    "right": {"steps": [0.7964422, 0.7541307, 0.5026195], "score": 0.6708314, "first_error_step": None},
    "wrong": {"steps": [0.8084799, 0.7569945, 0.5065945], "score": 0.6768215, "first_error_step": None},
    # per record of processbench_slice.json, in file order
    "slice_step_scores": [
        [0.24969, 0.33224, 0.41655, 0.2887],
        [0.28109, 0.45531, 0.35585],
        [0.55832, 0.58421, 0.67467, 0.22673],
        [0.56039, 0.65256, 0.65121, 0.72984, 0.2884],
        [0.18904, 0.64059],
        [0.52965, 0.74629, 0.75139, 0.55315],
    ],
    "slice_eval": {"f1": 1 / 3, "error_acc": 1 / 3, "correct_acc": 1 / 3, "step_auroc": 5 / 6, "outcome_auroc": 1.0,
                   "threshold": 0.44, "n": 6, "truncated": 0},
    "feature_statistics": {
        "size": 576,
        "mean_sum": 549.3177, "std_sum": 8210.1016, "std_min": 8.26168, "std_max": 63.7606,
        "sha256": "b14fdb2ec336d7ff9208f665fba32d18021ab8a7f67d3c6aa2abb993e655b683",  # mean bytes + std bytes
    },
}


@pytest.fixture(scope="module")
def default_model(smollm2_path):
    from modeling_sprm.loading import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer(None)
    return model, tokenizer


def test_loaded_standardisation_statistics(default_model):
    head = default_model[0].score_head
    pinned = PINNED["feature_statistics"]
    assert head.standardize and head.feature_mean.shape == head.feature_std.shape == (pinned["size"],)
    assert float(head.feature_mean.sum()) == pytest.approx(pinned["mean_sum"], rel=1e-6)
    assert float(head.feature_std.sum()) == pytest.approx(pinned["std_sum"], rel=1e-6)
    assert float(head.feature_std.min()) == pytest.approx(pinned["std_min"], rel=1e-5)
    assert float(head.feature_std.max()) == pytest.approx(pinned["std_max"], rel=1e-5)
    raw = head.feature_mean.float().numpy().tobytes() + head.feature_std.float().numpy().tobytes()
    assert hashlib.sha256(raw).hexdigest() == pinned["sha256"]


@pytest.mark.parametrize("name, steps", [("right", RIGHT), ("wrong", WRONG)])
def test_step_scores_of_two_fixed_solutions(default_model, name, steps):
    from transformers import pipeline

    model, tokenizer = default_model
    assert model.config.threshold == PINNED["threshold"]
    out = pipeline("step-scoring", model=model, tokenizer=tokenizer)({"question": QUESTION, "steps": steps})
    assert [s["text"] for s in out["steps"]] == steps
    assert [s["score"] for s in out["steps"]] == pytest.approx(PINNED[name]["steps"], abs=TOLERANCE)
    assert out["score"] == pytest.approx(PINNED[name]["score"], abs=TOLERANCE)
    assert out["first_error_step"] == PINNED[name]["first_error_step"]


def test_step_scores_on_the_processbench_slice(default_model):
    from modeling_sprm.data import load_processbench
    from modeling_sprm.evaluation.report import score_records

    model, tokenizer = default_model
    scored = score_records(model, tokenizer, load_processbench(str(SLICE)), batch_size=4)
    assert len(scored) == len(PINNED["slice_step_scores"])
    for got, pinned in zip(scored, PINNED["slice_step_scores"]):
        assert got["step_scores"] == pytest.approx(pinned, abs=TOLERANCE)


def test_sprm_eval_numbers_on_the_processbench_slice(smollm2_path, capsys):
    from modeling_sprm.apps.cli import main

    main(["eval", "--data", str(SLICE), "--format", "processbench", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["threshold_source"] == "config.threshold"
    for key, value in PINNED["slice_eval"].items():
        assert report[key] == pytest.approx(value, abs=1e-12), key
