"""`sprm train` end to end: data fixture -> head-only checkpoint -> `sprm score --model DIR` uses it."""

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT
from modeling_sprm.apps.cli import main

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTION = "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."
pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = ["--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--disable_tqdm", "true"]


def sprm(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "modeling_sprm", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)



def test_train_then_score_then_resume(tiny_backbone, tmp_path, capsys):
    out = tmp_path / "head"
    train = sprm("train", "--data", str(FIXTURES / "processbench"), "--format", "processbench", "--output", str(out),
                 "--model", str(tiny_backbone), "--eval-fraction", "0.25", "--save_steps", "2", *QUICK)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Loaded 24 records" in train.stdout and "Held out 6" in train.stdout
    assert f"sprm score --model {out}" in train.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["head_only"] and config["head_training"]["loss"] == "spr"
    assert config["head_training"]["data"]["format"] == "processbench" and config["head_training"]["global_steps"] == 6
    log = json.loads((out / "training_log.json").read_text())
    assert [e["epoch"] for e in log["log_history"] if "eval_score_gap" in e][:2] == [1.0, 2.0]  # evaluated each epoch
    assert (out / "score_curves.png").is_file() and (out / "checkpoint-6").is_dir()

    main(["score", "--model", str(out), "--json", "--question", QUESTION, "--solution", SOLUTION])
    captured = capsys.readouterr()
    assert "untrained" not in captured.err
    result = json.loads(captured.out)
    assert len(result["steps"]) == 3 and 0 <= result["score"] <= 1

    # Resume from the last Trainer checkpoint and train two epochs more (in-process, the same code path).
    main(["train", "--data", str(FIXTURES / "processbench"), "--format", "processbench", "--output", str(out),
          "--model", str(tiny_backbone), "--eval-fraction", "0.25", "--resume", *QUICK[:1], "4", *QUICK[2:]])
    assert json.loads((out / "config.json").read_text())["head_training"]["global_steps"] == 12


def test_train_on_step_labels_from_trl_rows(tiny_backbone, tmp_path, capsys):
    out = tmp_path / "step"
    main(["train", "--data", str(FIXTURES / "trl" / "stepwise.jsonl"), "--format", "trl", "--labels", "step",
          "--output", str(out), "--model", str(tiny_backbone), "--save_strategy", "no", *QUICK])
    assert "'step_bce' loss (step labels)" in capsys.readouterr().out
    training = json.loads((out / "config.json").read_text())["head_training"]
    assert training["trainer"] == "StepSupervisedTrainer" and training["labels"] == "step"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "processbench", "--data", "/no/such/folder"], "/no/such/folder"),
        (["--format", "processbench", "--loss", "step_bce"], "trains on outcome labels"),
        (["--format", "processbench", "--lm_loss_weight", "1"], "needs --unfreeze_backbone"),
        (["--format", "nope"], "invalid choice"),
    ],
)
def test_bad_arguments_give_clear_errors(tiny_backbone, tmp_path, capsys, args, message):
    full = ["train", "--data", str(FIXTURES / "processbench"), "--output", str(tmp_path / "x"),
            "--model", str(tiny_backbone), *args]
    with pytest.raises(SystemExit) as exit_info:
        main(full)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_help_lists_the_sprm_and_trainer_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--data", "--format", "--labels", "--loss", "--spr_threshold", "--spr-warmup-steps",
                 "--unfreeze-backbone", "--feature-grad-scale", "--lm-loss-weight", "--learning_rate", "--resume"):
        assert flag in text, flag


@pytest.mark.slow
def test_train_on_the_real_backbone_then_score(smollm2_path, tmp_path, capsys):
    """The embedded SmolLM2-135M backbone (the default --model), a few ProcessBench records, one epoch."""
    out = tmp_path / "smollm2-head"
    main(["train", "--data", str(FIXTURES / "processbench"), "--format", "processbench", "--output", str(out),
          "--limit", "6", "--max_length", "384", "--num_train_epochs", "1", "--save_strategy", "no",
          "--disable_tqdm", "true"])
    config = json.loads((out / "config.json").read_text())
    assert config["backbone_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and config["head_only"]
    assert (out / "model.safetensors").stat().st_size < 10_000_000  # 2 * 576 * 1152 floats, not 135M
    capsys.readouterr()
    main(["score", "--model", str(out), "--json", "--question", QUESTION, "--solution", SOLUTION])
    captured = capsys.readouterr()
    assert "untrained" not in captured.err and len(json.loads(captured.out)["steps"]) == 3
