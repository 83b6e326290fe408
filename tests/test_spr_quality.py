"""A quality test of the SPR objective that a broken or collapsed `spr` fails (seconds, no backbone pass).

Synthetic step features in which step correctness is linearly visible: each feature vector is noise plus or minus
1.5 noise-standard-deviations along one fixed direction (right / wrong step), shifted by 40 and scaled by 25 (raw
hidden states are not centred either). 12% of steps are wrong; a solution is right when all its steps are. The
head sees outcome labels only. `spr` with standardised features (`feature_normalization="standardize"`) and an
outcome-BCE warm-up (`spr_warmup_steps`) must rank the held-out steps (step AUROC >= 0.95; random is 0.5) and
also call them (accuracy at 0.5 at least 4 points above calling every step right, the majority baseline, and a
share of steps called right within 0.1 of the true share). A run that collapses to calling every step right (the
filter's fixed point: a head that starts out calling every step right, no warm-up) still ranks steps somewhat,
but must fail this check. tests/test_train_synthetic.py has the harder data set, with a confound, where `spr`
collapses (its strict xfail).
"""

import tempfile

import pytest
import torch
from transformers import PrinterCallback
from transformers import logging as hf_logging

from conftest import make_tiny_backbone
from modeling_sprm import SPRMForStepScoring
from modeling_sprm.evaluation.metrics import auroc
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments

hf_logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
HIDDEN = 64  # the tiny backbone's hidden size: the head's input


def feature_rows(n: int, seed: int, wrong_rate: float = 0.12) -> list[dict]:
    direction = torch.nn.functional.normalize(torch.randn(HIDDEN, generator=torch.Generator().manual_seed(123)), dim=0)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        k = int(torch.randint(2, 6, (1,), generator=g))
        right = (torch.rand(k, generator=g) > wrong_rate).float()
        noise = torch.randn(k, HIDDEN, generator=g)
        features = 40 + 25 * (noise + 1.5 * (2 * right - 1).unsqueeze(-1) * direction)
        rows.append({"id": f"{seed}-{i}", "step_features": features, "num_steps": k,
                     "outcome_label": float(right.min()), "step_labels": right.tolist(), "rollout_truncated": False})
    return rows


@pytest.fixture(scope="module")
def data():
    return feature_rows(400, seed=1), feature_rows(200, seed=2)


def train_and_measure(data, start_bias: float | None = None, **options) -> dict:
    train, test = data
    model = SPRMForStepScoring.from_backbone(make_tiny_backbone(100), feature_normalization="standardize",
                                             backbone_name_or_path="tiny")
    if start_bias is not None:  # a head that starts out calling every step right
        with torch.no_grad():
            model.score_head[3].bias.fill_(start_bias)
    with tempfile.TemporaryDirectory() as out:
        args = SPRMTrainingArguments(
            output_dir=out, use_cpu=True, save_strategy="no", disable_tqdm=True, report_to="none", logging_steps=1000,
            num_train_epochs=15, per_device_train_batch_size=32, learning_rate=1e-2, seed=0,
            seed_untrained_head=start_bias is None, **options,
        )
        trainer = SPRMTrainer(model, args, train_dataset=train)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    model.eval()
    features = torch.nn.utils.rnn.pad_sequence([r["step_features"] for r in test], batch_first=True)
    steps = [torch.ones(r["num_steps"], dtype=torch.bool) for r in test]
    mask = torch.nn.utils.rnn.pad_sequence(steps, batch_first=True)
    with torch.no_grad():
        scores = model.score_step_features(features, mask)[1][mask].tolist()
    labels = [label for r in test for label in r["step_labels"]]
    called_right = [s >= 0.5 for s in scores]
    return {
        "step_auroc": auroc(scores, labels),
        "accuracy": sum(c == (y == 1) for c, y in zip(called_right, labels)) / len(labels),
        "called_right": sum(called_right) / len(labels),
        "right_share": sum(labels) / len(labels),  # = the accuracy of calling every step right
    }


def finds_the_wrong_steps(m: dict) -> bool:
    return (m["step_auroc"] >= 0.95 and m["accuracy"] >= m["right_share"] + 0.04
            and abs(m["called_right"] - m["right_share"]) <= 0.1)


def test_spr_with_standardised_features_and_a_warm_up_finds_the_wrong_steps(data):
    m = train_and_measure(data, loss="spr", spr_warmup_steps=40)
    assert 0.85 < m["right_share"] < 0.9
    assert finds_the_wrong_steps(m), m


def test_a_collapsed_spr_fails_that_check(data):
    m = train_and_measure(data, start_bias=4.0, loss="spr")
    assert m["called_right"] == 1.0  # collapsed: every step called right...
    assert m["step_auroc"] > 0.6  # ...though it ranks steps better than chance, which an AUROC alone would reward
    assert not finds_the_wrong_steps(m), m
