"""Print the README section on the loop at power as markdown, from benchmarks/results/selfgen_power.json only (so
the README cannot drift from it), and draw the test-time scaling plot.

    python -m benchmarks.selfgen.power_report            # print the markdown
    python -m benchmarks.selfgen.power_report --write    # also replace the README's block and write
                                                         # benchmarks/results/selfgen_power.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._common import replace_readme_block

RESULTS = Path(__file__).resolve().parents[1] / "results"
START, END = "<!-- selfgen-power:start -->", "<!-- selfgen-power:end -->"
HEADS = {  # name: (training labels, description)
    "step_supervised": ("true steps", "step BCE on the grader's step labels (human-quality reference)"),
    "mc_soft": ("MC, soft", "step BCE on Monte-Carlo labels: share of K finishes right"),
    "mc_hard": ("MC, hard", "step BCE on Monte-Carlo labels: any of K finishes right"),
    "mil_product": ("outcome", "multiple-instance: product of step scores vs the outcome"),
    "outcome_bce": ("outcome", "every step gets the outcome"),
    "sprm": ("outcome", "MetaStone-S1's SPR loss, standardised features"),
    "asymmetric_spr": ("outcome", "SPR filter on wrong solutions only"),
    "first_error": ("outcome", "self-training on the head's first-error guess"),
    "position_only": ("true steps", "step position and length only"),
    "random": ("none", "random scores"),
}


def interval(s: dict | None, scale: float, fmt: str) -> str:
    """``value [lo, hi]`` of a summary (``-`` for what is undefined)."""
    if not s or s.get("value") is None:
        return "-"
    lo, hi = (("-" if v is None else format(scale * v, fmt)) for v in (s["low"], s["high"]))
    return f"{format(scale * s['value'], fmt)} [{lo}, {hi}]"


def pct(s: dict | None) -> str:
    return interval(s, 100, ".1f")


def auc(s: dict | None) -> str:
    return interval(s, 1, ".3f")


def signed(s: dict | None, points: bool = False) -> str:
    """A paired difference: ``+0.012 [-0.010, +0.031]`` (or in points)."""
    return interval(s, 100, "+.1f") if points else interval(s, 1, "+.3f")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def comparison(result: dict, a: str, size: int, metric: str) -> dict | None:
    return next((c for c in result["comparisons"] if (c["a"], c["size"], c["metric"]) == (a, size, metric)), None)


def main_table(result: dict) -> str:
    """Self-supervision vs Monte-Carlo labels vs human-quality labels, at the largest training size."""
    size = str(result["sizes"][-1])
    middle = str(result["sizes"][-2]) if len(result["sizes"]) > 1 else size
    rows = []
    for name, (labels, description) in HEADS.items():
        point = result["curve"].get(name, {}).get(size)
        if point is None:
            continue
        pick = result["selection"].get(f"sprm_pick:{name}", {}).get("8")
        rows.append(
            [
                f"`{name}`",
                labels,
                description,
                f"{point['label_tokens'] / 1000:.0f}k",
                auc(result["curve"][name].get(middle, {}).get("step_auroc")),
                auc(point["step_auroc"]),
                signed(comparison(result, name, int(size), "step_auroc")),
                auc(point["step_auroc_all_steps"]),
                pct(point["f1"]),
                auc(point["outcome_auroc"]),
                pct(pick),
            ]
        )
    header = [
        "head",
        "labels",
        "objective",
        "label cost (generated tokens)",
        f"step AUROC, {middle} problems",
        f"step AUROC, {size} problems",
        "minus step-supervised (paired)",
        "step AUROC, all steps",
        "first-error F1",
        "outcome AUROC",
        "Best-of-8 pick",
    ]
    return table(header, rows)


def curve_table(result: dict) -> str:
    sizes = [str(s) for s in result["sizes"]]
    rows = []
    for name in HEADS:
        if name not in result["curve"] or name in ("position_only", "random"):
            continue
        rows.append([f"`{name}`"] + [auc(result["curve"][name].get(s, {}).get("step_auroc")) for s in sizes])
    return table(["head"] + [f"{s} problems" for s in sizes], rows)


def budget_table(result: dict) -> str:
    rows = [
        [
            f"`{c['mc_head']}` on {c['mc_size']} problems",
            f"{c['mc_tokens'] / 1000:.0f}k",
            f"`{c['outcome_head']}` on {c['outcome_size']} problems",
            f"{c['outcome_tokens'] / 1000:.0f}k",
            signed(c),
        ]
        for c in result["equal_budget"]
        if c["metric"] == "step_auroc"
    ]
    return table(
        [
            "MC-labelled head",
            "label tokens",
            "outcome-only head (no more tokens)",
            "label tokens",
            "step AUROC difference, MC minus outcome (paired)",
        ],
        rows,
    )


def selection_table(result: dict) -> str:
    sel = result["selection"]
    ns = sorted({int(n) for v in sel.values() for n in v})
    names = ["oracle", "majority_vote", "random_pick"] + [
        f"{kind}:{h}"
        for h in ("mil_product", "mc_soft", "step_supervised", "position_only")
        for kind in ("sprm_pick", "sprm_weighted_vote")
    ]

    def label(name: str) -> str:
        kind, _, head = name.partition(":")
        return {"sprm_pick": "SPRM pick", "sprm_weighted_vote": "SPRM-weighted vote"}.get(
            kind, kind.replace("_", " ")
        ) + (f", `{head}`" if head else "")

    rows = [[label(n)] + [pct(sel[n].get(str(k))) for k in ns] for n in names if n in sel]
    return table(["selection (head trained on every training problem)"] + [f"N={k}" for k in ns], rows)


def search_table(result: dict) -> str:
    rows = [
        [
            c["search"],
            c["n"],
            f"{c['tokens']:.0f}",
            f"Best-of-{c['bon_n']} ({c['bon_tokens']:.0f} tokens"
            + ("" if c["bon_has_at_least_as_many_tokens"] else ", fewer")
            + ")",
            signed(c, points=True),
        ]
        for c in result["search_vs_bon"]
    ]
    return table(
        ["search (method:head)", "N", "tokens per problem", "compared with", "accuracy difference (paired)"], rows
    )


def joint_table(result: dict) -> str:
    joint = result["joint"]
    if not joint.get("arms"):
        return "The joint stage did not run."
    job = joint.get("job") or {}
    per_step = job.get("seconds_per_step", {})
    diffs = {c["a"]: c for c in joint["comparisons"] if c["metric"] == "step_auroc"}
    rows = [
        [
            arm,
            auc(v["step_auroc"]),
            auc(v["step_auroc_all_steps"]),
            auc(v["outcome_auroc"]),
            signed(diffs.get(arm)),
            f"{per_step.get(arm, float('nan')):.3f}",
        ]
        for arm, v in joint["arms"].items()
    ]
    return table(
        ["arm", "step AUROC", "step AUROC, all steps", "outcome AUROC", "minus frozen (paired)", "seconds per step"],
        rows,
    )


def goals(result: dict) -> str:
    g = result["goals"]
    lines = []
    for d in g["detection"]:
        lines.append(
            f"- Step AUROC of the best outcome-only or MC head vs step-supervised at {d['size']} problems: "
            f"`{d['best']}` {signed(d['difference'])} ({'met' if d['met'] else 'not met'}; the best of "
            f"{len(HEADS) - 3} heads picked on the test problems, so the point estimate is biased upwards)."
        )
    if g.get("selection"):
        s = g["selection"]
        lines.append(
            f"- Best-of-8 pick of `{result['reference_head']}` minus majority vote: {signed(s, True)} points "
            f"(goal: >= 5 with the interval above 0: {'met' if s['met'] else 'not met'})."
        )
    if g.get("search"):
        s = g["search"]
        lines.append(
            f"- Best search vs Best-of-N with at least as many generated tokens: {s['search']} N={s['n']} vs Best-of-"
            f"{s['bon_n']}: {signed(s, True)} points (goal: the paired interval above 0: "
            f"{'met' if s['met'] else 'not met'}; the best of {s['compared']} comparisons, so biased upwards)."
        )
    if g.get("joint"):
        s = g["joint"]
        lines.append(
            f"- Joint LoRA minus frozen backbone, step AUROC: {signed(s)} "
            f"({'improves: the paired interval is above 0' if s['met'] else 'no improvement shown'})."
        )
    return "\n".join(lines)


def section(result: dict) -> str:
    job = result["job"]
    samples = result["samples"]
    return "\n".join(
        [
            "#### Self-supervision vs Monte-Carlo labels vs human-quality labels (the loop at power)\n",
            f"One GPU run ({job['device']}, {job.get('elapsed_s') or '?'} s: `{job['command']}`) fine-tuned the policy "
            f"(LoRA SFT), sampled {result['train_solutions']} solutions of {result['train_problems']} training "
            f"problems and {result['samples_per_test_problem']} of each of {result['test_problems']} held-out "
            f"problems (final answer right: train {100 * samples['train']['answer_right']:.1f}%, test "
            f"{100 * samples['test']['answer_right']:.1f}%; {samples['test']['mean_steps']:.1f} steps on average), "
            f"labelled the steps of {result['mc_problems']} training problems by Monte-Carlo finishes (K = "
            f"{job['config']['mc_rollouts']}), and ran beam search and DVTS on {result['searched_problems']} "
            f"problems. Heads were then trained on CPU ({len(result['seeds'])} seeds, averaged). Every number: 95% "
            f"bootstrap interval over test problems ({result['bootstrap']} resamples); differences are paired.\n",
            main_table(result),
            "\n**Training-size curve** (step AUROC up to the first error):\n",
            curve_table(result),
            "\n**Equal generated-token budget** (what the training labels cost: the sampled solutions, plus the MC "
            "finishes):\n",
            budget_table(result),
            "\n**Selection on the held-out problems** (MetaStone-S1's disjoint groups):\n",
            selection_table(result),
            "\n**Step beam search and DVTS** (heads trained in the GPU run, M = 4 continuations per beam) against "
            "Best-of-N with at least as many generated tokens:\n",
            search_table(result),
            "\n![test-time scaling](benchmarks/results/selfgen_power.png)\n",
            "**Joint LoRA training** (re-encoded test solutions, one seed):\n",
            joint_table(result),
            "\n**Goals of the issue:**\n",
            goals(result),
            f"\nAnalysis: {result['machine']}, {result['date_utc'][:10]}, commit {result['commit']}"
            f"{'' if result['clean_tree'] else ' (uncommitted changes, diff ' + str(result['diff_sha256']) + ')'}: "
            f"`{result['command']}`.",
        ]
    )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scaling = result["scaling"]
    fig, (by_n, by_tokens) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    styles = {
        "majority_vote": ("k", "o", "-"),
        "sprm_pick": ("C0", "s", "-"),
        "sprm_weighted_vote": ("C1", "^", "-"),
        "beam": ("C2", "D", "-"),
        "dvts": ("C3", "v", "-"),
    }
    for key, points in sorted(scaling.items()):
        kind, _, head = key.partition(":")
        if kind not in styles or (head and head != result["reference_head"]):
            continue
        color, marker, line = styles[kind]
        ns = sorted(points, key=int)
        values = [points[n]["value"] for n in ns]
        errors = [
            [v - points[n]["low"] for v, n in zip(values, ns)],
            [points[n]["high"] - v for v, n in zip(values, ns)],
        ]
        tokens = [points[n]["tokens_per_problem"]["value"] for n in ns]
        label = kind.replace("_", " ") + (f" ({head})" if head else "")
        by_n.errorbar(
            [int(n) for n in ns], values, yerr=errors, color=color, marker=marker, ls=line, capsize=2, label=label
        )
        by_tokens.errorbar(tokens, values, yerr=errors, color=color, marker=marker, ls=line, capsize=2, label=label)
    for ax, xlabel in (
        (by_n, "N (samples, or sequences per search round)"),
        (by_tokens, "generated tokens per problem"),
    ):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    by_n.set_ylabel("accuracy on held-out problems (95% bootstrap CI)")
    by_n.set_title("test-time scaling vs N")
    by_tokens.set_title("test-time scaling vs generated tokens")
    by_n.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", default=str(RESULTS / "selfgen_power.json"))
    parser.add_argument("--write", action="store_true", help=f"replace README.md's {START} block; write the plot")
    args = parser.parse_args()
    result = json.loads(Path(args.result).read_text())
    markdown = "\n".join(
        [
            START,
            "\n*Generated by `python -m benchmarks.selfgen.power_report` from "
            "`benchmarks/results/selfgen_power.json`.*\n",
            section(result),
            END,
        ]
    )
    print(markdown)
    if args.write:
        replace_readme_block(markdown, START, END)
        plot(result, Path(args.result).with_suffix(".png"))


if __name__ == "__main__":
    main()
