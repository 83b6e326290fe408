"""pipeline("step-scoring") on the core inputs, and what it does with bad input."""

import pytest
from transformers import pipeline

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTION = "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."


@pytest.fixture
def scorer(tiny_sprm):
    model, tokenizer = tiny_sprm
    return pipeline("step-scoring", model=model, tokenizer=tokenizer)


def test_solution_and_equivalent_steps_give_identical_scores(scorer):
    from_text = scorer({"question": QUESTION, "solution": SOLUTION})
    from_steps = scorer({"question": QUESTION, "steps": ["Tom starts with 3 apples", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]})
    assert [s["text"] for s in from_text["steps"]] == ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]
    assert [s["score"] for s in from_steps["steps"]] == pytest.approx([s["score"] for s in from_text["steps"]], abs=1e-6)
    assert from_steps["score"] == pytest.approx(from_text["score"], abs=1e-6)
    assert from_text["truncated"] is False and from_text["no_steps"] is False


def test_batched_list_equals_one_at_a_time(scorer):
    inputs = [
        {"question": QUESTION, "solution": SOLUTION},
        {"question": "2+2?", "solution": "2 + 2 = 4."},
        {"text": "<think>\nFirst.\n\nSecond.\n\n</think>\n\nDone."},
    ]
    batched = scorer(inputs, batch_size=3)
    single = [scorer(x) for x in inputs]
    for a, b in zip(batched, single):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert [s["score"] for s in a["steps"]] == pytest.approx([s["score"] for s in b["steps"]], abs=1e-5)


def test_threshold_and_first_error(scorer):
    result = scorer({"question": QUESTION, "solution": SOLUTION}, threshold=1.0)
    assert result["first_error_step"] == 0  # every score is below 1
    result = scorer({"question": QUESTION, "solution": SOLUTION}, threshold=0.0)
    assert result["first_error_step"] is None


def test_think_span_scored_as_metastone_and_both(tiny_sprm):
    model, tokenizer = tiny_sprm
    text = "<think>\nLet me add.\n\n3 + 4 = 7.\n\n</think>\n\nThe answer is 7.\n\nDone."
    think = pipeline("step-scoring", model=model, tokenizer=tokenizer)({"text": text})
    assert [s["part"] for s in think["steps"]] == ["think", "think"]
    model.config.score_span = "both"
    both = pipeline("step-scoring", model=model, tokenizer=tokenizer)({"text": text})
    assert [s["part"] for s in both["steps"]] == ["think", "think", "response", "response"]
    assert set(both["part_scores"]) == {"think", "response"}
    assert both["part_scores"]["think"] == pytest.approx(think["score"], abs=1e-6)


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ({"question": QUESTION, "solution": ""}, ValueError, "solution is empty"),
        ({"question": QUESTION, "solution": " \n\t "}, ValueError, "solution is empty"),
        ({"question": QUESTION, "solution": 7}, TypeError, "solution must be a string"),
        ({"question": "", "solution": SOLUTION}, ValueError, "question is empty"),
        ({"question": QUESTION, "steps": ["ok", "  "]}, ValueError, r"steps\[1\] is empty"),
        ({"question": QUESTION, "steps": "not a list"}, TypeError, "steps must be a list"),
        ({"solution": SOLUTION}, ValueError, "expected"),
        ("just a string", TypeError, "dicts with keys"),
    ],
)
def test_bad_inputs_get_clear_errors(scorer, inputs, error, match):
    with pytest.raises(error, match=match):
        scorer(inputs)


def test_only_delimiters_is_no_steps_with_score_zero(scorer):
    result = scorer({"question": QUESTION, "solution": ".\n\n.\n\n.\n\n"})
    assert result == {"steps": [], "score": 0.0, "first_error_step": None, "truncated": False, "no_steps": True,
                      "unscored": [{"text": ".\n\n.\n\n.", "start": 0, "end": 7, "reason": "not_a_step"}]}


def test_no_delimiter_is_one_step(scorer):
    result = scorer({"question": QUESTION, "solution": "Tom has 3 + 4 = 7 apples"})
    assert len(result["steps"]) == 1 and result["steps"][0]["text"] == "Tom has 3 + 4 = 7 apples"


def test_too_long_is_truncated_and_flagged_never_silently_scored(scorer):
    steps = [f"Step {i}: add {i} to the total" for i in range(25)]
    full = scorer({"question": QUESTION, "steps": steps})
    cut = scorer({"question": QUESTION, "steps": steps}, max_length=120)
    assert full["truncated"] is False and cut["truncated"] is True
    scored = [s for s in cut["steps"] if s["score"] is not None]
    assert 0 < len(scored) < len(steps) and len(cut["steps"]) == len(steps)  # no step is lost from the output
    assert all(s["score"] is None for s in cut["steps"][len(scored):])  # the cut steps are a suffix, unscored
    # The scored prefix reads the same features as without truncation (causal attention).
    assert [s["score"] for s in scored] == pytest.approx([s["score"] for s in full["steps"][: len(scored)]], abs=1e-5)


def test_default_max_length_is_the_backbone_context(scorer):
    steps = [f"Step {i}: add {i} to the total" for i in range(60)]  # about 700 tokens; the tiny backbone has 512
    result = scorer({"question": QUESTION, "steps": steps})
    assert result["truncated"] is True
    assert result["steps"][-1]["score"] is None and result["steps"][0]["score"] is not None
