"""`sprm train`'s output folder: checkpoints appear only when complete and record what they hold (a manifest);
`--resume` takes the newest complete one and says which; one output folder holds one run (`--overwrite` to start
afresh); an empty training file is an error that leaves no folder behind."""

import json

import pytest
from conftest import FIXTURES

from modeling_sprm.apps.cli import main
from modeling_sprm.loading import MANIFEST_NAME, STAGING_DIR, check_model_folder, checkpoint_problems

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = ["--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--report_to", "none"]


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return tmp_path_factory.mktemp("features")  # the backbone runs once for the whole module


def train(tiny_backbone, features, out, *extra, data=FIXTURES / "processbench", format="processbench"):
    main(["train", "--data", str(data), "--format", format, "--output", str(out), "--model", str(tiny_backbone),
          "--feature_cache_dir", str(features), *QUICK, *extra])


def global_steps(folder) -> int:
    return json.loads((folder / "config.json").read_text())["head_training"]["global_steps"]


def test_checkpoints_are_complete_and_resume_takes_the_newest_complete_one(tiny_backbone, features, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_backbone, features, out, "--num_train_epochs", "2", "--save_steps", "2")  # 24 records: 6 steps
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    for folder in (out, out / "checkpoint-2", out / "checkpoint-4", out / "checkpoint-6"):
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        assert "model.safetensors" in manifest["files"] and "config.json" in manifest["files"]
        check_model_folder(folder, hashes=True)
    listed = json.loads((out / "checkpoint-6" / MANIFEST_NAME).read_text())["files"]
    assert {"trainer_state.json", "optimizer.pt", "rng_state.pth"} <= set(listed)
    assert checkpoint_problems(out / "checkpoint-6", hashes=True) == []
    assert not (out / STAGING_DIR).exists()

    (out / "checkpoint-6" / "optimizer.pt").unlink()  # damaged: the newest complete one is checkpoint-4
    capsys.readouterr()
    train(tiny_backbone, features, out, "--num_train_epochs", "3", "--save_steps", "2", "--resume")
    printed = capsys.readouterr().out
    assert f"Resuming from {out / 'checkpoint-4'}" in printed
    assert f"skipped {out / 'checkpoint-6'} (missing optimizer.pt)" in printed
    assert global_steps(out) == 9

    # --resume_from_checkpoint (the Trainer's flag) works too.
    train(tiny_backbone, features, out, "--num_train_epochs", "4", "--save_steps", "2",
          "--resume_from_checkpoint", str(out / "checkpoint-8"))
    assert f"Resuming from {out / 'checkpoint-8'}" in capsys.readouterr().out and global_steps(out) == 12


def test_one_output_folder_one_run(tiny_backbone, features, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_backbone, features, out, "--num_train_epochs", "1", "--save_steps", "1")
    assert (out / "checkpoint-3").is_dir()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_backbone, features, out, "--num_train_epochs", "1", "--save_strategy", "no")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and str(out) in err and "--resume" in err and "--overwrite" in err
    assert (out / "checkpoint-3").is_dir()  # untouched

    train(tiny_backbone, features, out, "--num_train_epochs", "1", "--save_strategy", "no", "--overwrite")
    assert not any(p.name.startswith("checkpoint-") for p in out.iterdir())  # the old run's checkpoints are gone
    assert global_steps(out) == 3

    with pytest.raises(SystemExit):
        train(tiny_backbone, features, tmp_path / "fresh", "--resume")
    assert "no complete checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(tiny_backbone, features, out, "--resume", "--overwrite")
    assert "--resume and --overwrite" in capsys.readouterr().err


def test_an_empty_training_file_is_an_error_and_leaves_no_folder(tiny_backbone, features, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        train(tiny_backbone, features, tmp_path / "out", data=empty, format="outcome")
    assert exit_info.value.code == 2 and f"{empty} holds no records" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
