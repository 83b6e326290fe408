"""How fast the ``sprm`` command starts: ``sprm --help`` and ``sprm score --help``, each in a fresh process, several
runs, median wall time (goal: under 2 s, without importing torch).

    python -m benchmarks.cli_startup [--runs 7]    # -> benchmarks/results/cli_startup.json

Both ways in are measured: the ``sprm`` console script next to this Python (when installed) and
``python -m modeling_sprm``. For comparison, the same run times ``import modeling_sprm`` in a library process (which
registers the model with transformers, importing torch): what every ``sprm`` start paid before the CLI left it out. This checkout's package is the one measured (``PYTHONPATH`` is set to the repository
root). Whether torch (or transformers) was imported is read from ``python -X importtime``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import ROOT, git_state, machine, write_result

COMMANDS = {"sprm --help": ["--help"], "sprm score --help": ["score", "--help"]}
GOAL_SECONDS = 2.0


def entry_points() -> dict[str, list[str]]:
    """The ways to start the command: the console script (if installed next to this Python) and ``-m``."""
    found = {"python -m modeling_sprm": [sys.executable, "-m", "modeling_sprm"]}
    script = Path(sys.executable).with_name("sprm")
    if script.is_file() or shutil.which("sprm"):
        found["sprm console script"] = [str(script if script.is_file() else shutil.which("sprm"))]
    return found


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_once(command: list[str], expect_usage: bool = True) -> float:
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=ROOT)
    seconds = time.perf_counter() - start
    if out.returncode != 0 or (expect_usage and "usage:" not in out.stdout):
        raise SystemExit(f"{' '.join(command)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return seconds


def imported_heavy_modules(arguments: list[str]) -> list[str]:
    """Top-level packages among torch / transformers / gradio that ``python -m modeling_sprm ARGS`` imports."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "modeling_sprm", *arguments],
                         capture_output=True, text=True, env=environment(), cwd=ROOT)
    names = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return sorted(name for name in ("torch", "transformers", "gradio", "numpy") if name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per command and entry point")
    args = parser.parse_args()
    facts = machine()  # with the load average at the start
    results = {}
    for label, arguments in COMMANDS.items():
        entry = {"imports": imported_heavy_modules(arguments)}
        for way, prefix in entry_points().items():
            times = [run_once(prefix + arguments) for _ in range(args.runs)]
            entry[way] = {
                "median_seconds": round(statistics.median(times), 3),
                "min_seconds": round(min(times), 3),
                "max_seconds": round(max(times), 3),
                "runs": len(times),
            }
        medians = [v["median_seconds"] for k, v in entry.items() if k != "imports"]
        entry["goal_met"] = max(medians) < GOAL_SECONDS and not {"torch", "transformers"} & set(entry["imports"])
        results[label] = entry
        print(label, entry)
    library = [run_once([sys.executable, "-c", "import modeling_sprm"], expect_usage=False) for _ in range(args.runs)]
    results["import modeling_sprm (library, for comparison)"] = {
        "median_seconds": round(statistics.median(library), 3),
        "min_seconds": round(min(library), 3),
        "max_seconds": round(max(library), 3),
        "runs": len(library),
    }
    print(results["import modeling_sprm (library, for comparison)"])
    write_result("cli_startup", {
        "goal": f"median under {GOAL_SECONDS} s in a fresh process, torch and transformers not imported",
        "results": results,
        "machine": {**facts, "load_average_at_end": os.getloadavg()},
        **git_state(),
    })


if __name__ == "__main__":
    main()
