"""Batching by a token budget: the planner (`processing_sprm.plan_batches`), the pipeline's ``max_batch_tokens`` and
feature extraction's, which must give the scores of one-at-a-time scoring in input order."""

import random

import pytest
import torch
from transformers import pipeline

from modeling_sprm.processing_sprm import plan_batches
from modeling_sprm.training.features import extract_step_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
INPUTS = [
    {"question": QUESTION, "solution": "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."},
    {"question": "2+2?", "solution": "2 + 2 = 4."},
    {"text": "<think>\nFirst.\n\nSecond.\n\n</think>\n\nDone."},
    {"question": "1+1?", "solutions": ["1 + 1 = 2.\n\nThe answer is 2.", "1 + 1 = 3."]},
    {"question": "What is 5 * 6?", "steps": ["5 * 6 = 30", "The answer is 30"]},
]


@pytest.mark.parametrize("seed", range(20))
def test_plan_batches_respects_budget_and_count(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(rng.randint(0, 40))]
    budget = rng.choice([None, 50, 400, 1000])
    count = rng.choice([None, 1, 3, 16])
    batches = plan_batches(lengths, budget, count)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every input exactly once
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest  # longest first within a batch ...
        if budget is not None and len(batch) > 1:
            assert len(batch) * longest <= budget
        if count is not None:
            assert len(batch) <= count
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # ... and across batches
    if budget is None and count is None:
        assert len(batches) == (1 if lengths else 0)


def test_plan_batches_fills_up_to_the_budget_and_isolates_long_inputs():
    assert plan_batches([10, 10, 10, 10, 10], max_batch_tokens=30) == [[0, 1, 2], [3, 4]]
    assert plan_batches([5, 100, 7], max_batch_tokens=20) == [[1], [2, 0]]  # 100 > budget: a batch of its own
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_batch_tokens must be a positive integer"):
            plan_batches([1], max_batch_tokens=bad)


def test_pipeline_token_budget_equals_one_at_a_time_in_input_order(tiny_sprm):
    model, tokenizer = tiny_sprm
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    single = [scorer(x) for x in INPUTS]
    for budget, batch_size in ((64, None), (400, None), (100_000, None), (100_000, 2)):
        batched = scorer(INPUTS, max_batch_tokens=budget, batch_size=batch_size)
        streamed = list(scorer((x for x in INPUTS), max_batch_tokens=budget))  # a generator streams
        workers = scorer(INPUTS, max_batch_tokens=budget, num_workers=2)  # encoded in worker processes
        for results in (batched, streamed, workers):
            assert len(results) == len(INPUTS)
            for a, b in zip(results, single):
                assert type(a) is type(b)
                for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                    assert x["score"] == pytest.approx(y["score"], abs=1e-5)
                    assert [s["score"] for s in x["steps"]] == pytest.approx([s["score"] for s in y["steps"]], abs=1e-5)
                    assert [s["text"] for s in x["steps"]] == [s["text"] for s in y["steps"]]
    with pytest.raises(ValueError, match="max_batch_tokens must be a positive integer"):
        scorer(INPUTS, max_batch_tokens=0)


def test_pipeline_token_budget_with_generation_items(tiny_sprm):
    model, tokenizer = tiny_sprm
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    generate = {"question": QUESTION}
    results = scorer([INPUTS[1], generate], max_batch_tokens=256, num_candidates=2, max_new_tokens=3, seed=0)
    assert results[0]["score"] == pytest.approx(scorer(INPUTS[1])["score"], abs=1e-5)
    expected = scorer(generate, num_candidates=2, max_new_tokens=3, seed=0)
    assert [c["text"] for c in results[1]["candidates"]] == [c["text"] for c in expected["candidates"]]


def test_feature_extraction_token_budget_gives_the_same_features(tiny_sprm):
    model, tokenizer = tiny_sprm
    records = [
        {"id": str(i), "question": x["question"], "steps": x.get("steps"), "solution": x.get("solution")}
        for i, x in enumerate(INPUTS)
        if "question" in x and "solutions" not in x
    ]
    fixed = extract_step_features(model, tokenizer, records, batch_size=2)
    budget = extract_step_features(model, tokenizer, records, batch_size=None, max_batch_tokens=80)
    assert budget["id"] == fixed["id"]
    for a, b in zip(fixed.with_format("torch")["step_features"], budget.with_format("torch")["step_features"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_eval_help_states_the_default_token_budgets():
    """`sprm --help` starts without torch, so the eval help writes the defaults out: they must stay the real ones."""
    from dataclasses import fields

    from modeling_sprm.apps.cli import EvalArguments
    from modeling_sprm.processing_sprm import DEFAULT_MAX_BATCH_TOKENS

    help_text = next(f.metadata["help"] for f in fields(EvalArguments) if f.name == "max_batch_tokens")
    assert f"{DEFAULT_MAX_BATCH_TOKENS['cpu']} on CPU, {DEFAULT_MAX_BATCH_TOKENS['cuda']} on a GPU" in help_text
