"""SPRMForStepScoring: forward, feature reading, generation, both checkpoint kinds, remote code."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, pipeline

from conftest import make_tiny_backbone
from modeling_sprm import SPRMConfig, SPRMForStepScoring, StepRules, build_trace
from modeling_sprm.processing_sprm import pad_traces

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTION = "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."


def encode(model, tokenizer, **inputs):
    trace = build_trace(tokenizer, StepRules.from_config(model.config), **inputs)
    return trace, pad_traces([trace], tokenizer.pad_token_id)


def test_from_backbone_keeps_backbone_outputs(smollm2_tokenizer):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    ids = torch.tensor([[5, 17, 99, 3, 42]])
    with torch.no_grad():
        before = backbone(ids).logits
        model = SPRMForStepScoring.from_backbone(backbone)
        after = model(ids).logits
    assert torch.equal(before, after)
    assert model.config.text_config is backbone.config
    assert model.config.backbone_fingerprint.startswith("sha256:")
    # MetaStone-S1 head shape: Linear(c, 2c) ReLU Dropout(0.5) Linear(2c, 1)
    head = model.score_head
    assert (head[0].in_features, head[0].out_features, head[3].out_features) == (64, 128, 1)
    assert head[2].p == 0.5


def test_forward_shapes_and_scores(tiny_sprm):
    model, tokenizer = tiny_sprm
    trace, batch = encode(model, tokenizer, question=QUESTION, solution=SOLUTION)
    with torch.no_grad():
        out = model(**batch)
    assert out.step_logits.shape == out.step_scores.shape == out.step_mask.shape == (1, 3)
    assert out.scores.shape == (1,)
    assert out.logits is None  # no LM logits in scoring mode unless asked
    expected = torch.exp(torch.log(out.step_scores[0]).mean())
    assert out.scores[0].item() == pytest.approx(expected.item(), rel=1e-6)
    with torch.no_grad():
        with_lm = model(**batch, return_lm_logits=True)
    assert with_lm.logits.shape[:2] == batch["input_ids"].shape
    assert torch.allclose(with_lm.step_scores, out.step_scores)


@pytest.mark.parametrize("feature_layer", [-2, -1, 0, 1])
def test_hooked_features_equal_hidden_states(smollm2_tokenizer, feature_layer):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    model = SPRMForStepScoring.from_backbone(backbone, feature_layer=feature_layer)
    trace, batch = encode(model, smollm2_tokenizer, question=QUESTION, solution=SOLUTION)
    with torch.no_grad():
        hooked = model(**batch, return_step_features=True).step_features[0]
        hidden = backbone(batch["input_ids"], output_hidden_states=True).hidden_states[feature_layer][0]
    assert torch.equal(hooked, hidden[trace.positions])


def test_precomputed_features_give_the_same_scores(tiny_sprm):
    model, tokenizer = tiny_sprm
    _, batch = encode(model, tokenizer, question=QUESTION, solution=SOLUTION)
    with torch.no_grad():
        out = model(**batch, return_step_features=True)
        again = model(step_features=out.step_features, step_mask=out.step_mask)
    assert torch.equal(out.step_scores, again.step_scores)
    assert torch.equal(out.scores, again.scores)


def test_padding_does_not_change_scores(tiny_sprm):
    model, tokenizer = tiny_sprm
    rules = StepRules.from_config(model.config)
    short = build_trace(tokenizer, rules, question="1+1?", solution="1 + 1 = 2.\n\nThe answer is 2.")
    long = build_trace(tokenizer, rules, question=QUESTION, solution=SOLUTION)
    with torch.no_grad():
        alone = model(**pad_traces([short], tokenizer.pad_token_id))
        batched = model(**pad_traces([long, short], tokenizer.pad_token_id))
    assert batched.step_mask[1].tolist() == [True, True, False]
    assert torch.allclose(alone.step_scores[0], batched.step_scores[1, :2], atol=1e-5)
    assert torch.allclose(alone.scores[0], batched.scores[1], atol=1e-5)


def test_feature_grad_scale_scales_backbone_gradient_only(tiny_sprm):
    model, tokenizer = tiny_sprm
    _, batch = encode(model, tokenizer, question=QUESTION, solution=SOLUTION)
    model.eval()  # no dropout: both runs see the same forward

    def grads(scale):
        model.zero_grad()
        out = model(**batch, feature_grad_scale=scale)
        out.scores.sum().backward()
        emb = model.backbone.get_input_embeddings().weight.grad.norm().item()
        head = model.score_head[0].weight.grad.norm().item()
        return emb, head, out.scores.item()

    emb_full, head_full, score_full = grads(1.0)
    emb_small, head_small, score_small = grads(1e-4)
    assert score_full == score_small  # the forward value is unchanged
    assert head_small == pytest.approx(head_full, rel=1e-5)
    assert emb_small == pytest.approx(emb_full * 1e-4, rel=1e-3)


def test_generate_is_the_backbones_generate(smollm2_tokenizer):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    ids = torch.tensor([[5, 17, 99, 3, 42]])
    expected = backbone.generate(ids, max_new_tokens=6, do_sample=False)
    model = SPRMForStepScoring.from_backbone(backbone)
    assert torch.equal(model.generate(ids, max_new_tokens=6, do_sample=False), expected)


def test_any_causal_lm_qwen2(smollm2_tokenizer):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id, arch="qwen2")
    model = SPRMForStepScoring.from_backbone(backbone)
    _, batch = encode(model, smollm2_tokenizer, question=QUESTION, solution=SOLUTION)
    with torch.no_grad():
        assert model(**batch).scores.shape == (1,)
    assert model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False).shape == (1, 6)


def test_config_validation(smollm2_tokenizer):
    text_config = make_tiny_backbone(len(smollm2_tokenizer)).config
    with pytest.raises(ValueError, match="feature_layer"):
        SPRMConfig(text_config=text_config, feature_layer=-4)
    with pytest.raises(ValueError, match="aggregation"):
        SPRMConfig(text_config=text_config, aggregation="median")
    with pytest.raises(ValueError, match="step_delimiters"):
        SPRMConfig(text_config=text_config, step_delimiters=[""])
    config = SPRMConfig(text_config=text_config, step_delimiters="\n")
    assert config.step_delimiters == ["\n"] and config.num_hidden_layers == 2


# -- checkpoints ---------------------------------------------------------------------------------------------------


def scores_of(model, batch):
    with torch.no_grad():
        return model(**batch).step_scores


def test_full_checkpoint_round_trip(tiny_sprm, tmp_path):
    model, tokenizer = tiny_sprm
    _, batch = encode(model, tokenizer, question=QUESTION, solution=SOLUTION)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "configuration_sprm.py", "modeling_sprm.py", "steps.py"} <= files
    assert "pipeline_sprm.py" in files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_sprm.SPRMForStepScoring"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_sprm.SPRMForStepScoring"
    assert config["custom_pipelines"]["step-scoring"]["impl"] == "pipeline_sprm.StepScoringPipeline"
    assert config["head_only"] is False
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(reloaded, SPRMForStepScoring)
    assert (scores_of(reloaded, batch) - scores_of(model, batch)).abs().max() < 1e-5
    also = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(also, SPRMForStepScoring)


def test_head_only_checkpoint_round_trip(tiny_sprm, tmp_path):
    model, tokenizer = tiny_sprm
    _, batch = encode(model, tokenizer, question=QUESTION, solution=SOLUTION)
    model.backbone.save_pretrained(tmp_path / "backbone")
    model.config.backbone_name_or_path = str(tmp_path / "backbone")
    model.save_pretrained(tmp_path / "head", head_only=True)
    weights = load_file(tmp_path / "head" / "model.safetensors")
    assert sorted(weights) == ["score_head.0.bias", "score_head.0.weight", "score_head.3.bias", "score_head.3.weight"]
    reloaded = SPRMForStepScoring.from_pretrained(tmp_path / "head")
    assert reloaded.config.head_only
    assert (scores_of(reloaded, batch) - scores_of(model, batch)).abs().max() < 1e-5
    # Saving a model loaded head-only keeps it head-only unless asked otherwise.
    reloaded.save_pretrained(tmp_path / "again")
    assert len(load_file(tmp_path / "again" / "model.safetensors")) == 4


def test_head_only_load_checks_its_backbone(tiny_sprm, tmp_path, smollm2_tokenizer):
    model, _ = tiny_sprm
    other = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id, seed=7)
    other.save_pretrained(tmp_path / "other")
    model.config.backbone_name_or_path = str(tmp_path / "other")
    model.save_pretrained(tmp_path / "head", head_only=True)
    with pytest.warns(UserWarning, match="differs from the one this head was trained on"):
        SPRMForStepScoring.from_pretrained(tmp_path / "head")

    config = json.loads((tmp_path / "head" / "config.json").read_text())
    config["backbone_name_or_path"] = None
    (tmp_path / "head" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="backbone_name_or_path"):
        SPRMForStepScoring.from_pretrained(tmp_path / "head")

    wide = make_tiny_backbone(len(smollm2_tokenizer))
    wide.config.hidden_size = 32  # a different architecture under the same reference
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, vocab_size=len(smollm2_tokenizer))).save_pretrained(
        tmp_path / "wide"
    )
    config["backbone_name_or_path"] = str(tmp_path / "wide")
    (tmp_path / "head" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="hidden size"):
        SPRMForStepScoring.from_pretrained(tmp_path / "head")


def test_head_only_needs_a_backbone_reference(tiny_sprm, tmp_path):
    model, _ = tiny_sprm
    model.config.backbone_name_or_path = None
    with pytest.raises(ValueError, match="backbone_name_or_path"):
        model.save_pretrained(tmp_path, head_only=True)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_sprm"] = None  # the package is not installed in this process
    from transformers import AutoModel, pipeline
    path, question, solution = sys.argv[1:4]
    model = AutoModel.from_pretrained(path, trust_remote_code=True)
    assert "transformers_modules" in type(model).__module__, type(model).__module__
    scorer = pipeline(model=path, trust_remote_code=True)
    result = scorer({"question": question, "solution": solution})
    print(json.dumps({"scores": [s["score"] for s in result["steps"]], "score": result["score"]}))
    """
)


def run_without_package(path, question=QUESTION, solution=SOLUTION) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(path), question, solution],
        capture_output=True, text=True, env=env, cwd=str(path), timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("head_only", [False, True])
def test_fresh_process_without_package_gets_identical_scores(tiny_sprm, tmp_path, head_only):
    model, tokenizer = tiny_sprm
    if head_only:
        model.backbone.save_pretrained(tmp_path / "backbone")
        model.config.backbone_name_or_path = str(tmp_path / "backbone")
    model.save_pretrained(tmp_path / "model", head_only=head_only)
    tokenizer.save_pretrained(tmp_path / "model")
    local = pipeline("step-scoring", model=model, tokenizer=tokenizer)({"question": QUESTION, "solution": SOLUTION})
    remote = run_without_package(tmp_path / "model")
    assert remote["scores"] == pytest.approx([s["score"] for s in local["steps"]], abs=1e-6)
    assert remote["score"] == pytest.approx(local["score"], abs=1e-6)


@pytest.mark.slow
def test_embedded_default_head_only_round_trip_and_remote_code(smollm2_path, smollm2_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = SPRMForStepScoring.from_backbone("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert model.config.backbone_name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    _, batch = encode(model, smollm2_tokenizer, question=QUESTION, solution=SOLUTION)
    expected = scores_of(model, batch)
    model.save_pretrained(tmp_path / "head", head_only=True)
    smollm2_tokenizer.save_pretrained(tmp_path / "head")
    assert (tmp_path / "head" / "model.safetensors").stat().st_size < 5_000_000  # the head only: 2c^2+4c+1 floats
    reloaded = AutoModel.from_pretrained(tmp_path / "head")
    assert (scores_of(reloaded, batch) - expected).abs().max() < 1e-5
    remote = run_without_package(tmp_path / "head")
    assert remote["scores"] == pytest.approx(expected[0].tolist(), abs=1e-5)
