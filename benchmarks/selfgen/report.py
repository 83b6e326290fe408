"""Print the README section on the self-generated arithmetic loop as markdown, from the committed result JSON
files only (so the numbers in the README cannot drift from them): the policy search
(selfgen_policy_search.json) and, once it exists, the loop itself (selfgen_loop.json).

    python -m benchmarks.selfgen.report            # print the markdown
    python -m benchmarks.selfgen.report --write    # also replace the README's generated block and write
                                                   # benchmarks/results/selfgen_loop.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from benchmarks._common import replace_readme_block

RESULTS = Path(__file__).resolve().parents[1] / "results"
START, END = "<!-- selfgen:start -->", "<!-- selfgen:end -->"
DESCRIPTIONS = {
    "sprm_metastone": ("outcome", "(a) MetaStone-S1 SPR loss, raw features (as published)"),
    "sprm": ("outcome", "(a) SPR loss, standardised features"),
    "asymmetric_spr": ("outcome", "SPR filter on wrong solutions only"),
    "mil_product": ("outcome", "multiple-instance: product of step scores vs outcome"),
    "first_error": ("outcome", "self-training on the head's first-error guess"),
    "outcome_bce": ("outcome", "(b) outcome BCE (every step gets the outcome)"),
    "step_supervised": ("true steps", "(c) step BCE on the true step labels (ceiling)"),
    "position_only": ("true steps", "(d) step position and length only"),
    "random": ("none", "(d) random scores"),
}


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


def stat(s: dict | None, points: bool = True) -> str:
    """``mean ± std`` over seeds (percentage points, or 3 decimals for AUROCs)."""
    if not s or s.get("mean") is None:
        return "-"
    if points:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"
    return f"{s['mean']:.3f} ± {s['std']:.3f}"


def loop_samples(loop: dict) -> str:
    rows = []
    for split in ("train", "test"):
        sampling, stats = loop["sampling"][split], loop["samples"][split]
        rows.append([
            split, f"{sampling['problems']} x {'/'.join(map(str, sampling['samples_per_problem']))}",
            pct(stats["answer_right"]), pct(stats["every_step_right"]), pct(stats["right_answer_wrong_step"]),
            pct(stats["problems_with_mixed_samples"]), f"{pct(stats['problems_all_right'])} / {pct(stats['problems_none_right'])}",
            f"{stats['mean_steps']:.1f}", f"{stats['mean_tokens']:.0f}", str(stats["truncated"]),
            f"{sampling['seconds'] / 60:.0f} min",
        ])
    header = ["split", "problems x samples", "answer right", "every step right", "right answer, wrong step",
              "problems with mixed samples", "problems all / none right", "steps", "tokens", "truncated",
              "sampling time"]
    return table(header, rows)


def loop_detection(loop: dict) -> str:
    rows = []
    for name, (labels, description) in DESCRIPTIONS.items():
        if name not in loop["summary"]:
            continue
        d = loop["summary"][name]["detection"]
        rows.append([f"`{name}`", description, labels, stat(d["f1"]), stat(d["error_acc"]), stat(d["correct_acc"]),
                     stat(d["f1_at_0.5"]), stat(d["step_auroc"], False), stat(d["step_auroc_all_steps"], False),
                     stat(d["outcome_auroc"], False)])
    header = ["head", "objective", "training labels", "F1 (threshold from train)", "error acc", "correct acc",
              "F1 at 0.5", "step AUROC (to first error)", "step AUROC (all steps)", "outcome AUROC"]
    return table(header, rows)


def loop_best_of_n(loop: dict) -> str:
    ns = [str(n) for n in loop["ns"]]
    base = loop["selection_baselines"]
    rows = [[name, "-"] + [pct(base[key][n]) for n in ns] for name, key in
            (("oracle (any sample right)", "oracle"), ("majority vote", "majority_vote"),
             ("random pick (expected)", "random_pick"))]
    for name, (labels, _) in DESCRIPTIONS.items():
        summary = loop["summary"].get(name, {}).get("best_of_n")
        if summary is None:
            continue
        rows.append([f"SPRM pick, `{name}`", labels] + [stat(summary["sprm_pick"][n]) for n in ns])
        rows.append([f"SPRM-weighted vote, `{name}`", labels] + [stat(summary["sprm_weighted_vote"][n]) for n in ns])
    return table(["selection", "head's training labels"] + [f"BoN@{n}" for n in ns], rows)


def recovered(loop: dict, metric: str = "step_auroc") -> list[str]:
    """How much of the step-label head's margin above chance (AUROC 0.5) each outcome-only head recovers."""
    ceiling = loop["summary"]["step_supervised"]["detection"][metric]["mean"]
    lines = []
    for name, (labels, _) in DESCRIPTIONS.items():
        if labels != "outcome" or name not in loop["summary"] or ceiling is None or ceiling <= 0.5:
            continue
        value = loop["summary"][name]["detection"][metric]["mean"]
        lines.append(f"`{name}` {(value - 0.5) / (ceiling - 0.5):.0%}")
    return lines


def loop_section(loop: dict) -> str:
    train, test = loop["sampling"]["train"], loop["sampling"]["test"]
    budget = loop["budget"]
    seeds = len(next(iter(loop["runs"].values())))
    parts = [
        "#### The loop: SPRM heads trained on the policy's own samples (outcome labels only)\n",
        f"The fine-tuned policy (`{loop['policy'].split(':')[0]}`) samples {train['samples']} solutions of "
        f"{train['problems']} new training problems and {test['samples']} of {test['problems']} held-out test "
        f"problems (temperature {loop['sampling']['temperature']}, top_p {loop['sampling']['top_p']}, at most "
        f"{loop['sampling']['max_new_tokens']} new tokens). Each is graded by its final answer only (the outcome "
        "label the heads learn from) and, for evaluation only, step by step against the problem's chain (the true "
        "step labels). Heads read the policy's own hidden_states[-2], captured while it sampled (no second pass). "
        f"Same head, same budget ({budget['epochs']:g} epochs, lr {budget['learning_rate']:g}, batch "
        f"{budget['batch_size']}), {seeds} seeds (mean ± std). First-error threshold: {loop['threshold']}."
        + (f" Sizes: {loop['note'].rstrip('.')}." if loop.get("note") else "") + "\n",
        loop_samples(loop),
        "\n**Step-error detection on the held-out problems** (against the true step labels):\n",
        loop_detection(loop),
        "\nShare of the step-label head's step-AUROC margin over chance (AUROC - 0.5) that each outcome-only head "
        "recovers: " + ", ".join(recovered(loop)) + ".\n",
        f"**Best-of-N on the held-out problems** (MetaStone-S1's disjoint groups: {test['samples_per_problem'][0]} "
        "samples per problem cut into groups of N; outcome = final answer right). A head whose scores are all equal "
        "picks the first sample of each group (ties go to the first). With "
        f"{test['problems']} problems, BoN@{loop['ns'][-1]} makes "
        f"{test['problems'] * (test['samples_per_problem'][0] // loop['ns'][-1])} picks per seed, so one pick moves "
        f"it by {100 / (test['problems'] * (test['samples_per_problem'][0] // loop['ns'][-1])):.1f} points:\n",
        loop_best_of_n(loop),
        "\n![self-generated loop](benchmarks/results/selfgen_loop.png)\n",
        f"Measured on {loop['machine']} ({loop['cpu_count']} CPU cores shared with other jobs, no GPU), "
        f"{loop['date'][:10]}, commit {loop['commit']}: `{loop['command']}` after "
        f"`{' ; '.join(test['commands'] + train['commands'])}`. Sampling {(train['seconds'] + test['seconds']) / 60:.0f} "
        f"min, heads {loop['head_training_seconds'] / 60:.0f} min (wall clock on the shared machine).",
    ]
    return "\n".join(parts)


def plot(loop: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in DESCRIPTIONS if n in loop["summary"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    x = range(len(names))
    for offset, (metric, label) in enumerate((("step_auroc", "step AUROC (to first error)"),
                                              ("outcome_auroc", "outcome AUROC"), ("f1", "first-error F1"))):
        stats = [loop["summary"][n]["detection"][metric] for n in names]
        left.bar([i + (offset - 1) * 0.27 for i in x], [s["mean"] or 0 for s in stats], 0.27,
                 yerr=[s["std"] or 0 for s in stats], label=label, capsize=2)
    left.axhline(0.5, color="grey", lw=0.8, ls=":")
    left.set_xticks(list(x), names, rotation=35, ha="right", fontsize=8)
    left.set_ylim(0, 1)
    seeds = len(next(iter(loop["runs"].values())))
    left.set_title(f"step-error detection, held-out problems (mean ± std, {seeds} seeds)")
    left.legend(fontsize=8)
    ns = loop["ns"]
    base = loop["selection_baselines"]
    for key, style in (("oracle", "k--"), ("majority_vote", "k-"), ("random_pick", "k:")):
        right.plot(ns, [base[key][str(n)] for n in ns], style, label=key.replace("_", " "))
    for name in names:
        summary = loop["summary"][name].get("best_of_n")
        if summary is None:
            continue
        means = [summary["sprm_pick"][str(n)]["mean"] for n in ns]
        stds = [summary["sprm_pick"][str(n)]["std"] for n in ns]
        right.errorbar(ns, means, yerr=stds, marker="o", ms=3, capsize=2, lw=1, label=f"SPRM pick: {name}")
    right.set_xscale("log", base=2)
    right.set_xticks(ns, [str(n) for n in ns])
    right.set_xlabel("N (samples per group)")
    right.set_ylabel("accuracy")
    right.set_title("Best-of-N, held-out problems")
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", default=str(RESULTS / "selfgen_policy_search.json"))
    parser.add_argument("--loop", default=str(RESULTS / "selfgen_loop.json"))
    parser.add_argument("--write", action="store_true", help=f"replace README.md's {START} block; write the plot")
    args = parser.parse_args()
    search = json.loads(Path(args.search).read_text())
    loop = json.loads(Path(args.loop).read_text()) if Path(args.loop).exists() else None
    parts = [START, "\n*Generated by `benchmarks/selfgen/report.py` from `benchmarks/results/selfgen_*.json`.*\n",
             "#### Making the policy able (LoRA SFT on generated problems)\n"]
    parts.append(
        "SmolLM2-135M-Instruct is fine-tuned with LoRA (`peft`) on generated problems with their reference "
        "solutions, written in the SPRM's own format (chat prompt, steps joined by `.\\n\\n`), loss on the solution "
        "tokens only; then it samples (temperature 0.6, top_p 0.95) on held-out problems and every sample is graded "
        "step by step against the problem's chain. Every configuration tried is listed "
        "(`benchmarks/results/selfgen_policy_search.json`, produced by `benchmarks/selfgen/sft_policy.py`):\n"
    )
    parts.append(policy_search(search))
    machines = sorted({r["machine"].split(",")[0] for r in search["runs"]})
    dates = sorted(r["date"][:10] for r in search["runs"])
    parts.append(f"\nMeasured on {', '.join(machines)} (2 CPU cores shared with other jobs, no GPU), "
                 f"{dates[0]}{'' if dates[0] == dates[-1] else ' to ' + dates[-1]}; times are wall-clock there.\n")
    if loop is not None:
        parts.append(loop_section(loop))
    markdown = "\n".join(parts) + "\n" + END
    print(markdown)
    if args.write:
        replace_readme_block(markdown, START, END)
        print("wrote README.md")
        if loop is not None:
            plot(loop, Path(args.loop).with_suffix(".png"))


if __name__ == "__main__":
    main()
