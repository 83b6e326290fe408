"""The step-signal study on the GPU machine: extract the readouts of the FULL ProcessBench and BIG-Bench Mistake on
the GPU (float32, no TF32: the features the package computes on a CPU), then run the study's experiments on that
machine's CPU cores, each in its own process, and write their JSON into ``--out``.

    python -m benchmarks.signal.gpu_job --data DIR --out OUT --device cuda [--experiments baselines heads ...]

(DIR holds processbench/ and big_bench_mistake/.) On this project's 2-core machine the same extraction runs at about
100 tokens per second, five hours for ProcessBench alone; the extracted readouts (every layer and pooling, about a
gigabyte) are too large to bring back from the GPU machine, so the experiments run where the readouts are.

Progress goes to ``OUT/signal_job.log``; an experiment's JSON appears in ``OUT`` only when it is complete, with
``OUT/signal_<experiment>.done`` next to it (exit status); ``OUT/signal_job.json`` records the stages and times. Each
experiment records its own provenance (``benchmarks.signal.run``; on a machine without git history set
``SPRM_GIT_COMMIT`` and ``SPRM_GIT_CLEAN=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXPERIMENTS = ("baselines", "heads", "objectives", "readouts", "bbm")  # in order of importance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with processbench/ and big_bench_mistake/")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cache-dir", default="/tmp/sprm-signal-cache")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per experiment process")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--datasets", nargs="+", default=["processbench", "bbm"])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_file = open(out / "signal_job.log", "a", buffering=1)
    record = {"stages": {}, "args": vars(args)}
    started = time.time()

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=log_file, flush=True)

    def save() -> None:
        (out / "signal_job.json").write_text(json.dumps(record, indent=1) + "\n")

    log(f"extracting {args.datasets} on {args.device}")
    extract = subprocess.run(
        [sys.executable, "-m", "benchmarks.signal.extract", "--data-root", args.data, "--cache-dir", args.cache_dir,
         "--device", args.device, "--max-length", str(args.max_length), "--token-budget", "65536",
         "--threads", str(args.threads), "--datasets", *args.datasets],
        stdout=log_file, stderr=subprocess.STDOUT)
    record["stages"]["extract"] = {"exit": extract.returncode, "seconds": round(time.time() - started)}
    save()
    if extract.returncode != 0:
        log("extraction failed")
        raise SystemExit(1)
    processes = {}
    for name in args.experiments:
        command = [sys.executable, "-m", "benchmarks.signal.run", "--experiment", name, "--data-root", args.data,
                   "--cache-dir", args.cache_dir, "--threads", str(args.threads), "--resamples", str(args.resamples),
                   "--seeds", *map(str, args.seeds if name != "readouts" else args.seeds[:1]),
                   "--out", str(out / f"signal_{name}.json")]
        processes[name] = (subprocess.Popen(command, stdout=open(out / f"signal_{name}.log", "w"),
                                            stderr=subprocess.STDOUT), time.time())
        log(f"started {name}")
    for name, (process, began) in processes.items():
        code = process.wait()
        record["stages"][name] = {"exit": code, "seconds": round(time.time() - began)}
        (out / f"signal_{name}.done").write_text(f"{code}\n")
        log(f"{name}: exit {code} after {time.time() - began:.0f} s")
        save()
    log(f"all done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
