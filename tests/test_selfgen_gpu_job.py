"""The loop's GPU job (benchmarks/selfgen/gpu_job.py) end to end at --scale tiny on CPU, with a tiny random
backbone: every stage runs, the outputs are the compact files the device tool can return, a rerun resumes without
recomputing, and a spent time budget still leaves readable outputs."""

import json
import os
import signal

import pytest
import torch
from conftest import make_tiny_backbone

from benchmarks.selfgen import gpu_job, power, power_report
from benchmarks.selfgen.power import load_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory, smollm2_tokenizer) -> str:
    path = tmp_path_factory.mktemp("tiny-backbone")
    make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return str(path)


def run(out, backbone, *extra):
    gpu_job.main(["--out", str(out), "--backbone", backbone, "--scale", "tiny", "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def job_output(tiny_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "out"
    run(out, tiny_backbone)
    return out


def test_every_stage_runs_and_writes_compact_outputs_then_resumes(job_output, tiny_backbone):
    out = job_output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["features-0.safetensors", "manifest.json", "rollouts.jsonl", "search.jsonl", "weights.safetensors"]
    assert all((out / f).stat().st_size < gpu_job.SHARD_BYTES for f in files)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: v["status"] for k, v in manifest["stages"].items()} == {
        "policy": "done",
        "sample_train": "done",
        "sample_test": "done",
        "mc": "done",
        "search": "done",
        "joint": "done",
    }

    tiny = gpu_job.SCALES["tiny"]
    _, rows, search = load_job(out)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    assert len(train) == tiny["train_problems"] * tiny["train_samples"]
    assert len(test) == tiny["test_problems"] * tiny["test_samples"]
    for row in rows:
        assert row["step_features"].shape == (len(row["steps"]), 64) and len(row["step_labels"]) == len(row["steps"])
    for row in train:
        assert (
            len(row["mc_soft"]) == len(row["mc_hard"]) == len(row["steps"])
            and row["mc_rollouts"] == tiny["mc_rollouts"]
        )
    for row in test:
        assert set(row["joint_step_scores"]) == {"frozen", "joint", "joint_lm"}
    configs = {(r["head"], r["method"], r["n"]) for r in search}
    assert configs == {(h, m, n) for h in gpu_job.SEARCH_HEADS for m in ("beam", "dvts") for n in tiny["search_ns"]}
    assert len(search) == len(configs) * tiny["search_problems"]
    assert all(r.get("same_as") == "beam" for r in search if r["method"] == "dvts" and r["n"] <= gpu_job.CONTINUATIONS)

    before = {f: (out / f).read_bytes() for f in ("rollouts.jsonl", "search.jsonl", "features-0.safetensors")}
    run(out, tiny_backbone)  # everything is done: nothing is sampled or trained again
    assert {f: (out / f).read_bytes() for f in before} == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["policy"]["source"].startswith("the adapter a previous run")


def test_a_spent_budget_still_leaves_readable_outputs(tiny_backbone, tmp_path):
    out = tmp_path / "out"
    run(out, tiny_backbone, "--time-budget-s", "0")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["policy"]["status"] == "done"  # the policy stage has no deadline
    assert manifest["stages"]["sample_train"] == {
        "status": "partial",
        "problems": 0,
        "samples_per_problem": 3,
        "seconds": 0.0,
        "generated_tokens_this_run": 0,
    }
    assert (out / "rollouts.jsonl").read_text() == "" and (out / "weights.safetensors").is_file()


def test_feature_shards_join_up(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_job, "SHARD_BYTES", 3 * 8 * 2)  # three float16 rows of width 8 per shard
    rows = [
        {"split": "test", "problem": p, "sample": 0, "step_features": torch.randn(n, 8).half()}
        for p, n in enumerate([2, 0, 5])
    ]
    gpu_job.write_outputs(tmp_path, tmp_path, {}, rows, [], {})
    assert sorted(p.name for p in tmp_path.glob("features-*")) == [
        "features-0.safetensors",
        "features-1.safetensors",
        "features-2.safetensors",
    ]
    assert torch.equal(gpu_job.load_features(tmp_path), torch.cat([r["step_features"] for r in rows]))
    (tmp_path / "features-1.safetensors").unlink()
    with pytest.raises(ValueError, match="do not join up"):
        gpu_job.load_features(tmp_path)


def test_the_analysis_reads_the_outputs_and_the_report_renders(job_output, tmp_path):
    result_path = tmp_path / "power.json"
    power.main(["--job", str(job_output), "--sizes", "2", "3", "--seeds", "0", "--bootstrap", "20",
                "--cache", str(tmp_path / "cache"), "--out", str(result_path)])
    result = json.loads(result_path.read_text())
    assert result["sizes"] == [2, 3] and result["test_problems"] == 2 and result["samples_per_test_problem"] == 4
    assert set(result["curve"]) == set(power.METHODS) | {"position_only", "random"}
    assert set(result["joint"]["arms"]) == {"frozen", "joint", "joint_lm"}
    assert {c["search"] for c in result["search_vs_bon"]} == {f"{m}:{h}" for m in ("beam", "dvts")
                                                             for h in gpu_job.SEARCH_HEADS}
    markdown = power_report.section(result)
    assert "Self-supervision vs Monte-Carlo labels vs human-quality labels" in markdown
    power_report.plot(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_sigterm_stops_the_stage_and_writes_what_is_there(tiny_backbone, tmp_path, monkeypatch):
    # what a timeout on the device machine does (gpu_carry.sh runs the job under `timeout -s TERM`): here the
    # signal comes while the test problems are sampled
    sample_chunk = gpu_job.sample_chunk

    def signalling_sample_chunk(*args, **kwargs):
        if args[-1] == "test":
            os.kill(os.getpid(), signal.SIGTERM)
        return sample_chunk(*args, **kwargs)

    monkeypatch.setattr(gpu_job, "sample_chunk", signalling_sample_chunk)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        run(tmp_path / "out", tiny_backbone)
    finally:
        signal.signal(signal.SIGTERM, handler)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stopped_by"] == "SIGTERM"
    assert {k: v["status"] for k, v in manifest["stages"].items()} == {
        "policy": "done", "sample_train": "done", "sample_test": gpu_job.STOPPED}
    _, rows, _ = load_job(tmp_path / "out")
    assert len(rows) == gpu_job.SCALES["tiny"]["train_problems"] * gpu_job.SCALES["tiny"]["train_samples"]
