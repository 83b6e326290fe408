"""How long `sprm demo` takes to start with the embedded default model (goal: under 30 s after the first-time
backbone conversion), measured from the command's launch to (a) the page answering and (b) a first `/score`
answer through gradio_client.

    python -m benchmarks.demo_startup --runs 3 --output benchmarks/results/demo_startup.json

The backbone is converted first (outside the timing) if it is not cached yet; each run is a fresh process.
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from modeling_sprm.backbones import embedded_backbone_path

QUESTION = "What is 2 + 3 * 4?"
SOLUTION = "3 * 4 = 12.\n\n2 + 12 = 14.\n\nThe answer is 14."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc): unlike wall time, it hardly grows when
    other work competes for the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(timeout: float) -> dict:
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "modeling_sprm", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sprm demo exited with code {process.returncode}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.perf_counter() - start > timeout:
                    raise TimeoutError(f"no page after {timeout} s")
                time.sleep(0.1)
        page_s = time.perf_counter() - start
        page_cpu_s = cpu_seconds(process.pid)
        result = Client(url, verbose=False).predict(QUESTION, SOLUTION, api_name="/score")
        first_score_s = time.perf_counter() - start
        assert len(result["steps"]) == 3
        return {
            "page_s": round(page_s, 2),
            "page_cpu_s": round(page_cpu_s, 2),
            "first_score_s": round(first_score_s, 2),
        }
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--output", default="benchmarks/results/demo_startup.json")
    args = parser.parse_args()

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    convert_start = time.perf_counter()
    embedded_backbone_path()  # the first-time conversion, outside the timing
    conversion_s = time.perf_counter() - convert_start
    runs = []
    for i in range(args.runs):
        runs.append(one_run(args.timeout))
        print(f"run {i + 1}: {runs[-1]}", flush=True)
    page = [r["page_s"] for r in runs]
    record = {
        "what": "sprm demo start-up with the embedded default model: seconds from launching the command to the "
        "page answering (page_s; page_cpu_s = CPU time the process used until then) and to a first /score answer "
        "(first_score_s); backbone already converted. Wall times grow with the machine's load (see load_average)",
        "goal_s": 30,
        "runs": runs,
        "median_page_s": statistics.median(page),
        "max_page_s": max(page),
        "median_page_cpu_s": statistics.median(r["page_cpu_s"] for r in runs),
        "median_first_score_s": statistics.median(r["first_score_s"] for r in runs),
        "meets_goal": max(page) < 30,
        "backbone_cache_check_s": round(conversion_s, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1_5_15_at_start": load_at_start,
            "load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
