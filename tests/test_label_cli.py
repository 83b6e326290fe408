"""`sprm label` end to end with a tiny random policy: TRL stepwise rows with soft/hard Monte-Carlo labels and token
counts, resumable, sharded by RANK / WORLD_SIZE with the same result, one-line errors for bad input."""

import json

import pytest

from modeling_sprm.apps.cli import main
from modeling_sprm.data import load_records

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROBLEMS = [
    {"question": "Sam has 2 apples, gets 2 more, then triples them. How many?", "answer": "12"},
    {"question": "What is 3 + 4?", "answer": "Add them.\n#### 7"},  # GSM8K style: the final answer is 7
    {"problem": "What is 5 * 6?", "answer": 30},  # MATH-500 style, a number
]
QUICK = ["--num-rollouts", "2", "--chunk-size", "2", "--max_new_tokens", "6", "--seed", "3", "--device", "cpu"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def label(tiny_backbone, data, out, *extra):
    main(["label", "--data", str(data), "--output", str(out), "--model", str(tiny_backbone), *QUICK, *extra])


def chunks(folder):
    return {p.name: p.read_text() for p in sorted(folder.glob("chunk-*.jsonl"))}


def test_sampled_solutions_get_labels_counts_and_features_then_resume_and_shards_agree(tiny_backbone, tmp_path,
                                                                                        capsys, monkeypatch):
    data = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    out = tmp_path / "labels"
    label(tiny_backbone, data, out, "--num-samples", "2")
    assert "labelled 6 solutions" in capsys.readouterr().err
    written = chunks(out)
    assert set(written) == {"chunk-00000.jsonl", "chunk-00001.jsonl"}
    rows = [json.loads(line) for text in written.values() for line in text.splitlines()]
    assert [(r["question_index"], r["sample"]) for r in rows] == [(q, s) for q in range(3) for s in range(2)]
    assert [r["reference_answer"] for r in rows] == ["12", "12", "7", "7", "30", "30"]
    for row in rows:
        assert len(row["completions"]) == len(row["labels"]) == len(row["hard_labels"])
        assert all(h == float(s > 0) for s, h in zip(row["labels"], row["hard_labels"]))
        assert row["num_tokens"] >= 1 and row["num_rollouts"] == 2
        # every step but the last is finished twice, each finish at most --max_new_tokens minus the prefix's tokens
        assert 0 <= row["rollout_tokens"] <= 2 * 6 * max(0, len(row["labels"]) - 1)
    assert (out / "chunk-00000.safetensors").is_file()  # the step features captured while sampling
    assert len(load_records(str(out), "trl")) == 6  # `sprm train --format trl --labels step` reads the folder

    # Resume: a complete chunk is kept as it is, a missing one is labelled again, identically (seeded per chunk).
    (out / "chunk-00001.jsonl").unlink()
    label(tiny_backbone, data, out, "--num-samples", "2")
    assert "in 1 new chunks of 2" in capsys.readouterr().err
    assert chunks(out) == written

    # Two processes (torchrun's RANK / WORLD_SIZE) split the chunks and write the same labels.
    sharded = tmp_path / "sharded"
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        label(tiny_backbone, data, sharded, "--num-samples", "2")
        assert f"on process {rank} of 2" in capsys.readouterr().err
        if rank == 1:
            assert set(chunks(sharded)) == {"chunk-00001.jsonl"}
    assert chunks(sharded) == written


def test_given_solutions_are_labelled_and_the_last_step_is_the_outcome(tiny_backbone, tmp_path, capsys):
    right = "2 + 2 = 4.\n\n4 * 3 = 12.\n\nThe answer is 12."
    wrong = "2 + 2 = 4.\n\n4 * 3 = 11.\n\nThe answer is 11."
    data = write_jsonl(tmp_path / "given.jsonl", [{**PROBLEMS[0], "solutions": [right, wrong]}])
    out = tmp_path / "labels"
    label(tiny_backbone, data, out, "--answer-extractor", "gsm8k")
    rows = [json.loads(line) for line in (out / "chunk-00000.jsonl").read_text().splitlines()]
    assert [r["solution"] for r in rows] == [right, wrong]
    assert [r["completions"] for r in rows] == [["2 + 2 = 4", "4 * 3 = 12", "The answer is 12"],
                                               ["2 + 2 = 4", "4 * 3 = 11", "The answer is 11"]]
    assert [r["labels"][-1] for r in rows] == [r["outcome_label"] for r in rows] == [1.0, 0.0]
    # the first step's prefix is the same in both solutions: one shared set of finishes, the same label
    assert rows[0]["labels"][0] == rows[1]["labels"][0]
    assert not (out / "chunk-00000.safetensors").exists()  # no sampling here, so no captured features


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([{"question": "What is 1 + 1?"}], [], "missing field 'answer'"),
        ([{"question": "", "answer": "2"}], [], "needs a non-empty 'question'"),
        ([{"question": "a?", "answer": "1", "solutions": ["x"]}, {"question": "b?", "answer": "2"}], [],
         "1 of 2 problems have 'solutions'; either all or none"),
        ([{"question": "a?", "answer": "1", "solutions": "x"}], [], "'solutions' must be a list of strings"),
        ([{"question": "a?", "answer": "1"}], ["--num-rollouts", "0"], "--num-rollouts must be >= 1, got 0"),
        ([{"question": "a?", "answer": "1"}], ["--limit", "0"], "--limit must be >= 1, got 0"),
        ([], [], "holds no problems"),
    ],
)
def test_bad_input_gives_one_line_errors(tiny_backbone, tmp_path, capsys, rows, extra, message):
    data = write_jsonl(tmp_path / "problems.jsonl", rows)
    with pytest.raises(SystemExit) as exit_info:
        label(tiny_backbone, data, tmp_path / "out", *extra)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_output_that_is_a_file_is_refused(tiny_backbone, tmp_path, capsys):
    data = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS[:1])
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        label(tiny_backbone, data, tmp_path / "file")
    assert "is a file; expected a folder" in capsys.readouterr().err


def test_an_sprm_checkpoint_is_a_policy_too_and_a_broken_model_is_one_line(saved_tiny, tmp_path, capsys):
    data = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS[:1])
    label(saved_tiny, data, tmp_path / "labels")
    assert "labelled 1 solutions" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(SystemExit):
        label(broken, data, tmp_path / "labels2")
    err = capsys.readouterr().err
    assert str(broken) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
