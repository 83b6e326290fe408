"""The README's "Thinking trajectories" block and its plot, from the committed result JSON only
(benchmarks/results/trajectory.json, written by analysis.py), so that the README cannot drift from it.

    python -m benchmarks.trajectory.report            # print the markdown
    python -m benchmarks.trajectory.report --write    # also replace the README block (added after the self-generated
                                                      # loop's block if missing) and write trajectory.png

A JSON from a ``--scale tiny`` job (the CPU pipeline check) is refused by ``--write``: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- trajectory:start -->", "<!-- trajectory:end -->"
AFTER = "<!-- selfgen:end -->"  # where a missing block goes
SELECTION_NAMES = {"think": "thinking score", "response": "response score", "all": "all steps"}


def ci(entry: dict | None, percent: bool = False) -> str:
    """``0.712 (0.650, 0.770)`` or ``53.1% (48.0, 58.2)``; ``-`` when undefined."""
    if not entry or entry.get("value") is None:
        return "-"
    if percent:
        return f"{100 * entry['value']:.1f}% ({100 * entry['low']:.1f}, {100 * entry['high']:.1f})"
    return f"{entry['value']:.3f} ({entry['low']:.3f}, {entry['high']:.3f})"


def signed(entry: dict | None) -> str:
    if not entry or entry.get("value") is None:
        return "-"
    return f"{100 * entry['value']:+.1f} ({100 * entry['low']:+.1f}, {100 * entry['high']:+.1f})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def share(entry: dict) -> str:
    return "-" if entry["share"] is None else f"{100 * entry['share']:.1f}% ({entry['count']} of {entry['of']})"


def recipe(result: dict) -> str:
    job = result["job"]
    config, sft = job["config"], job["sft"]
    mix = ", ".join(f"{k} {v:.0%}" for k, v in config["mix"].items())
    sampling = job["sampling"]
    cut = {s: v["stopped"] for s, v in sampling.items() if v.get("stopped")}
    return (
        "**Data recipe** (`benchmarks/trajectory/data.py`, `gpu_job.py`). Problems are the self-generated loop's "
        f"arithmetic chains ({config['min_ops']}-{config['max_ops']} operations, numbers up to "
        f"{config['max_number']}). "
        "A reference trace thinks in `<think> ... </think>` and then answers with the concise chain; every step ends "
        "with `.\\n\\n`. *Corrected* traces hold a slip followed by an explicit check (`17 - 3 = 13.` `Wait, 17 - 3 "
        "is not 13.` `17 - 3 = 14.`) or an abandoned branch (`Maybe 14 + 2 = 16.` `No, that is the wrong "
        "operation.`); *carried* traces keep a slip to a wrong answer. SmolLM2-135M-Instruct is fine-tuned with LoRA "
        f"(r {config['lora_rank']}, {sft['steps_done']} steps x {config['sft_batch_size']}, lr "
        f"{config['learning_rate']}) on {sum(sft['traces'].values())} reference traces ({mix}); then it samples "
        f"(temperature {config['temperature']}, top_p {config['top_p']}, at most {config['max_new_tokens']} new "
        "tokens) on new problems, its `hidden_states[-2]` captured during generation at every step's read position "
        "(`score_span=\"both\"`). The grader labels every thinking step *right*, *corrected* (wrong, and its value "
        "never reaches the answer: revised, abandoned or superseded) or *carried* (wrong, and its value reaches the "
        "final answer), and every response step right or wrong; heads see only the outcome (the response's final "
        "answer)." + (f" Sampling was cut: {cut}." if cut else "")
    )


def samples_table(result: dict) -> str:
    rows = []
    for split, s in result["job"]["samples"].items():
        think = s["think_steps"]
        rows.append([
            split, f"{s['problems']} x {s['traces'] // max(1, s['problems'])}", f"{100 * s['answer_right']:.1f}%",
            f"{100 * s['with_think_and_response']:.1f}%", think["right"], think["corrected"], think["carried"],
            think.get("wrong", 0), think["None"], f"{s['response_steps']['right']} / {s['response_steps']['wrong']}",
            s["traces_with_corrected_step"], s["right_answer_with_corrected_step"], s["truncated"],
        ])
    return table(["split", "problems x samples", "answer right", "think + response format", "thinking steps right",
                  "corrected", "carried", "wrong, no answer", "unverifiable", "response steps right / wrong",
                  "traces with a corrected step", "right answers with a corrected step", "truncated"], rows)


ASSUMPTIONS = {
    "steps_whose_outcome_is_not_their_label": "steps whose trace outcome is not their own label "
                                              "(`outcome_bce`, `spr` targets that are wrong)",
    "right_traces_with_a_wrong_step": "right answers with a wrong step (`mil`, `asymmetric_spr`, `first_error`: "
                                      "right answer => every step right)",
    "wrong_traces_without_a_wrong_step": "wrong answers without a wrong step "
                                         "(`mil`: wrong answer => some step wrong)",
    "wrong_traces_whose_first_error_was_corrected": "wrong answers whose first error was corrected (`first_error`: "
                                                    "the first error made it wrong)",
}


def assumptions_table(result: dict) -> str:
    found = result["assumptions_in_training_traces"]
    return table(["assumption broken (training traces)", "thinking", "response", "all steps"],
                 [[text] + [share(found[p][key]) for p in ("think", "response", "all")]
                  for key, text in ASSUMPTIONS.items()])


def step_table(result: dict) -> str:
    rows = []
    for name, r in result["results"].items():
        rows.append([
            f"`{name}`", ci(r["corrected_vs_carried"]), ci(r["step_auroc/think"]),
            ci(r["step_auroc/think_right_vs_carried"]), ci(r["step_auroc/response"]),
            " / ".join("-" if r[f"mean_score/{k}"]["value"] is None else f"{r[f'mean_score/{k}']['value']:.2f}"
                       for k in ("right", "corrected", "carried")),
        ])
    return table(["head (objective / heads)", "corrected vs carried AUROC (goal >= 0.7)", "thinking step AUROC",
                  "thinking: right vs carried", "response step AUROC",
                  "mean thinking score right / corrected / carried"], rows)


def bon_table(result: dict, n: int) -> str:
    rows = []
    for name, r in result["results"].items():
        rows.append([f"`{name}`"] + [ci(r.get(f"bon@{n}/{s}"), percent=True) for s in SELECTION_NAMES])
    for name, r in result["selection_baselines"].items():
        rows.append([name.replace("_", " ")] + [ci(r[f"bon@{n}"], percent=True)] * 3)
    return table([f"selection (Best-of-{n})"] + [f"by {v}" for v in SELECTION_NAMES.values()], rows)


def comparisons_table(result: dict) -> str:
    rows = [[f"`{name}`", signed(c), "yes" if c["above_zero"] else "no"] for name, c in result["comparisons"].items()]
    return table(["paired difference (points)", "A - B (95% interval)", "interval above 0"], rows)


def goals_text(result: dict) -> str:
    goals = result["goals"]
    primary = goals["primary"].split(",")[0]
    corrected = goals["corrected_vs_carried_auroc_at_least_0.7"]
    met = [m for m, g in corrected.items() if g["met"]]
    bon = goals["trajectory_head_beats_think_only_and_response_only_at_bon8"]
    lines = [
        f"- **Corrected errors above carried ones (AUROC >= 0.7)**: primary head `{primary}`: "
        f"{ci(corrected.get(primary))}, goal {'met' if corrected.get(primary, {}).get('met') else 'missed'}; "
        f"met by {len(met)} of {len(corrected)} heads" + (f" ({', '.join(f'`{m}`' for m in met)})." if met else "."),
    ]
    for objective, g in bon.items():
        lines.append(
            f"- **Trajectory head beats think-only and response-only at Best-of-8** (`{objective}`): vs think-only "
            f"{signed(g['vs_think_only'])}, vs response-only {signed(g['vs_response_only'])} points: "
            f"{'met' if g['met'] else 'missed'}." + (" (primary)" if primary.startswith(objective + "/") else ""))
    return "\n".join(lines)


def markdown(result: dict) -> str:
    job = result["job"]
    stages = job["stages"]
    n = max(result["ns"]) if result["ns"] else None
    parts = [
        START, "",
        "*Generated by `benchmarks/trajectory/report.py` from `benchmarks/results/trajectory.json`.*", "",
        ("Does outcome-only self-supervision still work when a wrong thinking step is *later corrected* and the answer "
         "is right anyway? Heads per part (`think_only`, `response_only`), one head for both (`both_shared`), a head "
         "per part (`span_heads`), and each with the **trajectory term** (the geometric mean of all step scores "
         "trained against the outcome, beside the step-level loss, as ReasonFlux-PRM combines step and trajectory "
         "rewards), for every outcome-only objective; the step-label head as the ceiling; position-only and random "
         f"scores as the floor. 95% cluster-bootstrap intervals over the {job['samples']['test']['problems']} "
         f"held-out problems ({result['resamples']} resamples), seeds {result['budget']['seeds']} averaged."), "",
        recipe(result), "", samples_table(result), "",
        "**Where each objective's assumption breaks** (true labels of the training traces):", "",
        assumptions_table(result), "",
        "**Step scores on the held-out traces** (AUROC: right above wrong; corrected vs carried: corrected above):", "",
        step_table(result), "",
    ]
    if n is not None:
        parts += [f"**Best-of-{n}** (MetaStone-S1's disjoint groups; outcome = the response's answer right):", "",
                  bon_table(result, n), "", comparisons_table(result), ""]
    tree = "" if result["clean_tree"] else f" (uncommitted changes, diff {result['diff_sha256']})"
    parts += [
        "**Goals.**", "", goals_text(result), "",
        "![thinking trajectories](benchmarks/results/trajectory.png)", "",
        (f"Sampled on {job['machine'].get('gpu') or job['machine']['device']} ({job['date']}): load "
         f"{stages.get('load_s')} s, SFT {stages.get('sft_s')} s, sampling {stages.get('sampling_s')} s "
         f"(`{job['command']}`). Heads and metrics on {result['machine']}, {result['date']}, commit "
         f"{result['commit']}{tree}: `{result['command']}` ({result['analysis_seconds']:.0f} s)."),
        "", END,
    ]
    return "\n".join(parts)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["results"])
    learned = [m for m in names if "/" in m]
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.32 * len(learned) + 2.5), sharey=True)
    for ax, key, title, line in (
        (axes[0], "corrected_vs_carried", "corrected vs carried thinking errors (AUROC)", 0.7),
        (axes[1], f"bon@{max(result['ns'])}/all" if result["ns"] else None, "Best-of-N by all steps", None),
    ):
        if key is None:
            continue
        values = [result["results"][m].get(key) or {} for m in learned]
        y = range(len(learned))
        x = [v.get("value") or 0 for v in values]
        err = [[(v.get("value") or 0) - (v.get("low") or 0) for v in values],
               [(v.get("high") or 0) - (v.get("value") or 0) for v in values]]
        ax.barh(list(y), x, xerr=err, color=["tab:orange" if "trajectory" in m else "tab:blue" for m in learned])
        ax.set_title(title)
        if line is not None:
            ax.axvline(line, color="k", ls="--", lw=1, label="goal")
            ax.axvline(0.5, color="grey", ls=":", lw=1, label="chance")
        else:
            for baseline, style in (("majority_vote", "--"), ("random_pick", ":")):
                value = result["selection_baselines"][baseline][f"bon@{max(result['ns'])}"]["value"]
                ax.axvline(value, color="k", ls=style, lw=1, label=baseline.replace("_", " "))
        ax.legend(loc="lower right")
    axes[0].set_yticks(range(len(learned)), learned)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_readme_block(block: str, readme: Path) -> None:
    """Replace the README's block, or add it as a "Thinking trajectories" section after the loop's block."""
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    elif AFTER in text:
        text = text.replace(AFTER, AFTER + "\n\n### Thinking trajectories: self-revising traces, both parts scored\n\n"
                            + block, 1)
    else:
        raise SystemExit(f"{readme} has neither a {START} block nor {AFTER} to put one after")
    readme.write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(RESULTS / "trajectory.json"))
    parser.add_argument("--write", action="store_true", help="write the README block and the plot")
    args = parser.parse_args(argv)
    path = Path(args.results)
    if not path.is_file():
        raise SystemExit(f"--results {path}: no such file (run benchmarks/trajectory/analysis.py first)")
    result = json.loads(path.read_text())
    block = markdown(result)
    print(block)
    if args.write:
        if result["scale"] != "full":
            raise SystemExit(f"{path} comes from a --scale {result['scale']} job: not a result for the README")
        write_readme_block(block, ROOT / "README.md")
        plot(result, RESULTS / "trajectory.png")
        print(f"wrote README.md and {RESULTS / 'trajectory.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
