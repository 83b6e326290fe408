"""SPRMTrainer / StepSupervisedTrainer on a tiny random backbone with SmolLM2's real tokenizer: the collator, cached
vs uncached training, checkpoints, resuming, the training options and their errors."""

import json
import math

import pytest
import reference_losses
import torch
from transformers import TrainerCallback
from transformers import logging as hf_logging

from conftest import make_tiny_backbone
from modeling_sprm import SPRMForStepScoring
from modeling_sprm.training import (
    SPRMDataCollator,
    SPRMTrainer,
    SPRMTrainingArguments,
    StepSupervisedTrainer,
)
from modeling_sprm.training.losses import outcome_bce, spr_loss

hf_logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_torch_thread")



def make_records(n: int = 24) -> list[dict]:
    """Records with 1-4 steps, mixed outcomes, ProcessBench-style step labels (unknown after the first error)."""
    records = []
    for i in range(n):
        k = 1 + i % 4
        wrong_at = i % 5 if i % 5 < k else -1
        steps = [f"Step {j + 1} of problem {i}: {i} + {j} = {i + j + (1 if j == wrong_at else 0)}" for j in range(k)]
        labels = [1.0] * k if wrong_at == -1 else [1.0] * wrong_at + [0.0] + [None] * (k - wrong_at - 1)
        records.append(
            {
                "id": str(i),
                "question": f"Add the numbers for problem {i}.",
                "steps": steps,
                "solution": None,
                "outcome_label": 1.0 if wrong_at == -1 else 0.0,
                "step_labels": labels,
                "rollout_truncated": i % 7 == 3,
            }
        )
    return records


@pytest.fixture
def tiny(smollm2_tokenizer, tmp_path):
    """A fresh tiny SPRM whose backbone is saved (so head-only checkpoints load) and its tokenizer."""
    backbone_dir = tmp_path / "backbone"
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    backbone.save_pretrained(backbone_dir)
    smollm2_tokenizer.save_pretrained(backbone_dir)
    return SPRMForStepScoring.from_backbone(backbone, backbone_name_or_path=str(backbone_dir)), smollm2_tokenizer


def training_args(tmp_path, **overrides) -> SPRMTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=2,
        seed=3,
    )
    return SPRMTrainingArguments(**{**values, **overrides})


def reference_loss(name: str, out, outcome_labels: torch.Tensor, keep: torch.Tensor | None = None, **options) -> float:
    """The loss recomputed by tests/reference_losses.py (plain Python, no code shared with the package) from the
    step logits the trainer's forward produced."""
    logits, mask = out.step_logits.detach().tolist(), out.step_mask.tolist()
    keep = None if keep is None else keep.tolist()
    return getattr(reference_losses, name)(logits, mask, outcome_labels.tolist(), keep, **options)[0]


def head_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.score_head.state_dict().items()}


def test_collator_pads_records_and_cached_features(tiny):
    model, tokenizer = tiny
    collator = SPRMDataCollator(model, tokenizer)
    records = make_records(5)
    batch = collator(records[1:4])  # 2, 3 and 4 steps
    assert batch["step_positions"].shape == (3, 4)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["outcome_labels"].tolist() == [0.0, 0.0, 0.0]
    # Record 1: [right, wrong] then padding; record 2: first error at step 3 of 3; record 3 at step 4 of 4.
    assert batch["step_labels"][0, :2].tolist() == [1.0, 0.0] and batch["step_labels"][0, 2:].isnan().all()
    assert batch["step_labels"][1, :3].tolist() == [1.0, 1.0, 0.0] and batch["step_labels"][1, 3].isnan()
    assert batch["step_labels"][2].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert batch["rollout_truncated"].tolist() == [False, False, True]

    rows = [
        {"step_features": torch.ones(2, 64), "outcome_label": 1.0, "step_labels": [1.0, 0.5], "num_steps": 2},
        {"step_features": torch.ones(1, 64), "outcome_label": None, "step_labels": None, "num_steps": 3},
    ]
    batch = collator(rows)
    assert batch["step_features"].shape == (2, 2, 64)
    assert batch["step_mask"].tolist() == [[True, True], [True, False]]
    assert batch["step_labels"][0].tolist() == [1.0, 0.5] and batch["step_labels"][1].isnan().all()
    assert batch["outcome_labels"][0] == 1.0 and batch["outcome_labels"][1].isnan()


def test_collator_rejects_step_labels_that_do_not_match_the_steps(tiny):
    model, tokenizer = tiny
    record = dict(make_records(2)[1], step_labels=[1.0])  # two steps, one label
    with pytest.raises(ValueError, match="2 steps but the record has 1 step labels"):
        SPRMDataCollator(model, tokenizer)([record])


@pytest.mark.parametrize("max_length", [None, 40])
def test_cached_and_uncached_training_give_the_same_losses(tiny, smollm2_tokenizer, tmp_path, max_length):
    """Training from cached features equals training through the frozen backbone: same losses at every logged
    step and the same final head (also when truncation cuts steps off)."""
    runs = []
    for cache in (True, False):
        model = SPRMForStepScoring.from_backbone(
            make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id), backbone_name_or_path="tiny"
        )
        args = training_args(tmp_path, cache_features=cache, max_length=max_length, logging_steps=1, num_train_epochs=3)
        trainer = SPRMTrainer(model, args, train_dataset=make_records(), processing_class=smollm2_tokenizer)
        assert ("step_features" in trainer.train_dataset[0]) == cache
        trainer.train()
        runs.append(([e["loss"] for e in trainer.state.log_history if "loss" in e], head_state(model)))
    (cached_losses, cached_head), (losses, head) = runs
    assert len(cached_losses) == 9
    assert cached_losses == pytest.approx(losses, rel=1e-4, abs=1e-6)
    for key in head:
        torch.testing.assert_close(cached_head[key], head[key], rtol=1e-4, atol=1e-5)
    if max_length:  # the truncated variant really cut steps off
        collator = SPRMDataCollator(model, smollm2_tokenizer, max_length)
        assert (collator(make_records()[:8])["step_positions"] == -1).sum() > (
            SPRMDataCollator(model, smollm2_tokenizer)(make_records()[:8])["step_positions"] == -1
        ).sum()


def test_head_only_checkpoint_records_training_and_loads(tiny, tmp_path):
    model, tokenizer = tiny
    records = make_records()
    args = training_args(tmp_path, eval_strategy="epoch")
    trainer = SPRMTrainer(
        model, args, train_dataset=records, eval_dataset=records[:12], processing_class=tokenizer,
        data_description={"path": "synthetic"},
    )
    trainer.train()
    out = tmp_path / "head"
    trainer.save_model(str(out))
    assert (out / "model.safetensors").stat().st_size < 200_000  # the head only, not the backbone
    assert (out / "score_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = json.loads((out / "training_log.json").read_text())
    evals = [e for e in log["log_history"] if "eval_score_correct_mean" in e]
    assert len(evals) == 2 and all({"eval_score_incorrect_mean", "eval_score_gap", "eval_step_auroc"} <= set(e) for e in evals)
    train_logs = [e for e in log["log_history"] if "train_score_correct_mean" in e]
    assert train_logs and all(0 <= e["train_step_positive_fraction"] <= 1 for e in train_logs)

    loaded = SPRMForStepScoring.from_pretrained(out)
    assert loaded.config.head_is_trained
    training = loaded.config.head_training
    assert training["trainer"] == "SPRMTrainer" and training["loss"] == "spr" and training["labels"] == "outcome"
    assert training["global_steps"] == trainer.state.global_step == 6 and training["data"] == {"path": "synthetic"}
    for key, value in head_state(model).items():
        torch.testing.assert_close(loaded.score_head.state_dict()[key], value)
    # Same scores through the pipeline path as the trained model gives.
    batch = SPRMDataCollator(model, tokenizer)(records[:4])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "step_positions")}
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**inputs).scores, model.eval()(**inputs).scores)


def test_resume_from_a_checkpoint_gives_the_uninterrupted_result(tiny, smollm2_tokenizer, tmp_path):
    model, tokenizer = tiny
    records = make_records()
    args = training_args(tmp_path, save_strategy="steps", save_steps=3, num_train_epochs=2)
    SPRMTrainer(model, args, train_dataset=records, processing_class=tokenizer).train()
    uninterrupted = head_state(model)
    checkpoint = tmp_path / "out" / "checkpoint-3"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "model.safetensors").stat().st_size < 200_000

    fresh = SPRMForStepScoring.from_backbone(
        make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id), backbone_name_or_path="tiny"
    )
    resumed = SPRMTrainer(fresh, args, train_dataset=records, processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    for key, value in uninterrupted.items():
        torch.testing.assert_close(fresh.score_head.state_dict()[key], value)


def test_same_seed_same_head(tiny, smollm2_tokenizer, tmp_path):
    heads = []
    for _ in range(3):
        model = SPRMForStepScoring.from_backbone(
            make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id), backbone_name_or_path="tiny"
        )
        torch.manual_seed(len(heads))  # a different global RNG state: the trainer's seed decides
        args = training_args(tmp_path, seed=3 if len(heads) < 2 else 4)
        SPRMTrainer(model, args, train_dataset=make_records(), processing_class=smollm2_tokenizer).train()
        heads.append(head_state(model))
    for key in heads[0]:
        torch.testing.assert_close(heads[0][key], heads[1][key])
    # ...and it does decide: another seed (head initialisation, dropout, data order) gives another head.
    assert any(not torch.allclose(heads[0][key], heads[2][key]) for key in heads[0])


def test_warmup_turns_the_filter_off(tiny, smollm2_tokenizer, tmp_path):
    """An SPR run whose warm-up lasts the whole run is an outcome_bce run; a shorter warm-up differs."""
    finals = {}
    for name, overrides in {
        "warm_all": dict(spr_warmup_steps=100),
        "outcome_bce": dict(loss="outcome_bce"),
        "warm_2": dict(spr_warmup_steps=2),
    }.items():
        model = SPRMForStepScoring.from_backbone(
            make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id), backbone_name_or_path="tiny"
        )
        trainer = SPRMTrainer(model, training_args(tmp_path, **overrides), train_dataset=make_records(),
                              processing_class=smollm2_tokenizer)
        trainer.train()
        finals[name] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert finals["warm_all"] == pytest.approx(finals["outcome_bce"], rel=1e-6)
    assert finals["warm_2"][0] == pytest.approx(finals["outcome_bce"][0], rel=1e-6)  # steps 1-2 unfiltered
    assert finals["warm_2"][1:] != pytest.approx(finals["outcome_bce"][1:], rel=1e-3)


def test_compute_loss_uses_only_the_trainers_labels_and_excludes_truncated(tiny, tmp_path):
    model, tokenizer = tiny
    records = make_records(8)
    trainer = SPRMTrainer(model, training_args(tmp_path, cache_features=False, exclude_truncated=True),
                          train_dataset=records, processing_class=tokenizer)
    model.eval()
    batch = trainer._prepare_inputs(SPRMDataCollator(model, tokenizer)(records))
    assert batch["rollout_truncated"].tolist() == [False, False, False, True, False, False, False, False]
    loss, out = trainer.compute_loss(model, batch, return_outputs=True)
    expected = reference_loss("spr", out, batch["outcome_labels"], keep=~batch["rollout_truncated"])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert abs(loss.item() - reference_loss("spr", out, batch["outcome_labels"])) > 1e-4  # the exclusion counts

    step_trainer = StepSupervisedTrainer(model, training_args(tmp_path, cache_features=False),
                                         train_dataset=records, processing_class=tokenizer)
    loss = step_trainer.compute_loss(model, batch)
    labels = batch["step_labels"]
    known = out.step_mask & ~labels.isnan()
    by_hand = sum(
        -math.log(torch.sigmoid(z).item()) if y == 1 else -math.log(1 - torch.sigmoid(z).item())
        for z, y in zip(out.step_logits[known], labels[known])
    ) / (known.sum().item() + 1e-5)
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_step_supervised_trainer_takes_trl_rows_unchanged(tiny, tmp_path):
    model, tokenizer = tiny
    rows = [
        {"prompt": "Which is larger, 9.11 or 9.9?", "completions": ["Compare 0.11 and 0.9", "So 9.9 is larger"],
         "labels": [True, True]},
        {"prompt": "Which is larger, 9.11 or 9.9?", "completions": ["11 > 9 so 0.11 > 0.9", "So 9.11 is larger"],
         "labels": [False, 0.3]},
    ] * 4
    trainer = StepSupervisedTrainer(model, training_args(tmp_path), train_dataset=rows, processing_class=tokenizer)
    first = trainer.train_dataset[1]
    assert first["step_labels"] == [0.0, 0.3]  # a float label stays a float (TRL would cast it to 0)
    assert first["outcome_label"] == 0.0  # the lowest step label, as data.load_trl
    trainer.train()
    assert model.config.head_training is None  # recorded at save time
    trainer.save_model(str(tmp_path / "head"))
    assert SPRMForStepScoring.from_pretrained(tmp_path / "head").config.head_training["loss"] == "step_bce"


def test_unfrozen_backbone_feature_grad_scale_and_lm_loss(tiny, tmp_path):
    model, tokenizer = tiny
    records = make_records(8)
    collator = SPRMDataCollator(model, tokenizer, lm_labels=True)
    batch = collator(records)
    # LM labels cover the solutions of correct records only.
    correct = batch["outcome_labels"] == 1
    assert ((batch["lm_labels"] != -100).any(dim=1) == correct).all()

    grads = {}
    for scale in (None, 1e-4):
        trainer = SPRMTrainer(model, training_args(tmp_path, unfreeze_backbone=True, feature_grad_scale=scale),
                              train_dataset=records, processing_class=tokenizer)
        assert not trainer.use_cached_features
        model.eval()
        model.zero_grad()
        trainer.compute_loss(model, trainer._prepare_inputs(SPRMDataCollator(model, tokenizer)(records))).backward()
        grads[scale] = model.backbone.model.layers[0].mlp.down_proj.weight.grad.clone()
    torch.testing.assert_close(grads[1e-4], grads[None] * 1e-4, rtol=1e-3, atol=1e-12)

    trainer = SPRMTrainer(model, training_args(tmp_path, unfreeze_backbone=True, lm_loss_weight=0.5, max_steps=1),
                          train_dataset=records, processing_class=tokenizer)
    model.eval()
    inputs = trainer._prepare_inputs(batch)
    joint, out = trainer.compute_loss(model, inputs, return_outputs=True)
    head_only = reference_loss("spr", out, inputs["outcome_labels"])
    assert joint.item() > head_only
    trainer.train()
    trainer.save_model(str(tmp_path / "full"))
    assert not SPRMForStepScoring.from_pretrained(tmp_path / "full").config.head_only  # the backbone changed too


@pytest.mark.parametrize(
    "trainer_class, overrides, message",
    [
        (SPRMTrainer, dict(loss="step_bce"), "trains on outcome labels.*needs step labels"),
        (StepSupervisedTrainer, dict(loss="spr"), "trains on step labels.*needs outcome labels"),
        (SPRMTrainer, dict(loss="nope"), "unknown loss"),
        (SPRMTrainer, dict(lm_loss_weight=1.0), "needs --unfreeze_backbone"),
        (SPRMTrainer, dict(feature_grad_scale=1e-4), "needs --unfreeze_backbone"),
        (SPRMTrainer, dict(loss="outcome_bce", spr_threshold=0.7), "no effect with the 'outcome_bce' loss"),
        (StepSupervisedTrainer, dict(spr_warmup_steps=3), "needs a loss with a filter"),
        (SPRMTrainer, dict(loss_options='{"bogus": 1}'), r"no options \['bogus'\]"),
        (SPRMTrainer, dict(lora_r=4, unfreeze_backbone=True), "choose one"),
        (SPRMTrainer, dict(lora_alpha=8.0), "need --lora_r"),
        (SPRMTrainer, dict(lora_r=0), "positive rank"),
        (SPRMTrainer, dict(lora_r=2, lora_alpha=0.0), "--lora_alpha must be > 0"),
        (SPRMTrainer, dict(lora_r=2, lora_target_modules="no_such_proj"), "--lora_target_modules no_such_proj"),
        (SPRMTrainer, dict(loss="mil", ema_teacher_decay=0.9), "the 'mil' loss has none"),
        (SPRMTrainer, dict(ema_teacher_decay=1.0), r"must be in \[0, 1\)"),
    ],
)
def test_bad_configurations_fail_early_and_clearly(tiny, tmp_path, trainer_class, overrides, message):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=message):
        trainer_class(model, training_args(tmp_path, **overrides), train_dataset=make_records(4), processing_class=tokenizer)


def test_missing_labels_name_the_row(tiny, tmp_path):
    model, tokenizer = tiny
    records = make_records(4)
    records[2] = dict(records[2], outcome_label=None)
    with pytest.raises(ValueError, match=r"train_dataset row 2 \(id '2'\) has no outcome label"):
        SPRMTrainer(model, training_args(tmp_path), train_dataset=records, processing_class=tokenizer)
    records = [dict(r, step_labels=None) for r in make_records(3)]
    with pytest.raises(ValueError, match="row 0 .* has no step labels"):
        StepSupervisedTrainer(model, training_args(tmp_path), train_dataset=records, processing_class=tokenizer)


def test_outcome_bce_is_spr_without_filter_through_the_trainer(tiny, tmp_path):
    model, tokenizer = tiny
    trainer = SPRMTrainer(model, training_args(tmp_path, loss="outcome_bce", cache_features=False),
                          train_dataset=make_records(8), processing_class=tokenizer)
    model.eval()
    batch = trainer._prepare_inputs(SPRMDataCollator(model, tokenizer)(make_records(8)))
    loss, out = trainer.compute_loss(model, batch, return_outputs=True)
    assert loss.item() == pytest.approx(reference_loss("spr", out, batch["outcome_labels"], use_filter=False), rel=1e-5)


@pytest.mark.parametrize(
    "loss, loss_options, spr_threshold",
    [("asymmetric_spr", '{"negative_weight": "filter"}', 0.6), ("mil", '{"prefixes": true}', 0.5),
     ("first_error", None, 0.4), ("spr", '{"soft_agreement": true}', 0.5)],
)
def test_outcome_only_objectives_through_the_trainer(tiny, tmp_path, loss, loss_options, spr_threshold):
    """Each objective is selectable by name, gets its options and the threshold flag, and trains the head."""
    model, tokenizer = tiny
    records = make_records(16)
    trainer = SPRMTrainer(model, training_args(tmp_path, loss=loss, loss_options=loss_options,
                                               spr_threshold=spr_threshold, cache_features=False),
                          train_dataset=records, processing_class=tokenizer)
    model.eval()
    batch = trainer._prepare_inputs(SPRMDataCollator(model, tokenizer)(records))
    computed, out = trainer.compute_loss(model, batch, return_outputs=True)
    options = json.loads(loss_options) if loss_options else {}
    if loss != "mil":
        options["threshold"] = spr_threshold
    expected = reference_loss(loss, out, batch["outcome_labels"], **options)
    assert computed.item() == pytest.approx(expected, rel=1e-5)
    before = head_state(model)
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in head_state(model).items())
    assert all(math.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


# -- EMA teacher -----------------------------------------------------------------------------------------------------


def teacher_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.teacher.state_dict().items()}


class Snapshots(TrainerCallback):
    """(head, teacher) after every optimizer step (runs after the trainer's own teacher update)."""

    def __init__(self, trainer):
        self.trainer, self.taken = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.taken.append((head_state(self.trainer.model), teacher_state(self.trainer)))


def test_ema_teacher_follows_the_ema_rule(tiny, tmp_path):
    model, tokenizer = tiny
    decay = 0.8
    trainer = SPRMTrainer(model, training_args(tmp_path, ema_teacher_decay=decay, max_steps=4),
                          train_dataset=make_records(16), processing_class=tokenizer)
    expected = teacher_state(trainer)
    for key, value in head_state(model).items():  # the teacher starts as the head
        torch.testing.assert_close(expected[key], value)
    snapshots = Snapshots(trainer)
    trainer.add_callback(snapshots)
    trainer.train()
    assert len(snapshots.taken) == 4
    for head, teacher in snapshots.taken:
        expected = {k: decay * expected[k] + (1 - decay) * head[k] for k in expected}
        for key in expected:
            torch.testing.assert_close(teacher[key], expected[key])
    assert not torch.equal(snapshots.taken[-1][0]["3.bias"], snapshots.taken[-1][1]["3.bias"])  # it lags the head
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


def test_the_loss_takes_its_pseudo_labels_from_the_teacher(tiny, tmp_path):
    model, tokenizer = tiny
    right = [r for r in make_records(24) if r["outcome_label"] == 1.0]
    trainer = SPRMTrainer(model, training_args(tmp_path, ema_teacher_decay=0.99, cache_features=False),
                          train_dataset=right, processing_class=tokenizer)
    model.eval()
    inputs = trainer._prepare_inputs(SPRMDataCollator(model, tokenizer)(right))
    with torch.no_grad():
        student, out = trainer.compute_loss(model, inputs, return_outputs=True)
        # A teacher equal to the head gives the head's own pseudo-labels (the spr loss without a teacher).
        assert student.item() == pytest.approx(spr_loss(out.step_logits, out.step_mask, inputs["outcome_labels"]).item())
        # A teacher calling every step right keeps every step of these right solutions (outcome_bce on the head's
        # logits); one calling every step wrong filters them all out (exactly 0), whatever the head says.
        trainer.teacher[3].bias.fill_(50.0)
        kept = trainer.compute_loss(model, inputs).item()
        assert kept > 0 and kept == pytest.approx(outcome_bce(out.step_logits, out.step_mask, inputs["outcome_labels"]).item())
        trainer.teacher[3].bias.fill_(-50.0)
        assert trainer.compute_loss(model, inputs).item() == 0.0


# -- LoRA ------------------------------------------------------------------------------------------------------------


def scores_of(model, tokenizer, records) -> torch.Tensor:
    batch = SPRMDataCollator(model, tokenizer)(records)
    with torch.no_grad():
        return model.eval()(**{k: batch[k] for k in ("input_ids", "attention_mask", "step_positions")}).scores


def test_lora_trains_adapters_with_the_head_and_saves_head_plus_adapter(tiny, tmp_path):
    from modeling_sprm.modeling_sprm import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

    model, tokenizer = tiny
    records = make_records(16)
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    trainer = SPRMTrainer(model, training_args(tmp_path, lora_r=2, lm_loss_weight=0.5, max_steps=3),
                          train_dataset=records, processing_class=tokenizer)
    assert not trainer.use_cached_features  # the features change as the adapters train
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("score_head.") for n in trainable)
    assert any(n.startswith("score_head.") for n in trainable)
    trainer.train()
    adapted = model.backbone.state_dict()
    for key, value in base.items():  # the base weights stay as they were (LoRA wraps them as base_layer)
        torch.testing.assert_close(adapted.get(key, adapted.get(key.replace(".weight", ".base_layer.weight"))), value)
    assert any(v.abs().sum() > 0 for k, v in adapted.items() if "lora_B" in k)  # lora_B starts at 0

    out = tmp_path / "lora-head"
    trainer.save_model(str(out))
    assert (out / ADAPTER_CONFIG_NAME).is_file() and (out / ADAPTER_WEIGHTS_NAME).is_file()
    assert (out / "model.safetensors").stat().st_size < 200_000  # head only
    loaded = SPRMForStepScoring.from_pretrained(out)
    assert loaded.config.head_only and loaded.config.head_training["backbone"] == "lora"
    assert loaded.config.head_training["lora"] == {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": "all-linear"}
    expected = scores_of(model, tokenizer, records)
    torch.testing.assert_close(scores_of(loaded, tokenizer, records), expected)
    # Without the adapter the same head scores differently: the adapter is part of the scorer.
    (out / ADAPTER_CONFIG_NAME).rename(tmp_path / "aside.json")
    plain = SPRMForStepScoring.from_pretrained(out)
    assert not torch.allclose(scores_of(plain, tokenizer, records), expected)
    # Saving a model without an adapter into that folder removes the adapter files it had.
    (tmp_path / "aside.json").rename(out / ADAPTER_CONFIG_NAME)
    plain.save_pretrained(out)
    assert not (out / ADAPTER_CONFIG_NAME).exists() and not (out / ADAPTER_WEIGHTS_NAME).exists()


def test_resume_with_lora_and_a_teacher_gives_the_uninterrupted_result(tiny, smollm2_tokenizer, tmp_path):
    model, tokenizer = tiny
    records = make_records(16)
    args = training_args(tmp_path, lora_r=2, ema_teacher_decay=0.5, save_strategy="steps", save_steps=2,
                         num_train_epochs=2)
    first = SPRMTrainer(model, args, train_dataset=records, processing_class=tokenizer)
    first.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    assert {"ema_teacher.safetensors", "adapter_model.safetensors"} <= {p.name for p in checkpoint.iterdir()}

    fresh = SPRMForStepScoring.from_backbone(
        make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id), backbone_name_or_path="tiny"
    )
    resumed = SPRMTrainer(fresh, args, train_dataset=records, processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 4
    for key, value in head_state(model).items():
        torch.testing.assert_close(fresh.score_head.state_dict()[key], value)
    for key, value in teacher_state(first).items():
        torch.testing.assert_close(teacher_state(resumed)[key], value)
    adapters = {k: v for k, v in model.backbone.state_dict().items() if "lora_" in k}
    assert adapters
    for key, value in adapters.items():
        torch.testing.assert_close(fresh.backbone.state_dict()[key], value)
