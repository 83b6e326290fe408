"""Acceptance: can a head trained on **outcome labels only** find the wrong steps?

The synthetic data set: each solution has 2-5 steps ``"Step j: take the <noun> with <n> and <rule>"``; a step is
wrong exactly when its rule word is one of 6 "bad" rules, and a solution is correct when no step is wrong. Step
correctness is therefore visible in the text (the rule word sits at the token where the score is read, so even a
tiny random backbone carries it), but an outcome label only says "at least one step of this solution is wrong"
(multiple-instance learning). A confound makes it realistic: "hard" problems fail more often (35% of their steps
are wrong vs 10% for "easy" ones) and their right steps use other rule words than the easy problems' right steps,
so some right steps co-occur with wrong outcomes far more than others.

Measured (3 seeds, this data, 20 epochs; step AUROC on 300 held-out solutions, all steps):
step_bce 1.000; outcome_bce 1.000 (but right steps score only ~0.57: step accuracy at 0.5 is 0.68);
spr (MetaStone-S1's exact filter) 0.859 / 0.628 / 0.860: the head collapses to calling every step right (two seeds)
or every step wrong (one seed). Both are fixed points of the filter: when every pseudo-label is "right", every step
of a wrong solution is filtered out and only "push up" updates remain (and the mirror case for "wrong"), so the
direction the fresh head leans in decides the outcome; class balancing does not change it (same numbers).
With an outcome_bce warm-up (40 steps) the filter then locks in the confound: the hard problems' right steps start
below 0.5, are filtered out of correct solutions and pushed down in wrong ones (0.824 / 0.810 / 0.826).
"""

import random

import numpy as np
import pytest
import torch
from transformers import logging as hf_logging

from conftest import make_tiny_backbone
from modeling_sprm import SPRMForStepScoring
from modeling_sprm.features import extract_step_features
from modeling_sprm.trainer import SPRMTrainer, SPRMTrainingArguments, StepSupervisedTrainer

hf_logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


GOOD_EASY = ["add", "carry", "double", "join", "merge", "split"]
GOOD_HARD = ["shift", "rotate", "scale", "copy", "sort", "swap"]
BAD = ["guess", "skip", "invent", "flip", "drop", "ignore"]
NOUNS = ["list", "pair", "row", "column", "stack", "queue", "table", "grid"]


def synthetic_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        hard = rng.random() < 0.5
        labels = [0.0 if rng.random() < (0.35 if hard else 0.1) else 1.0 for _ in range(rng.randint(2, 5))]
        steps = [
            f"Step {j + 1}: take the {rng.choice(NOUNS)} with {rng.randint(10, 99)} and "
            f"{rng.choice((GOOD_HARD if hard else GOOD_EASY) if right else BAD)}"
            for j, right in enumerate(labels)
        ]
        records.append(
            {
                "id": f"{seed}-{i}",
                "question": f"Problem {i}: transform the {'big' if hard else 'small'} list.",
                "steps": steps,
                "solution": None,
                "outcome_label": min(labels),
                "step_labels": labels,  # used only by StepSupervisedTrainer and for evaluation
                "rollout_truncated": False,
            }
        )
    return records


@pytest.fixture(scope="module")
def results(smollm2_tokenizer, tmp_path_factory):
    """Train each way once on cached features of 600 solutions; evaluate on 300 others."""
    for word in GOOD_EASY + GOOD_HARD + BAD:  # one token each, so the rule word is what the head reads
        assert len(smollm2_tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    model = SPRMForStepScoring.from_backbone(
        make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id), backbone_name_or_path="tiny"
    )
    train = extract_step_features(model, smollm2_tokenizer, synthetic_records(600, seed=1), batch_size=32)
    test = extract_step_features(model, smollm2_tokenizer, synthetic_records(300, seed=2), batch_size=32)
    assert 0.4 < np.mean(train["outcome_label"]) < 0.6
    out = {}
    for name, trainer_class, options in [
        ("step_supervised", StepSupervisedTrainer, {}),
        ("outcome_bce", SPRMTrainer, {"loss": "outcome_bce"}),
        ("spr", SPRMTrainer, {"loss": "spr"}),
    ]:
        args = SPRMTrainingArguments(
            output_dir=str(tmp_path_factory.mktemp(name)),
            num_train_epochs=20,
            per_device_train_batch_size=32,
            learning_rate=1e-2,
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=50,
            seed=0,
            **options,
        )
        trainer = trainer_class(model, args, train_dataset=train)
        trainer.train()
        out[name] = trainer.evaluate(test)
        out[name]["log"] = trainer.state.log_history
    return out


def test_step_correctness_is_learnable_with_step_labels(results):
    assert results["step_supervised"]["eval_step_auroc"] >= 0.99
    assert results["step_supervised"]["eval_step_accuracy"] >= 0.95


def test_outcome_only_training_recovers_step_correctness(results):
    """SPRMTrainer with outcome labels only (the outcome_bce loss) ranks steps as well as step supervision."""
    auroc = results["outcome_bce"]["eval_step_auroc"]
    assert auroc >= 0.9
    assert auroc >= results["step_supervised"]["eval_step_auroc"] - 0.05
    # ...but it is not calibrated: right steps score about P(solution correct | step), far from 1.
    assert results["outcome_bce"]["eval_step_accuracy"] < results["step_supervised"]["eval_step_accuracy"] - 0.1


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="MetaStone-S1's SPR filter collapses on this data (step AUROC 0.86 with seed 0; every step scored "
    "~1.0): see the module docstring",
)
def test_spr_with_metastones_filter_recovers_step_correctness(results):
    auroc = results["spr"]["eval_step_auroc"]
    assert auroc >= 0.9 and auroc >= results["step_supervised"]["eval_step_auroc"] - 0.05


def test_the_spr_collapse_is_visible_in_the_training_log(results):
    """The diagnosis above, as the training log shows it: by the end the head calls (almost) every step right or
    (almost) every step wrong, while outcome_bce keeps a mix."""
    def last_positive_fraction(name):
        return [e for e in results[name]["log"] if "train_step_positive_fraction" in e][-1]["train_step_positive_fraction"]

    spr = last_positive_fraction("spr")
    assert spr > 0.97 or spr < 0.03
    assert 0.2 < last_positive_fraction("outcome_bce") < 0.9
