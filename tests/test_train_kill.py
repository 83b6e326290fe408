"""Fault test: `sprm train` killed with SIGKILL in the middle of a checkpoint save, then `--resume`, ends with the
same head as an uninterrupted run of the same seed. The kill is timed by the save itself: the test polls for the
checkpoint's staging folder and kills the process as soon as it appears."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FIXTURES, ROOT
from safetensors.torch import load_file

from modeling_sprm.loading import STAGING_DIR


def sprm_train(tiny_backbone, features, out, *extra) -> list[str]:
    return [sys.executable, "-m", "modeling_sprm", "train", "--data", str(FIXTURES / "processbench"),
            "--format", "processbench", "--model", str(tiny_backbone), "--feature_cache_dir", str(features),
            "--output", str(out), "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
            "--save_steps", "2", "--seed", "3", "--disable_tqdm", "true", "--report_to", "none", *extra]


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_sigkill_during_a_checkpoint_save_then_resume_gives_the_uninterrupted_head(tiny_backbone, tmp_path):
    features = tmp_path / "features"
    run(sprm_train(tiny_backbone, features, tmp_path / "uninterrupted"))  # 24 records: 6 steps, saves at 2, 4, 6

    out = tmp_path / "killed"
    staged = out / STAGING_DIR / "checkpoint-4"
    process = subprocess.Popen(sprm_train(tiny_backbone, features, out), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not staged.exists():  # the save of checkpoint-4 has begun
        if process.poll() is not None:
            pytest.fail("the run ended before its second checkpoint save: " + process.stderr.read().decode()[-2000:])
        assert time.monotonic() < deadline, "no checkpoint save within 300 s"
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert staged.is_dir() and not (out / "checkpoint-4").exists()  # killed mid-save: nothing half-written in sight
    assert (out / "checkpoint-2").is_dir() and not (out / "model.safetensors").exists()

    resumed = run(sprm_train(tiny_backbone, features, out, "--resume"))
    assert f"Resuming from {out / 'checkpoint-2'}, the newest complete checkpoint" in resumed.stdout
    assert not (out / STAGING_DIR).exists() and (out / "checkpoint-4").is_dir()
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    found = load_file(out / "model.safetensors")
    assert expected.keys() == found.keys()
    for key in expected:
        torch.testing.assert_close(found[key], expected[key], rtol=1e-5, atol=1e-6)
