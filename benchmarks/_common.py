"""Shared by the benchmark scripts: GSM8K loading, machine facts, JSON output, timing."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
GSM8K_ENV = "SPRM_GSM8K"  # where the scripts find GSM8K's test.jsonl when --gsm8k is not given


def gsm8k_path(path: str | None) -> str:
    """``path``, else ``$SPRM_GSM8K``; a clear error when neither is set."""
    path = path or os.environ.get(GSM8K_ENV)
    if not path:
        raise SystemExit(f"give the GSM8K test.jsonl with --gsm8k PATH (or set ${GSM8K_ENV})")
    return path


def load_gsm8k(path: str | Path, n: int) -> list[dict]:
    """The first ``n`` rows of a GSM8K jsonl file as ``{"question", "steps", "answer"}``: the reference solution's
    lines as steps plus ``"The answer is {answer}."`` (`modeling_sprm.data.load_gsm8k`), the final answer."""
    from modeling_sprm.data import load_gsm8k_problems, load_gsm8k as load_records

    records, problems = load_records(str(path)), load_gsm8k_problems(str(path))
    return [{"question": r["question"], "steps": r["steps"], "answer": p["answer"]} for r, p in zip(records, problems)][:n]


def machine() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def git_state() -> dict:
    """The commit the run is on, and a hash of the uncommitted diff when the tree is not clean (None when clean).

    Where the checkout has no git history (the GPU machine receives a copy of the working tree), the commit comes from
    ``SPRM_GIT_COMMIT`` and the tree is recorded as clean only when ``SPRM_GIT_CLEAN=1`` says so (set by whoever sent
    the tree, from ``git status`` there)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        except OSError:  # no git on this machine
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        clean = os.environ.get("SPRM_GIT_CLEAN") == "1"
        return {"commit": os.environ.get("SPRM_GIT_COMMIT"), "uncommitted_diff_sha256": None if clean else "unknown",
                "source": "SPRM_GIT_COMMIT (no git history on this machine)"}
    diff = git("diff", "HEAD") or ""
    return {
        "commit": commit.strip() or None,
        "uncommitted_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def finished(section: dict) -> dict:
    """Stamp a section's result with the load average at its end (other jobs share this machine's cores)."""
    section["machine"]["load_average_at_end"] = os.getloadavg()
    return section


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")
    return path


class Timer:
    """``with timer: ...`` adds the elapsed wall-clock seconds to ``timer.times`` and this process's CPU seconds
    to ``timer.cpu_times`` (steadier than wall time when other jobs share the cores; with one torch thread the
    process's CPU time is its compute)."""

    def __init__(self):
        self.times: list[float] = []
        self.cpu_times: list[float] = []

    def __enter__(self):
        self._start, self._cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.times.append(time.perf_counter() - self._start)
        self.cpu_times.append(time.process_time() - self._cpu_start)
        return False

    @property
    def total(self) -> float:
        return sum(self.times)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)


README = ROOT / "README.md"


def replace_readme_block(markdown: str, start: str, end: str) -> None:
    """Put ``markdown`` (which begins with ``start`` and ends with ``end``) in place of README.md's generated block."""
    readme = README.read_text()
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md has no {start} ... {end} block to replace")
    head, rest = readme.split(start, 1)
    README.write_text(head + markdown + rest.split(end, 1)[1])
