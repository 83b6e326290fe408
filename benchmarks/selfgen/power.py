"""The self-generated loop at power: self-supervision vs Monte-Carlo labels vs true step labels, with intervals over
problems. Reads the outputs of ``gpu_job.py`` and writes benchmarks/results/selfgen_power.json.

    python -m benchmarks.selfgen.gpu_job --out OUT --backbone PATH      # on the GPU machine (gpu_carry.sh)
    python -m benchmarks.selfgen.power --job OUT                         # here, on CPU (heads retrained, seeded)
    python -m benchmarks.selfgen.power_report --write                    # README block and the scaling plot

What it measures, on the held-out test problems of the job (every number with a 95% bootstrap interval over
problems: problems are resampled with replacement, all samples of a problem together; a comparison is a paired
bootstrap of the difference on the same resamples):

* **Training-size curve**: heads trained on the first 6 / 12 / 24 / 48 / 96 / 192 training problems (all 8 samples
  each; 20% of those problems held out to choose the first-error threshold), ``--seeds`` seeds each, averaged.
  Methods (``heads.py``): ``step_supervised`` (the grader's true step labels: the human-quality reference),
  outcome-only objectives (``mil_product``, ``outcome_bce``, ``sprm``, ``asymmetric_spr``, ``first_error``), and
  Monte-Carlo-labelled heads (``mc_soft``, ``mc_hard``: K finishes per step prefix). Baselines: step position and
  length only (trained on the true labels), random scores. Metrics: step AUROC up to the first error
  (ProcessBench-style labels), step AUROC over all steps, first-error F1 (threshold from the training problems held
  out) and F1 at 0.5, outcome AUROC.
* **Equal generated-token budget**: what the training labels cost in generated tokens (the solutions themselves;
  plus the MC finishes for MC labels); each MC-labelled head is compared with the outcome-only head trained on the
  most problems whose labels cost no more.
* **Selection** (heads trained on every training problem): Best-of-N with MetaStone-S1's disjoint groups, the
  SPRM-weighted vote, majority vote, random pick (expected), oracle, at N = 1 ... 32.
* **Test-time scaling**: accuracy against N and against generated tokens per problem for majority vote, Best-of-N,
  weighted vote (from the 32 samples) and step beam search and DVTS (run by the job with its heads), on the
  problems the job searched; each search is compared with Best-of-N given at least as many tokens.
* **Joint LoRA training** (from the job): step scores of the frozen / joint / joint + LM arms on the test solutions.

Trained heads are cached per (size, method, seed) in ``--cache`` (default ``~/.cache/sprm/selfgen/power``), so a
rerun only recomputes the statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from benchmarks.prm_protocols import machine_info, position_baseline, random_baseline, score_rows
from benchmarks.selfgen import heads
from benchmarks.selfgen.gpu_job import SEARCH_HEADS, by_problem, load_features
from benchmarks.selfgen.loop import sample_stats
from benchmarks.trajectory.bootstrap import interval, problem_weights, resample_counts, resampled_mean, weighted_auroc
from modeling_sprm.aggregation import aggregate_scores
from modeling_sprm.data import labels_from_first_error
from modeling_sprm.evaluation import choose_threshold, majority_vote_accuracy, predict_first_error

ROOT = Path(__file__).resolve().parents[2]

OUTCOME_METHODS = ["mil_product", "outcome_bce", "sprm", "asymmetric_spr", "first_error"]
MC = ["mc_soft", "mc_hard"]
METHODS = ["step_supervised"] + OUTCOME_METHODS + MC
SIZES = [6, 12, 24, 48, 96, 192]
NS = [1, 2, 4, 8, 16, 32]
METRICS = ("step_auroc", "step_auroc_all_steps", "f1", "f1_at_0.5", "outcome_auroc")
THRESHOLD_FRACTION = 0.2
REFERENCE_HEAD = "mil_product"  # the outcome-only head named in the issue (best in the 48-problem loop)


# -- statistics: bootstrap over problems ---------------------------------------------------------------------------


class Bootstrap:
    """Resamples of the test problems (``trajectory.bootstrap``'s cluster bootstrap): ``counts`` ``[B + 1, P]``, row
    0 every problem once (the point estimate), rows 1.. the multinomial resamples of ``resample_counts``."""

    def __init__(self, problems: list[int], resamples: int, seed: int = 0):
        self.problems = sorted(problems)
        self.index = {p: i for i, p in enumerate(self.problems)}
        draws = resample_counts(len(self.problems), resamples, seed).astype(float)
        self.counts = np.vstack([np.ones((1, len(self.problems))), draws])

    def weights(self, problem_of_item: list[int] | np.ndarray) -> np.ndarray:
        """``[B + 1, items]``: each item weighted by its problem's count in each resample."""
        return problem_weights([self.index[p] for p in problem_of_item], self.counts)


def summary(rows: np.ndarray) -> dict:
    """``trajectory.bootstrap.interval`` of a metric computed per row (row 0: the point estimate)."""
    rows = np.asarray(rows, dtype=float)
    return interval(None if np.isnan(rows[0]) else float(rows[0]), rows[1:])


def difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired bootstrap of ``a - b`` (both ``[B + 1]`` on the same resamples), with the share of resamples where
    the difference is above 0."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rest = d[1:][~np.isnan(d[1:])]
    return {**summary(d), "share_above_0": float(np.mean(rest > 0)) if rest.size else None}


def weighted_f1(hit: np.ndarray, has_error: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ProcessBench F1 (harmonic mean of the accuracy on solutions with and without an error) per weight row."""
    hit, has_error = np.asarray(hit, dtype=float), np.asarray(has_error, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        error_acc = (weights * hit * has_error).sum(1) / (weights * has_error).sum(1)
        correct_acc = (weights * hit * ~has_error).sum(1) / (weights * ~has_error).sum(1)
        f1 = 2 * error_acc * correct_acc / (error_acc + correct_acc)
    return np.where((error_acc + correct_acc) == 0, 0.0, f1)


def problem_mean(values: dict[int, float], boot: Bootstrap) -> np.ndarray:
    """Mean over problems of a per-problem value, per resample (problems without a value are left out)."""
    kept = [p for p in boot.problems if p in values]
    with np.errstate(invalid="ignore", divide="ignore"):
        return resampled_mean([values[p] for p in kept], boot.weights(kept))


# -- detection metrics ---------------------------------------------------------------------------------------------


def detection_rows(scored: list[dict], rows: list[dict], threshold: float, boot: Bootstrap) -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` per resample for one head's scores on the test rows."""
    first, every = [], []  # (score, label, problem) of every step up to the first error / of every step
    for s, r in zip(scored, rows):
        for value, label in zip(s["step_scores"], labels_from_first_error(len(r["steps"]), r["first_error"])):
            if label is not None:
                first.append((value, label, r["problem"]))
        every += [(value, label, r["problem"]) for value, label in zip(s["step_scores"], r["step_labels"])]

    def step_auroc(items: list[tuple]) -> np.ndarray:
        if not items:
            return np.full(boot.counts.shape[0], np.nan)
        scores, labels, problem = zip(*items)
        return weighted_auroc(scores, labels, boot.weights(problem))

    solution_weights = boot.weights([r["problem"] for r in rows])
    has_error = np.array([r["first_error"] != -1 for r in rows])

    def hits(t: float) -> np.ndarray:
        return np.array([predict_first_error(s["step_scores"], t) == r["first_error"] for s, r in zip(scored, rows)])

    return {
        "step_auroc": step_auroc(first),
        "step_auroc_all_steps": step_auroc(every),
        "f1": weighted_f1(hits(threshold), has_error, solution_weights),
        "f1_at_0.5": weighted_f1(hits(0.5), has_error, solution_weights),
        "outcome_auroc": weighted_auroc(
            [s["score"] for s in scored], [r["outcome_label"] for r in rows], solution_weights
        ),
    }


# -- selection (Best-of-N, votes) ----------------------------------------------------------------------------------


def groups(num_samples: int, n: int) -> list[range]:
    """MetaStone-S1's disjoint groups of ``n`` consecutive samples (``evaluation.best_of_n_accuracy``)."""
    return [range(g * n, (g + 1) * n) for g in range(num_samples // n)]


def pick_accuracy(scores: list[float], correct: list[float], n: int) -> float:
    """Best-of-N of one problem: mean correctness of each group's highest-scoring sample (the first on a tie)."""
    return float(np.mean([correct[g[int(np.argmax([scores[i] for i in g]))]] for g in groups(len(scores), n)]))


def vote_accuracy(answers: list, correct: list[float], n: int, weights: list[float] | None = None) -> float:
    """(Weighted) majority vote of one problem per group (``evaluation.majority_vote_accuracy`` on one problem)."""
    return majority_vote_accuracy([answers], [correct], n, None if weights is None else [weights])


def group_tokens(tokens: list[int], n: int) -> float:
    return float(np.mean([sum(tokens[i] for i in g) for g in groups(len(tokens), n)]))


# -- the experiment ------------------------------------------------------------------------------------------------


def load_job(folder: Path) -> tuple[dict, list[dict], list[dict]]:
    """``(manifest, rows with float32 step_features, search rows)`` of a gpu_job.py output folder."""
    manifest = json.loads((folder / "manifest.json").read_text())
    features = load_features(folder).float()
    rows = []
    for line in (folder / "rollouts.jsonl").read_text().splitlines():
        row = json.loads(line)
        row["step_features"] = features[row["feature_offset"] : row["feature_offset"] + row["num_steps"]]
        rows.append(row)
    search = [json.loads(line) for line in (folder / "search.jsonl").read_text().splitlines()]
    return manifest, rows, search


def as_head_rows(rows: list[dict]) -> list[dict]:
    """Rows for ``score_rows`` / the baselines: ids, features, labels, and step lengths."""
    return [
        {
            **r,
            "id": f"{r['split']}-{r['problem']}-{r['sample']}",
            "num_steps": len(r["steps"]),
            "step_chars": [len(s) for s in r["steps"]],
        }
        for r in rows
    ]


def split_problems(rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """``(fit, threshold)`` rows: a seeded 20% of the problems (at least one) choose the threshold."""
    import random

    problems = sorted({r["problem"] for r in rows})
    held = set(random.Random(seed).sample(problems, max(1, round(THRESHOLD_FRACTION * len(problems)))))
    return [r for r in rows if r["problem"] not in held], [r for r in rows if r["problem"] in held]


def trained_scores(rows_by_size: dict, test: list[dict], size: int, name: str, seed: int, cache: Path, carrier):
    """Test scores and threshold of one head, from the cache or trained now."""
    path = cache / f"{name}-{size}-{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    fit, held = split_problems(rows_by_size[size], seed)
    if name == "position_only":
        scorer = position_baseline(as_head_rows(fit), seed)
    elif name == "random":
        scorer = lambda rows, s=seed: random_baseline(rows, s)  # noqa: E731
    else:
        head = heads.train(carrier, name, fit, seed)
        scorer = lambda rows: score_rows(head, rows)  # noqa: E731
    held_scores = scorer(as_head_rows(held))
    try:
        threshold, note = (
            choose_threshold([s["step_scores"] for s in held_scores], [r["first_error"] for r in held]),
            None,
        )
    except ValueError:  # the held-out problems have no solution with (or without) an error
        threshold, note = 0.5, "the held-out training problems cannot choose a threshold: 0.5"
    out = {
        "threshold": threshold,
        "threshold_note": note,
        "scored": [{"step_scores": s["step_scores"], "score": s["score"]} for s in scorer(as_head_rows(test))],
    }
    path.write_text(json.dumps(out))
    return out


def git_state() -> dict:
    def run(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout

    diff = run("git", "diff", "HEAD")
    status = run("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "clean_tree": not status.strip(),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="output folder of gpu_job.py")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sizes", nargs="+", type=int, default=SIZES, help="training problems per head")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of the test problems")
    parser.add_argument("--cache", default=str(Path.home() / ".cache/sprm/selfgen/power"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/selfgen_power.json"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    job = Path(args.job)
    manifest, rows, search = load_job(job)
    cache = Path(args.cache).expanduser() / hashlib.sha256((job / "rollouts.jsonl").read_bytes()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    train = [r for r in rows if r["split"] == "train"]
    test = sorted((r for r in rows if r["split"] == "test"), key=lambda r: (r["problem"], r["sample"]))
    if not train or not test:
        raise SystemExit(f"{job}: needs training and test solutions (train {len(train)}, test {len(test)})")
    train_problems = sorted({r["problem"] for r in train})
    mc_problems = sorted({r["problem"] for r in train if "mc_soft" in r})
    sizes = [s for s in args.sizes if s <= len(train_problems)]
    rows_by_size = {s: [r for r in train if r["problem"] in set(train_problems[:s])] for s in sizes}
    boot = Bootstrap(sorted({r["problem"] for r in test}), args.bootstrap)
    carrier = heads.carrier(rows[0]["step_features"].shape[1])
    print(
        f"train {len(train)} solutions of {len(train_problems)} problems ({len(mc_problems)} with MC labels), "
        f"test {len(test)} of {len(boot.problems)}; sizes {sizes}",
        flush=True,
    )

    # 1. heads at every training size -> per-resample metrics (mean over seeds)
    curve: dict = {}
    metric_rows: dict = {}  # (method, size) -> metric -> [B + 1]
    scored_full: dict = {}  # method -> seed -> scored test rows (at the largest size)
    for size in sizes:
        for name in args.methods + ["position_only", "random"]:
            if name in MC and not set(train_problems[:size]) <= set(mc_problems):
                continue
            if name in ("position_only", "random") and size != sizes[-1]:
                continue
            start = time.time()
            per_seed = [trained_scores(rows_by_size, test, size, name, seed, cache, carrier) for seed in args.seeds]
            per_metric = [detection_rows(r["scored"], test, r["threshold"], boot) for r in per_seed]
            metric_rows[(name, size)] = {m: np.nanmean([p[m] for p in per_metric], axis=0) for m in METRICS}
            tokens = sum(
                r["num_tokens"] + (r.get("mc_rollout_tokens", 0) if name in MC else 0) for r in rows_by_size[size]
            )
            curve.setdefault(name, {})[str(size)] = {
                **{m: summary(metric_rows[(name, size)][m]) for m in METRICS},
                "label_tokens": int(tokens),
                "solutions": len(rows_by_size[size]),
                "seeds": len(args.seeds),
                "thresholds": [r["threshold"] for r in per_seed],
            }
            if size == sizes[-1]:
                scored_full[name] = [r["scored"] for r in per_seed]
            point = curve[name][str(size)]["step_auroc"]["value"]
            print(
                f"size {size:3d} {name:<16} step AUROC {point if point is None else round(point, 3)} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )

    comparisons = []
    for size in sizes:
        for name in args.methods + ["position_only", "random"]:
            if (
                name == "step_supervised"
                or (name, size) not in metric_rows
                or ("step_supervised", size) not in metric_rows
            ):
                continue
            for metric in ("step_auroc", "step_auroc_all_steps", "f1"):
                comparisons.append(
                    {
                        "a": name,
                        "b": "step_supervised",
                        "size": size,
                        "metric": metric,
                        **difference(metric_rows[(name, size)][metric], metric_rows[("step_supervised", size)][metric]),
                    }
                )

    # 2. equal generated-token budget: each MC head vs the outcome-only head with the most problems it can afford
    equal_budget = []
    for name in MC:
        for size in sizes:
            if (name, size) not in metric_rows:
                continue
            cost = curve[name][str(size)]["label_tokens"]
            affordable = [
                s for s in sizes if curve.get(REFERENCE_HEAD, {}).get(str(s), {}).get("label_tokens", 1e18) <= cost
            ]
            if not affordable:
                continue
            s_out = max(affordable)
            for metric in ("step_auroc", "step_auroc_all_steps"):
                equal_budget.append(
                    {
                        "mc_head": name,
                        "mc_size": size,
                        "mc_tokens": cost,
                        "outcome_head": REFERENCE_HEAD,
                        "outcome_size": s_out,
                        "outcome_tokens": curve[REFERENCE_HEAD][str(s_out)]["label_tokens"],
                        "metric": metric,
                        **difference(metric_rows[(name, size)][metric], metric_rows[(REFERENCE_HEAD, s_out)][metric]),
                    }
                )

    # 3. selection at N = 1 ... 32 (heads at the largest size; per-problem values averaged over seeds)
    problems = by_problem(test)
    num_samples = min(len(v) for v in problems.values())
    ns = [n for n in NS if n <= num_samples]
    per_problem: dict[tuple, dict[int, float]] = {}
    tokens_at: dict[int, dict[int, float]] = {}
    for n in ns:
        for p, group in problems.items():
            group = group[:num_samples]
            correct = [r["outcome_label"] for r in group]
            answers = [r["answer"] for r in group]
            per_problem.setdefault(("majority_vote", n), {})[p] = vote_accuracy(answers, correct, n)
            per_problem.setdefault(("random_pick", n), {})[p] = float(np.mean(correct))
            per_problem.setdefault(("oracle", n), {})[p] = pick_accuracy(correct, correct, n)
            tokens_at.setdefault(n, {})[p] = group_tokens([r["num_tokens"] for r in group], n)
    index = {(r["problem"], r["sample"]): i for i, r in enumerate(test)}
    for name, per_seed in scored_full.items():
        if name in ("random",):
            continue
        for n in ns:
            for p, group in problems.items():
                group = group[:num_samples]
                correct = [r["outcome_label"] for r in group]
                answers = [r["answer"] for r in group]
                picks, votes = [], []
                for scored in per_seed:
                    scores = [scored[index[(r["problem"], r["sample"])]]["score"] for r in group]
                    picks.append(pick_accuracy(scores, correct, n))
                    votes.append(vote_accuracy(answers, correct, n, scores))
                per_problem.setdefault((f"sprm_pick:{name}", n), {})[p] = float(np.mean(picks))
                per_problem.setdefault((f"sprm_weighted_vote:{name}", n), {})[p] = float(np.mean(votes))
    selection_rows = {key: problem_mean(values, boot) for key, values in per_problem.items()}
    selection = {}
    for (kind, n), values in selection_rows.items():
        selection.setdefault(kind, {})[str(n)] = summary(values)
    selection_comparisons = []
    for n in ns:
        for name in scored_full:
            for kind in ("sprm_pick", "sprm_weighted_vote"):
                key = (f"{kind}:{name}", n)
                if key in selection_rows:
                    selection_comparisons.append(
                        {
                            "a": f"{kind}:{name}",
                            "b": "majority_vote",
                            "n": n,
                            **difference(selection_rows[key], selection_rows[("majority_vote", n)]),
                        }
                    )

    # 4. test-time scaling on the searched problems (same problems for every method)
    searched = sorted({r["problem"] for r in search}) or boot.problems
    sboot = Bootstrap(searched, args.bootstrap, seed=1)
    scaling: dict = {}
    scaling_rows: dict = {}

    def add_point(method: str, n: int, correct: dict[int, float], tokens: dict[int, float]) -> None:
        rows_ = problem_mean(correct, sboot)
        scaling_rows[(method, n)] = rows_
        scaling.setdefault(method, {})[str(n)] = {
            **summary(rows_),
            "tokens_per_problem": summary(problem_mean(tokens, sboot)),
        }

    for n in ns:
        subset = {p: tokens_at[n][p] for p in searched if p in tokens_at[n]}
        add_point("majority_vote", n, {p: per_problem[("majority_vote", n)][p] for p in subset}, subset)
        for name in SEARCH_HEADS:
            for kind in ("sprm_pick", "sprm_weighted_vote"):
                if (f"{kind}:{name}", n) in per_problem:
                    add_point(f"{kind}:{name}", n, {p: per_problem[(f"{kind}:{name}", n)][p] for p in subset}, subset)
    for head, method, n in sorted({(r["head"], r["method"], r["n"]) for r in search}):
        chosen = [r for r in search if (r["head"], r["method"], r["n"]) == (head, method, n)]
        add_point(
            f"{method}:{head}",
            n,
            {r["problem"]: float(r["correct"]) for r in chosen},
            {r["problem"]: float(r["generated_tokens"]) for r in chosen},
        )
        add_point(
            f"{method}_weighted_vote:{head}",
            n,
            {r["problem"]: float(r["weighted_correct"]) for r in chosen},
            {r["problem"]: float(r["generated_tokens"]) for r in chosen},
        )
    search_vs_bon = []
    for key, point in scaling.items():
        if not key.startswith(("beam:", "dvts:")):
            continue
        head = key.split(":", 1)[1]
        for n, values in point.items():
            spent = values["tokens_per_problem"]["value"]
            bon = f"sprm_pick:{head}"
            options = [
                m
                for m in ns
                if scaling.get(bon, {}).get(str(m), {}).get("tokens_per_problem", {}).get("value", -1) >= spent
            ]
            m = min(options) if options else max(ns)
            if (bon, m) not in scaling_rows:
                continue
            search_vs_bon.append(
                {
                    "search": key,
                    "n": int(n),
                    "tokens": spent,
                    "bon": bon,
                    "bon_n": m,
                    "bon_tokens": scaling[bon][str(m)]["tokens_per_problem"]["value"],
                    "bon_has_at_least_as_many_tokens": bool(options),
                    **difference(scaling_rows[(key, int(n))], scaling_rows[(bon, m)]),
                }
            )

    # 5. joint LoRA training (re-encoded test solutions, one seed)
    joint = {"job": manifest.get("stages", {}).get("joint")}
    arms = sorted({a for r in test for a in r.get("joint_step_scores", {})})
    joint_rows = {}
    # re-encoding a sampled text can cut it into other steps than the sampled tokens did (rare): such rows are left
    # out of the joint comparison, and counted
    aligned = [r for r in test if all(len(v) == len(r["steps"]) for v in r.get("joint_step_scores", {}).values())]
    joint["solutions"], joint["left_out_step_mismatch"] = len(aligned), len(test) - len(aligned)
    for arm in arms:
        scored = []
        for r in aligned:
            values = r["joint_step_scores"][arm]
            scored.append({"step_scores": values, "score": aggregate_scores(values)})
        joint_rows[arm] = detection_rows(scored, aligned, 0.5, boot)
        joint.setdefault("arms", {})[arm] = {m: summary(joint_rows[arm][m]) for m in METRICS if m != "f1"}
    joint["comparisons"] = [
        {"a": arm, "b": "frozen", "metric": m, **difference(joint_rows[arm][m], joint_rows["frozen"][m])}
        for arm in arms
        if arm != "frozen" and "frozen" in joint_rows
        for m in ("step_auroc", "step_auroc_all_steps", "outcome_auroc")
    ]

    # 6. the goals
    def comparison(a, b, size, metric="step_auroc"):
        return next((c for c in comparisons if (c["a"], c["b"], c["size"], c["metric"]) == (a, b, size, metric)), None)

    def defined(entries):
        return [e for e in entries if e is not None and e["value"] is not None]

    goals = {"detection": [], "selection": None, "search": None, "joint": None}
    for size in (96, 192):
        entries = {name: comparison(name, "step_supervised", size) for name in OUTCOME_METHODS + MC}
        entries = {k: v for k, v in entries.items() if defined([v])}
        if entries:
            best = max(entries, key=lambda k: entries[k]["value"])
            goals["detection"].append(
                {"size": size, "best": best, "difference": entries[best], "met": entries[best]["value"] >= 0}
            )
    bon8 = defined(
        [next((c for c in selection_comparisons if c["a"] == f"sprm_pick:{REFERENCE_HEAD}" and c["n"] == 8), None)]
    )
    if bon8:
        goals["selection"] = {**bon8[0], "met": bon8[0]["value"] >= 0.05 and (bon8[0]["low"] or 0) > 0}
    searches = defined(search_vs_bon)
    if searches:
        best = max(searches, key=lambda c: c["value"])
        goals["search"] = {**best, "compared": len(searches),
                           "met": (best["low"] or 0) > 0 and best["bon_has_at_least_as_many_tokens"]}
    joint_cmp = defined(
        [next((c for c in joint["comparisons"] if c["a"] == "joint" and c["metric"] == "step_auroc"), None)]
    )
    if joint_cmp:
        goals["joint"] = {**joint_cmp[0], "met": (joint_cmp[0]["low"] or 0) > 0}

    result = {
        **machine_info(),
        **git_state(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.selfgen.power " + " ".join(sys.argv[1:] if argv is None else argv),
        "job": {
            k: manifest.get(k)
            for k in (
                "command",
                "scale",
                "config",
                "device",
                "versions",
                "date",
                "elapsed_s",
                "stages",
                "sampling",
                "search",
                "sources_sha256",
                "time_budget_s",
            )
        },
        "samples": {"train": sample_stats(as_head_rows(train)), "test": sample_stats(as_head_rows(test))},
        "sizes": sizes,
        "seeds": args.seeds,
        "methods": args.methods,
        "bootstrap": args.bootstrap,
        "train_problems": len(train_problems),
        "train_solutions": len(train),
        "mc_problems": len(mc_problems),
        "test_problems": len(boot.problems),
        "searched_problems": len({r["problem"] for r in search}),
        "samples_per_test_problem": num_samples,
        "budget": vars(heads.BUDGET),
        "threshold_fraction": THRESHOLD_FRACTION,
        "reference_head": REFERENCE_HEAD,
        "curve": curve,
        "comparisons": comparisons,
        "equal_budget": equal_budget,
        "selection": selection,
        "selection_comparisons": selection_comparisons,
        "scaling": scaling,
        "search_vs_bon": search_vs_bon,
        "joint": joint,
        "goals": goals,
        "analysis_seconds": round(time.time() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
