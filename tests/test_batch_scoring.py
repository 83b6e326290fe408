"""`sprm score --data`: every solution of a data set into a JSON-lines file; resumable after an interruption; the
same file from 1 and from 2 processes (torchrun, gloo on CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT

from modeling_sprm.evaluation import batch

DATA = str(FIXTURES / "processbench")  # 24 solutions in 4 groups


def sprm_score(args: list[str], torchrun: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    # One torch thread per process in both arms: CPU kernels then reduce in the same order.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
                   "-m", "modeling_sprm.apps.cli", "score", *args]
    else:
        command = [sys.executable, "-m", "modeling_sprm", "score", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def one_process(saved_tiny, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("one") / "scores.jsonl"
    run = sprm_score(["--model", saved_tiny, "--data", DATA, "--format", "processbench", "--batch-size", "3",
                      "--output", str(output)])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "wrote 24 scored solutions" in run.stderr
    return output


def test_one_line_per_solution_in_input_order_with_the_score_json_object(one_process, saved_tiny):
    from modeling_sprm.data import load_records

    records = load_records(DATA, "processbench")
    lines = [json.loads(line) for line in one_process.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in records]
    assert set(lines[0]) == {"id", "steps", "score", "first_error_step", "model", "truncated", "no_steps", "unscored"}
    assert all(len(line["steps"]) == len(r["steps"]) for line, r in zip(lines, records))
    assert not (one_process.parent / "scores.jsonl.parts").exists()  # parts merged and removed

    # the same numbers as `sprm score --json` on one of them (a batch of one vs a padded batch: float noise only)
    one = sprm_score(["--model", saved_tiny, "--json", "--question", records[5]["question"], "--steps-json",
                      str(_write(one_process.parent / "steps.json", records[5]["steps"]))])
    assert one.returncode == 0, one.stderr[-2000:]
    single = json.loads(one.stdout)
    assert [s["score"] for s in single["steps"]] == pytest.approx([s["score"] for s in lines[5]["steps"]], abs=1e-5)


def _write(path: Path, value) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_two_processes_write_the_same_file(one_process, saved_tiny, tmp_path):
    output = tmp_path / "scores.jsonl"
    run = sprm_score(["--model", saved_tiny, "--data", DATA, "--format", "processbench", "--batch-size", "3",
                      "--output", str(output)], torchrun=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "on process 0 of 2" in run.stderr
    assert output.read_bytes() == one_process.read_bytes()


def test_an_interrupted_run_resumes_to_the_same_file(one_process, saved_tiny, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from modeling_sprm.data import load_records
    from modeling_sprm.evaluation.report import scoring_pipeline

    import torch

    records = load_records(DATA, "processbench")
    output = tmp_path / "scores.jsonl"
    scorer = scoring_pipeline(AutoModel.from_pretrained(saved_tiny), AutoTokenizer.from_pretrained(saved_tiny))

    def stop_after_three_batches(scored: int) -> None:
        if scored >= 9:
            raise KeyboardInterrupt

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(KeyboardInterrupt):
            batch.score_shard(scorer, records, output, saved_tiny, batch_size=3, progress=False,
                              on_batch=stop_after_three_batches)
    finally:
        torch.set_num_threads(threads)
    part = tmp_path / "scores.jsonl.parts" / "rank-0-of-1.jsonl"
    assert len(part.read_text().splitlines()) == 9 and not output.exists()
    with part.open("a") as handle:  # a kill in the middle of a write leaves a torn line behind
        handle.write('{"id": "gsm8k-0", "steps": [')

    run = sprm_score(["--model", saved_tiny, "--data", DATA, "--format", "processbench", "--batch-size", "3",
                      "--output", str(output)])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(15 scored by this run)" in run.stderr
    assert output.read_bytes() == one_process.read_bytes()
    again = sprm_score(["--model", saved_tiny, "--data", DATA, "--format", "processbench", "--batch-size", "3",
                        "--output", str(output)])  # a finished file: nothing left to do, unchanged
    assert again.returncode == 0 and "(0 scored by this run)" in again.stderr
    assert output.read_bytes() == one_process.read_bytes()


def test_batches_do_not_depend_on_the_number_of_processes_or_what_is_done():
    records = [{"id": str(i), "question": "q" * (i % 5 + 1), "steps": ["s" * i], "solution": None} for i in range(10)]
    batches = batch.batches_by_length(records, 3)
    assert sorted(i for b in batches for i in b) == list(range(10)) and [len(b) for b in batches] == [3, 3, 3, 1]
    lengths = [[batch.record_length(records[i]) for i in b] for b in batches]
    assert all(max(a) <= min(b) for a, b in zip(lengths, lengths[1:]))  # similar lengths share a batch
    assert batch.batches_by_length(records, 3) == batches  # a function of the input alone


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "processbench"], "--data needs --format and --output"),
        (["--format", "processbench", "--output", "o.jsonl", "--question", "q"], "--question does not go with --data"),
        (["--format", "outcome", "--output", "o.jsonl", "--split", "x"], "one file, without splits"),
        (["--format", "processbench", "--output", "/nonexistent/dir/o.jsonl"], "must be a file in an existing folder"),
    ],
)
def test_bad_batch_arguments_exit_2_with_a_message(saved_tiny, tmp_path, args, message):
    data = DATA if "processbench" in args else str(FIXTURES / "outcome" / "rollouts.jsonl")
    run = sprm_score(["--model", saved_tiny, "--data", data, *[a.replace("o.jsonl", str(tmp_path / "o.jsonl"))
                                                                 if a == "o.jsonl" else a for a in args]])
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]


def test_duplicate_ids_are_refused(tmp_path):
    records = [{"id": "a", "question": "q", "steps": ["s"], "solution": None}] * 2
    with pytest.raises(ValueError, match="record id 'a' appears more than once"):
        batch.score_shard(None, records, tmp_path / "o.jsonl", "m", progress=False)


def test_a_file_this_command_did_not_write_is_not_resumed_into(tmp_path):
    output = tmp_path / "o.jsonl"
    output.write_text("hello\n")
    with pytest.raises(ValueError, match="not a scored record"):
        batch.done_lines(output)
