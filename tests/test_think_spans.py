"""Training and evaluation per span of ``<think>...</think>`` traces (``sprm train / eval --score_span``) and the
trajectory term (``--trajectory_loss_weight``): on a tiny random backbone with SmolLM2's real tokenizer and
think-format records built from the shipped examples (modeling_sprm/examples/think_traces.json)."""

import json

import pytest
import torch
from transformers import logging as hf_logging

from conftest import ROOT
from modeling_sprm import SPRMForStepScoring
from modeling_sprm.apps.cli import main
from modeling_sprm.processing_sprm import SPRMProcessor
from modeling_sprm.training import SPRMDataCollator, SPRMTrainer, SPRMTrainingArguments, StepSupervisedTrainer
from modeling_sprm.training.losses import spr_loss, trajectory_loss
from test_trainer import tiny  # noqa: F401 (the fixture: a fresh tiny SPRM and its tokenizer)
from test_trainer import training_args as trainer_args

hf_logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
EXAMPLES = json.loads((ROOT / "modeling_sprm/examples/think_traces.json").read_text())
# Steps per part of the two example traces: 3 thinking + 2 response each.
PARTS = {"think": 3, "response": 2, "both": 5}


def think_records(n: int = 8) -> list[dict]:
    """``n`` records alternating the two example traces (the first right, the second with a carried error), each
    with its own id and a distinct number in the question so that no two records are the same text."""
    records = []
    for i in range(n):
        example = EXAMPLES[i % 2]
        records.append({"id": f"t{i}", "question": f"{example['question']} (case {i})", "solution": example["trace"],
                        "steps": None, "outcome_label": float(i % 2 == 0), "step_labels": None,
                        "rollout_truncated": False})
    return records


def training_args(tmp_path, **overrides) -> SPRMTrainingArguments:
    return trainer_args(tmp_path, **{"per_device_train_batch_size": 4, "report_to": "none", **overrides})


@pytest.mark.parametrize("span", ["think", "response", "both"])
def test_the_head_is_trained_on_the_chosen_span_and_its_config_records_it(tiny, tmp_path, span):
    model, tokenizer = tiny
    records = think_records()
    trainer = SPRMTrainer(model, training_args(tmp_path, score_span=span), train_dataset=records,
                          processing_class=tokenizer)
    # The cached features are those of the span's steps: the same vectors the model reads when it scores that span.
    processor = SPRMProcessor.from_model(model, tokenizer)
    assert [len(r["step_features"]) for r in trainer.train_dataset] == [PARTS[span]] * len(records)
    trace = processor.encode(records[0], score_span=span)
    assert {s.part for s in trace.steps} == ({"think", "response"} if span == "both" else {span})
    with torch.no_grad():
        direct = model(**processor.pad([trace]), return_step_features=True)
    torch.testing.assert_close(trainer.train_dataset[0]["step_features"], direct.step_features[0].float(),
                               rtol=1e-5, atol=1e-5)
    trainer.train()
    trainer.save_model(str(tmp_path / "head"))
    loaded = SPRMForStepScoring.from_pretrained(tmp_path / "head")
    assert loaded.config.score_span == span
    assert json.loads((tmp_path / "head" / "config.json").read_text())["score_span"] == span
    scored = SPRMProcessor.from_model(loaded, tokenizer).encode(records[0])  # scoring reads the trained span
    assert [s.part for s in scored.steps] == [s.part for s in trace.steps]


def test_score_span_think_refuses_a_record_without_a_think_span(tiny, tmp_path):
    model, tokenizer = tiny
    records = think_records(4)
    records[2] = dict(records[2], solution="Tom has 3 apples.\n\nThe answer is 3.")  # no tags at all
    with pytest.raises(ValueError, match=r"--score_span think: train_dataset row 2 \(id 't2'\) has no "
                                         r"<think>...</think> span"):
        SPRMTrainer(model, training_args(tmp_path, score_span="think"), train_dataset=records,
                    processing_class=tokenizer)
    empty = [dict(r, solution="<think></think>\n\nThe answer is 3.") for r in think_records(2)]  # a span, no text
    with pytest.raises(ValueError, match="row 0 .* has no <think>"):
        SPRMTrainer(model, training_args(tmp_path, score_span="think"), eval_dataset=empty, train_dataset=records[:2],
                    processing_class=tokenizer)
    # Without --score_span the model's default ("think") keeps steps.py's fallback: the whole text is scored.
    trainer = SPRMTrainer(model, training_args(tmp_path), train_dataset=records, processing_class=tokenizer)
    assert len(trainer.train_dataset[2]["step_features"]) == 2
    # response and both take a text without tags as all response.
    trainer = SPRMTrainer(model, training_args(tmp_path, score_span="response"), train_dataset=records,
                          processing_class=tokenizer)
    assert [len(r["step_features"]) for r in trainer.train_dataset] == [2, 2, 2, 2]


def test_the_trajectory_term_is_added_to_the_outcome_loss(tiny, tmp_path):
    model, tokenizer = tiny
    records = think_records()
    args = training_args(tmp_path, score_span="both", trajectory_loss_weight=0.5, cache_features=False)
    trainer = SPRMTrainer(model, args, train_dataset=records, processing_class=tokenizer)
    model.eval()
    batch = trainer._prepare_inputs(SPRMDataCollator(model, tokenizer)(records))
    loss, out = trainer.compute_loss(model, batch, return_outputs=True)
    assert out.step_mask.sum(-1).tolist() == [5] * len(records)  # all steps of each trace
    expected = spr_loss(out.step_logits, out.step_mask, batch["outcome_labels"]) + 0.5 * trajectory_loss(
        out.step_logits, out.step_mask, batch["outcome_labels"], aggregation="geometric_mean")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert trajectory_loss(out.step_logits, out.step_mask, batch["outcome_labels"]).item() > 0
    trainer.train()
    trainer.save_model(str(tmp_path / "head"))
    training = json.loads((tmp_path / "head" / "config.json").read_text())["head_training"]
    assert training["trajectory_loss_weight"] == 0.5


@pytest.mark.parametrize(
    "trainer_class, overrides, message",
    [
        (StepSupervisedTrainer, dict(trajectory_loss_weight=1.0), "goes with outcome labels"),
        (SPRMTrainer, dict(trajectory_loss_weight=-1.0), "--trajectory_loss_weight must be >= 0"),
    ],
)
def test_bad_trajectory_weights_fail_early(tiny, tmp_path, trainer_class, overrides, message):
    model, tokenizer = tiny
    records = [dict(r, steps=["Step one.", "Step two."], solution=None, step_labels=[1.0, 1.0]) for r in think_records(2)]
    with pytest.raises(ValueError, match=message):
        trainer_class(model, training_args(tmp_path, **overrides), train_dataset=records, processing_class=tokenizer)


def test_sprm_train_score_span_and_trajectory_flags(tiny_backbone, tmp_path, capsys):
    data = tmp_path / "think.jsonl"
    data.write_text("".join(json.dumps({"question": r["question"], "solution": r["solution"],
                                        "label": int(r["outcome_label"])}) + "\n" for r in think_records()))
    out = tmp_path / "head"
    main(["train", "--data", str(data), "--format", "outcome", "--output", str(out), "--model", str(tiny_backbone),
          "--score_span", "response", "--trajectory-loss-weight", "0.5", "--num_train_epochs", "1",
          "--per_device_train_batch_size", "4", "--save_strategy", "no", "--disable_tqdm", "true"])
    assert "+ 0.5 x the trajectory term (outcome labels), scoring the 'response' span" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["score_span"] == "response" and config["head_training"]["trajectory_loss_weight"] == 0.5

    plain = ROOT / "tests/fixtures/processbench"  # no think tags anywhere
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(plain), "--format", "processbench", "--output", str(tmp_path / "x"),
              "--model", str(tiny_backbone), "--score-span", "think"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--score_span think: train_dataset row 0" in errors[0] and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "--format", "outcome", "--output", str(tmp_path / "y"),
              "--score_span", "all"])
    assert "invalid choice: 'all'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--score-span" in text and "--trajectory-loss-weight" in text


# -- evaluation per span ----------------------------------------------------------------------------------------------

# Step lists with the think tags at step starts: 3 thinking steps, then 2 response steps. Labels per step; the
# second record's thinking slip is corrected (its answer is right), the third's is carried into the response.
SPAN_ROWS = [
    (["<think> 3 * 3 = 9 sprints", "9 * 60 = 540 meters", "Check: 3 * 180 = 540", "</think> 9 sprints of 60 m",
      "The answer is 540"], [1, 1, 1, 1, 1]),
    (["<think> 2 * 2 = 4 bolts of white", "Wait, half of 2 is 1, not 4", "So 2 + 1 = 3 bolts", "</think> 2 blue, 1 white",
      "The answer is 3"], [0, 1, 1, 1, 1]),
    (["<think> 2 * 2 = 4 bolts of white", "In total 2 + 4 = 6", "Check: 6 bolts", "</think> 2 blue, 4 white",
      "The answer is 6"], [0, 1, 1, 0, 0]),
    (["<think> 5 + 7 = 12 pens", "12 - 4 = 8 pens left", "Check: 8 + 4 = 12", "</think> 12 - 4 = 9 pens left",
      "The answer is 9"], [1, 1, 1, 0, 0]),
]
SPAN_SLICES = {"think": slice(0, 3), "response": slice(3, 5), "both": slice(0, 5)}


def test_span_view_keeps_the_steps_labels_and_first_error_of_the_span():
    from modeling_sprm.evaluation.report import span_view
    from modeling_sprm.steps import StepRules

    record = {"id": "r", "group": "", "question": "q", "steps": SPAN_ROWS[2][0], "solution": None,
              "step_labels": [float(v) for v in SPAN_ROWS[2][1]], "first_error": 0, "outcome_label": 0.0}
    think = span_view(record, StepRules(score_span="think"))
    assert think["steps"] == SPAN_ROWS[2][0][:3] and think["step_labels"] == [0.0, 1.0, 1.0] and think["first_error"] == 0
    response = span_view(record, StepRules(score_span="response"))
    assert response["steps"] == SPAN_ROWS[2][0][3:] and response["first_error"] == 0  # its own first step
    assert span_view(record, StepRules(score_span="both")) is record
    right_think = dict(record, step_labels=[1.0, 1.0, 1.0, 0.0, 0.0], first_error=3)
    assert span_view(right_think, StepRules(score_span="think"))["first_error"] == -1  # no error in the thinking
    unknown = dict(record, step_labels=[1.0, None, None, None, None], first_error=None)
    assert span_view(unknown, StepRules(score_span="response"))["first_error"] is None


def test_sprm_eval_reports_the_chosen_span(saved_tiny, tmp_path, capsys):
    from transformers import AutoTokenizer, pipeline

    from modeling_sprm.data import first_error_from_labels
    from modeling_sprm.evaluation import predict_first_error, processbench_f1, step_auroc

    data = tmp_path / "think.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completions": steps, "labels": labels}) + "\n"
                            for i, (steps, labels) in enumerate(SPAN_ROWS)))
    scorer = pipeline("step-scoring", model=SPRMForStepScoring.from_pretrained(saved_tiny),
                      tokenizer=AutoTokenizer.from_pretrained(saved_tiny))
    for span, part in SPAN_SLICES.items():
        main(["eval", "--model", str(saved_tiny), "--data", str(data), "--format", "trl", "--json",
              "--score-span", span])
        report = json.loads(capsys.readouterr().out)
        assert report["score_span"] == span and report["n"] == len(SPAN_ROWS)
        outputs = [scorer({"question": f"Question {i}?", "steps": steps}, score_span=span)
                   for i, (steps, _) in enumerate(SPAN_ROWS)]
        scores = [[s["score"] for s in out["steps"]] for out in outputs]
        labels = [[float(v) for v in row_labels[part]] for _, row_labels in SPAN_ROWS]
        assert [len(s) for s in scores] == [len(x) for x in labels]
        assert report["step_auroc"] == pytest.approx(step_auroc(scores, labels))
        expected = processbench_f1([predict_first_error(s, report["threshold"]) for s in scores],
                                   [first_error_from_labels(x) for x in labels])
        for key in ("f1", "error_acc", "correct_acc"):
            assert report[key] == pytest.approx(expected[key]), (span, key)
    main(["eval", "--model", str(saved_tiny), "--data", str(data), "--format", "trl"])
    assert "span: think" in capsys.readouterr().out  # the model's own span, named in the table
