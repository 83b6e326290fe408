import random

import pytest

from benchmarks.selfgen.arithmetic import Problem, grade_steps, make_problem, make_problems, parse_equation


def test_problems_are_valid_chains():
    for problem in make_problems(200, min_ops=2, max_ops=4, max_number=30, seed=3):
        assert 2 <= len(problem.operations) <= 4
        for a, op, b, c in problem.chain:
            assert c >= 0 and float(c).is_integer()
            if op == "/":
                assert a % b == 0
        assert problem.reference_steps()[-1] == f"The answer is {problem.answer}"


def test_generation_is_seeded():
    assert [p.question for p in make_problems(5, seed=1)] == [p.question for p in make_problems(5, seed=1)]
    assert [p.question for p in make_problems(5, seed=1)] != [p.question for p in make_problems(5, seed=2)]
    with pytest.raises(ValueError):
        make_problem(random.Random(0), 0)


def test_parse_equation():
    assert parse_equation("So 12 + 5 = 17 apples.") == (12.0, "+", 5.0, 17.0)
    assert parse_equation("3 x 4 = 12") == (3.0, "*", 4.0, 12.0)
    assert parse_equation("no math here") is None


PROBLEM = Problem("Sam has 12 apples. ...", 12, [("+", 5), ("-", 3), ("/", 2)])  # 12+5=17, 17-3=14, 14/2=7


def test_reference_solution_is_all_correct():
    grade = grade_steps(PROBLEM, PROBLEM.reference_steps(), "7")
    assert grade.step_labels == [1.0, 1.0, 1.0, 1.0] and grade.first_error == -1 and grade.outcome_label == 1.0


def test_first_error_and_everything_after_is_wrong():
    steps = ["12 + 5 = 17", "17 - 3 = 15", "15 / 2 = 7", "The answer is 7"]  # arithmetic slip at step 1
    grade = grade_steps(PROBLEM, steps, "7")
    assert grade.step_labels == [1.0, 0.0, 0.0, 0.0]
    assert grade.first_error == 1
    assert grade.outcome_label == 1.0  # right answer through a wrong step: the outcome label cannot see it


def test_commutative_operands_and_wrong_operands():
    assert grade_steps(PROBLEM, ["5 + 12 = 17", "17 - 3 = 14", "14 / 2 = 7", "The answer is 7"], "7").first_error == -1
    assert grade_steps(PROBLEM, ["12 + 5 = 17", "3 - 17 = -14"], None).first_error == 1


def test_remarks_are_neutral_and_unfinished_chain_fails_at_the_end():
    steps = ["Let us add first", "12 + 5 = 17", "17 - 3 = 14", "14 / 2 = 7", "The answer is 7"]
    assert grade_steps(PROBLEM, steps, "7").step_labels == [1.0] * 5
    early = grade_steps(PROBLEM, ["12 + 5 = 17", "The answer is 17"], "17")
    assert early.step_labels == [1.0, 0.0] and early.outcome_label == 0.0
