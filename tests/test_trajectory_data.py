"""Thinking-trajectory data (benchmarks/trajectory/data.py): reference traces and the step grader, on hand-made
traces whose labels are worked out by hand."""

import random

import pytest

from benchmarks.trajectory.data import (
    TRACE_KINDS,
    format_trace,
    grade_trace,
    make_reference_trace,
    make_reference_traces,
    split_trace,
    step_kind,
    step_labels,
)
from benchmarks.selfgen.arithmetic import Problem, make_problems

PROBLEM = Problem("Sam has 12 apples. ...", 12, [("+", 5), ("-", 3), ("/", 2)])  # 12+5=17, 17-3=14, 14/2=7
RIGHT_RESPONSE = ["12 + 5 = 17", "17 - 3 = 14", "14 / 2 = 7", "The answer is 7"]


def test_step_kinds():
    assert step_kind("12 + 5 = 17") == "compute"
    assert step_kind("Maybe 12 * 5 = 60") == "compute"
    assert step_kind("Wait, 12 + 5 is not 18") == "revise"
    assert step_kind("No, that is the wrong operation") == "revise"
    assert step_kind("Wait, 12 + 5 = 18 is wrong") == "revise"  # a revision even when it holds an equation
    assert step_kind("So the answer is 7") == "conclude"
    assert step_kind("Let me think") == "other"
    assert step_kind("Nothing is left") == "other"  # "No" only as a word of its own


def test_corrected_slip_and_abandoned_branch():
    think = [
        "12 + 5 = 17",
        "17 - 3 = 15",  # slip
        "Wait, 17 - 3 is not 15",  # true claim
        "17 - 3 = 14",
        "Maybe 14 * 2 = 28",  # branch: the wrong operation
        "No, that is the wrong operation",  # true claim
        "14 / 2 = 7",
        "So the answer is 7",
    ]
    grade = grade_trace(PROBLEM, think, RIGHT_RESPONSE)
    assert grade.think_labels == ["right", "corrected", "right", "right", "corrected", "right", "right", "right"]
    assert grade.on_answer_path == [False] * 7 + [True]  # the answer comes from a right step: nothing else to trace
    assert grade.response_labels == [1.0, 1.0, 1.0, 1.0] and grade.outcome_label == 1.0 and grade.answer == "7"
    assert (grade.num_corrected, grade.num_carried) == (2, 0)


def test_carried_slip_reaches_the_answer():
    think = ["12 + 5 = 17", "17 - 3 = 16", "16 / 2 = 8", "So the answer is 8"]
    response = ["12 + 5 = 17", "17 - 3 = 16", "16 / 2 = 8", "The answer is 8"]
    grade = grade_trace(PROBLEM, think, response)
    assert grade.think_labels == ["right", "carried", "carried", "carried"]
    assert grade.response_labels == [1.0, 0.0, 0.0, 0.0] and grade.outcome_label == 0.0


def test_a_corrected_and_a_carried_error_in_one_trace():
    think = ["12 + 5 = 18", "Wait, 12 + 5 is not 18", "12 + 5 = 17", "17 - 3 = 13", "13 / 2 = 6", "So the answer is 6"]
    grade = grade_trace(PROBLEM, think, ["12 + 5 = 17", "17 - 3 = 13", "13 / 2 = 6", "The answer is 6"])
    assert grade.think_labels == ["corrected", "right", "right", "carried", "carried", "carried"]


def test_the_path_stops_at_right_values():
    # a slip that equals the start number, and a misreading that gives the right value, are harmless
    think = ["12 + 5 = 12", "Wait, 12 + 5 is not 12", "12 + 5 = 17", "Maybe 17 / 1 = 17",
             "No, that is the wrong operation", "17 - 3 = 14", "14 / 2 = 7", "So the answer is 7"]
    grade = grade_trace(PROBLEM, think, RIGHT_RESPONSE)
    assert grade.think_labels == ["corrected", "right", "right", "corrected", "right", "right", "right", "right"]
    # two errors that cancel: the answer is right, so neither reached it as an error
    think = ["12 + 5 = 18", "18 - 3 = 14", "14 / 2 = 7", "So the answer is 7"]
    assert grade_trace(PROBLEM, think, RIGHT_RESPONSE).think_labels == ["corrected", "corrected", "right", "right"]


def test_false_alarm_revision_is_carried_when_its_recomputation_is():
    think = ["12 + 5 = 17", "Wait, 12 + 5 is not 17", "12 + 5 = 18", "18 - 3 = 15", "So the answer is 15"]
    grade = grade_trace(PROBLEM, think, ["The answer is 15"])
    assert grade.think_labels == ["right", "carried", "carried", "carried", "carried"]
    # the same false alarm, but the trace recomputes correctly: the false claim did no harm
    think = ["12 + 5 = 17", "Wait, 12 + 5 is not 17", "12 + 5 = 17", "17 - 3 = 14", "14 / 2 = 7", "So the answer is 7"]
    grade = grade_trace(PROBLEM, think, RIGHT_RESPONSE)
    assert grade.think_labels == ["right", "corrected", "right", "right", "right", "right"]


def test_commutative_steps_link_through_either_operand():
    problem = Problem("...", 4, [("+", 5), ("*", 3)])  # 4+5=9, 9*3=27
    think = ["4 + 5 = 10", "5 + 4 = 10", "3 * 10 = 30", "So the answer is 30"]
    grade = grade_trace(problem, think, ["The answer is 30"])
    # "3 * 10 = 30" uses 10 as its right operand: the path reaches the latest step with result 10
    assert grade.on_answer_path == [False, True, True, True]
    assert grade.think_labels == ["corrected", "carried", "carried", "carried"]


def test_response_that_does_not_follow_the_thinking_carries_nothing():
    think = ["12 + 5 = 17", "17 - 3 = 15", "15 / 2 = 7", "So the answer is 7"]
    grade = grade_trace(PROBLEM, think, ["The answer is 9"])
    assert grade.think_labels == ["right", "corrected", "corrected", "right"]
    assert grade.outcome_label == 0.0 and grade.response_labels == [0.0]


def test_unverifiable_steps_have_no_label():
    grade = grade_trace(PROBLEM, ["Let me think", "Wait, that looks odd", "12 + 5 = 17"], ["The answer is 7"])
    assert grade.think_labels == [None, None, "right"]  # a revision with no computation before it claims nothing


def test_without_a_final_answer_errors_are_neither_corrected_nor_carried():
    grade = grade_trace(PROBLEM, ["12 + 5 = 18", "Wait, 12 + 5 is not 18", "12 + 5 = 17", "17 - 3 = 15"], [])
    assert grade.think_labels == ["wrong", "right", "right", "wrong"]
    assert grade.answer is None and grade.outcome_label == 0.0 and grade.response_labels == []


def test_segmentation_of_sampled_shapes():
    text = format_trace(["12 + 5 = 17", "So the answer is 17"], ["12 + 5 = 17", "The answer is 17"])
    assert text == "<think>\n12 + 5 = 17.\n\nSo the answer is 17.\n\n</think>\n\n12 + 5 = 17.\n\nThe answer is 17"
    steps, think, response = split_trace(text)
    assert think == ["12 + 5 = 17", "So the answer is 17"] and response == ["12 + 5 = 17", "The answer is 17"]
    assert [s.part for s in steps] == ["think", "think", "response", "response"]
    # no tags at all: everything is the response (as the SPRM scores it)
    _, think, response = split_trace("12 + 5 = 17.\n\nThe answer is 17")
    assert think == [] and response == ["12 + 5 = 17", "The answer is 17"]
    # cut off before </think>: everything is thinking, there is no response, so no answer
    _, think, response = split_trace("<think>\n12 + 5 = 17.\n\nSo the answer")
    assert think == ["12 + 5 = 17", "So the answer"] and response == []
    assert grade_trace(PROBLEM, think, response).outcome_label == 0.0
    # a prompt before the trace is not segmented
    prompt = "Question. 3.\n\n"
    steps, think, _ = split_trace(prompt + text, start=len(prompt))
    assert think[0] == "12 + 5 = 17" and steps[0].start >= len(prompt)


@pytest.mark.parametrize("kind", TRACE_KINDS)
def test_reference_traces_grade_as_their_kind(kind):
    rng = random.Random(7)
    for problem in make_problems(60, min_ops=2, max_ops=4, max_number=30, seed=11):
        trace = make_reference_trace(problem, kind, rng)
        steps, think, response = split_trace(trace.text)
        assert (think, response) == (trace.think, trace.response)  # the text segments back into its steps
        grade = grade_trace(problem, think, response)
        labels = step_labels(grade)
        assert len(labels) == len(steps) and None not in labels
        if kind == "carried":
            assert grade.outcome_label == 0.0 and grade.num_carried >= 2 and grade.num_corrected == 0
        else:
            assert grade.outcome_label == 1.0 and grade.num_carried == 0 and set(grade.response_labels) == {1.0}
            assert (grade.num_corrected > 0) == (kind == "corrected")
            assert len(trace.events) == grade.num_corrected


def test_reference_trace_mix_is_seeded_and_checked():
    problems = make_problems(200, seed=2)
    traces = make_reference_traces(problems, {"clean": 1, "corrected": 1, "carried": 0})
    assert {t.kind for _, t in traces} == {"clean", "corrected"}
    again = make_reference_traces(problems, {"clean": 1, "corrected": 1, "carried": 0})
    assert [t.text for _, t in traces] == [t.text for _, t in again]
    for bad in ({}, {"clean": -1}, {"messy": 1}, {"clean": 0}):
        with pytest.raises(ValueError):
            make_reference_traces(problems, bad)
    with pytest.raises(ValueError):
        make_reference_trace(problems[0], "messy", random.Random(0))
