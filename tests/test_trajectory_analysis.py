"""The trajectory analysis end to end on synthetic job outputs: reference traces graded by the real grader, written
by the GPU job's own writer, with features that carry known signals, so that the heads' numbers must come out a
known way if labels, parts and scores are wired right."""

import gzip
import json
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch

from benchmarks.trajectory import analysis, gpu_job, report
from benchmarks.trajectory.data import make_reference_trace, split_trace
from benchmarks.selfgen.arithmetic import make_problems
from benchmarks.selfgen.common import save_rollout_chunk

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HIDDEN = 16


def synthetic_chunk(split, problems, samples, rng, generator):
    """Graded reference traces; step features: dim 0 says whether the step is right, dim 1 whether its trace's
    answer is right (a signal an outcome-only head can learn), the rest noise."""
    rows, features = [], []
    for index, problem in enumerate(problems):
        for sample in range(samples):
            kind = rng.choices(["clean", "corrected", "carried"], [0.3, 0.4, 0.3])[0]
            text = make_reference_trace(problem, kind, rng).text
            steps, _, _ = split_trace(text)
            row = gpu_job.graded_row(split, index, sample, problem, text, steps, len(text) // 4, False)
            f = torch.randn((len(steps), HIDDEN), generator=generator)
            f[:, 0] += torch.tensor([2.0 if label == "right" else -2.0 for label in row["labels"]])
            f[:, 1] += 1.5 * (2 * row["outcome_label"] - 1)
            rows.append(row)
            features.append(f.half())
    return rows, features


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    work, out = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("out")
    problems = make_problems(60, seed=5)
    rng, generator = random.Random(0), torch.Generator().manual_seed(0)
    for split, chosen, samples in (("test", problems[:20], 8), ("train", problems[20:], 2)):
        rows, features = synthetic_chunk(split, chosen, samples, rng, generator)
        (work / "samples" / split).mkdir(parents=True)
        save_rollout_chunk(work / "samples" / split / "chunk_0000", rows, features)
    record = {  # what gpu_job.main records, with made-up times
        "command": "synthetic", "date": "2026-01-01T00:00:00Z", "started_at": 0.0, "time_budget_s": None,
        "config": {**asdict(gpu_job.SCALES["tiny"]), "scale": "synthetic", "mix": gpu_job.MIX},
        "machine": {"device": "cpu"}, "stages": {"load_s": 0.0, "sft_s": 0.0, "sampling_s": 0.0},
        "sft": {"steps_done": 0, "traces": {"clean": 1}},
        "sampling": {s: {"stopped": None, "chunks": []} for s in gpu_job.SPLITS},
    }
    gpu_job.write_outputs(work, out, record)
    return out


def test_job_outputs_are_four_consistent_files(job_dir):
    assert sorted(p.name for p in job_dir.iterdir()) == sorted(gpu_job.FILES)
    record, splits = analysis.load_job(job_dir)
    assert record["samples"]["test"]["traces"] == 160 and record["samples"]["train"]["traces"] == 80
    assert record["samples"]["train"]["traces_with_corrected_step"] > 0
    assert set(record["files"]) == set(gpu_job.FILES) - {"trajectory_job.json"}
    test = splits["test"]
    assert test.num_problems == 20 and test.features.shape[-1] == HIDDEN
    # the features of each step are the ones written for it: dim 0 tells right steps from wrong ones
    known = test.mask & ~torch.isnan(test.labels)
    right = test.features[..., 0][known & (test.labels == 1)]
    wrong = test.features[..., 0][known & (test.labels == 0)]
    assert right.mean() > 1.5 and wrong.mean() < -1.5
    with gzip.open(job_dir / "trajectory_rows.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    assert first["parts"][0] == "think" and first["parts"][-1] == "response" and first["offset"] == 0


def test_assumptions_break_in_the_thinking_not_in_the_response(job_dir):
    _, splits = analysis.load_job(job_dir)
    found = analysis.assumption_violations(splits["train"])
    think, response = found["think"], found["response"]
    assert think["right_traces_with_a_wrong_step"]["share"] > 0.3  # the corrected traces
    assert response["right_traces_with_a_wrong_step"]["share"] == 0.0
    assert think["steps_whose_outcome_is_not_their_label"]["share"] > 0
    assert response["wrong_traces_without_a_wrong_step"]["share"] == 0.0  # a carried slip shows in the response


@pytest.fixture(scope="module")
def result_file(job_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("results") / "trajectory.json"
    cache = tmp_path_factory.mktemp("cache")
    args = ["--job-dir", str(job_dir), "--out", str(out), "--seeds", "0", "--epochs", "40",
            "--objectives", "outcome_bce", "mil", "--resamples", "200", "--cache-dir", str(cache)]
    analysis.main(args)
    first = out.read_text()
    (cached,) = cache.iterdir()
    assert len(list(cached.glob("*.npy"))) == 2 * len(analysis.CONFIGS) + 1  # one per head and seed
    analysis.main(args)  # from the cache: the same numbers
    assert json.loads(out.read_text())["results"] == json.loads(first)["results"]
    return out


def test_analysis_end_to_end(result_file):
    result = json.loads(result_file.read_text())
    assert result["scale"] == "synthetic"
    results = result["results"]
    assert len(result["methods"]) == 2 * len(analysis.CONFIGS) + 1 and not result["skipped"]
    ceiling = results["step_supervised/span_heads"]
    assert ceiling["step_auroc/think"]["value"] > 0.85 and ceiling["step_auroc/response"]["value"] > 0.85
    # outcome-only heads learn the trace signal: corrected errors (right traces) above carried ones (wrong traces)
    trajectory = results["outcome_bce/span_heads_trajectory"]
    assert trajectory["corrected_vs_carried"]["value"] > 0.8
    assert trajectory["corrected_vs_carried"]["low"] <= trajectory["corrected_vs_carried"]["value"]
    assert trajectory["mean_score/corrected"]["value"] > trajectory["mean_score/carried"]["value"]
    assert 0.3 < results["random_scores"]["corrected_vs_carried"]["value"] < 0.7
    # Best-of-8 by the all-steps score picks right traces; majority vote is a baseline beside it
    assert trajectory["bon@8/all"]["value"] > result["selection_baselines"]["random_pick"]["bon@8"]["value"]
    key = "bon@8: outcome_bce/span_heads_trajectory/all - outcome_bce/think_only/think"
    assert key in result["comparisons"] and "above_zero" in result["comparisons"][key]
    assert set(result["goals"]["trajectory_head_beats_think_only_and_response_only_at_bon8"]) == {"outcome_bce", "mil"}
    assert result["ns"] == [2, 4, 8] and result["commit"]


def test_heads_are_per_part_or_shared():
    split = analysis.make_split(
        [{"steps": ["a", "b"], "parts": ["think", "response"], "labels": ["right", "wrong"], "kinds":
          ["other", "response"], "outcome_label": 1.0, "problem": 0, "offset": 0}] * 3,
        torch.randn(2, 4),
    )
    config = next(c for c in analysis.CONFIGS if c.name == "span_heads")
    heads = analysis.build_heads(config, split, config.loss_parts)
    assert heads["think"] is not heads["response"]
    for head in heads.values():
        head.eval()
    logits = analysis.step_logits(heads, split.features, split.think, split.mask)
    with torch.no_grad():
        assert torch.allclose(logits[:, 0], heads["think"](split.features[:, 0]))
        assert torch.allclose(logits[:, 1], heads["response"](split.features[:, 1]))
    shared = next(c for c in analysis.CONFIGS if c.name == "think_only")
    heads = analysis.build_heads(shared, split, shared.loss_parts)
    assert heads["think"] is heads["response"]
    assert np.isnan(analysis.score_steps(heads, split)).sum() == 0


def test_report_block_table_and_plot(result_file, tmp_path):
    result = json.loads(result_file.read_text())
    block = report.markdown(result)
    assert block.startswith(report.START) and block.endswith(report.END)
    for name in result["results"]:
        assert f"`{name}`" in block
    value = result["results"]["outcome_bce/span_heads_trajectory"]["corrected_vs_carried"]["value"]
    assert f"{value:.3f}" in block  # numbers come from the JSON
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- selfgen:end -->\n\n### Next\n")
    report.write_readme_block(block, readme)
    report.write_readme_block(block, readme)  # the second time it replaces its own block
    text = readme.read_text()
    assert text.count(report.START) == 1 and text.index(report.START) < text.index("### Next")
    report.plot(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="not a result"):
        report.main(["--results", str(result_file), "--write"])
