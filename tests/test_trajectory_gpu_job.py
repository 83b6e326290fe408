"""The trajectory GPU job's mechanics on CPU with a tiny random backbone (SmolLM2's tokenizer): stages, outputs,
resuming, the time budget. (The real backbone at ``--scale tiny`` is the end-to-end check; see gpu_job.py.)"""

import gzip
import json

import pytest
from conftest import make_tiny_backbone
from safetensors.torch import load_file

from benchmarks.trajectory import gpu_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL = gpu_job.Scale(sft_problems=16, sft_steps=2, sft_batch_size=2, lora_rank=4, learning_rate=1e-3,
                      test_problems=2, test_samples=8, train_problems=3, train_samples=2, max_new_tokens=24,
                      generate_batch_size=8)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, smollm2_tokenizer):
    path = tmp_path_factory.mktemp("tiny-backbone")
    make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id).save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return str(path)


def run(backbone, work, out, *extra):
    gpu_job.main(["--out", str(out), "--backbone", backbone, "--device", "cpu", "--scale", "tiny",
                  "--work-dir", str(work), *extra])
    return json.loads((out / "trajectory_job.json").read_text())


def test_job_writes_four_files_and_resumes(backbone, tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_job.SCALES, "tiny", SMALL)
    work, out = tmp_path / "work", tmp_path / "out"
    record = run(backbone, work, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu_job.FILES)
    assert record["sft"]["steps_done"] == 2 and record["sft"]["traces"]["corrected"] > 0
    assert [len(record["sampling"][s]["chunks"]) for s in ("test", "train")] == [2, 1]  # 1 and 4 problems a call
    with gzip.open(out / "trajectory_rows.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    assert sum(r["split"] == "test" for r in rows) == 16 and sum(r["split"] == "train" for r in rows) == 6
    for split in ("test", "train"):
        chosen = [r for r in rows if r["split"] == split]
        features = load_file(str(out / f"trajectory_{split}.safetensors"))["features"]
        assert features.shape == (sum(len(r["steps"]) for r in chosen), 64)
        assert [r["offset"] for r in chosen] == [sum(len(c["steps"]) for c in chosen[:i]) for i in range(len(chosen))]
        for r in chosen:
            assert len(r["parts"]) == len(r["labels"]) == len(r["kinds"]) == len(r["steps"])
    assert record["files"]["trajectory_test.safetensors"] == (out / "trajectory_test.safetensors").stat().st_size

    chunks = {p: p.stat().st_mtime_ns for p in (work / "samples").rglob("chunk_*.jsonl")}
    again = run(backbone, work, out)
    assert again["sft"]["reused"] and again["stages"]["sft_s"] == 0.0
    assert {p: p.stat().st_mtime_ns for p in (work / "samples").rglob("chunk_*.jsonl")} == chunks  # nothing resampled
    with gzip.open(out / "trajectory_rows.jsonl.gz", "rt") as f:
        assert [json.loads(line)["text"] for line in f] == [r["text"] for r in rows]

    monkeypatch.setitem(gpu_job.SCALES, "tiny", gpu_job.Scale(**{**SMALL.__dict__, "test_problems": 3}))
    with pytest.raises(SystemExit, match="another configuration"):
        run(backbone, work, out)


def test_time_budget_cuts_sft_and_sampling_and_says_so(backbone, tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_job.SCALES, "tiny", SMALL)
    record = run(backbone, tmp_path / "work", tmp_path / "out", "--time-budget-s", "0.001")
    assert record["sft"]["steps_done"] == 0 and record["sft"]["stopped_by_time_budget"]
    for split in ("test", "train"):
        assert record["sampling"][split]["stopped"].startswith("time budget")
        assert record["samples"][split]["traces"] == 0


def test_bad_backbone_and_device_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="expected a causal-LM folder"):
        gpu_job.main(["--out", str(tmp_path / "out"), "--backbone", str(tmp_path / "nothing"), "--device", "cpu",
                      "--work-dir", str(tmp_path / "work")])


def test_features_of_both_parts_are_captured_at_their_read_positions(smollm2_tokenizer):
    """A rollout that already holds a self-revising trace (all but its last tokens) and samples on: every step of
    both parts gets a captured feature, equal to the feature layer of a plain forward pass at its read position."""
    import random

    import torch

    from benchmarks.trajectory.data import make_reference_trace
    from benchmarks.selfgen.arithmetic import Problem
    from modeling_sprm.generation import SamplingConfig, generate_rollouts, prompt_rollout
    from modeling_sprm.modeling_sprm import SPRMForStepScoring
    from benchmarks.selfgen.common import rollout_step_features
    from modeling_sprm.steps import StepRules

    tok = smollm2_tokenizer
    model = SPRMForStepScoring.from_backbone(make_tiny_backbone(len(tok), tok.pad_token_id), score_span="both")
    problem = Problem("Sam has 12 apples. Then Sam gets 5 more apples. How many apples does Sam have now?", 12,
                      [("+", 5), ("-", 3)])
    text = make_reference_trace(problem, "corrected", random.Random(1)).text
    rollout = prompt_rollout(model, tok, problem.question)
    rollout.token_ids = tok(text, add_special_tokens=False)["input_ids"][:-2]
    torch.manual_seed(0)
    (rollout,) = generate_rollouts(model, tok, [rollout], SamplingConfig(max_new_tokens=3, temperature=1.0))
    trace = rollout.trace(StepRules.from_config(model.config))
    parts = [s.part for s in trace.steps]
    assert parts.count("think") >= 5 and parts.count("response") >= 2
    captured = rollout_step_features(rollout, trace, 64)
    with torch.no_grad():
        hidden = model.backbone(torch.tensor([trace.input_ids]), output_hidden_states=True).hidden_states[-2][0]
    assert torch.allclose(captured, hidden[trace.positions], atol=1e-4)
