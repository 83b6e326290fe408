"""SPRMProcessor: every input form, the padded batch (step_starts included), per-call overrides, saving and loading."""

import json

import pytest
import torch

from modeling_sprm.processing_sprm import SPRMProcessor, pad_step_features

QUESTION = "What is 2 + 3?"
STEPS = ["2 + 3 = 5", "The answer is 5"]


@pytest.fixture()
def processor(tiny_sprm):
    model, tokenizer = tiny_sprm
    return SPRMProcessor.from_model(model, tokenizer)


def test_every_input_form_gives_the_same_trace(processor):
    as_steps = processor.encode({"question": QUESTION, "steps": STEPS})
    record = {"id": "r", "question": QUESTION, "steps": STEPS, "solution": None, "outcome_label": 1.0}
    trl = {"prompt": QUESTION, "completions": STEPS, "labels": [True, True]}
    keywords = processor.encode(question=QUESTION, steps=STEPS)
    for other in (processor.encode(record), processor.encode(trl), keywords):
        assert other.input_ids == as_steps.input_ids and other.positions == as_steps.positions
    text = processor.encode("2 + 3 = 5.\n\nThe answer is 5")  # a plain string is a formatted trace
    assert len(text.steps) == 2


def test_batch_has_positions_and_starts(processor, tiny_sprm):
    model, _ = tiny_sprm
    batch = processor([{"question": QUESTION, "steps": STEPS}, {"question": QUESTION, "solution": "5."}])
    assert set(batch) == {"input_ids", "attention_mask", "step_positions", "step_starts"}
    positions, starts = batch["step_positions"], batch["step_starts"]
    assert positions.shape == starts.shape == (2, 2)
    assert ((positions == -1) == (starts == -1)).all()  # the same padding
    assert positions[1, 1] == -1  # the second input has one step
    valid = positions >= 0
    assert (starts[valid] <= positions[valid]).all() and (starts[valid] > 0).all()  # after the prompt
    assert starts[0, 1] > positions[0, 0]  # the second step starts after the first is read
    with torch.no_grad():
        out = model(**batch)  # the model takes the batch as it is
    assert out.step_mask.tolist() == [[True, True], [True, False]]


def test_per_call_overrides(processor):
    full = processor.encode({"question": QUESTION, "steps": STEPS})
    cut = processor.encode({"question": QUESTION, "steps": STEPS}, max_length=len(full.input_ids) - 2)
    assert cut.truncated and not full.truncated and cut.positions[-1] is None
    trace = "<think>a.\n\nb.\n\n</think>The answer is 5."
    think = processor.encode(question=QUESTION, solution=trace)
    both = processor.encode(question=QUESTION, solution=trace, score_span="both")
    assert [s.part for s in think.steps] == ["think", "think"]
    assert [s.part for s in both.steps] == ["think", "think", "response"]
    assert processor.rules.score_span == "think"  # the override did not stick


def test_pad_token_id_is_the_one_rule(processor):
    tokenizer = processor.tokenizer
    assert processor.pad_token_id == tokenizer.pad_token_id
    saved = tokenizer.pad_token
    tokenizer.pad_token = None
    try:
        assert processor.pad_token_id == tokenizer.eos_token_id
    finally:
        tokenizer.pad_token = saved


def test_save_and_load_alongside_a_checkpoint(processor, tmp_path):
    processor.max_length = 64
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "sprm_processor_config.json").read_text())
    assert saved["max_length"] == 64 and saved["rules"]["delimiters"] == [".\n\n"]
    loaded = SPRMProcessor.from_pretrained(tmp_path)
    assert loaded.rules == processor.rules and loaded.max_length == 64
    inputs = {"question": QUESTION, "steps": STEPS}
    assert loaded.encode(inputs).input_ids == processor.encode(inputs).input_ids


def test_a_checkpoint_without_processor_config_gets_its_models(saved_tiny):
    loaded = SPRMProcessor.from_pretrained(saved_tiny)
    assert loaded.rules.delimiters == (".\n\n",) and loaded.max_length == 512  # the tiny backbone's context


def test_bad_inputs_are_named(processor):
    with pytest.raises(TypeError, match="an input is a dict"):
        processor.encode(3)
    with pytest.raises(TypeError, match="unknown input fields"):
        processor.encode(answer="5")
    with pytest.raises(ValueError, match="conversational"):
        processor.encode({"prompt": [{"role": "user", "content": "x"}], "completions": ["a"]})


def test_pad_step_features():
    features, mask = pad_step_features([torch.ones(2, 3), torch.zeros(0, 3), torch.full((1, 3), 2.0)])
    assert features.shape == (3, 2, 3) and mask.tolist() == [[True, True], [False, False], [True, False]]
    assert features[2, 0].tolist() == [2.0, 2.0, 2.0] and features[2, 1].abs().sum() == 0
