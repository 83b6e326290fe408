"""Cached step features (`modeling_sprm.training.features`): what is stored, the on-disk cache and its key."""

import pytest
import torch

from modeling_sprm.processing_sprm import SPRMProcessor
from modeling_sprm.training.features import extract_step_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECORDS = [
    {"id": "a", "question": "What is 2 + 3?", "steps": ["2 + 3 = 5", "The answer is 5"], "outcome_label": 1.0},
    {"id": "b", "question": "What is 4 * 4?", "steps": ["4 * 4 = 8", "So 8", "The answer is 8"], "outcome_label": 0.0},
    {"id": "c", "question": "What is 1 + 1?", "solution": "1 + 1 = 2.\n\nThe answer is 2.", "outcome_label": 1.0},
]


def test_features_are_the_heads_inputs_at_the_step_positions(tiny_sprm):
    model, tokenizer = tiny_sprm
    dataset = extract_step_features(model, tokenizer, RECORDS, batch_size=2)
    assert dataset["num_steps"] == [2, 3, 2] and dataset["num_scored_steps"] == [2, 3, 2]
    assert dataset["trace_truncated"] == [False, False, False]
    assert dataset["id"] == ["a", "b", "c"]  # the record fields are kept
    with torch.no_grad():
        out = model(**SPRMProcessor.from_model(model, tokenizer)(RECORDS), return_step_features=True)
    for i, row in enumerate(dataset.with_format("torch")):
        torch.testing.assert_close(row["step_features"], out.step_features[i][out.step_mask[i]], rtol=1e-5, atol=1e-6)


def test_truncation_keeps_the_steps_inside_the_window(tiny_sprm):
    model, tokenizer = tiny_sprm
    full = len(SPRMProcessor.from_model(model, tokenizer).encode(RECORDS[1]).input_ids)
    dataset = extract_step_features(model, tokenizer, RECORDS[1:2], max_length=full - 3)
    assert dataset["trace_truncated"] == [True]
    assert dataset["num_steps"] == [3] and dataset["num_scored_steps"][0] < 3
    assert len(dataset[0]["step_features"]) == dataset["num_scored_steps"][0]


def test_cache_dir_reuses_results_and_keys_on_the_records(tiny_sprm, tmp_path):
    model, tokenizer = tiny_sprm
    first = extract_step_features(model, tokenizer, RECORDS, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("step-features-*"))) == 1
    again = extract_step_features(model, tokenizer, RECORDS, cache_dir=tmp_path)
    assert again.cache_files and str(tmp_path) in again.cache_files[0]["filename"]  # loaded from the cache folder
    assert again["step_features"] == first["step_features"]
    changed = [dict(RECORDS[0], outcome_label=0.0), *RECORDS[1:]]
    extract_step_features(model, tokenizer, changed, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("step-features-*"))) == 2


def test_no_records_is_an_error(tiny_sprm):
    with pytest.raises(ValueError, match="no records"):
        extract_step_features(*tiny_sprm, [])
