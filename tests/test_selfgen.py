import pytest
import torch

from benchmarks.selfgen.arithmetic import Problem
from benchmarks.selfgen.common import (
    IGNORE_INDEX,
    collate_sft,
    grade_solution,
    load_rollouts,
    loop_problems,
    policy_prompt,
    rollout_step_features,
    save_rollout_chunk,
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
    other = split_problems({"sft": 300, "eval": 100}, 2, 3, 10, seed=5)
    assert [p.question for p in other["eval"]] != [p.question for p in splits["eval"]]  # the seed decides


def test_loop_problems_repeat_the_sft_run_sets_then_add_new_disjoint_ones():
    config = {"min_ops": 2, "max_ops": 3, "max_number": 10, "problem_seed": 5, "sft_problems": 50, "eval_problems": 10}
    sets = loop_problems(config, num_train=20, num_test=8)
    sft_run = split_problems({"sft": 50, "eval": 10}, 2, 3, 10, seed=5)
    for name in ("sft", "eval"):
        assert [p.question for p in sets[name]] == [p.question for p in sft_run[name]]
    questions = [p.question for v in sets.values() for p in v]
    assert len(questions) == len(set(questions)) == 88
    more_train = loop_problems(config, num_train=40, num_test=8)
    assert [p.question for p in more_train["test"]] == [p.question for p in sets["test"]]


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
    seeded = sample_solutions(model, tok, ["Q one?"], 2, max_new_tokens=4, seed=3, progress=False)
    assert seeded == sample_solutions(model, tok, ["Q one?"], 2, max_new_tokens=4, seed=3, progress=False)
    assert seeded != sample_solutions(model, tok, ["Q one?"], 2, max_new_tokens=4, seed=4, progress=False)
    with pytest.raises(ValueError, match="num_samples"):
        sample_solutions(model, tok, ["Q?"], 0)


def test_rollout_chunks_round_trip_and_resume_marker(tmp_path):
    rows = [{"steps": ["1 + 1 = 2", "The answer is 2"], "outcome_label": 1.0}, {"steps": [], "outcome_label": 0.0}]
    features = [torch.randn(2, 3), torch.zeros(0, 3)]
    save_rollout_chunk(tmp_path / "chunk_0001", rows, features)
    save_rollout_chunk(tmp_path / "chunk_0000", rows[:1], features[:1])
    (tmp_path / "chunk_0002.safetensors").write_bytes(b"")  # an interrupted chunk: no .jsonl, not read
    loaded = load_rollouts(tmp_path)
    assert [r["outcome_label"] for r in loaded] == [1.0, 1.0, 0.0]
    assert torch.equal(loaded[0]["step_features"], features[0]) and loaded[2]["step_features"].shape == (0, 3)
    with pytest.raises(ValueError, match="feature tensors"):
        save_rollout_chunk(tmp_path / "bad", rows, features[:1])
    with pytest.raises(FileNotFoundError):
        load_rollouts(tmp_path / "bad")


def test_rollout_step_features_reads_the_captured_read_positions():
    from types import SimpleNamespace

    rollout = SimpleNamespace(prompt_ids=[1, 2, 3], text="x", features={-1: torch.ones(4), 5: torch.full((4,), 2.0)})
    trace = SimpleNamespace(positions=[8, 2])  # absolute: 8 - 3 = 5, 2 - 3 = -1 (the last prompt token)
    assert rollout_step_features(rollout, trace, 4).tolist() == [[2.0] * 4, [1.0] * 4]
    assert rollout_step_features(rollout, SimpleNamespace(positions=[]), 4).shape == (0, 4)
    with pytest.raises(ValueError, match="no feature captured"):
        rollout_step_features(rollout, SimpleNamespace(positions=[7]), 4)
