"""The SPRM head that ships inside the package (modeling_sprm/default_head/, made by
benchmarks/train_default_head.py): trained, small, loadable without arguments, with the held-out numbers that feed
its model card."""

import json

import pytest
from huggingface_hub import ModelCard

from modeling_sprm.apps import hub
from modeling_sprm.configuration_sprm import SPRMConfig
from modeling_sprm.loading import DEFAULT_HEAD_DIR, load_model_and_tokenizer, untrained_head_warning

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_default_head_ships_trained_and_small():
    config = SPRMConfig.from_pretrained(DEFAULT_HEAD_DIR)
    assert config.head_only and config.head_is_trained
    assert config.head_training["labels"] == "outcome"  # outcome labels only: no step annotation
    weights = DEFAULT_HEAD_DIR / "model.safetensors"
    assert weights.stat().st_size < 10 * 2**20
    assert not (DEFAULT_HEAD_DIR / "training_args.bin").exists()  # no pickles in the package
    training = json.loads((DEFAULT_HEAD_DIR / "training.json").read_text())
    assert {"command", "training_data", "held_out", "threshold", "date"} <= set(training)
    assert config.threshold == training["threshold"]


def test_loading_without_a_name_gives_the_trained_head(smollm2_path):
    model, tokenizer, name = load_model_and_tokenizer(None)
    assert untrained_head_warning(model, name) is None
    assert model.config.head_is_trained
    from transformers import pipeline

    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    out = scorer({"question": "Tom has 3 apples and buys 4 more. How many?",
                  "solution": "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."})
    assert len(out["steps"]) == 3 and all(0 <= s["score"] <= 1 for s in out["steps"])


def test_the_model_card_carries_the_held_out_numbers(tmp_path):
    results = hub.load_eval_results(DEFAULT_HEAD_DIR / "eval_results.json")
    assert {r.dataset_split for r in results} == {"olympiadbench"}
    card = hub.render_model_card(SPRMConfig.from_pretrained(DEFAULT_HEAD_DIR), "alice/sprm-smollm2", results,
                                 hub.load_training_info(DEFAULT_HEAD_DIR / "training.json"))
    path = tmp_path / "README.md"
    card.save(path)
    loaded = ModelCard.load(path)
    assert [(r.dataset_split, r.metric_type, r.metric_value) for r in loaded.data.eval_results] == [
        (r.dataset_split, r.metric_type, r.metric_value) for r in results
    ]
    for r in results:
        assert json.dumps(r.metric_value) in loaded.text
