"""Print the README section on the self-generated arithmetic loop as markdown, from the committed result JSON
files only (so the numbers in the README cannot drift from them).

    python benchmarks/selfgen/report.py > /tmp/selfgen.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` measured on ``n`` samples."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def policy_search(search: dict) -> str:
    rows = []
    for run in search["runs"]:
        c, sft, ev = run["config"], run.get("sft"), run["eval"]
        rows.append([
            f"`{run['tag']}`",
            f"{c['min_ops']}-{c['max_ops']} ops, <= {c['max_number']}",
            "none" if sft is None else
            f"{c['steps']} x {c['batch_size']} on {c['sft_problems']} problems, lr {c['lr']}, r {c['lora_rank']}",
            "-" if sft is None else f"{sft['sft_seconds'] / 60:.0f} min",
            f"{ev['samples']} ({c['eval_problems']} x {c['eval_samples']})",
            f"{pct(ev['accuracy'])} ({', '.join(pct(x) for x in wilson(ev['accuracy'], ev['samples']))})",
            pct(ev["process_correct"]),
            pct(ev["right_answer_wrong_step"]),
            pct(ev["problems_with_mixed_samples"]),
            ", ".join(f"{k}: {pct(v)}" for k, v in ev["accuracy_by_ops"].items()),
            f"{ev['sampling_seconds'] / 60:.0f} min",
        ])
    header = ["run", "problems", "LoRA SFT (steps x batch)", "SFT time", "samples", "answer right (95% Wilson CI, samples as if independent)",
              "every step right", "right answer, wrong step", "problems with mixed samples", "right by #ops",
              "sampling time"]
    notes = "\n".join(f"- `{r['tag']}`: {r['note']}" for r in search["runs"] if r.get("note"))
    return table(header, rows) + "\n\n" + notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", default=str(RESULTS / "selfgen_policy_search.json"))
    args = parser.parse_args()
    search = json.loads(Path(args.search).read_text())
    print("## Results: self-generated arithmetic loop\n")
    print("### Making the policy able (LoRA SFT on generated problems)\n")
    print(
        "SmolLM2-135M-Instruct is fine-tuned with LoRA (`peft`) on generated problems with their reference "
        "solutions, written in the SPRM's own format (chat prompt, steps joined by `.\\n\\n`), loss on the solution "
        "tokens only; then it samples (temperature 0.6, top_p 0.95) on held-out problems and every sample is graded "
        "step by step against the problem's chain. Every configuration tried is listed "
        "(`benchmarks/results/selfgen_policy_search.json`, produced by `benchmarks/selfgen/sft_policy.py`):\n"
    )
    print(policy_search(search))
    machines = sorted({r["machine"].split(",")[0] for r in search["runs"]})
    dates = sorted(r["date"][:10] for r in search["runs"])
    print(f"\nMeasured on {', '.join(machines)} (2 CPU cores shared with other jobs, no GPU), "
          f"{dates[0]}{'' if dates[0] == dates[-1] else ' to ' + dates[-1]}; times are wall-clock there.")


if __name__ == "__main__":
    main()
