"""Data adapters on small committed slices of the real data sets (tests/fixtures/*), and every validation error."""

import json
import warnings

import pytest

from conftest import FIXTURES
from modeling_sprm.data import (
    LOADERS,
    DataFormatError,
    drop_empty_steps,
    first_error_from_labels,
    grade_solution,
    gsm8k_reference,
    labels_from_first_error,
    load_bbm,
    load_gsm8k,
    load_gsm8k_problems,
    load_outcome,
    load_prmbench,
    load_processbench,
    load_records,
    load_trl,
    make_record,
    to_trl,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def by_id(records):
    return {r["id"]: r for r in records}


# -- label helpers ------------------------------------------------------------------------------------------------


def test_label_helpers():
    assert labels_from_first_error(4, -1) == [1.0, 1.0, 1.0, 1.0]
    assert labels_from_first_error(4, 1) == [1.0, 0.0, None, None]
    assert first_error_from_labels([1.0, 1.0]) == -1
    assert first_error_from_labels([1.0, 0.4, 1.0]) == 1  # below 0.5 is wrong
    assert first_error_from_labels([1.0, 0.5]) == -1  # 0.5 is not below 0.5
    assert first_error_from_labels([1.0, None, 0.0]) is None  # unknown before any wrong step
    assert drop_empty_steps(["a", " ", "b"], 1) == (["a", "b"], 1)  # error on the empty step moves to "b"
    assert drop_empty_steps(["a", "b", "\n"], 2) == (["a", "b"], -1)


# -- ProcessBench -------------------------------------------------------------------------------------------------


def test_processbench_fixture():
    records = load_processbench(str(FIXTURES / "processbench"))
    assert len(records) == 24  # 6 rows x 4 splits
    assert [r["group"] for r in records[::6]] == ["gsm8k", "math", "olympiadbench", "omnimath"]
    r = by_id(records)
    # gsm8k-0: label 1, final_answer_correct false, 4 steps -> correct, wrong, unknown, unknown.
    assert r["gsm8k-0"]["question"].startswith("Sue lives in a fun neighborhood.")
    assert len(r["gsm8k-0"]["steps"]) == 4
    assert r["gsm8k-0"]["step_labels"] == [1.0, 0.0, None, None]
    assert (r["gsm8k-0"]["first_error"], r["gsm8k-0"]["outcome_label"]) == (1, 0.0)
    # gsm8k-202: label -1, final_answer_correct true, 2 steps.
    assert r["gsm8k-202"]["step_labels"] == [1.0, 1.0]
    assert (r["gsm8k-202"]["first_error"], r["gsm8k-202"]["outcome_label"]) == (-1, 1.0)
    # math-0: the error is the first step.
    assert r["math-0"]["step_labels"] == [0.0, None]
    assert sum(x["first_error"] == -1 for x in records) == 12


def test_processbench_one_file_and_split_selection():
    one = load_processbench(str(FIXTURES / "processbench" / "math.json"))
    assert [x["group"] for x in one] == ["math"] * 6  # the group is the file's split, not the first default split
    two = load_records(str(FIXTURES / "processbench"), "processbench", splits=["gsm8k", "omnimath"])
    assert sorted({x["group"] for x in two}) == ["gsm8k", "omnimath"]


def test_processbench_errors(tmp_path):
    good = {"id": "x", "problem": "Q?", "steps": ["a", "b"], "final_answer_correct": True, "label": -1}
    cases = [
        ({k: v for k, v in good.items() if k != "label"}, "missing field 'label'"),
        ({**good, "steps": "a"}, "field 'steps' must be a list"),
        ({**good, "label": 2}, "field 'label' must be -1 or a step index < 2"),
        ({**good, "label": True}, "field 'label'"),
        ({**good, "final_answer_correct": "yes"}, "field 'final_answer_correct'"),
        ({**good, "problem": ""}, "field 'question'"),
    ]
    for row, message in cases:
        file = tmp_path / "gsm8k.json"
        file.write_text(json.dumps([good, row]))
        with pytest.raises(DataFormatError, match=rf"gsm8k.json row 1: .*{message}"):
            load_processbench(str(file))
    file.write_text(json.dumps({"rows": []}))
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        load_processbench(str(file))
    with pytest.raises(FileNotFoundError, match="math.json not found"):
        load_processbench(str(tmp_path), splits=["math"])


# -- BIG-Bench Mistake --------------------------------------------------------------------------------------------


def test_bbm_fixture():
    records = load_bbm(str(FIXTURES / "bbm"))
    assert len(records) == 22
    r = by_id(records)
    # dyck_languages row 0: mistake_index 12 of 16 steps, answer != target.
    assert len(r["dyck_languages-0"]["steps"]) == 16
    assert r["dyck_languages-0"]["step_labels"] == [1.0] * 12 + [0.0] + [None] * 3
    assert r["dyck_languages-0"]["outcome_label"] == 0.0
    # dyck_languages row 2: no mistake, answer == target.
    assert (r["dyck_languages-2"]["first_error"], r["dyck_languages-2"]["outcome_label"]) == (-1, 1.0)
    # Fixture row 4 (upstream row 538) has one whitespace-only step: it is dropped.
    raw = json.loads((FIXTURES / "bbm" / "dyck_languages.jsonl").read_text().splitlines()[4])
    assert sum(not s.strip() for s in raw["steps"]) == 1
    assert r["dyck_languages-4"]["steps"] == [s for s in raw["steps"] if s.strip()]
    # logical_deduction fixture row 4 (upstream row 81) is the task's first row without a mistake.
    assert r["logical_deduction-4"]["first_error"] == -1


def test_bbm_errors(tmp_path):
    good = {"input": "Q", "steps": ["a", "b"], "answer": "x", "target": "x", "mistake_index": None}
    cases = [
        ({k: v for k, v in good.items() if k != "target"}, "missing field 'target'"),
        ({**good, "steps": "not a list"}, "field 'steps' is a string that is not a list literal"),
        ({**good, "steps": 3}, "field 'steps' must be a list"),
        ({**good, "mistake_index": 5}, "field 'mistake_index' must be null or a step index"),
    ]
    for row, message in cases:
        write_jsonl(tmp_path / "word_sorting.jsonl", [good, row])
        with pytest.raises(DataFormatError, match=rf"word_sorting.jsonl row 1: {message}"):
            load_bbm(str(tmp_path), tasks=["word_sorting"])
    (tmp_path / "word_sorting.jsonl").write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataFormatError, match="word_sorting.jsonl row 1: not valid JSON"):
        load_bbm(str(tmp_path), tasks=["word_sorting"])
    # Steps stored as a Python list literal inside a string are read.
    write_jsonl(tmp_path / "word_sorting.jsonl", [{**good, "steps": "['a', 'b']"}])
    assert load_bbm(str(tmp_path), tasks=["word_sorting"])[0]["steps"] == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="dyck_languages.jsonl not found"):
        load_bbm(str(tmp_path), tasks=["dyck_languages"])


# -- PRMBench -----------------------------------------------------------------------------------------------------


def test_prmbench_fixture():
    with pytest.warns(UserWarning, match=r"left out 1 rows .*circular_prm_test_p1_62"):
        records = load_prmbench(str(FIXTURES / "prmbench"))
    r = by_id(records)
    assert len(records) == 14
    # circular_prm_test_p1_0: 7 steps, error_steps [3, 4, 5] (1-indexed) -> indices 2, 3, 4.
    x = r["circular_prm_test_p1_0"]
    assert x["step_labels"] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert (x["first_error"], x["outcome_label"], x["group"]) == (2, 0.0, "test_p1")
    assert x["steps"][2].startswith("3. Assume a pencil costs 29 cents.")
    # deception_prm_test_p1_87: 17 steps, step 16 (index 15) is whitespace -> 16 steps; errors [11, 13] -> 10, 12.
    x = r["deception_prm_test_p1_87"]
    assert len(x["steps"]) == 16 and x["first_error"] == 10
    assert [i for i, label in enumerate(x["step_labels"]) if label == 0.0] == [10, 12]
    # The original solution of each item, once, from its redundency row.
    x = r["correct_prm_test_p1_0"]
    assert len(x["steps"]) == 6 and x["step_labels"] == [1.0] * 6
    assert (x["first_error"], x["outcome_label"]) == (-1, 1.0)
    assert x["steps"][0].startswith("Let's call the price of a pencil p")
    assert sorted(k for k in r if k.startswith("correct_")) == [
        "correct_prm_test_p1_0",
        "correct_prm_test_p1_2",
        "correct_prm_train_p1_0",
    ]
    # multi_solutions: correct alternative solutions; the repeated idx keeps its first row (as upstream).
    x = r["multi_solutions_prm_test_p2_863"]
    assert len(x["steps"]) == 13 and (x["first_error"], x["outcome_label"], x["group"]) == (-1, 1.0, "test_p2")
    assert sum(k == "multi_solutions_prm_test_p2_863" for k in (rec["id"] for rec in records)) == 1
    assert {rec["group"] for rec in records} == {"test_p1", "test_p2", "train_p1"}


def test_prmbench_options(tmp_path):
    root = str(FIXTURES / "prmbench")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = load_prmbench(root, split="test", group_by="category")
        train = load_prmbench(root, split="train", include_original=False)
    assert {r["group"] for r in test} == {"circular", "deception", "redundency", "correct", "multi_solutions"}
    assert not any("train" in r["id"] for r in test)
    assert [r["id"] for r in train] == [
        "confidence_prm_train_p1_0",
        "confidence_prm_train_p1_1",
        "redundency_prm_train_p1_0",
    ]
    # misaligned="keep": the index past the end is ignored, as upstream's scorer does; 16 is still in range.
    kept = by_id(load_prmbench(root, split="test", misaligned="keep"))["circular_prm_test_p1_62"]
    assert len(kept["steps"]) == 33 and kept["first_error"] == 15
    with pytest.raises(DataFormatError, match=r"circular.jsonl row 2: field 'error_steps' holds \[34\], past the 33"):
        load_prmbench(root, misaligned="error")
    # One file (the balanced subset) works too.
    subset = load_prmbench(str(FIXTURES / "prmbench" / "prmtest_classified_subset400" / "target_data.jsonl"))
    assert [r["id"] for r in subset] == ["confidence_prm_test_p1_0", "confidence_prm_test_p1_2"]
    for bad in ({"split": "dev"}, {"group_by": "x"}, {"misaligned": "x"}):
        with pytest.raises(ValueError):
            load_prmbench(root, **bad)


def test_prmbench_errors(tmp_path):
    good = {
        "modified_question": "Q?",
        "modified_process": ["a", "b", "c"],
        "error_steps": [2],
        "idx": "prm_test_p1_5",
        "classification": "circular",
    }
    cases = [
        ({k: v for k, v in good.items() if k != "error_steps"}, "missing field 'error_steps'"),
        ({**good, "idx": "p1_5"}, "field 'idx' must look like"),
        ({**good, "classification": ""}, "field 'classification'"),
        ({**good, "modified_process": "a"}, "field 'modified_process' must be a list of strings"),
        ({**good, "error_steps": [0]}, "field 'error_steps' must be a list of step numbers"),
        ({**good, "classification": "redundency"}, "missing field 'original_question'"),
    ]
    for row, message in cases:
        file = write_jsonl(tmp_path / "prm800k_test_p1_4o_x.jsonl", [good, row])
        with pytest.raises(DataFormatError, match=rf"x.jsonl row 1: {message}"):
            load_prmbench(str(file))
    # An error on a whitespace-only step moves to the next step.
    file = write_jsonl(tmp_path / "prm800k_test_p1_4o_x.jsonl", [{**good, "modified_process": ["a", " ", "c"]}])
    record = load_prmbench(str(file))[0]
    assert record["steps"] == ["a", "c"] and record["step_labels"] == [1.0, 0.0]
    with pytest.raises(FileNotFoundError, match="no PRMBench .jsonl files"):
        load_prmbench(str(tmp_path / "empty"))


# -- GSM8K --------------------------------------------------------------------------------------------------------


def test_gsm8k_fixture():
    records = load_gsm8k(str(FIXTURES / "gsm8k"), splits=["test"])
    assert len(records) == 8
    # Row 0: "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n...\n#### 18"
    assert records[0]["id"] == "test-0" and records[0]["group"] == "test"
    assert records[0]["steps"] == [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
        "She makes 9 * 2 = $18 every day at the farmer’s market.",
        "The answer is 18.",
    ]
    assert records[0]["step_labels"] == [1.0, 1.0, 1.0] and records[0]["outcome_label"] == 1.0
    assert not any("<<" in s for r in records for s in r["steps"])
    plain = load_gsm8k(str(FIXTURES / "gsm8k" / "test.jsonl"), final_answer_step=False)
    assert plain[0]["steps"] == records[0]["steps"][:2]
    problems = load_gsm8k_problems(str(FIXTURES / "gsm8k"))
    assert problems[2] == {"id": "test-2", "group": "test", "question": problems[2]["question"], "answer": "70000"}
    # The reference solutions grade as correct against their own answers.
    from modeling_sprm.steps import StepRules, join_steps

    for record, problem in zip(records, problems):
        text, _ = join_steps(record["steps"], StepRules())
        assert grade_solution(text, problem["answer"]) == 1.0


def test_gsm8k_reference_and_grading():
    steps, final = gsm8k_reference("He has 3*4=<<3*4=12>>12 apples.\n\nThen 12+1=<<12+1=13>>13.\n#### 13")
    assert steps == ["He has 3*4=12 apples.", "Then 12+1=13."] and final == "13"
    assert grade_solution("3 * 4 = 12.\n\nThe answer is 1,000.0", "1000") == 1.0
    assert grade_solution("The answer is \\boxed{18}.", "#### 18") == 1.0
    assert grade_solution("The answer is 17.", "18") == 0.0
    assert grade_solution("no number here", "18") == 0.0
    assert grade_solution("x = 5", "5", extractor="boxed") == 0.0  # no \boxed{} -> no answer
    with pytest.raises(DataFormatError, match="row 3: field 'answer' must end with a '#### <final answer>' line"):
        gsm8k_reference("12 apples", at="row 3")
    with pytest.raises(DataFormatError, match="no solution lines"):
        gsm8k_reference("#### 5")
    with pytest.raises(TypeError):
        grade_solution(None, "5")


def test_gsm8k_errors(tmp_path):
    write_jsonl(tmp_path / "test.jsonl", [{"question": "Q?", "answer": "a\n#### 1"}, {"question": "Q?"}])
    with pytest.raises(DataFormatError, match="test.jsonl row 1: missing field 'answer'"):
        load_gsm8k(str(tmp_path), splits=["test"])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "", "answer": "a\n#### 1"}])
    with pytest.raises(DataFormatError, match="test.jsonl row 0: field 'question'"):
        load_gsm8k_problems(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train.jsonl not found"):
        load_gsm8k(str(tmp_path))


# -- outcome ------------------------------------------------------------------------------------------------------


def test_outcome_fixture():
    records = load_outcome(str(FIXTURES / "outcome" / "rollouts.jsonl"))
    assert [r["id"] for r in records] == ["rollouts-0", "rollouts-1", "soft-1", "rollouts-3"]
    assert [r["outcome_label"] for r in records] == [1.0, 0.0, 0.75, 0.0]
    assert records[0]["solution"] == "2 + 3 = 5.\n\nThe answer is 5." and records[0]["steps"] is None
    assert records[0]["group"] == "rollouts" and records[2]["group"] == "arithmetic"
    assert (records[2]["step_labels"], records[2]["first_error"]) == ([1.0, 0.5], -1)
    assert (records[3]["step_labels"], records[3]["first_error"]) == ([0.0, None], 0)
    assert [r["rollout_truncated"] for r in records] == [False, False, False, True]
    assert records[0]["first_error"] is None  # no step labels: unknown
    folder = load_records(str(FIXTURES / "outcome"), "outcome")
    assert [r["group"] for r in folder] == ["more"] + ["rollouts", "rollouts", "arithmetic", "rollouts"]


def test_outcome_from_saved_datasets(tmp_path):
    import datasets

    rows = [
        {"question": "What is 2 + 3?", "solution": "2 + 3 = 5.", "label": 1.0},
        {"question": "What is 2 + 3?", "solution": "2 + 3 = 6.", "label": 0.0},
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    one = load_outcome(str(tmp_path / "one"))
    assert [r["solution"] for r in one] == [rows[0]["solution"], rows[1]["solution"]]
    assert [r["id"] for r in one] == ["one-0", "one-1"] and one[0]["group"] == "one"
    # A table mixing solutions and steps: every row has both columns, the missing one None.
    mixed = [
        {**rows[0], "steps": None, "step_labels": None},
        {"question": "Q?", "solution": None, "steps": ["a.", "b."], "label": 1.0, "step_labels": [1.0, 0.0]},
    ]
    datasets.Dataset.from_list(mixed).save_to_disk(str(tmp_path / "mixed"))
    both_kinds = load_outcome(str(tmp_path / "mixed"))
    assert both_kinds[0]["steps"] is None and both_kinds[0]["solution"] == rows[0]["solution"]
    assert both_kinds[1]["steps"] == ["a.", "b."] and both_kinds[1]["first_error"] == 1
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])})
    dd.save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(DataFormatError, match=r"dict has several splits \['test', 'train'\]: choose one with --split"):
        load_outcome(str(tmp_path / "dict"))  # never merged silently
    both = load_outcome(str(tmp_path / "dict"), splits=["test", "train"])
    assert [r["id"] for r in both] == ["test-0", "train-0", "train-1"]
    assert [r["group"] for r in load_outcome(str(tmp_path / "dict"), splits=["train"])] == ["train", "train"]
    with pytest.raises(DataFormatError, match=r"no split 'dev'"):
        load_outcome(str(tmp_path / "dict"), splits=["dev"])


def test_outcome_errors(tmp_path):
    good = {"question": "Q?", "steps": ["a", "b"], "label": 1}
    cases = [
        ({"steps": ["a"], "label": 1}, "missing field 'question'"),
        ({"question": "Q?", "label": 1}, "exactly one of the fields 'steps' and 'solution'"),
        ({**good, "solution": "x"}, "exactly one of the fields 'steps' and 'solution'"),
        ({**good, "label": 1.5}, "field 'label' must be 0/1, true/false or a number in \\[0, 1\\], got 1.5"),
        ({**good, "label": "yes"}, "field 'label'"),
        ({**good, "truncated": "no"}, "field 'truncated' must be true or false"),
        ({**good, "step_labels": [1]}, "field 'step_labels' must be a list with one label per step"),
        ({**good, "step_labels": [1, 2]}, "field 'step_labels' item 1 must be a number in \\[0, 1\\]"),
        ({"question": "Q?", "solution": "x", "label": 1, "step_labels": [1]}, "field 'step_labels' needs 'steps'"),
        ({**good, "steps": ["a", " "]}, "field 'steps' item 1 must be a non-empty string"),
        ({**good, "steps": []}, "field 'steps' must be a non-empty list"),
        ({**good, "question": "  "}, "field 'question' must be a non-empty string"),
        ([1, 2], "expected a JSON object"),
    ]
    for row, message in cases:
        write_jsonl(tmp_path / "data.jsonl", [good, row])
        with pytest.raises(DataFormatError, match=rf"data.jsonl row 1: {message}"):
            load_outcome(str(tmp_path / "data.jsonl"))
    (tmp_path / "data.txt").write_text("question,label\n")
    with pytest.raises(DataFormatError, match="expected a .jsonl, .json, .csv, .parquet file"):
        load_outcome(str(tmp_path / "data.txt"))
    (tmp_path / "data.csv").write_text("question,label\n")
    with pytest.raises(DataFormatError, match="data.csv: cannot be read as csv"):
        load_outcome(str(tmp_path / "data.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .jsonl, .csv, .parquet files"):
        load_outcome(str(tmp_path / "empty"))


def test_unknown_path_tries_the_hub_and_says_so(tmp_path):
    # Offline (HF_HUB_OFFLINE=1 in conftest): the Hub lookup fails, and the error names the path.
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-data is not a local file or folder"):
        load_outcome("no-such-org/no-such-data")


# -- TRL ----------------------------------------------------------------------------------------------------------


def test_trl_fixture():
    records = load_trl(str(FIXTURES / "trl" / "stepwise.jsonl"))
    assert [r["id"] for r in records] == ["stepwise-0", "stepwise-1", "stepwise-2", "explicit"]
    assert records[0]["question"] == "Which number is larger, 9.11 or 9.9?"
    assert [r["step_labels"] for r in records] == [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.7, 0.2], [1.0, 1.0]]
    # Outcome = the lowest step label unless the row says otherwise; first error = first label below 0.5.
    assert [r["outcome_label"] for r in records] == [1.0, 0.0, 0.2, 0.0]
    assert [r["first_error"] for r in records] == [-1, 1, 2, -1]
    assert records[3]["group"] == "manual"


def test_trl_errors(tmp_path):
    good = {"prompt": "Q?", "completions": ["a", "b"], "labels": [True, False]}
    cases = [
        ({**good, "completions": []}, "field 'completions' must be a non-empty list"),
        ({**good, "labels": [True]}, "field 'labels' must be a list with one label per completion \\(2\\)"),
        ({**good, "labels": [True, 2]}, "field 'labels\\[1\\]' must be 0/1"),
        ({**good, "labels": [True, None]}, "field 'labels\\[1\\]'"),
        ({**good, "outcome_label": -1}, "field 'outcome_label'"),
        ({**good, "completions": ["a", ""]}, "field 'steps' item 1"),
    ]
    for row, message in cases:
        write_jsonl(tmp_path / "trl.jsonl", [good, row])
        with pytest.raises(DataFormatError, match=rf"trl.jsonl row 1: {message}"):
            load_trl(str(tmp_path / "trl.jsonl"))


def test_to_trl_round_trip(tmp_path):
    records = load_trl(str(FIXTURES / "trl" / "stepwise.jsonl"))
    rows = to_trl(records)
    assert rows[2] == {"prompt": "What is 15% of 80?", "completions": records[2]["steps"], "labels": [1.0, 0.7, 0.2]}
    back = load_trl(str(write_jsonl(tmp_path / "t.jsonl", rows)))
    assert [r["step_labels"] for r in back] == [r["step_labels"] for r in records]
    # ProcessBench-style labels stop at the first error: the unlabelled steps after it are left out.
    pb = load_processbench(str(FIXTURES / "processbench" / "gsm8k.json"))
    assert to_trl(pb[:1])[0]["labels"] == [1.0, 0.0] and len(to_trl(pb[:1])[0]["completions"]) == 2
    outcome_only = load_outcome(str(FIXTURES / "outcome" / "rollouts.jsonl"))[:1]
    with pytest.raises(DataFormatError, match="record 'rollouts-0': TRL rows need `steps` with `step_labels`"):
        to_trl(outcome_only)
    with pytest.raises(DataFormatError, match="the first step has no label"):
        to_trl([make_record(id="u", question="Q", steps=["a"], step_labels=[None])])


def test_load_records_dispatch():
    assert set(LOADERS) == {"outcome", "trl", "processbench", "bbm", "prmbench", "gsm8k"}
    with pytest.raises(ValueError, match="unknown data format 'csv'"):
        load_records("x", "csv")
    assert len(load_records(str(FIXTURES / "bbm"), "bbm", tasks=["word_sorting"])) == 4


def test_bbm_null_answer_counts_as_wrong(tmp_path):
    row = {"input": "Sort: b a", "steps": ["a comes first.", "So: a b."], "target": "a b", "answer": None,
           "mistake_index": None}
    (tmp_path / "word_sorting.jsonl").write_text(json.dumps(row) + "\n")
    [record] = load_bbm(str(tmp_path), tasks=["word_sorting"])
    assert record["outcome_label"] == 0.0 and record["first_error"] == -1


# -- through `datasets`: every file kind, exact values, splits -----------------------------------------------------


def test_csv_parquet_jsonl_and_json_give_the_same_records(tmp_path):
    import datasets

    rows = [{"question": "What is 2 + 3?", "solution": "2 + 3 = 5.", "label": 0.7},
            {"question": "What is 2 + 4?", "solution": "2 + 4 = 7.", "label": 0.1}]
    table = datasets.Dataset.from_list(rows)
    table.to_csv(str(tmp_path / "d.csv"))
    table.to_parquet(str(tmp_path / "d.parquet"))
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    loaded = [load_outcome(str(tmp_path / f"d.{ext}")) for ext in ("csv", "parquet", "jsonl", "json")]
    assert all(records == loaded[0] for records in loaded)
    assert [r["outcome_label"] for r in loaded[0]] == [0.7, 0.1] and loaded[0][0]["id"] == "d-0"


def test_floats_stay_exact_in_json_lists_and_mixed_type_rows(tmp_path):
    # datasets' own path for these two cases parses floats with pandas' fast parser (0.7 -> 0.7000000000000001)
    rows = [{"prompt": "Q?", "completions": ["a", "b", "c"], "labels": [1.0, 0.7, 0.2]},
            {"prompt": "Q?", "completions": ["a", "b"], "labels": [True, False]}]
    write_jsonl(tmp_path / "mixed.jsonl", rows)
    (tmp_path / "list.json").write_text(json.dumps(rows))
    for name in ("mixed.jsonl", "list.json"):
        assert load_trl(str(tmp_path / name))[0]["step_labels"] == [1.0, 0.7, 0.2], name


def test_split_everywhere_and_no_silent_merging(tmp_path, monkeypatch):
    import datasets

    rows = [{"question": "Q?", "solution": "a.", "label": 1}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows * 2), "test": datasets.Dataset.from_list(rows)}
                         ).save_to_disk(str(tmp_path / "dd"))
    assert len(load_records(str(tmp_path / "dd"), "outcome", split="train")) == 2
    assert len(load_records(str(tmp_path / "dd"), "outcome", split="train,test")) == 3
    with pytest.raises(DataFormatError, match="several splits"):
        load_records(str(tmp_path / "dd"), "outcome")
    with pytest.raises(DataFormatError, match="one file, without splits"):
        load_records(str(FIXTURES / "outcome" / "rollouts.jsonl"), "outcome", split="train")
    assert {r["group"] for r in load_records(str(FIXTURES / "processbench"), "processbench", split="math")} == {"math"}
    assert {r["group"] for r in load_records(str(FIXTURES / "bbm"), "bbm", split="word_sorting")} == {"word_sorting"}
    assert {r["group"] for r in load_records(str(FIXTURES / "prmbench"), "prmbench", split="test")} <= {"test_p1", "test_p2"}

    # A Hub id (the Hub cannot be reached here: its two calls answer from a saved DatasetDict instead).
    saved = datasets.load_from_disk(str(tmp_path / "dd"))
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda path, config=None: list(saved))
    monkeypatch.setattr(datasets, "load_dataset", lambda path, config=None, split=None: saved[split])
    with pytest.raises(DataFormatError, match=r"org/data has several splits \['test', 'train'\]: choose one"):
        load_records("org/data", "outcome")
    records = load_records("org/data", "outcome", split="test")
    assert [r["id"] for r in records] == ["test-0"]


def test_held_out_split_comes_from_datasets_and_is_seeded():
    from modeling_sprm.training.script import split_records

    records = [{"id": str(i)} for i in range(20)]
    train, held = split_records(records, 0.25, seed=3)
    assert len(held) == 5 and len(train) == 15 and {r["id"] for r in train}.isdisjoint(r["id"] for r in held)
    assert [r["id"] for r in train] == sorted((r["id"] for r in train), key=int)  # input order kept
    assert split_records(records, 0.25, seed=3) == (train, held) and split_records(records, 0.25, seed=4) != (train, held)
    import datasets  # the same draw as datasets' own train_test_split over the indices

    expected = datasets.Dataset.from_dict({"i": list(range(20))}).train_test_split(test_size=5, seed=3)["test"]["i"]
    assert sorted(int(r["id"]) for r in held) == sorted(expected)
    with pytest.raises(ValueError, match="cannot hold out"):
        split_records(records[:1], 0.5, seed=0)


def test_rows_without_labels_load_for_scoring(tmp_path):
    write_jsonl(tmp_path / "o.jsonl", [{"question": "Q?", "steps": ["a"]}])
    write_jsonl(tmp_path / "t.jsonl", [{"prompt": "Q?", "completions": ["a", "b"]}])
    [outcome] = load_outcome(str(tmp_path / "o.jsonl"))
    [trl] = load_trl(str(tmp_path / "t.jsonl"))
    assert outcome["outcome_label"] is None and outcome["steps"] == ["a"]
    assert (trl["step_labels"], trl["outcome_label"], trl["first_error"]) == (None, None, None)
