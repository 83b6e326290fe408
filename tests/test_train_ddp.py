"""Two CPU processes (torchrun, DDP over gloo) train the same head as one process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, cannot_run, make_tiny_backbone

SCRIPT = ROOT / "tests" / "ddp_train_script.py"


@pytest.mark.parametrize("loss", [["spr"], ["mil", '{"prefixes": true}']], ids=["spr", "mil-prefixes"])
def test_two_processes_train_the_same_head_as_one(smollm2_tokenizer, tmp_path, loss):
    """spr (with class balancing) and a non-spr loss, whose normalisation counts steps of solutions."""
    if shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None:
        cannot_run("torchrun (from torch) is missing: the DDP test did not run")
    backbone_dir = tmp_path / "backbone"
    make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id).save_pretrained(backbone_dir)
    smollm2_tokenizer.save_pretrained(backbone_dir)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    commands = {
        "one": [sys.executable, str(SCRIPT)],
        "two": [torchrun, "--standalone", "--nproc_per_node=2", str(SCRIPT)],
    }
    # Both at once (global batch 8: 2 optimizer steps per epoch over 16 records).
    runs = {
        name: subprocess.Popen(
            [*command, str(backbone_dir), str(tmp_path / name), "8", *loss],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name, command in commands.items()
    }
    for name, run in runs.items():
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, f"{name}:\n{output[-4000:]}"

    one, two = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["global_step"] == two["global_step"] == 8
    assert one["train_batch_size"] == two["train_batch_size"] == 8
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4)
    assert two["losses"][-1] < two["losses"][0]
    heads = [load_file(str(tmp_path / name / "model.safetensors")) for name in ("one", "two")]
    assert set(heads[0]) == {"score_head.0.weight", "score_head.0.bias", "score_head.3.weight", "score_head.3.bias"}
    for key in heads[0]:
        torch.testing.assert_close(heads[1][key], heads[0][key], rtol=1e-5, atol=1e-6)

    from modeling_sprm import SPRMForStepScoring

    loaded = SPRMForStepScoring.from_pretrained(tmp_path / "two")
    assert loaded.config.head_is_trained and loaded.config.head_training["global_steps"] == 8
    assert loaded.config.head_training["loss"] == loss[0]
