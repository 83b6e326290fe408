"""A scoring forward runs the backbone only up to the feature layer (no later layers, final norm, LM head or KV
cache) and gives the scores of the full forward: tiny random models (Llama, Qwen2, quantized, device_map'ed,
checkpointed, an architecture without a layer list) and the real SmolLM2 backbone."""

import json

import pytest
import torch

from conftest import FIXTURES, make_tiny_backbone
from modeling_sprm import SPRMForStepScoring, StepRules, build_trace
from modeling_sprm.loading import quantization_config
from modeling_sprm.processing_sprm import SPRMProcessor, pad_traces

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTIONS = [
    "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7.",
    "3 + 4 = 7.\n\nThe answer is 7.",
]


def padded_batch(model, tokenizer) -> dict:
    """Two solutions of different lengths in one right-padded batch (the attention mask matters)."""
    rules = StepRules.from_config(model.config)
    traces = [build_trace(tokenizer, rules, question=QUESTION, solution=s) for s in SOLUTIONS]
    return pad_traces(traces, tokenizer.pad_token_id)


def modules_run(model, batch: dict, **kwargs) -> tuple[set[str], object]:
    """The backbone's layers / norm / LM head that ran during ``model(**batch)``, and its output."""
    base = model.backbone.base_model
    watched = {f"layer{i}": layer for i, layer in enumerate(base.layers)}
    watched.update(norm=base.norm, lm_head=model.backbone.get_output_embeddings())
    ran: set[str] = set()
    handles = [m.register_forward_hook(lambda *_, name=name: ran.add(name)) for name, m in watched.items()]
    try:
        out = model(**batch, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return ran, out


def full_forward(model, batch: dict):
    """Today's path: the whole backbone runs (asking for hidden states disables the early stop)."""
    return model(**batch, output_hidden_states=True, return_step_features=True)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("feature_layer", [-2, -1, 0, 1])
def test_scoring_stops_at_the_feature_layer_with_the_same_scores(smollm2_tokenizer, arch, feature_layer):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id, arch=arch)
    model = SPRMForStepScoring.from_backbone(backbone, feature_layer=feature_layer)
    batch = padded_batch(model, smollm2_tokenizer)
    with torch.no_grad():
        ran, out = modules_run(model, batch, return_step_features=True)
        full = full_forward(model, batch)
        hidden = backbone(batch["input_ids"], attention_mask=batch["attention_mask"],
                          output_hidden_states=True).hidden_states[feature_layer]
    layers_needed = {-2: 1, -1: 2, 0: 0, 1: 1}[feature_layer]  # of the 2 layers
    assert ran == {f"layer{i}" for i in range(layers_needed)} | ({"norm"} if feature_layer == -1 else set())
    assert out.cache is None and out.logits is None
    assert torch.equal(out.step_mask, full.step_mask)
    assert torch.allclose(out.step_features, full.step_features, atol=1e-6)
    assert torch.allclose(out.step_scores, full.step_scores, atol=1e-6)
    assert torch.allclose(out.scores, full.scores, atol=1e-6)
    for row in range(2):  # the features are the backbone's hidden states at the read positions
        positions = batch["step_positions"][row][out.step_mask[row]]
        assert torch.allclose(out.step_features[row][out.step_mask[row]], hidden[row, positions], atol=1e-6)


def test_the_full_forward_runs_when_more_than_features_is_asked(tiny_sprm):
    model, tokenizer = tiny_sprm
    batch = padded_batch(model, tokenizer)
    with torch.no_grad():
        early = model(**batch)
        for kwargs in ({"return_lm_logits": True}, {"output_hidden_states": True}, {"use_cache": True}):
            ran, out = modules_run(model, batch, **kwargs)
            assert {"layer1", "norm", "lm_head"} <= ran, kwargs
            assert torch.allclose(out.step_scores, early.step_scores, atol=1e-6)
        ran, out = modules_run(model, {"input_ids": batch["input_ids"][:1]})  # LM mode (generation): everything
        assert {"layer1", "norm", "lm_head"} <= ran and out.logits is not None


def test_architecture_without_a_layer_list_falls_back_to_hidden_states(tiny_sprm, monkeypatch):
    model, tokenizer = tiny_sprm
    batch = padded_batch(model, tokenizer)
    with torch.no_grad():
        early = model(**batch)
        monkeypatch.setattr(model, "feature_modules", lambda: None)
        ran, fallback = modules_run(model, batch)
    assert "layer1" in ran  # the whole backbone ran, with output_hidden_states
    assert torch.allclose(fallback.step_scores, early.step_scores, atol=1e-6)


def test_gradients_flow_through_the_early_stop_and_under_checkpointing(tiny_sprm):
    model, tokenizer = tiny_sprm
    batch = padded_batch(model, tokenizer)
    model.eval()  # no dropout: both runs compute the same values

    def backbone_grad(checkpointing: bool) -> tuple[torch.Tensor, set[str]]:
        model.zero_grad()
        if checkpointing:
            model.backbone.gradient_checkpointing_enable({"use_reentrant": False})
        model.backbone.train()  # transformers checkpoints in training mode only; the tiny model has no dropout
        try:
            ran, out = modules_run(model, batch)
            out.scores.sum().backward()
        finally:
            model.backbone.gradient_checkpointing_disable()
            model.backbone.eval()
        return model.backbone.get_input_embeddings().weight.grad.clone(), ran

    early_grad, early_ran = backbone_grad(False)
    checkpointed_grad, checkpointed_ran = backbone_grad(True)
    assert "layer1" not in early_ran and "layer1" in checkpointed_ran  # no early stop under checkpointing
    assert early_grad.abs().sum() > 0
    assert torch.allclose(early_grad, checkpointed_grad, atol=1e-6)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
def test_quantized_backbone_stops_at_the_feature_layer(tiny_sprm, tmp_path, quantization):
    model, tokenizer = tiny_sprm
    model.save_pretrained(tmp_path)
    quantized = SPRMForStepScoring.from_pretrained(tmp_path, quantization_config=quantization_config(quantization))
    batch = padded_batch(quantized, tokenizer)
    with torch.inference_mode():
        ran, early = modules_run(quantized, batch)
        full = full_forward(quantized, batch)
    assert "layer1" not in ran
    assert torch.allclose(early.step_scores, full.step_scores, atol=1e-5)


def test_device_map_with_an_offloaded_layer_stops_at_the_feature_layer(tiny_sprm, tmp_path):
    """accelerate's hooks (a layer offloaded to disk, loaded for its forward): the early stop leaves the model
    usable and the scores equal."""
    model, tokenizer = tiny_sprm
    model.save_pretrained(tmp_path / "model")
    device_map = {"backbone.model.embed_tokens": "cpu", "backbone.model.layers.0": "disk",
                  "backbone.model.layers.1": "cpu", "backbone.model.norm": "cpu", "backbone.model.rotary_emb": "cpu",
                  "backbone.lm_head": "cpu", "score_head": "cpu"}
    placed = SPRMForStepScoring.from_pretrained(tmp_path / "model", device_map=device_map,
                                                offload_folder=str(tmp_path / "offload"))
    batch = padded_batch(placed, tokenizer)
    with torch.no_grad():
        reference = model(**batch)
        ran, early = modules_run(placed, batch)
        again = placed(**batch)
        full = full_forward(placed, batch)
    assert "layer1" not in ran
    for out in (early, again, full):
        assert torch.allclose(out.step_scores, reference.step_scores, atol=1e-6)


@pytest.mark.slow
def test_real_backbone_scores_equal_the_full_forward(smollm2_path):
    from modeling_sprm.loading import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer(None, device="cpu")
    rows = [json.loads(line) for line in (FIXTURES / "gsm8k" / "test.jsonl").read_text().splitlines()][:4]
    processor = SPRMProcessor.from_model(model, tokenizer)
    batch = processor([{"question": r["question"], "solution": r["answer"].replace("\n", ".\n\n")} for r in rows])
    with torch.inference_mode():
        ran, early = modules_run(model, batch)
        full = full_forward(model, batch)
    n = model.config.text_config.num_hidden_layers
    assert ran == {f"layer{i}" for i in range(n - 1)}  # the default reads hidden_states[-2]: the last layer is skipped
    assert early.step_mask.sum() >= 12
    assert torch.allclose(early.step_scores, full.step_scores, atol=1e-5)
    assert torch.allclose(early.scores, full.scores, atol=1e-5)


def test_right_padding_mask_is_dropped_only_when_it_cannot_matter(tiny_sprm):
    """Right padding: the mask is dropped (causal attention never looks right), features unchanged. A left-padded
    mask is kept (dropping it would let real tokens attend to the padding)."""
    model, tokenizer = tiny_sprm
    batch = padded_batch(model, tokenizer)
    lengths = batch["attention_mask"].sum(1)
    left = {k: v.clone() for k, v in batch.items()}
    shift = int(lengths.max() - lengths[1])
    left["input_ids"][1] = torch.roll(batch["input_ids"][1], shift)
    left["attention_mask"][1] = torch.roll(batch["attention_mask"][1], shift)
    left["step_positions"][1] = torch.where(batch["step_positions"][1] >= 0, batch["step_positions"][1] + shift, -1)
    with torch.no_grad():
        for inputs in (batch, left):
            early, full = model(**inputs, return_step_features=True), full_forward(model, inputs)
            assert torch.allclose(early.step_features, full.step_features, atol=1e-6)
            assert torch.allclose(early.step_scores, full.step_scores, atol=1e-6)
        no_mask = model(**{**left, "attention_mask": torch.ones_like(left["attention_mask"])}, return_step_features=True)
    assert (no_mask.step_features[1] - early.step_features[1]).abs().max() > 1e-3  # the mask mattered there
