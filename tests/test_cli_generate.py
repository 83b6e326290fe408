"""`sprm bon` and `sprm search`: the embedded default end to end in a subprocess, a saved tiny model in process."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from modeling_sprm.apps.cli import main

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def check_bon_json(out: dict, n: int) -> None:
    assert {"candidates", "best", "majority_answer", "sprm_answer"} <= set(out)
    assert len(out["candidates"]) == n and isinstance(out["best"], int) and 0 <= out["best"] < n
    for c in out["candidates"]:
        assert {"text", "steps", "score", "answer"} <= set(c)
        assert all(set(s) == {"text", "score"} for s in c["steps"])
    assert out["candidates"][out["best"]]["score"] == max(c["score"] for c in out["candidates"])


@pytest.mark.slow
def test_bon_json_on_the_embedded_default():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "modeling_sprm", "bon", "--json", "--question", QUESTION, "--max-new-tokens", "24",
         "--seed", "0"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout
    check_bon_json(json.loads(lines[0]), n=2)  # the default mode is low: N = 2


def test_bon_json_and_table_on_a_saved_model(saved_tiny, capsys):
    main(["bon", "--json", "--model", saved_tiny, "--question", QUESTION, "--num-candidates", "3",
          "--max-new-tokens", "6", "--seed", "1", "--answer-extractor", "gsm8k"])
    out = json.loads(capsys.readouterr().out)
    check_bon_json(out, n=3)
    assert out["ranking"][0] == out["best"] and out["model"] == saved_tiny
    main(["bon", "--model", saved_tiny, "--question", QUESTION, "--mode", "low", "--max-new-tokens", "4"])
    table = capsys.readouterr().out
    assert "best candidate" in table and "SPRM answer" in table


def test_search_json_on_a_saved_model(saved_tiny, capsys):
    main(["search", "--json", "--model", saved_tiny, "--question", QUESTION, "--beam-width", "2",
          "--num-continuations", "2", "--max-steps", "2", "--max-step-tokens", "4", "--max-new-tokens", "8"])
    out = json.loads(capsys.readouterr().out)
    assert out["rounds"] == 2 and 0 < out["generated_tokens"] <= 2 * 2 * 2 * 4
    assert out["candidates"] and isinstance(out["best"], int)


@pytest.mark.parametrize(
    "args, message",
    [
        (["bon", "--num-candidates", "0"], "between 1 and"),
        (["bon", "--num-candidates", "5000"], "between 1 and"),
        (["bon", "--mode", "maximal"], "mode must be one of"),
        (["bon", "--threshold", "2"], "--threshold must be in"),
        (["search", "--beam-width", "0"], "beam_width must be a positive integer"),
    ],
)
def test_bad_arguments_fail_with_a_message(saved_tiny, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--model", saved_tiny, "--question", QUESTION, "--max-new-tokens", "2"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_empty_question_fails_with_a_message(saved_tiny, capsys):
    with pytest.raises(SystemExit):
        main(["bon", "--model", saved_tiny, "--question", "  ", "--max-new-tokens", "2"])
    assert "question is empty" in capsys.readouterr().err


# -- --data: a whole data set, one JSON line per problem --------------------------------------------------------------

PROBLEMS = [
    {"id": "a", "question": "What is 3 + 4?", "answer": "7"},
    {"id": "b", "question": "What is 2 * 5?", "answer": "Double 5.\n#### 10"},
    {"id": "c", "problem": "What is 9 - 1?", "answer": 8},
]


def write_problems(path, rows=PROBLEMS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(
    "command",
    [["bon", "--num-candidates", "3"],
     ["search", "--beam-width", "2", "--num-continuations", "2", "--max-steps", "2", "--max-step-tokens", "3"],
     ["search", "--method", "dvts", "--num-sequences", "4", "--num-continuations", "2", "--max-steps", "2",
      "--max-step-tokens", "3"]],
)
def test_data_writes_one_line_per_problem_and_resumes(saved_tiny, tmp_path, capsys, command):
    data, out = write_problems(tmp_path / "problems.jsonl"), tmp_path / "answers.jsonl"
    run = [*command, "--model", saved_tiny, "--data", data, "--output", str(out), "--max-new-tokens", "6",
           "--seed", "2"]
    main(run)
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in lines] == ["a", "b", "c"]
    assert [d["reference_answer"] for d in lines] == ["7", "10", "8"]
    for d in lines:
        assert set(d["correct"]) == {"sprm", "majority", "weighted"}
        assert d["correct"]["sprm"] == (d["sprm_answer"] is not None and float(d["sprm_answer"]) == float(
            d["reference_answer"]))
        assert d["generated_tokens"] == (sum(c["num_tokens"] for c in d["candidates"]) if command[0] == "bon"
                                         else d["generated_tokens"]) > 0
        if command[0] == "bon":
            check_bon_json(d, n=3)
    accuracy = sum(d["correct"]["sprm"] for d in lines) / 3
    assert summary.startswith("answered 3 problems (3 by this run)") and f"SPRM pick {accuracy:.3f}" in summary

    # Killed while writing problem c: its half line is dropped and c is answered again, as one run would.
    text = out.read_text()
    kept = text.splitlines(keepends=True)
    out.write_text("".join(kept[:2]) + kept[2][:20])
    main(run)
    assert "answered 3 problems (1 by this run)" in capsys.readouterr().err
    assert out.read_text() == text
    # Other settings do not mix into the same file.
    with pytest.raises(SystemExit):
        main([*run[:-1], "3"])
    assert "holds answers made with other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, rows, message",
    [
        (["--question", QUESTION], PROBLEMS, "--question does not go with --data"),
        (["--json"], PROBLEMS, "--json does not go with --data"),
        ([], [{"question": "x?"}], "missing field 'answer'"),
        ([], [PROBLEMS[0], PROBLEMS[0]], "problem ids repeat (e.g. 'a')"),
        (["--limit", "0"], PROBLEMS, "--limit must be >= 1"),
    ],
)
def test_data_bad_input_gives_one_line_errors(saved_tiny, tmp_path, capsys, extra, rows, message):
    data = write_problems(tmp_path / "problems.jsonl", rows)
    with pytest.raises(SystemExit) as exit_info:
        main(["bon", "--model", saved_tiny, "--data", data, "--output", str(tmp_path / "o.jsonl"), *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --question, or --data"),
        (["--question", QUESTION, "--output", "x.jsonl"], "--output applies to --data only"),
        (["--data", "p.jsonl"], "--data needs --output"),
    ],
)
def test_question_or_data(saved_tiny, capsys, args, message):
    with pytest.raises(SystemExit):
        main(["bon", "--model", saved_tiny, *args])
    assert message in capsys.readouterr().err


# -- sprm search --method beam / dvts ---------------------------------------------------------------------------------


def test_search_dvts_json_on_a_saved_model(saved_tiny, capsys):
    # N = 4, M = 2: two independent subtrees of one beam, each finishing one candidate
    main(["search", "--method", "dvts", "--json", "--model", saved_tiny, "--question", QUESTION,
          "--num-sequences", "4", "--num-continuations", "2", "--max-steps", "2", "--max-step-tokens", "4",
          "--max-new-tokens", "8", "--seed", "0"])
    out = json.loads(capsys.readouterr().out)
    assert {"candidates", "best", "sprm_answer", "majority_answer", "weighted_answer", "generated_tokens",
            "rounds"} <= set(out)
    assert 1 <= out["rounds"] <= 2 and 0 < out["generated_tokens"] <= 2 * 4 * 4
    assert sorted(c["subtree"] for c in out["candidates"]) == [0, 1]
    assert out["candidates"][out["best"]]["score"] == max(c["score"] for c in out["candidates"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "dvts"], "--method dvts needs --num_sequences"),
        (["--method", "beam", "--num-sequences", "4", "--beam-width", "2"], "--beam_width applies to --method step"),
        (["--num-sequences", "4"], "--num_sequences applies to --method beam and dvts only"),
        (["--method", "dvts", "--num-sequences", "6", "--num-continuations", "4"],
         "num_sequences (6) must be a multiple of num_continuations (4)"),
    ],
)
def test_search_bad_method_combinations_fail_in_one_line(saved_tiny, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", *args, "--model", saved_tiny, "--question", QUESTION, "--max-new-tokens", "2"])
    err = capsys.readouterr().err  # the budget is checked by the library, after the model's loading bars
    assert exit_info.value.code == 2 and err.count("sprm: error:") == 1 and message in err.strip().splitlines()[-1]


def test_data_writes_the_accuracy_figure_and_its_numbers(saved_tiny, tmp_path, capsys):
    rows = PROBLEMS + [{"id": f"x{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)]
    data, out = write_problems(tmp_path / "problems.jsonl", rows), tmp_path / "answers.jsonl"
    main(["bon", "--num-candidates", "2", "--model", saved_tiny, "--data", data, "--output", str(out),
          "--max-new-tokens", "4", "--seed", "0"])
    assert "answers.summary.json and answers.png" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    summary = json.loads((tmp_path / "answers.summary.json").read_text())
    assert summary["num_problems"] == len(lines) == 6 and summary["settings"] == lines[0]["settings"]
    for pick in ("sprm", "majority", "weighted"):
        cell = summary["accuracy"][pick]
        assert cell["mean"] == sum(d["correct"][pick] for d in lines) / 6
        assert 0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 1
    assert (tmp_path / "answers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bootstrap_mean_interval():
    from modeling_sprm.evaluation.metrics import bootstrap_mean

    constant = bootstrap_mean([1.0] * 5)
    assert constant == {"mean": 1.0, "low": 1.0, "high": 1.0}
    half = bootstrap_mean([0.0, 1.0] * 50, num_resamples=2000)
    assert half["mean"] == 0.5 and 0.38 < half["low"] < 0.45 and 0.55 < half["high"] < 0.62  # +-1.96 * 0.05
    with pytest.raises(ValueError, match="at least one finite value"):
        bootstrap_mean([])


def test_data_output_must_not_be_the_figure(saved_tiny, tmp_path, capsys):
    data = write_problems(tmp_path / "problems.jsonl")
    with pytest.raises(SystemExit):
        main(["bon", "--model", saved_tiny, "--data", data, "--output", str(tmp_path / "answers.png")])
    assert "must not end in .png or .summary.json" in capsys.readouterr().err
