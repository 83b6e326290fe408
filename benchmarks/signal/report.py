"""Tables, goal checks and a plot from the step-signal results (benchmarks/results/signal_*.json).

    python -m benchmarks.signal.report                  # print the markdown
    python -m benchmarks.signal.report --write-readme   # replace README.md's <!-- signal:start/end --> block

Every number comes from the JSON files; a missing file leaves its section out (and says so).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PLOT = RESULTS / "signal.png"
START, END = "<!-- signal:start -->", "<!-- signal:end -->"
MATH_SHEPHERD_F1 = 31.5  # ProcessBench average F1 of Math-Shepherd-PRM-7B (ProcessBench paper; docs/anchors.md)


def load(name: str) -> dict | None:
    path = RESULTS / f"signal_{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def ci_pct(ci) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def auc(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def ci_auc(ci) -> str:
    return "" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def metric(result: dict, name: str, average: str = "average") -> float | None:
    return result["averages"][average]["metrics"][name]


def provenance(result: dict) -> str:
    source = result["source"]
    state = "clean tree" if source["clean"] else f"uncommitted changes, diff sha256 {source['diff_sha256'][:12]}"
    data = result["data"]
    solutions = ", ".join(f"{g} {n}" for g, n in data["solutions"].items())
    partial = "" if data["complete"] else " **(PARTIAL extraction)**"
    return (f"{data['dataset']}: {solutions}{partial}; {result['date']}, {result['machine']['processor']}, commit "
            f"{source['commit'][:10]} ({state}), {result['runtime_s'] // 60} min; `{result['command']}`")


def main_row(name: str, r: dict, show_three: bool = True) -> str:
    a = r["averages"]["average"]
    m, ci = a["metrics"], a["interval"]
    three = r["averages"].get("average3")
    cells = [f"`{name}`", r["method"]["labels"], pct(m["f1"]) + ci_pct(ci["f1"]), pct(m["error_acc"]),
             pct(m["correct_acc"]), auc(m["step_auroc"]) + ci_auc(ci["step_auroc"]),
             auc(m.get("auroc_within_length_deciles"))]
    if show_three and three:
        cells.append(pct(three["metrics"]["f1"]) + ci_pct(three["interval"]["f1"]))
    return "| " + " | ".join(cells) + " |"


HEADER = ("| method | labels | F1 [95% CI] | error acc | correct acc | step AUROC [95% CI] | AUROC within length "
          "deciles | F1, 3 splits [95% CI] |\n|---|---|---|---|---|---|---|---|")


def comparison_line(c: dict) -> str:
    scale = 100 if c["metric"] == "f1" else 1
    fmt = (lambda v: f"{scale * v:+.1f}") if c["metric"] == "f1" else (lambda v: f"{v:+.3f}")
    ci = c["interval"]
    verdict = "A beats B" if c["a_beats_b"] else ("B beats A" if ci and ci[1] < 0 else "no difference shown")
    return (f"| `{c['a']}` | `{c['b']}` | {c['metric']} ({c['average']}) | {fmt(c['difference'])} "
            f"[{fmt(ci[0])}, {fmt(ci[1])}] | {verdict} |")


def find(comparisons: list[dict], a: str, b: str, metric: str = "f1", average: str = "average") -> dict | None:
    return next((c for c in comparisons if c["a"] == a and c["b"] == b and c["metric"] == metric
                 and c["average"] == average), None)


def section_heads(heads: dict) -> list[str]:
    out = [f"**Step-supervised heads and baselines** ({provenance(heads)}). Readout `@best` = "
           f"`{heads['notes']['best']['readout']}`, chosen by validation step AUROC on the training splits "
           f"(`@best_hidden` = `{heads['notes']['best_hidden']['readout']}` without structure features; "
           f"`@best_single` = `{heads['notes']['best_single']['readout']}`, the best of one layer, for the MLPs; `@ms` = "
           "MetaStone-S1's hidden_states[-2] at the read token). F1 and accuracies in points: mean over 3 seeds of "
           "the average over the 4 held-out splits; intervals: 95% bootstrap over problems.", "", HEADER]
    out += [main_row(name, r) for name, r in heads["methods"].items()]
    return out


def section_readouts(readouts: dict) -> list[str]:
    out = [f"**Readouts**, screened with the class-balanced L2 logistic probe (L2 tuned on validation; "
           f"{provenance(readouts)}):", "", "| readout | F1 [95% CI] | step AUROC [95% CI] | AUROC within length "
           "deciles | validation AUROC |", "|---|---|---|---|---|"]
    for name, r in readouts["methods"].items():
        a = r["averages"]["average"]
        val = [d.get("validation_step_auroc") for g in r["per_group"].values() for d in g["diagnostics"]]
        val = [v for v in val if v is not None]
        out.append(f"| `{name}` | {pct(a['metrics']['f1'])}{ci_pct(a['interval']['f1'])} | "
                   f"{auc(a['metrics']['step_auroc'])}{ci_auc(a['interval']['step_auroc'])} | "
                   f"{auc(a['metrics'].get('auroc_within_length_deciles'))} | "
                   f"{auc(sum(val) / len(val)) if val else '-'} |")
    return out


def kept_and_spread(r: dict) -> tuple[float | None, float | None, int]:
    kept, spread, edge = [], [], 0
    for g in r["per_group"].values():
        for d, t in zip(g["diagnostics"], g["thresholds"]):
            if "kept_share" in d:
                kept.append(d["kept_share"])
            spread.append(d["score_p10_p90"][1] - d["score_p10_p90"][0])
            edge += t in (0.01, 0.99)
    return (sum(kept) / len(kept) if kept else None), (sum(spread) / len(spread) if spread else None), edge


def section_objectives(objectives: dict) -> list[str]:
    out = [f"**Outcome-only objectives** ({provenance(objectives)}). Labels: `real` = final answer right, "
           "`no_flawed` = the same without right-answer-but-flawed solutions in training, `ideal` = the solution "
           "has no step error (an upper bound for outcome supervision). kept = share of training steps whose "
           "pseudo-label agrees with the label (what the SPR filter keeps); spread = p90 - p10 of held-out step "
           "scores (near 0 = collapsed to a constant); edge = runs whose threshold is 0.01 or 0.99.", "",
           "| method | F1 [95% CI] | error acc | correct acc | step AUROC [95% CI] | kept | spread | edge |",
           "|---|---|---|---|---|---|---|---|"]
    for name, r in objectives["methods"].items():
        a = r["averages"]["average"]
        kept, spread, edge = kept_and_spread(r)
        out.append(f"| `{name}` | {pct(a['metrics']['f1'])}{ci_pct(a['interval']['f1'])} | "
                   f"{pct(a['metrics']['error_acc'])} | {pct(a['metrics']['correct_acc'])} | "
                   f"{auc(a['metrics']['step_auroc'])}{ci_auc(a['interval']['step_auroc'])} | "
                   f"{'-' if kept is None else f'{kept:.2f}'} | {'-' if spread is None else f'{spread:.3f}'} | "
                   f"{edge}/{sum(len(g['thresholds']) for g in r['per_group'].values())} |")
    return out


def goal_lines(heads: dict | None, objectives: dict | None) -> list[str]:
    out = ["**Goals** (issue 15; ProcessBench, 4 splits):", ""]
    step_methods = [n for n in ("probe @best", "tuned_mlp @best_single", "metastone_mlp @best_single")
                    if heads and n in heads["methods"]]
    best_step = None
    if heads:
        base = metric(heads["methods"]["position_length"], "f1")
        for name in step_methods:
            c = find(heads["comparisons"], name, "position_length")
            f1 = metric(heads["methods"][name], "f1")
            met = c is not None and c["difference"] >= 0.03 and c["a_beats_b"]
            out.append(f"- step-supervised `{name}`: F1 {pct(f1)} vs position+length {pct(base)}: "
                       f"{100 * c['difference']:+.1f} [{100 * c['interval'][0]:+.1f}, {100 * c['interval'][1]:+.1f}]"
                       f" (goal +3 with interval above 0): **{'met' if met else 'not met'}**")
            if best_step is None or f1 > best_step[1]:
                best_step = (name, f1)
    if objectives:
        outcome = {n: r for n, r in objectives["methods"].items() if r["method"]["labels"] == "outcome"
                   and r["method"].get("outcome_label", "real") == "real"}
        name, r = max(outcome.items(), key=lambda kv: metric(kv[1], "f1"))
        f1 = metric(r, "f1")
        rand = metric(objectives["methods"]["random"], "f1")
        c = find(objectives["comparisons"], name, "random")
        met = c["difference"] >= 0.05 and c["interval"][0] > 0
        out.append(f"- best outcome-only objective on the real outcome (the maximum over {len(outcome)} methods, so "
                   f"optimistic): `{name}` F1 {pct(f1)} vs random {pct(rand)}: {100 * c['difference']:+.1f} "
                   f"[{100 * c['interval'][0]:+.1f}, {100 * c['interval'][1]:+.1f}] (goal +5, interval above 0): "
                   f"**{'met' if met else 'not met'}**")
        if best_step:
            ratio = f1 / best_step[1]
            out.append(f"- its ratio to the best step-supervised head (`{best_step[0]}`, {pct(best_step[1])}): "
                       f"{ratio:.2f} (goal 0.75: **{'met' if ratio >= 0.75 else 'not met'}**; stretch 0.9: "
                       f"**{'met' if ratio >= 0.9 else 'not met'}**); vs Math-Shepherd-PRM-7B's {MATH_SHEPHERD_F1}: "
                       f"**{'above' if 100 * f1 > MATH_SHEPHERD_F1 else 'below'}**")
    return out


def plot(readouts: dict | None, heads: dict | None, objectives: dict | None) -> bool:
    if readouts is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for pooling, style in (("delimiter", "o-"), ("mean", "s-")):
        points = []
        for name, r in readouts["methods"].items():
            prefix = f"probe {pooling}@"
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                points.append((int(name[len(prefix):]), metric(r, "step_auroc"),
                               r["averages"]["average"]["interval"]["step_auroc"]))
        points.sort()
        if points:
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], style, label=f"probe, {pooling} readout")
            ax.fill_between(xs, [p[2][0] for p in points], [p[2][1] for p in points], alpha=0.15)
    for name, color in (("length", "gray"), ("position_length", "black"), ("random", "red")):
        if name in readouts["methods"]:
            ax.axhline(metric(readouts["methods"][name], "step_auroc"), color=color, ls="--", lw=1, label=name)
    ax.set_xlabel("hidden_states index")
    ax.set_ylabel("step AUROC (4-split average)")
    ax.set_title("Step labels: which layer carries the signal")
    ax.legend(fontsize=7)
    ax = axes[1]
    bars = []
    for source in (heads, objectives):
        for name, r in (source or {}).get("methods", {}).items():
            if any(name == b[0] for b in bars):
                continue
            if source is objectives and r["method"]["labels"] != "outcome":
                continue
            a = r["averages"]["average"]
            bars.append((name, 100 * a["metrics"]["f1"], [100 * v for v in a["interval"]["f1"]],
                         r["method"]["labels"]))
    if bars:
        colors = {"step": "tab:blue", "outcome": "tab:orange", "none": "tab:red"}
        ys = range(len(bars))
        ax.barh(list(ys), [b[1] for b in bars], color=[colors.get(b[3], "gray") for b in bars],
                xerr=[[b[1] - b[2][0] for b in bars], [b[2][1] - b[1] for b in bars]], capsize=2)
        ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=6)
        ax.axvline(MATH_SHEPHERD_F1, color="green", ls=":", lw=1, label="Math-Shepherd-PRM-7B")
        ax.set_xlabel("ProcessBench F1, 4-split average, 95% CI")
        ax.invert_yaxis()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)
    return True


def markdown() -> str:
    heads, readouts, objectives, bbm = (load(n) for n in ("heads", "readouts", "objectives", "bbm"))
    out = [START, "", "*Generated by `python -m benchmarks.signal.report` from `benchmarks/results/signal_*.json`.*", ""]
    if heads:
        out += section_heads(heads) + [""]
    out += goal_lines(heads, objectives) + [""]
    if objectives:
        out += section_objectives(objectives) + [""]
    if readouts:
        out += section_readouts(readouts) + [""]
    if bbm:
        out += [f"**BIG-Bench Mistake, leave one task out** ({provenance(bbm)}):", "", HEADER.replace(
            " | F1, 3 splits [95% CI]", "").replace("|---|---|---|---|---|---|---|---|", "|---|---|---|---|---|---|---|")]
        out += [main_row(n, r, show_three=False) for n, r in bbm["methods"].items()] + [""]
    comparisons = [c for source in (heads, objectives, bbm) if source for c in source["comparisons"]
                   if c["average"] == "average"]
    if comparisons:
        out += ["<details><summary>Paired bootstrap differences (A - B, same resamples)</summary>", "",
                "| A | B | metric | A - B [95% CI] | verdict |", "|---|---|---|---|---|"]
        out += [comparison_line(c) for c in comparisons] + ["", "</details>", ""]
    if plot(readouts, heads, objectives):
        out += [f"![step signal]({PLOT.relative_to(ROOT)})", ""]
    out.append(END)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    text = markdown()
    if not args.write_readme:
        print(text)
        return
    readme = ROOT / "README.md"
    content = readme.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"README.md has no {START} ... {END} block to replace")
    head, rest = content.split(START, 1)
    readme.write_text(head + text.rstrip("\n") + rest.split(END, 1)[1])
    print(f"wrote the block into {readme}")


if __name__ == "__main__":
    main()
