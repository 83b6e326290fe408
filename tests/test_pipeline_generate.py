"""pipeline("step-scoring") beyond single solutions: several solutions per question, streamed datasets, generate
and score from a question alone, and the same from remote code in a process without the package."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from transformers import pipeline
from transformers.pipelines.pt_utils import KeyDataset

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTIONS = ["Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7.", "3 + 4 = 8.\n\n#### 8"]
BON_KEYS = {"question", "candidates", "best", "ranking", "majority_answer", "sprm_answer", "weighted_answer",
            "num_without_answer"}


@pytest.fixture
def scorer(tiny_sprm):
    model, tokenizer = tiny_sprm
    return pipeline("step-scoring", model=model, tokenizer=tokenizer)


def test_solutions_give_one_record_each(scorer):
    together = scorer({"question": QUESTION, "solutions": SOLUTIONS})
    alone = [scorer({"question": QUESTION, "solution": s}) for s in SOLUTIONS]
    assert isinstance(together, list) and len(together) == 2
    for a, b in zip(together, alone):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert [s["score"] for s in a["steps"]] == pytest.approx([s["score"] for s in b["steps"]], abs=1e-5)


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({"question": QUESTION, "solutions": []}, "non-empty list"),
        ({"question": QUESTION, "solutions": "one string"}, "non-empty list"),
        ({"solutions": ["x"]}, "expected"),
    ],
)
def test_bad_solutions(scorer, inputs, match):
    with pytest.raises(ValueError, match=match):
        scorer(inputs)


def test_streamed_dataset_through_key_dataset(scorer):
    import datasets

    rows = [{"input": {"question": QUESTION, "solution": s}} for s in SOLUTIONS * 3]
    dataset = KeyDataset(datasets.Dataset.from_list(rows), "input")
    streamed = list(scorer(dataset, batch_size=4))
    alone = [scorer(r["input"]) for r in rows]
    assert len(streamed) == len(rows)
    assert [r["score"] for r in streamed] == pytest.approx([r["score"] for r in alone], abs=1e-5)


def test_generate_and_score_from_a_question(scorer):
    calls = []
    result = scorer({"question": QUESTION}, mode="low", max_new_tokens=6, seed=0, progress_callback=lambda *a: calls.append(a))
    assert set(result) == BON_KEYS and len(result["candidates"]) == 2  # low: N = 2
    assert result["question"] == QUESTION and calls[-1] == ("score", 2, 2)
    for c in result["candidates"]:
        assert c["truncated"] is True and c["num_tokens"] == 6 and isinstance(c["score"], float)
    again = scorer({"question": QUESTION}, num_candidates=3, max_new_tokens=6, seed=0, temperature=1.0,
                   generation_batch_size=2)
    assert len(again["candidates"]) == 3


def test_mixed_list_batched(scorer):
    inputs = [{"question": QUESTION, "solutions": SOLUTIONS}, {"question": QUESTION}, {"text": SOLUTIONS[0]},
              {"question": QUESTION, "solution": SOLUTIONS[1]}]
    out = scorer(inputs, batch_size=3, num_candidates=2, max_new_tokens=4)
    assert isinstance(out[0], list) and len(out[0]) == 2
    assert set(out[1]) == BON_KEYS
    assert out[3]["score"] == pytest.approx(out[0][1]["score"], abs=1e-5)
    assert out[2]["score"] == pytest.approx(scorer({"text": SOLUTIONS[0]})["score"], abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_candidates": 0}, ValueError, "between 1 and"),
        ({"num_candidates": 100_000}, ValueError, "between 1 and"),
        ({"mode": "ultra"}, ValueError, "mode must be one of"),
        ({"top_p": 2.0}, ValueError, "top_p"),
        ({"beams": 2}, TypeError, "unexpected arguments"),
    ],
)
def test_generation_bad_arguments(scorer, kwargs, error, match):
    with pytest.raises(error, match=match):
        scorer({"question": QUESTION}, max_new_tokens=2, **kwargs)


def test_empty_question_is_an_error(scorer):
    with pytest.raises(ValueError, match="question is empty"):
        scorer({"question": "  "}, max_new_tokens=2)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["modeling_sprm"] = None  # the package is not installed in this process
    from transformers import pipeline
    path, question = sys.argv[1:3]
    scorer = pipeline(model=path, trust_remote_code=True)
    result = scorer({"question": question}, num_candidates=2, max_new_tokens=5, seed=0)
    print(json.dumps(result))
    """
)


def test_generate_and_score_from_remote_code_without_the_package(tiny_sprm, tmp_path):
    model, tokenizer = tiny_sprm
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "generation.py").is_file() and (tmp_path / "answers.py").is_file()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path), QUESTION], capture_output=True,
                         text=True, env=env, cwd=str(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    remote = json.loads(out.stdout.strip().splitlines()[-1])
    local = pipeline("step-scoring", model=model, tokenizer=tokenizer)(
        {"question": QUESTION}, num_candidates=2, max_new_tokens=5, seed=0)
    assert set(remote) == BON_KEYS
    assert [c["text"] for c in remote["candidates"]] == [c["text"] for c in local["candidates"]]
    assert [c["score"] for c in remote["candidates"]] == pytest.approx([c["score"] for c in local["candidates"]],
                                                                         abs=1e-5)


@pytest.mark.slow
def test_embedded_default_scores_and_generates_offline(smollm2_path):
    from modeling_sprm.loading import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer(None)
    pipe = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    scored = pipe({"question": QUESTION, "solution": SOLUTIONS[0]})
    assert len(scored["steps"]) == 3 and 0.0 <= scored["score"] <= 1.0
    result = pipe({"question": QUESTION}, mode="low", max_new_tokens=24, seed=0)
    assert set(result) == BON_KEYS and len(result["candidates"]) == 2
    for c in result["candidates"]:
        assert c["text"] and c["steps"] and all(0.0 <= s["score"] <= 1.0 for s in c["steps"])
