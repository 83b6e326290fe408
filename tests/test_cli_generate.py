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
