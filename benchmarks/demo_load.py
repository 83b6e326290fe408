"""`sprm demo` under load: N concurrent clients of mixed request sizes against the demo served on 127.0.0.1.

    python -m benchmarks.demo_load --clients 50 --output benchmarks/results/demo_load.json
    python -m benchmarks.demo_load --model tiny     # a tiny random model (the server machinery only)

Every client sends one ``/score`` request through gradio's HTTP API (``POST /gradio_api/call/score``, then the event
stream), all released at once, so the run is bounded: N requests, each within the demo's time budget, and a
per-request client timeout. Recorded: what each request got (a score, a clear "busy" message when the queue is
full, a clear "too long" message for the inputs over the demo's character limit, the time-budget message, anything
else), p50 / p95 latency from sending to the answer, the server's resident memory (RSS) after a warm-up request and
after the load, and whether the server still answers afterwards. The server is `sprm demo` as users start it
(default limits: one model call at a time, 32 waiting).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks._common import git_state, machine, write_result

QUESTION = ("A shop sells pencils at 3 dollars each. Tom buys some pencils and pays 2 dollars less than 3 times 14. "
            "How many pencils does he buy?")
STEP = "Three times 14 is 3 * 14 = 42 dollars, and 2 dollars less is 42 - 2 = 40 dollars."
SIZES = {  # name: (characters of the solution, share of the clients)
    "small": (300, 0.6),
    "medium": (2_000, 0.24),
    "long": (7_900, 0.1),
    "over_limit": (9_000, 0.06),  # over the demo's 8,000 characters: a clear message, not a score
}


def solution_of(chars: int) -> str:
    steps, text = [], ""
    while len(text) < chars - len(STEP) - 40:
        steps.append(f"{STEP} Step {len(steps) + 1} checks it again.")
        text = "\n\n".join(steps)
    return text + "\n\nSo he buys 40 / 3 pencils, and the answer is 13."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def score_request(port: int, question: str, solution: str, timeout: float) -> tuple[str, str]:
    """One /score call over gradio's HTTP API: ``(event, data)`` with event "complete", "error" or "http <status>"."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = json.dumps({"data": [question, solution]})
        connection.request("POST", "/gradio_api/call/score", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read().decode()
        if response.status != 200:
            return f"http {response.status}", payload
        event_id = json.loads(payload)["event_id"]
        connection.request("GET", f"/gradio_api/call/score/{event_id}")
        response = connection.getresponse()
        event = None
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, line.split(":", 1)[1].strip()
        return "no answer", ""
    finally:
        connection.close()


def classify(event: str, data: str) -> str:
    text = data.lower()
    if event == "complete":
        return "scored"
    if "queue is full" in text or "too many" in text:
        return "busy"
    if "too long" in text:
        return "too_long"
    if "time budget" in text:
        return "time_budget"
    return "other"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 3)


def tiny_model(folder: Path) -> str:
    """A tiny random SPRM (2 layers, hidden 64) with SmolLM2's tokenizer, saved as a full checkpoint."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from modeling_sprm import SPRMForStepScoring
    from modeling_sprm.backbones import embedded_backbone_path

    tokenizer = AutoTokenizer.from_pretrained(embedded_backbone_path())
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         max_position_embeddings=4096)  # fmt: skip
    model = SPRMForStepScoring.from_backbone(LlamaForCausalLM(config), backbone_name_or_path="tiny-random-llama")
    model.config.head_training = {"note": "random weights: a load test only"}
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--model", default=None, help="--model of sprm demo (default: the embedded default); 'tiny': "
                        "a tiny random model")  # fmt: skip
    parser.add_argument("--request-timeout", type=float, default=600.0, help="Client-side limit per request (s).")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--output", default="demo_load", help="Name of the JSON in benchmarks/results/.")
    args = parser.parse_args()

    start_machine, git = machine(), git_state()
    with tempfile.TemporaryDirectory(prefix="sprm-demo-load-") as tmp:
        model = tiny_model(Path(tmp) / "tiny") if args.model == "tiny" else args.model
        port = free_port()
        command = [sys.executable, "-m", "modeling_sprm", "demo", "--port", str(port)]
        command += ["--model", model] if model else []
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        log = open(Path(tmp) / "server.log", "w+")
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            result = run_load(args, server, port)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            log.seek(0)
            server_log = log.read()
    tracebacks = server_log.count("Traceback")
    result = {
        "what": f"{args.clients} concurrent clients, one /score request each, all released at once, against `sprm "
        "demo` on 127.0.0.1 (default limits: one model call at a time, 32 waiting, 8,000 characters per solution, "
        "30 s time budget per call); latencies from sending the request to its answer",
        "model": args.model or "the embedded default (SmolLM2-135M-Instruct + the shipped head)",
        **result,
        "server_log_tracebacks": tracebacks,
        "machine": {**start_machine, "load_average_at_end": os.getloadavg()},
        **git,
    }
    write_result(args.output, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("requests", "machine")}, indent=1))


def run_load(args, server: subprocess.Popen, port: int) -> dict:
    started = time.monotonic()
    while True:  # the page answers
        if server.poll() is not None:
            raise SystemExit(f"sprm demo exited with code {server.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() - started > args.start_timeout:
                raise SystemExit(f"sprm demo did not answer within {args.start_timeout} s")
            time.sleep(0.5)
    startup_s = time.monotonic() - started
    warm = score_request(port, QUESTION, solution_of(300), args.request_timeout)
    if warm[0] != "complete":
        raise SystemExit(f"the warm-up request failed: {warm}")
    rss_before = rss_mb(server.pid)

    plan = []
    for name, (chars, share) in SIZES.items():
        plan += [name] * round(share * args.clients)
    plan = (plan + ["small"] * args.clients)[: args.clients]
    solutions = {name: solution_of(chars) for name, (chars, _) in SIZES.items()}
    records: list[dict] = [None] * len(plan)
    gate = threading.Barrier(len(plan))

    def client(i: int, size: str) -> None:
        gate.wait()
        t0 = time.monotonic()
        try:
            event, data = score_request(port, QUESTION, solutions[size], args.request_timeout)
        except (OSError, http.client.HTTPException) as err:
            event, data = "connection error", f"{type(err).__name__}: {err}"
        seconds = time.monotonic() - t0
        records[i] = {"size": size, "chars": len(solutions[size]), "outcome": classify(event, data),
                      "seconds": round(seconds, 3), "message": None if event == "complete" else data[:300]}

    load_start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i, size)) for i, size in enumerate(plan)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load_s = time.monotonic() - load_start
    rss_after = rss_mb(server.pid)
    after = score_request(port, QUESTION, solution_of(300), args.request_timeout)

    outcomes = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    scored = [r["seconds"] for r in records if r["outcome"] == "scored"]
    answered = [r["seconds"] for r in records]
    per_size = {}
    for name in SIZES:
        rows = [r for r in records if r["size"] == name]
        done = [r["seconds"] for r in rows if r["outcome"] == "scored"]
        per_size[name] = {"requests": len(rows), "chars": len(solutions[name]),
                          "outcomes": {o: sum(r["outcome"] == o for r in rows) for o in {r["outcome"] for r in rows}},
                          "scored_p50_s": percentile(done, 0.5), "scored_p95_s": percentile(done, 0.95)}  # fmt: skip
    examples = {}
    for r in records:
        if r["outcome"] != "scored":
            examples.setdefault(r["outcome"], r["message"])
    return {
        "clients": len(plan),
        "startup_s": round(startup_s, 2),
        "load_duration_s": round(load_s, 2),
        "outcomes": outcomes,
        "every_request_answered_or_clear_message": all(r["outcome"] != "other" for r in records),
        "messages": examples,
        "latency_all_p50_s": percentile(answered, 0.5),
        "latency_all_p95_s": percentile(answered, 0.95),
        "latency_scored_p50_s": percentile(scored, 0.5),
        "latency_scored_p95_s": percentile(scored, 0.95),
        "latency_scored_mean_s": round(statistics.mean(scored), 3) if scored else None,
        "per_size": per_size,
        "server_rss_mb_before": rss_before,
        "server_rss_mb_after": rss_after,
        "server_up_after": server.poll() is None and after[0] == "complete",
        "requests": records,
    }


if __name__ == "__main__":
    main()
