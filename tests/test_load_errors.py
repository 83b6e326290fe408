"""Damaged and incomplete model folders: every model-loading command (score, eval, push) answers with one line on
stderr naming the path and what was expected (exit status 2), never a traceback; non-finite weights are refused
at load (also by `from_pretrained`), and a non-finite score is an error, never ``first_error_step: null``."""

import json
import shutil

import pytest
import torch
from conftest import FIXTURES, make_tiny_backbone
from safetensors.torch import load_file, save_file

from modeling_sprm import SPRMForStepScoring
from modeling_sprm.apps.cli import main
from modeling_sprm.loading import MANIFEST_NAME, ModelLoadError, check_model_folder, write_manifest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTION = "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."


@pytest.fixture(scope="module")
def folders(tmp_path_factory, smollm2_tokenizer):
    """A tiny backbone, a trained-looking head-only SPRM on it, and damaged copies: ``{name: path}``."""
    root = tmp_path_factory.mktemp("load-errors")
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    backbone.save_pretrained(root / "backbone")
    smollm2_tokenizer.save_pretrained(root / "backbone")
    wide = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    wide.config.hidden_size = 32  # a backbone of another hidden size
    wide = type(wide)(wide.config)
    wide.save_pretrained(root / "wide-backbone")
    smollm2_tokenizer.save_pretrained(root / "wide-backbone")

    model = SPRMForStepScoring.from_backbone(str(root / "backbone"))
    model.config.head_training = {"loss": "spr", "trainer": "test"}
    good = root / "good"
    model.save_pretrained(good, head_only=True)
    smollm2_tokenizer.save_pretrained(good)

    def copy(name):
        shutil.copytree(good, root / name)
        return root / name

    truncated = copy("truncated")
    with open(truncated / "model.safetensors", "r+b") as f:
        f.truncate((truncated / "model.safetensors").stat().st_size // 2)
    (copy("bad-config") / "config.json").write_text('{"model_type": "sprm",')
    other = copy("other-backbone")
    config = json.loads((other / "config.json").read_text())
    config["backbone_name_or_path"] = str(root / "wide-backbone")
    (other / "config.json").write_text(json.dumps(config))
    weights = load_file(copy("nan") / "model.safetensors")
    weights["score_head.0.weight"][0, 0] = float("nan")
    save_file(weights, str(root / "nan" / "model.safetensors"), metadata={"format": "pt"})
    # Finite weights whose products overflow: +inf and -inf meet in the last layer and give NaN scores.
    weights = {k: torch.full_like(v, 3e38) for k, v in load_file(copy("huge") / "model.safetensors").items()}
    weights["score_head.3.weight"][:, 1::2] *= -1
    save_file(weights, str(root / "huge" / "model.safetensors"), metadata={"format": "pt"})
    # The output folder of a run killed before its first checkpoint finished: a staging folder, nothing else.
    (root / "killed" / ".staging" / "checkpoint-2").mkdir(parents=True)
    shutil.copy(good / "config.json", root / "killed" / ".staging" / "checkpoint-2")
    # A checkpoint written by an older sprm and killed mid-save: config and weights, no trainer state.
    legacy = root / "legacy-run" / "checkpoint-600"
    shutil.copytree(good, legacy)
    manifested = copy("manifested")
    write_manifest(manifested)
    (manifested / "tokenizer.json").unlink()
    return {p.name: p for p in root.iterdir()}


CASES = {
    "truncated": "model.safetensors",
    "bad-config": "config.json is not valid JSON",
    "other-backbone": "hidden size 32",
    "killed": "has not finished",
    "legacy-run/checkpoint-600": "trainer_state.json",
    "manifested": "missing tokenizer.json",
    "nan": "non-finite",
}


def folder(folders, name):
    first, _, rest = name.partition("/")
    return folders[first] / rest if rest else folders[first]


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]  # progress bars aside
    assert len(lines) == 1 and lines[0].startswith("sprm: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("name", list(CASES))
def test_score_names_the_path_and_the_problem(folders, capsys, name):
    path = folder(folders, name)
    line = one_line_error(capsys, ["score", "--model", str(path), "--question", QUESTION, "--solution", SOLUTION])
    assert str(path) in line and CASES[name] in line


@pytest.mark.parametrize("name", ["truncated", "bad-config", "killed", "nan"])
def test_eval_and_push_name_the_path_and_the_problem(folders, capsys, tmp_path, name):
    path = folder(folders, name)
    line = one_line_error(capsys, ["eval", "--model", str(path), "--data", str(FIXTURES / "processbench"),
                                   "--format", "processbench", "--limit", "1"])
    assert str(path) in line and CASES[name] in line
    line = one_line_error(capsys, ["push", "--repo-id", "me/x", "--model", str(path), "--dry-run", str(tmp_path / "d")])
    assert str(path) in line and CASES[name] in line


def test_good_folder_loads(folders, capsys):
    main(["score", "--model", str(folders["good"]), "--question", QUESTION, "--solution", SOLUTION, "--json"])
    assert len(json.loads(capsys.readouterr().out)["steps"]) == 3


def test_from_pretrained_refuses_non_finite_weights(folders):
    from transformers import AutoModel

    with pytest.raises(ValueError, match="non-finite weights .* in score_head.0.weight"):
        SPRMForStepScoring.from_pretrained(folders["nan"])
    with pytest.raises(ValueError, match="non-finite"):
        AutoModel.from_pretrained(folders["nan"])


def test_a_non_finite_score_is_an_error_and_json_stays_strict(folders, capsys):
    """Finite but huge weights overflow to NaN scores: an error naming the cause, never a bare NaN in --json."""
    line = one_line_error(capsys, ["score", "--model", str(folders["huge"]), "--json", "--question", QUESTION,
                                   "--solution", SOLUTION])
    assert "non-finite score" in line
    line = one_line_error(capsys, ["eval", "--model", str(folders["huge"]), "--json", "--data",
                                   str(FIXTURES / "processbench"), "--format", "processbench", "--limit", "1"])
    assert "non-finite score" in line


def test_push_dry_run_under_a_regular_file(folders, capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line_error(capsys, ["push", "--repo-id", "me/x", "--model", str(folders["good"]),
                                   "--dry-run", str(tmp_path / "file" / "out")])
    assert str(tmp_path / "file") in line


def test_manifest_lists_sizes_and_hashes_and_catches_changes(folders, tmp_path):
    target = shutil.copytree(folders["good"], tmp_path / "m")
    write_manifest(target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {p.name for p in target.iterdir() if p.name != MANIFEST_NAME}
    entry = manifest["files"]["model.safetensors"]
    assert entry["size"] == (target / "model.safetensors").stat().st_size and len(entry["sha256"]) == 64
    check_model_folder(target, hashes=True)
    data = bytearray((target / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    (target / "model.safetensors").write_bytes(bytes(data))
    check_model_folder(target)  # sizes agree
    with pytest.raises(ModelLoadError, match="model.safetensors differs from its sha256"):
        check_model_folder(target, hashes=True)


def test_non_utf8_solution_is_a_clear_error(folders, capsys):
    line = one_line_error(capsys, ["score", "--model", str(folders["good"]), "--question", QUESTION,
                                   "--solution", b"caf\xe9 costs 3.\n\nok.".decode("utf-8", "surrogateescape")])
    assert "--solution" in line and "UTF-8" in line
