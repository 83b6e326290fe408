"""modeling_sprm.readouts: pooled step readouts and structure features against direct computations."""

import math

import pytest
import torch

from modeling_sprm import readouts


@pytest.fixture
def batch():
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 4)
    positions = torch.tensor([[2, 5, 8], [3, -1, -1]])
    starts = torch.tensor([[0, 3, 6], [1, -1, -1]])
    return hidden, starts, positions


def test_gather_positions_reads_the_read_token_and_zeros_padding(batch):
    hidden, _, positions = batch
    out = readouts.gather_positions(hidden, positions)
    assert out.shape == (2, 3, 4)
    assert torch.equal(out[0, 1], hidden[0, 5])
    assert torch.equal(out[1, 0], hidden[1, 3])
    assert torch.all(out[1, 1:] == 0)


def test_step_means_average_the_steps_tokens(batch):
    hidden, starts, positions = batch
    out = readouts.step_means(hidden, starts, positions)
    assert torch.allclose(out[0, 0], hidden[0, 0:3].mean(0), atol=1e-6)
    assert torch.allclose(out[0, 2], hidden[0, 6:9].mean(0), atol=1e-6)
    assert torch.allclose(out[1, 0], hidden[1, 1:4].mean(0), atol=1e-6)
    assert torch.all(out[1, 1:] == 0)


def test_a_start_after_its_read_position_reads_one_token():
    hidden = torch.randn(1, 5, 3)
    out = readouts.step_means(hidden, torch.tensor([[4]]), torch.tensor([[2]]))
    assert torch.allclose(out[0, 0], hidden[0, 2])


def test_pool_dispatches_and_rejects_unknown_poolings(batch):
    hidden, starts, positions = batch
    assert torch.equal(readouts.pool(hidden, starts, positions, "delimiter"), readouts.gather_positions(hidden, positions))
    with pytest.raises(ValueError, match="pooling must be one of"):
        readouts.pool(hidden, starts, positions, "max")


def test_structure_features(batch):
    _, starts, positions = batch
    chars = torch.tensor([[10.0, 20.0, 30.0], [7.0, 0.0, 0.0]])
    solution = chars.cumsum(1)
    out = readouts.structure_features(positions, starts, chars, solution)
    assert out.shape == (2, 3, len(readouts.STRUCTURE_FEATURES) + len(readouts.CHARACTER_FEATURES))
    # second step of the first solution: index 1 of 3, tokens 3..5, solution tokens 0..5
    expected = [math.log(2), 0.5, math.log(3), math.log(3), math.log(6), math.log(21), math.log(31)]
    assert torch.allclose(out[0, 1], torch.tensor(expected))
    # a one-step solution: relative position 0; padding is all zeros
    assert out[1, 0, 1] == 0 and out[1, 0, 2] == 0
    assert torch.all(out[1, 1:] == 0)
    assert readouts.structure_features(positions, starts).shape == (2, 3, len(readouts.STRUCTURE_FEATURES))
    with pytest.raises(ValueError, match="solution_chars"):
        readouts.structure_features(positions, starts, chars)


def test_extracted_delimiter_readout_is_what_the_model_reads(tiny_sprm):
    """The study's extraction (benchmarks/signal/extract.py) reads exactly the model's step features at its
    feature layer, and every step's mean covers the tokens from its first token to its read token."""
    from benchmarks.signal.extract import extract_chunk
    from modeling_sprm.processing_sprm import SPRMProcessor
    from modeling_sprm.training.features import step_features_for_traces

    model, tokenizer = tiny_sprm
    records = [
        {"id": "a", "group": "g", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "The answer is 5."],
         "outcome_label": 1.0, "step_labels": [1.0, 1.0], "first_error": -1},
        {"id": "b", "group": "g", "question": "Double 4.", "steps": ["4 * 2 = 9.", "So 9.", "Done."],
         "outcome_label": 0.0, "step_labels": [0.0, None, None], "first_error": 0},
    ]
    processor = SPRMProcessor.from_model(model, tokenizer)
    traces = [processor.encode(r, max_length=64) for r in records]
    layer = model.config.text_config.num_hidden_layers + 1 + model.config.feature_layer  # hidden_states index
    out = extract_chunk(model, tokenizer, records, traces, token_budget=40, layers=(0, layer))
    expected = torch.cat(step_features_for_traces(model, traces, processor))
    assert torch.allclose(torch.from_numpy(out["delimiter"][:, 1].astype("float32")), expected, atol=1e-2)
    assert out["step_label"].tolist()[:3] == [1.0, 1.0, 0.0]
    assert (out["step_start"] <= out["step_position"]).all()
    first = tokenizer.decode(traces[0].input_ids[out["step_start"][0] : out["step_position"][0] + 1])
    assert first.strip().startswith("2 + 3")
