"""Nothing unscored silently: a result lists the text it did not score (outside the scored span, cut off by
truncation, after the last delimiter when the trailing step is not scored) with its character range, and the CLI
table, the JSON and the demo show it."""

import json

import pytest

from modeling_sprm.apps.cli import format_score_table, main
from modeling_sprm.outputs import ScoredSolution, UnscoredText
from modeling_sprm.pipeline_sprm import StepScoringPipeline
from modeling_sprm.steps import EncodedTrace, Step, StepRules

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUESTION = "What is 2 + 3 * 4?"
ISSUE_EXAMPLE = "3 * 4 = 12.\n\n2 + 12 = 15.\n\n<think>The answer is 14."


@pytest.fixture
def pipe(tiny_sprm):
    model, tokenizer = tiny_sprm
    return StepScoringPipeline(model=model, tokenizer=tokenizer)


def test_text_before_think_is_reported(pipe):
    result = pipe({"question": QUESTION, "solution": ISSUE_EXAMPLE})  # score_span="think", the default
    assert [s.text for s in result.steps] == ["The answer is 14."]
    assert result.unscored == [UnscoredText("3 * 4 = 12.\n\n2 + 12 = 15.", 0, 25, "outside_span")]
    assert ISSUE_EXAMPLE[0:25] == result.unscored[0].text
    # Text before a <think> tag is in no span: not scored under score_span="both" either.
    both = pipe({"question": QUESTION, "solution": ISSUE_EXAMPLE}, score_span="both")
    assert both.unscored == result.unscored and len(both.steps) == 1
    plain = pipe({"question": QUESTION, "solution": ISSUE_EXAMPLE.replace("<think>", "")})
    assert plain.unscored == [] and len(plain.steps) == 3


def test_response_after_think_and_formatted_text(pipe):
    text = "<think>2 + 2 = 4.\n\n</think>\n\nSo the answer is 4."
    result = pipe({"text": text})
    start = text.index("So the")
    assert result.unscored == [UnscoredText("So the answer is 4.", start, len(text), "outside_span")]


def test_truncated_steps_are_reported(pipe):
    solution = "".join(f"Step {i} adds {i} to the total.\n\n" for i in range(40))
    result = pipe({"question": QUESTION, "solution": solution}, max_length=60)
    assert result.truncated and result.unscored and {u.reason for u in result.unscored} == {"truncated"}
    cut = [s for s in result.steps if s.score is None]
    first = result.unscored[0]
    assert first.text == solution[first.start : first.end] and first.text.startswith(cut[0].text)
    assert result.unscored[-1].end == len(solution.rstrip())


def test_trailing_text_not_scored_is_reported():
    steps = [Step("a.\n\n", 0, 4, 1, "response", True)]
    trace = EncodedTrace("a.\n\n b c ", [1, 2, 3], steps, [1], False, 3)
    rules = StepRules(score_trailing_step=False)
    result = ScoredSolution.from_trace(trace, [0.7], 0.7, threshold=0.5, aggregation="min", empty_score=0.0,
                                       score_span="think", rules=rules)
    assert result.unscored == [UnscoredText("b c", 5, 8, "not_a_step")]


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_score_is_an_error(value):
    trace = EncodedTrace("a.\n\nb.", [1, 2, 3], [Step("a.\n\n", 0, 4, 1, "response", True)], [1], False, 3)
    with pytest.raises(ValueError, match="non-finite score"):
        ScoredSolution.from_trace(trace, [value], 0.5, threshold=0.5, aggregation="min", empty_score=0.0,
                                  score_span="think")
    with pytest.raises(ValueError, match="non-finite score"):
        ScoredSolution.from_trace(trace, [0.5], value, threshold=0.5, aggregation="min", empty_score=0.0,
                                  score_span="think")


def test_json_and_table_carry_it(pipe, saved_tiny, capsys):
    result = pipe({"question": QUESTION, "solution": ISSUE_EXAMPLE})
    public = result.public_json("m")
    assert public["unscored"] == [{"text": "3 * 4 = 12.\n\n2 + 12 = 15.", "start": 0, "end": 25,
                                   "reason": "outside_span"}]
    assert list(public)[:6] == ["steps", "score", "first_error_step", "model", "truncated", "no_steps"]
    table = format_score_table(result, "m", 0.5)
    assert "not scored" in table and "chars 0-25" in table and "3 * 4 = 12. 2 + 12 = 15." in table

    main(["score", "--model", saved_tiny, "--json", "--question", QUESTION, "--solution", ISSUE_EXAMPLE])
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unscored"][0]["end"] == 25 and "not scored" in captured.err
    main(["score", "--model", saved_tiny, "--question", QUESTION, "--solution", ISSUE_EXAMPLE])
    assert "not scored (outside the scored span)" in capsys.readouterr().out


def test_demo_shows_it(pipe):
    from modeling_sprm.apps.demo import summary_html

    result = pipe({"question": QUESTION, "solution": ISSUE_EXAMPLE})
    page = summary_html(result, 0.5, "geometric_mean")
    assert "Not scored" in page and "3 * 4 = 12." in page and "outside the scored span" in page
