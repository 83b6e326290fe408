"""Acceptance: can a head trained on **outcome labels only** find the wrong steps?

The synthetic data set and the training are `benchmarks/synthetic_spr.py`'s (read its docstring); its JSON output
(`benchmarks/results/synthetic_spr.json`) has all objectives with 3 seeds. Here, seed 0:

* step supervision and outcome-only `outcome_bce` both rank steps perfectly (step AUROC 1.0), though outcome_bce
  is not calibrated (right steps score about P(solution correct | step), so step accuracy at 0.5 is ~0.68);
* MetaStone-S1's SPR filter (`spr`) does **not** pass (step AUROC 0.63-0.86 over the 3 seeds): the head collapses
  to calling every step right, or every step wrong. Both are fixed points of the filter: when every pseudo-label is
  "right", every step of a wrong solution is filtered out and only "push up" updates remain (mirror case for
  "wrong"), so the direction a fresh head leans in decides the outcome; class balancing does not change it. After
  an outcome_bce warm-up the filter instead locks in the confound: the hard problems' right steps start below 0.5,
  are filtered out of correct solutions and pushed down in wrong ones.
"""

import numpy as np
import pytest
from transformers import logging as hf_logging

from benchmarks.synthetic_spr import (
    BAD,
    GOOD_EASY,
    GOOD_HARD,
    OBJECTIVES,
    synthetic_records,
    tiny_model,
    train_and_evaluate,
)
from modeling_sprm.training.features import extract_step_features

hf_logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def results(smollm2_tokenizer):
    """Seed 0 of step supervision, outcome_bce and spr: trained on 600 solutions, evaluated on 300 others."""
    for word in GOOD_EASY + GOOD_HARD + BAD:  # one token each, so the rule word is what the head reads
        assert len(smollm2_tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    model = tiny_model(smollm2_tokenizer)
    train = extract_step_features(model, smollm2_tokenizer, synthetic_records(600, seed=1), batch_size=32)
    test = extract_step_features(model, smollm2_tokenizer, synthetic_records(300, seed=2), batch_size=32)
    assert 0.4 < np.mean(train["outcome_label"]) < 0.6
    return {
        name: train_and_evaluate(model, train, test, *OBJECTIVES[name], seed=0)
        for name in ("step_supervised", "outcome_bce", "spr")
    }


def test_step_correctness_is_learnable_with_step_labels(results):
    assert results["step_supervised"]["step_auroc"] >= 0.99
    assert results["step_supervised"]["step_accuracy"] >= 0.95


def test_outcome_only_training_recovers_step_correctness(results):
    """SPRMTrainer with outcome labels only (the outcome_bce loss) ranks steps as well as step supervision."""
    auroc = results["outcome_bce"]["step_auroc"]
    assert auroc >= 0.9
    assert auroc >= results["step_supervised"]["step_auroc"] - 0.05
    # ...but it is not calibrated: right steps score about P(solution correct | step), far from 1.
    assert results["outcome_bce"]["step_accuracy"] < results["step_supervised"]["step_accuracy"] - 0.1


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="MetaStone-S1's SPR filter collapses on this data (seed 0: step AUROC 0.86, every step scored ~1): "
    "see the module docstring",
)
def test_spr_with_metastones_filter_recovers_step_correctness(results):
    auroc = results["spr"]["step_auroc"]
    assert auroc >= 0.9 and auroc >= results["step_supervised"]["step_auroc"] - 0.05


def test_the_spr_collapse_is_visible_in_the_training_log(results):
    """The diagnosis, as the training log shows it: at the end the head calls (almost) every step right or (almost)
    every step wrong, while outcome_bce keeps a mix."""
    spr = results["spr"]["final_step_positive_fraction"]
    assert spr > 0.97 or spr < 0.03
    assert 0.2 < results["outcome_bce"]["final_step_positive_fraction"] < 0.9
