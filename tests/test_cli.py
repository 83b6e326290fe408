"""`sprm score` end to end in a subprocess, on the embedded default and on a saved model."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTION = "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."


def sprm(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "modeling_sprm", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow
def test_score_json_on_the_embedded_default(smollm2_path):
    out = sprm("score", "--json", "--question", QUESTION, "--solution", SOLUTION)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout
    result = json.loads(lines[0])
    assert set(result) >= {"steps", "score", "first_error_step", "model"}
    assert [s["text"] for s in result["steps"]] == ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]
    assert all(0.0 <= s["score"] <= 1.0 for s in result["steps"])
    assert 0.0 <= result["score"] <= 1.0
    assert "untrained" not in out.stderr  # a trained head ships with the package


def test_steps_json_and_table(saved_tiny, tmp_path):
    steps_file = tmp_path / "steps.json"
    steps_file.write_text(json.dumps(["Tom starts with 3 apples", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]))
    from_steps = sprm("score", "--json", "--model", str(saved_tiny), "--question", QUESTION, "--steps-json", str(steps_file))
    from_text = sprm("score", "--json", "--model", str(saved_tiny), "--question", QUESTION, "--solution", SOLUTION)
    assert from_steps.returncode == 0 and from_text.returncode == 0, from_steps.stderr + from_text.stderr
    a, b = json.loads(from_steps.stdout), json.loads(from_text.stdout)
    assert [s["score"] for s in a["steps"]] == pytest.approx([s["score"] for s in b["steps"]], abs=1e-6)
    assert a["model"] == str(saved_tiny)

    solution_file = tmp_path / "solution.txt"
    solution_file.write_text(SOLUTION, encoding="utf-8")
    table = sprm("score", "--model", str(saved_tiny), "--question", QUESTION, "--solution-file", str(solution_file),
                 "--threshold", "1.0")
    assert table.returncode == 0, table.stderr
    assert "solution score:" in table.stdout and "<- first predicted error" in table.stdout
    assert "untrained" in table.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--solution", "   "], "solution is empty"),
        (["--solution-file", "/nonexistent/solution.txt"], "cannot read --solution-file"),
        (["--solution", "x", "--threshold", "1.5"], "--threshold must be in [0, 1]"),
    ],
)
def test_bad_input_exits_2_with_a_message(saved_tiny, args, message):
    out = sprm("score", "--model", str(saved_tiny), "--question", QUESTION, *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_steps_json(saved_tiny, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = sprm("score", "--model", str(saved_tiny), "--question", QUESTION, "--steps-json", str(bad))
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    bad.write_text(json.dumps({"steps": ["a"]}))
    out = sprm("score", "--model", str(saved_tiny), "--question", QUESTION, "--steps-json", str(bad))
    assert out.returncode == 2 and "list of strings" in out.stderr


def test_a_config_file_gives_the_flags_and_the_command_line_wins(saved_tiny, tmp_path):
    config = tmp_path / "score.yaml"
    config.write_text(f"model: {saved_tiny}\nquestion: {json.dumps(QUESTION)}\nsolution: {json.dumps(SOLUTION)}\n"
                      "json: true\nthreshold: 0.0\n")
    from_file = sprm("score", str(config))
    assert from_file.returncode == 0, from_file.stderr
    result = json.loads(from_file.stdout)
    assert result["model"] == str(saved_tiny) and result["first_error_step"] is None  # threshold 0: no error
    overridden = sprm("score", "--config", str(config), "--threshold", "1.0")
    assert overridden.returncode == 0, overridden.stderr
    assert json.loads(overridden.stdout)["first_error_step"] == 0
    config.write_text("quesiton: typo\n")
    bad = sprm("score", str(config), "--solution", "x")
    assert bad.returncode == 2 and "unknown keys ['quesiton']" in bad.stderr and "Traceback" not in bad.stderr


def test_help_lists_the_commands_and_the_shared_model_flags():
    top = sprm("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("score", "bon", "search", "eval", "train"))
    score = sprm("score", "--help")
    for flag in ("--solution-file", "--steps-json", "--quantization", "--device", "--dtype", "--device_map", "--config"):
        assert flag in score.stdout, flag
    assert sprm("nope").returncode == 2
