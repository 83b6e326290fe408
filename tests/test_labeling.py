"""Monte-Carlo step labels (modeling_sprm.labeling) with a tiny random policy and graders the tests control."""

import json

import pytest
import torch

from modeling_sprm.generation import SamplingConfig
from modeling_sprm.labeling import label_to_folder, load_labels, monte_carlo_labels
from modeling_sprm.data import as_record

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SOLUTION = "2 + 2 = 4.\n\n4 * 3 = 12.\n\nThe answer is 12."
PROBLEM = {"question": "Sam has 2 apples, gets 2 more, then triples them. How many?", "answer": "12"}


class RecordingGrader:
    """Records every text it grades; a text is right when its length is even (the random policy decides)."""

    def __init__(self):
        self.calls = []

    def __call__(self, text: str, reference: str) -> bool:
        self.calls.append(text)
        return len(text) % 2 == 0


def test_prefixes_end_after_each_step_and_labels_are_the_share_of_right_finishes(tiny_sprm):
    model, tokenizer = tiny_sprm
    grader = RecordingGrader()
    torch.manual_seed(0)
    (row,) = monte_carlo_labels(
        model,
        tokenizer,
        [{**PROBLEM, "solutions": [SOLUTION]}],
        3,
        grader=grader,
        sampling=SamplingConfig(max_new_tokens=12),
        progress=False,
    )
    assert row["completions"] == ["2 + 2 = 4", "4 * 3 = 12", "The answer is 12"]
    # two prefixes (after steps 1 and 2) x 3 finishes, then the solution itself for its outcome
    rollouts, outcome = grader.calls[:6], grader.calls[6]
    assert all(t.startswith("2 + 2 = 4.\n\n") for t in rollouts[:3])
    assert all(t.startswith("2 + 2 = 4.\n\n4 * 3 = 12.\n\n") for t in rollouts[3:])
    assert outcome == SOLUTION
    right = [len(t) % 2 == 0 for t in rollouts]
    assert row["labels"][:2] == [sum(right[:3]) / 3, sum(right[3:]) / 3]
    assert row["hard_labels"][:2] == [float(any(right[:3])), float(any(right[3:]))]
    assert row["labels"][2] == row["hard_labels"][2] == row["outcome_label"] == float(len(SOLUTION) % 2 == 0)
    assert row["num_rollouts"] == 3 and row["num_tokens"] == len(
        tokenizer(SOLUTION, add_special_tokens=False)["input_ids"]
    )


def prefix_tokens(tokenizer, solution: str, end: str) -> int:
    """Tokens of ``solution`` that lie inside its prefix ending with the first ``end``."""
    cut = solution.index(end) + len(end)
    offsets = tokenizer(solution, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return sum(1 for _, stop in offsets if stop <= cut)


def test_finishes_use_the_rest_of_the_token_budget(tiny_sprm):
    # a random policy practically never samples its end-of-sequence token: every finish uses its whole budget
    model, tokenizer = tiny_sprm
    torch.manual_seed(0)
    rows = monte_carlo_labels(
        model,
        tokenizer,
        [{**PROBLEM, "solutions": [SOLUTION]}],
        2,
        sampling=SamplingConfig(max_new_tokens=30),
        grader=lambda t, r: False,
        progress=False,
    )
    first, second = prefix_tokens(tokenizer, SOLUTION, "4.\n\n"), prefix_tokens(tokenizer, SOLUTION, "12.\n\n")
    assert rows[0]["rollout_tokens"] == 2 * (30 - first) + 2 * (30 - second)
    assert rows[0]["labels"] == [0.0, 0.0, 0.0]


def test_identical_prefixes_share_their_finishes_and_split_the_tokens(tiny_sprm):
    model, tokenizer = tiny_sprm
    other = "2 + 2 = 4.\n\nThe answer is 4."  # the same first step as SOLUTION
    problem = {**PROBLEM, "solutions": [SOLUTION, other]}
    shared_grader, separate_grader = RecordingGrader(), RecordingGrader()
    torch.manual_seed(0)
    shared = monte_carlo_labels(
        model, tokenizer, [problem], 4, grader=shared_grader, sampling=SamplingConfig(max_new_tokens=30), progress=False
    )
    separate = monte_carlo_labels(
        model,
        tokenizer,
        [problem],
        4,
        grader=separate_grader,
        share_prefixes=False,
        sampling=SamplingConfig(max_new_tokens=30),
        progress=False,
    )
    # shared: the prefix after step 1 (both solutions) and after step 2 (SOLUTION): 2 x 4 finishes; separate:
    # 3 x 4; then each solution's own outcome
    assert len(shared_grader.calls) == 2 * 4 + 2 and len(separate_grader.calls) == 3 * 4 + 2
    assert shared[0]["labels"][0] == shared[1]["labels"][0]
    a = 4 * (30 - prefix_tokens(tokenizer, SOLUTION, "4.\n\n"))  # tokens of the shared prefix's finishes
    b = 4 * (30 - prefix_tokens(tokenizer, SOLUTION, "12.\n\n"))
    assert shared[1]["rollout_tokens"] == a / 2 and shared[0]["rollout_tokens"] == a / 2 + b
    assert [r["rollout_tokens"] for r in separate] == [2 * a / 2 + b, a]


def test_sampled_solutions_come_with_the_features_captured_while_sampling(tiny_sprm):
    model, tokenizer = tiny_sprm
    torch.manual_seed(0)
    rows = monte_carlo_labels(
        model, tokenizer, [PROBLEM], 2, num_samples=3, sampling=SamplingConfig(max_new_tokens=16), progress=False
    )
    assert [r["sample"] for r in rows] == [0, 1, 2]
    for row in rows:
        assert row["step_features"].shape == (len(row["completions"]), model.config.text_config.hidden_size)
        assert len(row["labels"]) == len(row["hard_labels"]) == len(row["completions"])


def test_rows_are_trl_stepwise_rows_with_float_labels(tiny_sprm):
    model, tokenizer = tiny_sprm
    (row,) = monte_carlo_labels(
        model,
        tokenizer,
        [{**PROBLEM, "solutions": [SOLUTION]}],
        3,
        grader=RecordingGrader(),
        sampling=SamplingConfig(max_new_tokens=8),
        progress=False,
    )
    record = as_record(row, "row 0")
    assert record["steps"] == row["completions"] and record["step_labels"] == row["labels"]
    assert record["outcome_label"] == row["outcome_label"]


def test_bad_problems_get_a_clear_error(tiny_sprm):
    model, tokenizer = tiny_sprm
    with pytest.raises(ValueError, match="problem 0: needs a reference 'answer'"):
        monte_carlo_labels(model, tokenizer, [{"question": "q"}], 2)
    with pytest.raises(ValueError, match="num_rollouts must be a positive integer"):
        monte_carlo_labels(model, tokenizer, [PROBLEM], 0)
    with pytest.raises(ValueError, match="either every problem has 'solutions' or none"):
        monte_carlo_labels(model, tokenizer, [PROBLEM, {**PROBLEM, "solutions": [SOLUTION]}], 2)


def test_folder_runs_resume_and_shard_by_rank(tiny_sprm, tmp_path, monkeypatch):
    model, tokenizer = tiny_sprm
    problems = [{**PROBLEM, "question": f"{PROBLEM['question']} ({i})"} for i in range(5)]
    kwargs = dict(num_samples=2, sampling=SamplingConfig(max_new_tokens=12), chunk_size=2, seed=3, progress=False)
    written = label_to_folder(model, tokenizer, problems, tmp_path / "one", 2, **kwargs)
    assert [p.name for p in written] == ["chunk-00000.jsonl", "chunk-00001.jsonl", "chunk-00002.jsonl"]
    assert label_to_folder(model, tokenizer, problems, tmp_path / "one", 2, **kwargs) == []  # resumed: all done
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        label_to_folder(model, tokenizer, problems, tmp_path / "two", 2, **kwargs)
    one, two = load_labels(tmp_path / "one"), load_labels(tmp_path / "two")
    assert [r["question_index"] for r in one] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # chunks are seeded by their index: two processes write what one writes
    strip = lambda rows: [{k: v for k, v in r.items() if k != "step_features"} for r in rows]  # noqa: E731
    assert json.dumps(strip(one)) == json.dumps(strip(two))
    assert all(torch.equal(a["step_features"], b["step_features"]) for a, b in zip(one, two))


def test_rank_outside_world_size_is_an_error(tiny_sprm, tmp_path, monkeypatch):
    model, tokenizer = tiny_sprm
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK=2 is not in"):
        label_to_folder(model, tokenizer, [PROBLEM], tmp_path, 2)
