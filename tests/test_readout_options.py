"""Readout options of the model (`SPRMConfig.step_pooling`, `SPRMConfig.feature_layers`): what the head reads,
against direct computations on the backbone's hidden states, on a tiny random Llama (2 layers: hidden_states
0..2) with SmolLM2's real tokenizer."""

import json

import pytest
import torch

from conftest import FIXTURES, make_tiny_backbone
from modeling_sprm import SPRMConfig, SPRMForStepScoring, StepRules, build_trace
from modeling_sprm.processing_sprm import SPRMProcessor, pad_traces
from test_feature_layer_forward import QUESTION, SOLUTIONS, modules_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOLUTIONS3 = [*SOLUTIONS, "Tom has 3.\n\nHe gets 4 more apples from the shop, so he has 3 + 4 = 7 apples.\n\n7."]


def tiny_model(tokenizer, seed: int = 1, **options) -> SPRMForStepScoring:
    backbone = make_tiny_backbone(len(tokenizer), tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return SPRMForStepScoring.from_backbone(backbone, backbone_name_or_path="tiny-random-llama", **options)


def traces_of(model, tokenizer, solutions=SOLUTIONS3):
    rules = StepRules.from_config(model.config)
    return [build_trace(tokenizer, rules, question=QUESTION, solution=s) for s in solutions]


def hidden_states(model, trace) -> tuple[torch.Tensor, ...]:
    """The backbone's hidden states of one trace, unpadded: ``[tokens, hidden]`` per index."""
    with torch.no_grad():
        out = model.backbone(torch.tensor([trace.input_ids]), output_hidden_states=True)
    return tuple(h[0] for h in out.hidden_states)


def step_features(model, traces) -> list[torch.Tensor]:
    """``[num_steps, feature_size]`` per trace, from one padded batch through the model's forward."""
    with torch.no_grad():
        out = model(**pad_traces(traces, 0), return_step_features=True)
    return [out.step_features[i][out.step_mask[i]] for i in range(len(traces))]


def test_mean_pooling_is_the_mean_of_the_steps_token_states(smollm2_tokenizer):
    model = tiny_model(smollm2_tokenizer, step_pooling="mean")
    traces = traces_of(model, smollm2_tokenizer)
    features = step_features(model, traces)
    multi_token = 0
    for trace, got in zip(traces, features):
        hidden = hidden_states(model, trace)[-2]  # feature_layer -2
        assert got.shape == (len(trace.steps), 64)
        for j, (start, position) in enumerate(zip(trace.starts, trace.positions)):
            expected = torch.stack([hidden[t] for t in range(start, position + 1)]).mean(0)
            assert torch.allclose(got[j], expected, atol=1e-5), (j, start, position)
            if start < position:  # several tokens: the mean is not the read token's state
                multi_token += 1
                assert not torch.allclose(got[j], hidden[position], atol=1e-3)
    assert multi_token >= 6


def test_mean_pooling_needs_step_starts(smollm2_tokenizer):
    model = tiny_model(smollm2_tokenizer, step_pooling="mean")
    batch = pad_traces(traces_of(model, smollm2_tokenizer), 0)
    del batch["step_starts"]
    with pytest.raises(ValueError, match="step_pooling='mean' needs step_starts"):
        model(**batch)


@pytest.mark.parametrize("options", [{"step_pooling": "mean"}, {"step_pooling": "mean", "feature_layers": [2, 0]},
                                     {"feature_layers": [1, 2]}])
def test_a_padded_batch_scores_as_one_solution_at_a_time(smollm2_tokenizer, options):
    model = tiny_model(smollm2_tokenizer, **options)
    traces = traces_of(model, smollm2_tokenizer)
    lengths = {len(t.input_ids) for t in traces}
    assert len(lengths) == 3  # right padding of two rows
    with torch.no_grad():
        batched = model(**pad_traces(traces, 0))
        for i, trace in enumerate(traces):
            alone = model(**pad_traces([trace], 0))
            mask = batched.step_mask[i]
            assert torch.allclose(batched.step_scores[i][mask], alone.step_scores[0][alone.step_mask[0]], atol=1e-6)
            assert batched.scores[i].item() == pytest.approx(alone.scores[0].item(), abs=1e-6)


def test_layers_are_concatenated_in_the_order_given(smollm2_tokenizer):
    traces = traces_of(tiny_model(smollm2_tokenizer), smollm2_tokenizer)
    for layers in ([2, 0], [0, 2], [-1, 1]):
        model = tiny_model(smollm2_tokenizer, feature_layers=layers)
        assert model.score_head[0].in_features == 64 * 2 == model.config.feature_size
        for trace, got in zip(traces, step_features(model, traces)):
            hidden = hidden_states(model, trace)
            expected = torch.cat([hidden[layers[0]][trace.positions], hidden[layers[1]][trace.positions]], dim=-1)
            assert torch.allclose(got, expected, atol=1e-5), layers


@pytest.mark.parametrize("layers, ran", [([1, 0], {"layer0"}), ([0, 2], {"layer0", "layer1", "norm"}),
                                         ([1, -2], None)])
def test_the_forward_stops_at_the_highest_layer_read(smollm2_tokenizer, layers, ran):
    if ran is None:  # -2 is hidden_states[1]: the same layer twice
        with pytest.raises(ValueError, match="same hidden_states layer twice"):
            tiny_model(smollm2_tokenizer, feature_layers=layers)
        return
    model = tiny_model(smollm2_tokenizer, feature_layers=layers, step_pooling="mean")
    batch = pad_traces(traces_of(model, smollm2_tokenizer), 0)
    with torch.no_grad():
        modules, early = modules_run(model, batch, return_step_features=True)
        full = model(**batch, output_hidden_states=True, return_step_features=True)  # no early stop
    assert modules == ran
    assert torch.allclose(early.step_features, full.step_features, atol=1e-6)
    assert torch.allclose(early.step_scores, full.step_scores, atol=1e-6)


def test_an_architecture_without_a_layer_list_reads_the_same_layers(smollm2_tokenizer, monkeypatch):
    model = tiny_model(smollm2_tokenizer, feature_layers=[2, 1], step_pooling="mean")
    batch = pad_traces(traces_of(model, smollm2_tokenizer), 0)
    with torch.no_grad():
        hooked = model(**batch, return_step_features=True)
        monkeypatch.setattr(model, "feature_modules", lambda: None)
        fallback = model(**batch, return_step_features=True)
    assert torch.allclose(hooked.step_features, fallback.step_features, atol=1e-6)


def test_defaults_are_metastones_readout(smollm2_tokenizer, tmp_path):
    """The default head reads hidden_states[-2] at the read token, exactly as before the options existed; a saved
    config without the new fields (every earlier checkpoint) loads with those defaults and the same scores."""
    model = tiny_model(smollm2_tokenizer)
    config = model.config
    assert (config.step_pooling, config.feature_layers, config.feature_size) == ("delimiter", None, 64)
    traces = traces_of(model, smollm2_tokenizer)
    for trace, got in zip(traces, step_features(model, traces)):
        assert torch.equal(got, hidden_states(model, trace)[-2][trace.positions])
    explicit = tiny_model(smollm2_tokenizer, step_pooling="delimiter", feature_layers=[-2])
    explicit.score_head.load_state_dict(model.score_head.state_dict())
    batch = pad_traces(traces, 0)
    with torch.no_grad():
        assert torch.equal(model(**batch).step_scores, explicit(**batch).step_scores)

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["step_pooling"] == "delimiter" and saved["feature_layers"] is None
    del saved["step_pooling"], saved["feature_layers"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = SPRMForStepScoring.from_pretrained(tmp_path)
    assert (loaded.config.step_pooling, loaded.config.feature_layers) == ("delimiter", None)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).step_scores, model(**batch).step_scores)


@pytest.mark.parametrize("head_only", [False, True])
def test_save_and_load_keep_the_readout(smollm2_tokenizer, tmp_path, head_only):
    model = tiny_model(smollm2_tokenizer, step_pooling="mean", feature_layers=[2, 0],
                       feature_normalization="standardize")
    with torch.no_grad():
        model.score_head.feature_mean.normal_()
    batch = pad_traces(traces_of(model, smollm2_tokenizer), 0)
    if head_only:  # the head-only checkpoint finds its backbone by name
        backbone_dir = tmp_path / "backbone"
        model.backbone.save_pretrained(backbone_dir)
        model.config.backbone_name_or_path = str(backbone_dir)
    model.save_pretrained(tmp_path / "sprm", head_only=head_only)
    loaded = SPRMForStepScoring.from_pretrained(tmp_path / "sprm")
    assert (loaded.config.step_pooling, loaded.config.feature_layers) == ("mean", [2, 0])
    assert loaded.score_head[0].in_features == 128
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).step_scores, model(**batch).step_scores, atol=1e-6)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"step_pooling": "max"}, "step_pooling must be one of"),
        ({"feature_layers": []}, "at least one hidden_states index"),
        ({"feature_layers": 2}, "must be a list of hidden_states indices"),
        ({"feature_layers": [1.0]}, "must be a list of hidden_states indices"),
        ({"feature_layers": [0, 3]}, "feature_layers entry 3 is outside"),
        ({"feature_layers": [-4]}, "feature_layers entry -4 is outside"),
        ({"feature_layers": [2, -1]}, "same hidden_states layer twice"),
    ],
)
def test_config_validation(smollm2_tokenizer, options, match):
    text_config = make_tiny_backbone(len(smollm2_tokenizer)).config
    with pytest.raises(ValueError, match=match) as error:
        SPRMConfig(text_config=text_config, **options)
    assert "\n" not in str(error.value)


def test_config_poolings_are_the_readouts():
    from modeling_sprm import readouts
    from modeling_sprm.configuration_sprm import STEP_POOLINGS

    assert STEP_POOLINGS == readouts.POOLINGS


def test_the_model_reads_what_the_signal_study_extracted(smollm2_tokenizer):
    """benchmarks/signal/extract.py (the readout study's features) and the model's mean readout over the same
    layers agree: the options reproduce what the study measured."""
    from benchmarks.signal.extract import extract_chunk
    from modeling_sprm.training.features import step_features_for_traces

    model = tiny_model(smollm2_tokenizer, step_pooling="mean", feature_layers=[1, 2])
    records = [
        {"id": "a", "group": "g", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "The answer is 5."],
         "outcome_label": 1.0, "step_labels": [1.0, 1.0], "first_error": -1},
        {"id": "b", "group": "g", "question": "Double 4.", "steps": ["4 * 2 = 9, and that is all there is.", "So 9."],
         "outcome_label": 0.0, "step_labels": [0.0, None], "first_error": 0},
    ]
    processor = SPRMProcessor.from_model(model, smollm2_tokenizer)
    traces = [processor.encode(r, max_length=64) for r in records]
    study = extract_chunk(model, smollm2_tokenizer, records, traces, token_budget=40, layers=(1, 2))
    ours = torch.cat(step_features_for_traces(model, traces, processor))
    assert ours.shape == (4, 128)
    expected = torch.from_numpy(study["mean"].astype("float32")).reshape(4, 128)  # [steps, layers, hidden]
    assert torch.allclose(ours, expected, atol=1e-2)
    assert not torch.allclose(ours, torch.from_numpy(study["delimiter"].astype("float32")).reshape(4, 128), atol=1e-2)


def test_captured_generation_features_pool_like_a_forward(smollm2_tokenizer):
    """Best-of-N / step search score from the features captured while sampling: with a mean readout over two
    layers they give the scores of a forward over the same tokens."""
    from modeling_sprm.generation import SamplingConfig, copy_rollout, generate_rollouts, prompt_rollout, score_rollouts

    model = tiny_model(smollm2_tokenizer, step_pooling="mean", feature_layers=[2, 1], step_delimiters=["e"])
    rules = StepRules.from_config(model.config)
    torch.manual_seed(0)
    start = prompt_rollout(model, smollm2_tokenizer, QUESTION)
    rollouts = generate_rollouts(model, smollm2_tokenizer, [copy_rollout(start) for _ in range(3)],
                                 SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=24))
    traces = [r.trace(rules) for r in rollouts]
    step_scores, scores = score_rollouts(model, rollouts, traces)
    assert sum(len(t.steps) for t in traces) > 3  # "e" is frequent in random tokens: several steps
    for trace, captured, score in zip(traces, step_scores, scores):
        with torch.no_grad():
            out = model(**pad_traces([trace], 0))
        assert captured == pytest.approx(out.step_scores[0][out.step_mask[0]].tolist(), abs=1e-4)
        assert score == pytest.approx(out.scores[0].item(), abs=1e-4)


def test_cached_features_have_the_readouts_width_and_key(smollm2_tokenizer):
    from modeling_sprm.training.features import cache_key, extract_step_features

    records = [{"question": QUESTION, "solution": s, "outcome_label": 1.0} for s in SOLUTIONS]
    default, mean, layers = (tiny_model(smollm2_tokenizer), tiny_model(smollm2_tokenizer, step_pooling="mean"),
                             tiny_model(smollm2_tokenizer, feature_layers=[2, 1]))
    assert len({cache_key(m, records, 64) for m in (default, mean, layers)}) == 3
    dataset = extract_step_features(layers, smollm2_tokenizer, records, max_length=64)
    assert [len(row[0]) for row in dataset["step_features"]] == [128, 128]


@pytest.mark.parametrize("cache", ["true", "false"])  # cached features, or the backbone in every step
def test_sprm_train_sets_the_readout(tiny_backbone, tmp_path, capsys, cache):
    from modeling_sprm.apps.cli import main

    out = tmp_path / "head"
    main(["train", "--data", str(FIXTURES / "processbench"), "--format", "processbench", "--output", str(out),
          "--model", str(tiny_backbone), "--step_pooling", "mean", "--feature_layers", "2", "0",
          "--cache_features", cache, "--save_strategy", "no", "--num_train_epochs", "1",
          "--per_device_train_batch_size", "8", "--disable_tqdm", "true"])
    config = json.loads((out / "config.json").read_text())
    assert (config["step_pooling"], config["feature_layers"]) == ("mean", [2, 0])
    assert config["head_training"]["global_steps"] == 3
    capsys.readouterr()
    main(["score", "--model", str(out), "--json", "--question", QUESTION, "--solution", SOLUTIONS[0]])
    assert len(json.loads(capsys.readouterr().out)["steps"]) == 3

    # a trained head's readout is fixed: asking another one of it is refused in one line
    with pytest.raises(SystemExit):
        main(["train", "--data", str(FIXTURES / "processbench"), "--format", "processbench", "--output",
              str(tmp_path / "again"), "--model", str(out), "--step_pooling", "delimiter"])
    err = capsys.readouterr().err
    assert "--step_pooling delimiter: the head of" in err and "reads step_pooling='mean'" in err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(FIXTURES / "processbench"), "--format", "processbench", "--output",
              str(tmp_path / "bad"), "--model", str(tiny_backbone), "--feature_layers", "7"])
    assert "feature_layers entry 7 is outside" in capsys.readouterr().err


def test_the_model_card_states_the_readout(smollm2_tokenizer):
    from modeling_sprm.cards import render_model_card

    text_config = make_tiny_backbone(len(smollm2_tokenizer)).config
    default = str(render_model_card(SPRMConfig(text_config=text_config), "user/default"))
    assert "`Linear(64, 128) → ReLU" in default and "(`hidden_states[-2]`) at one token per step" in default
    config = SPRMConfig(text_config=text_config, step_pooling="mean", feature_layers=[2, 1])
    card = str(render_model_card(config, "user/mean"))
    assert "`Linear(128, 256) → ReLU" in card
    assert "(`hidden_states[2]`, `hidden_states[1]` concatenated) averaged over each step's tokens" in card
