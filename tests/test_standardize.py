"""Feature standardisation in the head: an exact re-parameterisation of the first layer, set from training data."""

import pytest
import torch

from conftest import make_tiny_backbone
from modeling_sprm import SPRMConfig, SPRMForStepScoring, SPRMHead
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments


def test_standardized_head_equals_its_folded_plain_head():
    torch.manual_seed(0)
    head = SPRMHead(8, standardize=True).eval()
    features = torch.randn(50, 8) * torch.tensor([500.0, 1, 2, 3, 4, 5, 6, 7]) + 100
    head.set_feature_statistics(features)
    assert torch.allclose(head.feature_mean, features.mean(0), atol=1e-3)
    assert torch.allclose(head.feature_std, features.std(0), rtol=1e-5)
    plain = SPRMHead(8).eval()
    plain.load_state_dict(head.folded_state_dict(), strict=True)
    assert sorted(head.folded_state_dict()) == ["0.bias", "0.weight", "3.bias", "3.weight"]
    assert torch.allclose(head(features), plain(features), rtol=1e-4, atol=1e-3)


def test_statistics_need_a_standardizing_head_and_enough_rows():
    with pytest.raises(ValueError, match="does not standardize"):
        SPRMHead(4).set_feature_statistics(torch.randn(10, 4))
    with pytest.raises(ValueError, match="features"):
        SPRMHead(4, standardize=True).set_feature_statistics(torch.randn(1, 4))
    constant = SPRMHead(2, standardize=True)
    constant.set_feature_statistics(torch.ones(5, 2))
    assert torch.isfinite(constant(torch.ones(3, 2))).all()  # a constant feature gets std 1e-6, no NaN


def test_config_validation(smollm2_tokenizer):
    with pytest.raises(ValueError, match="feature_normalization"):
        SPRMConfig(text_config=make_tiny_backbone(len(smollm2_tokenizer)).config, feature_normalization="rms")


def test_trainer_sets_statistics_and_checkpoint_keeps_them(smollm2_tokenizer, tmp_path):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    model = SPRMForStepScoring.from_backbone(backbone, feature_normalization="standardize", backbone_name_or_path="x")
    torch.manual_seed(0)
    rows = [
        {"id": str(i), "step_features": torch.randn(3, 64) * 50 + 7, "num_steps": 3, "outcome_label": float(i % 2),
         "step_labels": None, "rollout_truncated": False}
        for i in range(8)
    ]
    args = SPRMTrainingArguments(output_dir=str(tmp_path / "out"), loss="outcome_bce", num_train_epochs=1,
                                 per_device_train_batch_size=4, report_to="none", use_cpu=True, save_strategy="no")
    SPRMTrainer(model, args, train_dataset=rows).train()
    every_step = torch.cat([r["step_features"] for r in rows])
    assert torch.allclose(model.score_head.feature_mean, every_step.mean(0), atol=1e-4)
    model.backbone.save_pretrained(tmp_path / "backbone")
    model.config.backbone_name_or_path = str(tmp_path / "backbone")
    model.save_pretrained(tmp_path / "head", head_only=True)
    reloaded = SPRMForStepScoring.from_pretrained(tmp_path / "head")
    assert torch.equal(reloaded.score_head.feature_std, model.score_head.feature_std)
    features, mask = torch.randn(2, 3, 64), torch.ones(2, 3, dtype=torch.bool)
    model.eval()
    assert torch.allclose(reloaded.score_step_features(features, mask)[0], model.score_step_features(features, mask)[0])
