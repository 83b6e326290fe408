import pytest
import torch

from modeling_sprm.arithmetic import Problem
from modeling_sprm.selfgen import (
    IGNORE_INDEX,
    collate_sft,
    grade_solution,
    policy_prompt,
    sample_solutions,
    sft_example,
    split_problems,
)
from modeling_sprm.steps import StepRules, build_trace

RULES = StepRules()
PROBLEM = Problem("Sam has 12 apples. ...", 12, [("+", 5), ("-", 3), ("/", 2)])  # 12+5=17, 17-3=14, 14/2=7


def test_sft_example_trains_on_the_solution_and_end_of_turn_only(smollm2_tokenizer):
    tok = smollm2_tokenizer
    example = sft_example(tok, PROBLEM.question, PROBLEM.reference_steps(), RULES)
    prompt_ids = tok(policy_prompt(tok, PROBLEM.question), add_special_tokens=False)["input_ids"]
    n = len(prompt_ids)
    assert example["input_ids"][:n] == prompt_ids
    assert example["labels"][:n] == [IGNORE_INDEX] * n
    assert example["labels"][n:] == example["input_ids"][n:]
    assert example["labels"][-1] == tok.eos_token_id
    solution = tok.decode(example["labels"][n:-1])
    assert solution == "12 + 5 = 17.\n\n17 - 3 = 14.\n\n14 / 2 = 7.\n\nThe answer is 7"
    # the tokens the policy learns are the tokens the scorer reads: same text as build_trace's, same steps
    trace = build_trace(tok, RULES, question=PROBLEM.question, solution=solution, prompt_format="chat")
    assert trace.input_ids == example["input_ids"][:-1]
    assert [s.text.strip(".\n") for s in trace.steps] == PROBLEM.reference_steps()


def test_collate_sft_pads_right_and_masks_padding():
    a = {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}
    b = {"input_ids": [8], "labels": [8]}
    batch = collate_sft([a, b], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]


def test_split_problems_are_disjoint_sized_and_seeded():
    splits = split_problems({"sft": 300, "eval": 100}, 2, 3, 10, seed=4)
    assert [len(v) for v in splits.values()] == [300, 100]
    sft, held_out = ({p.question for p in v} for v in splits.values())
    assert len(sft) == 300 and len(held_out) == 100 and not sft & held_out  # small numbers: duplicates were drawn
    again = split_problems({"sft": 300, "eval": 100}, 2, 3, 10, seed=4)
    assert [p.question for p in again["eval"]] == [p.question for p in splits["eval"]]


# Shapes of real samples from the fine-tuned policy and the untuned backbone.
@pytest.mark.parametrize(
    "solution, steps, labels, correct",
    [
        ("12 + 5 = 17.\n\n17 - 3 = 14.\n\n14 / 2 = 7.\n\nThe answer is 7", 4, [1.0, 1.0, 1.0, 1.0], True),
        ("12 + 5 = 17.\n\n17 - 3 = 14.\n\n14 / 2 = 7.\n\nThe answer is 7.", 4, [1.0, 1.0, 1.0, 1.0], True),
        ("12 + 5 = 17.\n\n17 - 3 = 15.\n\n15 / 2 = 7.\n\nThe answer is 7", 4, [1.0, 0.0, 0.0, 0.0], True),
        ("12 + 5 = 17.\n\n17 - 3 = 14.\n\n14 / 2 = 8.\n\nThe answer is 8", 4, [1.0, 1.0, 0.0, 0.0], False),
        ("12 + 5 = 17.\n\n17 - 3 = 14.\n\nThe answer is 14", 3, [1.0, 1.0, 0.0], False),
        ("12 + 5 = 17.\n\n17 - 3 = 14.\n\n14 / 2 = 7.\n\n", 3, [1.0, 1.0, 1.0], True),  # no closing statement
        ("1. 2\n2. 11\n3. 18", 1, [0.0], False),  # no delimiter: one step, no equation, the last number answers
    ],
)
def test_grade_solution_on_sample_shapes(solution, steps, labels, correct):
    graded = grade_solution(PROBLEM, solution, RULES)
    assert len(graded.steps) == steps
    assert graded.grade.step_labels == labels
    assert graded.correct is correct


def test_grade_solution_steps_are_the_scorer_steps(smollm2_tokenizer):
    solution = "12 + 5 = 17.\n\n17 - 3 = 15.\n\n15 / 2 = 7.5.\n\nThe answer is 7.5"
    graded = grade_solution(PROBLEM, solution, RULES)
    trace = build_trace(smollm2_tokenizer, RULES, question=PROBLEM.question, solution=solution, prompt_format="chat")
    assert len(trace.steps) == len(graded.steps) == 4
    assert graded.steps[2] == "15 / 2 = 7.5" and graded.grade.answer == "7.5" and not graded.correct


def test_sample_solutions_shapes_and_restores_padding_side(smollm2_tokenizer):
    from conftest import make_tiny_backbone

    tok = smollm2_tokenizer
    model = make_tiny_backbone(len(tok), tok.pad_token_id)
    side = tok.padding_side
    out = sample_solutions(model, tok, ["Q one?", "A longer question two?", "Three?"], 2,
                           max_new_tokens=4, batch_size=4, progress=False)
    assert len(out) == 3 and all(len(row) == 2 and all(isinstance(t, str) for t in row) for row in out)
    assert tok.padding_side == side
    assert sample_solutions(model, tok, ["Q one?"], 2, max_new_tokens=4, seed=3, progress=False) == \
        sample_solutions(model, tok, ["Q one?"], 2, max_new_tokens=4, seed=3, progress=False)
    with pytest.raises(ValueError, match="num_samples"):
        sample_solutions(model, tok, ["Q?"], 0)
