"""The self-generated loop, evaluated against ground truth: SPRM heads trained on the policy's own samples with
outcome labels only (final answer checked), then step-error detection against the true step labels and Best-of-N
on held-out problems. Writes benchmarks/results/selfgen_loop.json.

    python -m benchmarks.selfgen.sample_rollouts --split test
    python -m benchmarks.selfgen.sample_rollouts --split train
    python -m benchmarks.selfgen.loop
    python -m benchmarks.selfgen.report --write   # README_section.md and selfgen_loop.png from the JSON

Features are the frozen policy's own hidden_states[-2] at the step read positions, captured while it sampled
(``sample_rollouts.py``): the head never sees a second forward pass. Heads (the methods of
``benchmarks/central_experiment.py``, same definitions, same budget, ``--seeds`` seeds each):

* outcome labels only: ``sprm_metastone`` (MetaStone-S1's SPR loss on raw features, as published), ``sprm`` (the
  same loss on standardised features), ``asymmetric_spr``, ``mil_product``, ``first_error``, ``outcome_bce``;
* ``step_supervised``: ``step_bce`` on the grader's true step labels (every step of a trace after its first error is
  labelled wrong): the ceiling of a step-supervised head on the same features;
* trivial: ``position_only`` (logistic regression on step position/length, trained on the true step labels) and
  ``random`` (for step-error detection only).

Per seed, 20% of the training problems (all their samples) are held out from head training; the first-error
threshold is chosen there (from the true first errors of training samples, never the test split). Reported on the
held-out test problems:

* step-error detection: ProcessBench first-error F1 (with that threshold, and at a fixed 0.5 that needs no step label
  at all), step AUROC on ProcessBench-style labels (steps up to the first error) and on all steps (the grader's
  labels), outcome AUROC of the aggregated score;
* Best-of-N at N = 2/8/32 with MetaStone-S1's disjoint groups over the samples of each problem: SPRM pick and
  SPRM-weighted vote per head, majority vote, random pick (its expected accuracy) and the oracle (any right).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.central_experiment import METHODS  # noqa: E402
from benchmarks.prm_protocols import (  # noqa: E402
    Budget,
    fit_head as train_head,
    head_for,
    machine_info,
    position_baseline,
    random_baseline,
    score_rows,
    summarize_seeds as summarize,
)

from modeling_sprm.data import labels_from_first_error  # noqa: E402
from modeling_sprm.evaluation import (  # noqa: E402
    best_of_n_accuracy,
    choose_threshold,
    majority_vote_accuracy,
    outcome_auroc,
    predict_first_error,
    processbench_f1,
    step_auroc,
)
from modeling_sprm.modeling_sprm import SPRMForStepScoring  # noqa: E402
from benchmarks.selfgen.common import load_rollouts  # noqa: E402

CACHE = Path.home() / ".cache/sprm/selfgen"
DEFAULT_METHODS = ["sprm_metastone", "sprm", "asymmetric_spr", "mil_product", "first_error", "outcome_bce",
                   "step_supervised"]
DETECTION = ("f1", "error_acc", "correct_acc", "f1_at_0.5", "step_auroc", "step_auroc_all_steps", "outcome_auroc",
             "threshold")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy-tag", default="ops2-4_max30_s80")
    parser.add_argument("--policies-dir", default=str(CACHE / "policies"))
    parser.add_argument("--rollouts-dir", default=str(CACHE / "rollouts"))
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=[m.name for m in METHODS])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=20)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threshold-fraction", type=float, default=0.2,
                        help="share of training problems held out from head training to choose the threshold")
    parser.add_argument("--ns", nargs="+", type=int, default=[2, 8, 32], help="Best-of-N sizes")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. how the sizes were chosen)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/selfgen_loop.json"))
    return parser.parse_args()


# -- rows ----------------------------------------------------------------------------------------------------------


def load_split(folder: Path, split: str) -> tuple[list[dict], dict]:
    """Graded samples with their step features, as rows the trainers and ``score_rows`` take, and the sampling
    record of the split (sizes, seconds, the command)."""
    rows = load_rollouts(folder / split)
    for row in rows:
        row.update(
            id=f"{split}-{row['problem']}-{row['sample']}",
            num_steps=len(row["steps"]),
            rollout_truncated=row["truncated"],
            step_chars=[len(s) for s in row["steps"]],  # for the position-only baseline
        )
    metas = [json.loads(p.read_text()) for p in sorted((folder / split).glob("*.meta.json"))]
    sampling = {
        "problems": len({r["problem"] for r in rows}),
        "samples_per_problem": sorted({len(g) for g in by_problem(rows, "sample")}),
        "samples": len(rows),
        "chunks": len(metas),
        "seconds": round(sum(m["seconds"] for m in metas), 1),
        "cpu_seconds": round(sum(m["cpu_seconds"] for m in metas), 1),
        "commands": sorted({m["command"] for m in metas}),
    }
    return rows, sampling


def by_problem(rows: list[dict], key) -> list[list]:
    """``[problem][sample]`` values of ``key`` (a field name or a function of the row), samples in sampling order
    (the order MetaStone-S1's disjoint groups are cut in)."""
    problems: dict[int, list[dict]] = {}
    for row in rows:
        problems.setdefault(row["problem"], []).append(row)
    get = key if callable(key) else (lambda r: r[key])
    return [[get(r) for r in sorted(group, key=lambda r: r["sample"])] for _, group in sorted(problems.items())]


def sample_stats(rows: list[dict]) -> dict:
    """How the policy's own samples mix right and wrong, and how outcome and process disagree."""
    correct = by_problem(rows, "outcome_label")
    right = np.array([r["outcome_label"] == 1.0 for r in rows])
    clean = np.array([r["first_error"] == -1 for r in rows])
    return {
        "answer_right": float(right.mean()),
        "every_step_right": float((clean & right).mean()),
        "right_answer_wrong_step": float((~clean & right).mean()),
        "wrong_answer_no_step_error": float((clean & ~right).mean()),
        "problems_with_mixed_samples": float(np.mean([0 < sum(g) < len(g) for g in correct])),
        "problems_all_right": float(np.mean([sum(g) == len(g) for g in correct])),
        "problems_none_right": float(np.mean([sum(g) == 0 for g in correct])),
        "truncated": int(sum(r["truncated"] for r in rows)),
        "no_steps": int(sum(len(r["steps"]) == 0 for r in rows)),
        "mean_steps": float(np.mean([len(r["steps"]) for r in rows])),
        "mean_tokens": float(np.mean([r["num_tokens"] for r in rows])),
    }


def split_by_problem(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """``(fit, threshold)``: all samples of a seeded ``fraction`` of the problems go to ``threshold``."""
    problems = sorted({r["problem"] for r in rows})
    held = set(random.Random(seed).sample(problems, max(1, round(fraction * len(problems)))))
    return [r for r in rows if r["problem"] not in held], [r for r in rows if r["problem"] in held]


# -- metrics -------------------------------------------------------------------------------------------------------


def detection(scored: list[dict], rows: list[dict], threshold: float) -> dict:
    """Step-error detection on ``rows`` against the grader's true step labels."""
    step_scores = [s["step_scores"] for s in scored]
    labels = [r["first_error"] for r in rows]
    out = processbench_f1([predict_first_error(s, threshold) for s in step_scores], labels)
    out["threshold"] = threshold
    out["f1_at_0.5"] = processbench_f1([predict_first_error(s, 0.5) for s in step_scores], labels)["f1"]
    out["step_auroc"] = step_auroc(step_scores, [labels_from_first_error(r["num_steps"], r["first_error"])
                                                 for r in rows])
    out["step_auroc_all_steps"] = step_auroc(step_scores, [r["step_labels"] for r in rows])
    out["outcome_auroc"] = outcome_auroc([s["score"] for s in scored], [r["outcome_label"] for r in rows])
    return out


def best_of_n(scored: list[dict], rows: list[dict], ns: list[int]) -> dict:
    """SPRM pick and SPRM-weighted vote at each N (disjoint groups)."""
    correct = by_problem(rows, "outcome_label")
    answers = by_problem(rows, "answer")
    score_of = {r["id"]: s["score"] for r, s in zip(rows, scored)}
    scores = by_problem(rows, lambda r: score_of[r["id"]])
    return {
        "sprm_pick": {str(n): best_of_n_accuracy(scores, correct, n) for n in ns},
        "sprm_weighted_vote": {str(n): majority_vote_accuracy(answers, correct, n, weights=scores) for n in ns},
    }


def selection_baselines(rows: list[dict], ns: list[int]) -> dict:
    """Best-of-N without a scorer: majority vote, the expected accuracy of a random pick, the oracle."""
    correct = by_problem(rows, "outcome_label")
    answers = by_problem(rows, "answer")
    random_pick = float(np.mean([np.mean(c) for c in correct]))  # a random pick's expected accuracy, at any N
    return {
        "majority_vote": {str(n): majority_vote_accuracy(answers, correct, n) for n in ns},
        "random_pick": {str(n): random_pick for n in ns},
        "oracle": {str(n): best_of_n_accuracy(correct, correct, n) for n in ns},
    }


def summarize_runs(runs: list[dict], ns: list[int]) -> dict:
    """Mean and spread over seeds of every metric of a method."""
    out = {"detection": {m: summarize([r["detection"][m] for r in runs]) for m in DETECTION}}
    if "best_of_n" in runs[0]:
        out["best_of_n"] = {
            kind: {str(n): summarize([r["best_of_n"][kind][str(n)] for r in runs]) for n in ns}
            for kind in runs[0]["best_of_n"]
        }
    return out


# -- the experiment ------------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and far faster on a shared machine
    started = time.time()
    folder = Path(args.rollouts_dir).expanduser() / args.policy_tag
    train_rows, train_sampling = load_split(folder, "train")
    test_rows, test_sampling = load_split(folder, "test")
    if {r["question"] for r in train_rows} & {r["question"] for r in test_rows}:
        raise RuntimeError("a test problem is also a training problem")
    for n in args.ns:
        if min(len(g) for g in by_problem(test_rows, "sample")) < n:
            raise ValueError(f"Best-of-{n} needs at least {n} test samples per problem")
    policy = Path(args.policies_dir).expanduser() / args.policy_tag / "merged"
    model = SPRMForStepScoring.from_backbone(str(policy), backbone_name_or_path=f"selfgen policy {args.policy_tag}")
    methods = [m for m in METHODS if m.name in args.methods]
    budget = Budget(args.epochs, args.learning_rate, args.batch_size)
    print(f"train: {len(train_rows)} samples of {train_sampling['problems']} problems; "
          f"test: {len(test_rows)} samples of {test_sampling['problems']} problems", flush=True)

    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            fit, held = split_by_problem(train_rows, args.threshold_fraction, seed)
            for method in methods:
                start = time.time()
                head = head_for(model, method)
                train_head(head, method, fit, seed, budget, tmp)
                threshold = choose_threshold([s["step_scores"] for s in score_rows(head, held)],
                                             [r["first_error"] for r in held])
                scored = score_rows(head, test_rows)
                run = {"seed": seed, "seconds": round(time.time() - start, 1),
                       "detection": detection(scored, test_rows, threshold),
                       "best_of_n": best_of_n(scored, test_rows, args.ns)}
                runs.setdefault(method.name, []).append(run)
                d, b = run["detection"], run["best_of_n"]["sprm_pick"]
                print(f"seed {seed} {method.name:<16} F1 {d['f1']:.3f} step AUROC {d['step_auroc']:.3f} "
                      f"outcome AUROC {d['outcome_auroc']:.3f} BoN "
                      + " ".join(f"@{n} {b[str(n)]:.3f}" for n in args.ns) + f" ({run['seconds']:.0f} s)", flush=True)
            for name, scorer in (("position_only", position_baseline(fit, seed)),
                                 ("random", lambda r, s=seed: random_baseline(r, s))):
                threshold = choose_threshold([s["step_scores"] for s in scorer(held)], [r["first_error"] for r in held])
                runs.setdefault(name, []).append({"seed": seed, "detection": detection(scorer(test_rows), test_rows,
                                                                                      threshold)})

    result = {
        **machine_info(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(),
        "command": "python -m benchmarks.selfgen.loop " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k not in ("policies_dir", "rollouts_dir", "out", "note")
        ),
        "note": args.note,
        "policy": f"{args.policy_tag}: SmolLM2-135M-Instruct + LoRA SFT, merged (selfgen_policy_search.json)",
        "features": "the policy's own hidden_states[-2] at each step's read position, captured while it sampled",
        "sampling": {"train": train_sampling, "test": test_sampling, "temperature": 0.6, "top_p": 0.95,
                     "max_new_tokens": 96},
        "samples": {"train": sample_stats(train_rows), "test": sample_stats(test_rows)},
        "budget": vars(budget),
        "threshold": f"chosen per seed on the true first errors of {args.threshold_fraction:.0%} of the training "
                     "problems, held out from head training",
        "methods": {m.name: {"labels": m.labels, "loss": m.loss, "loss_options": m.loss_options,
                             "feature_normalization": m.feature_normalization} for m in methods},
        "ns": args.ns,
        "selection_baselines": selection_baselines(test_rows, args.ns),
        "runs": runs,
        "summary": {name: summarize_runs(method_runs, args.ns) for name, method_runs in runs.items()},
        "head_training_seconds": round(time.time() - started, 1),
    }
    result["runtime_s"] = round(train_sampling["seconds"] + test_sampling["seconds"] + result["head_training_seconds"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}: sampling {train_sampling['seconds'] + test_sampling['seconds']:.0f} s, heads "
          f"{result['head_training_seconds']:.0f} s")


if __name__ == "__main__":
    main()
