"""The evaluation protocol: leave one group out, an inner split of the training groups, thresholds and tuning on
training data only, several seeds, and paired bootstrap intervals over problems.

For each held-out group (a ProcessBench split or a BIG-Bench Mistake task) and seed:

1. the other groups' solutions are split 80/20 (per group, by the seed) into *fit* and *validation*;
2. the head is trained on *fit* (for a tuned method: every candidate, keeping the one with the best validation
   step AUROC);
3. the threshold is chosen on *validation*: the package's F1-maximising threshold, F1 averaged over the groups
   (``threshold="step"``, which uses the first-error labels of the training groups, as every earlier experiment
   here did), or, for outcome-only methods that should use no step label at all, the threshold whose flag "some
   step is below it" best separates wrong from right final answers (``threshold="outcome"``, balanced accuracy),
   or the F1-maximising one among those that keep at least half of the right solutions unflagged
   (``threshold="step_correct50"``, the shipped head's rule);
4. the held-out group is scored once.

Averages are over groups (ProcessBench publishes the mean F1 over its 4 splits; ``average3`` leaves out omnimath,
for continuity with the earlier 3-split tables); each seed's average is taken first, then the mean over seeds.
Bootstrap: ``resamples`` draws of each held-out group's solutions, shared by every method (paired).

Scores of every (method, group, seed) are cached under ``{cache}/runs/`` keyed by the method and data, so a later
experiment that compares against a method pays nothing to retrain it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.signal import heads, stats
from benchmarks.signal.table import Table

OMITTED_FROM_AVERAGE3 = "omnimath"


@dataclass(frozen=True)
class Readout:
    """Which features a head reads: hidden_states indices, poolings (``"delimiter"``, ``"mean"``), and structure
    features (``"none"``; ``"tokens"``: the 5 of ``readouts.STRUCTURE_FEATURES``; ``"chars"``: those and the 2
    character lengths); ``hidden=False`` reads the structure features alone."""

    layers: tuple[int, ...] = (29,)
    poolings: tuple[str, ...] = ("delimiter",)
    structure: str = "none"
    hidden: bool = True

    def label(self) -> str:
        parts = []
        if self.hidden:
            parts.append("+".join(self.poolings) + "@" + ",".join(map(str, self.layers)))
        if self.structure != "none":
            parts.append(f"structure({self.structure})")
        return " + ".join(parts)


@dataclass(frozen=True)
class Method:
    """A trained method (``recipes``: one, or candidates tuned on validation) or a baseline (``baseline``:
    ``"random"``, ``"length"``: logistic regression on log step length, ``"position_length"``: the earlier
    experiments' logistic regression on step index, relative position, 1/(index+1), log length and step count).

    ``outcome``: the solution label outcome-labelled recipes train on: ``"real"`` (final answer right),
    ``"no_flawed"`` (real, without the right-answer-but-flawed solutions in training), ``"ideal"`` (no step error).
    """

    name: str
    readout: Readout = Readout()
    recipes: tuple[heads.Recipe, ...] = ()
    baseline: str | None = None
    outcome: str = "real"
    threshold: str = "step"
    tune_first_seed_only: bool = False  # later seeds reuse the recipe the first seed chose (per held-out group)

    @property
    def labels(self) -> str:
        if self.baseline is not None:
            return "none" if self.baseline == "random" else "step"
        return self.recipes[0].labels

    def describe(self) -> dict:
        out = {"name": self.name, "labels": self.labels, "threshold": self.threshold}
        if self.baseline is not None:
            out["baseline"] = self.baseline
        else:
            out["readout"] = self.readout.label()
            out["recipes"] = [r.describe() for r in self.recipes]
            if self.labels == "outcome":
                out["outcome_label"] = self.outcome
        return out

    def key(self) -> str:
        payload = json.dumps({"method": asdict(self), "version": 3}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# -- features -------------------------------------------------------------------------------------------------------


def position_length_features(table: Table) -> np.ndarray:
    """The earlier experiments' 5 trivial features (``prm_protocols.position_features``): index / 10, relative
    position, 1 / (index + 1), log1p(characters) / 5, number of steps / 10."""
    i = table.step_index.astype(np.float32)
    n = table.num_steps[table.step_solution].astype(np.float32)
    return np.stack([i / 10, i / np.maximum(1, n - 1), 1 / (i + 1), np.log1p(table.record_chars) / 5, n / 10], 1)


def feature_matrix(table: Table, method: Method) -> torch.Tensor:
    if method.baseline == "length":
        return torch.from_numpy(np.log1p(table.record_chars)[:, None].astype(np.float32))
    if method.baseline == "position_length":
        return torch.from_numpy(position_length_features(table))
    readout = method.readout
    blocks = [table.features(readout.layers, p) for p in readout.poolings] if readout.hidden else []
    if readout.structure == "tokens":
        blocks.append(table.structure[:, :5])
    elif readout.structure == "chars":
        blocks.append(table.structure)
    elif readout.structure != "none":
        raise ValueError(f"unknown structure option {readout.structure!r}")
    if not blocks:
        raise ValueError(f"{method.name}: reads nothing")
    return torch.from_numpy(np.concatenate(blocks, axis=1).astype(np.float32))


BASELINE_RECIPES = {
    # unpenalised logistic regressions, as the earlier experiments fit them (LBFGS, 200 iterations)
    "length": heads.Recipe("length", head="linear", solver="lbfgs", epochs=200),
    "position_length": heads.Recipe("position_length", head="linear", solver="lbfgs", epochs=200),
}


# -- folds ----------------------------------------------------------------------------------------------------------


def inner_split(table: Table, solutions: np.ndarray, seed: int, share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, validation)``: ``share`` of each group's solutions (chosen by ``seed``) for validation."""
    rng = np.random.default_rng(seed)
    fit, validation = [], []
    for group in dict.fromkeys(table.groups[solutions].tolist()):
        members = solutions[table.groups[solutions] == group]
        members = members[rng.permutation(len(members))]
        cut = int(round(share * len(members)))
        validation.append(members[:cut])
        fit.append(members[cut:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(validation))


def rows_of(table: Table, solutions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step rows of ``solutions`` (in order) and their offsets ``[len(solutions) + 1]``."""
    offsets = table.offsets
    lengths = table.num_read[solutions]
    rows = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in solutions]) if len(solutions) else \
        np.zeros(0, dtype=int)
    return rows, np.concatenate([[0], np.cumsum(lengths)])


def outcome_targets(table: Table, method: Method, solutions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training solutions and their labels for ``method.outcome``."""
    flawless = table.first_error[solutions] == -1
    real = table.outcome[solutions]
    if method.outcome == "real":
        return solutions, real
    if method.outcome == "ideal":
        return solutions, flawless.astype(np.float32)
    if method.outcome == "no_flawed":
        keep = ~((real > 0.5) & ~flawless)
        return solutions[keep], real[keep]
    raise ValueError(f"unknown outcome label {method.outcome!r}")


def make_data(table: Table, x: torch.Tensor, solutions: np.ndarray, outcome: np.ndarray | None = None) -> heads.Data:
    rows, offsets = rows_of(table, solutions)
    labels = table.outcome[solutions] if outcome is None else outcome
    return heads.Data(x[rows], offsets, torch.tensor(labels, dtype=torch.float32),
                      torch.from_numpy(table.step_label[rows]))


def outcome_threshold(scores: np.ndarray, offsets: np.ndarray, outcome: np.ndarray) -> float:
    """Threshold from outcome labels only: the candidate whose flag "some step scores below it" has the best
    balanced accuracy against "the final answer is wrong"."""
    from modeling_sprm.evaluation import DEFAULT_THRESHOLDS

    minima = np.array([scores[a:b].min() if b > a else np.inf for a, b in zip(offsets[:-1], offsets[1:])])
    wrong = outcome < 0.5
    best, best_value = None, -1.0
    for t in DEFAULT_THRESHOLDS:
        flagged = minima < t
        value = 0.5 * (flagged[wrong].mean() if wrong.any() else 0) + 0.5 * ((~flagged)[~wrong].mean() if (
            ~wrong).any() else 0)
        if value > best_value:
            best, best_value = t, value
    return float(best)


def constrained_threshold(scores: np.ndarray, offsets: np.ndarray, first_error: np.ndarray, groups: np.ndarray,
                          min_correct_acc: float = 0.5) -> float:
    """The F1-maximising threshold (F1 averaged over groups) among those whose group-averaged correct accuracy is at
    least ``min_correct_acc`` on these (training) solutions: a head that flags at most half of the right solutions."""
    from modeling_sprm.evaluation import DEFAULT_THRESHOLDS, processbench_f1

    best, fallback = None, None
    names = list(dict.fromkeys(groups.tolist()))
    for t in DEFAULT_THRESHOLDS:
        predicted = stats.predictions(scores, offsets, t)
        results = [processbench_f1(predicted[groups == g], first_error[groups == g]) for g in names]
        f1 = np.mean([r["f1"] for r in results if r["f1"] is not None])
        correct = np.mean([r["correct_acc"] for r in results if r["correct_acc"] is not None])
        if correct >= min_correct_acc and (best is None or f1 > best[1]):
            best = (t, f1)
        if fallback is None or correct > fallback[1]:
            fallback = (t, correct)
    return float(best[0] if best else fallback[0])


def run_fold(table: Table, method: Method, x: torch.Tensor, test_group: str, seed: int,
             only: str | None = None) -> dict:
    """Train (or fit the baseline) on the other groups and score the held-out group: ``{"scores": test step
    scores, "threshold", "diagnostics"}``. ``only`` restricts a tuned method to the recipe of that name."""
    test = np.flatnonzero(table.groups == test_group)
    train = np.flatnonzero(table.groups != test_group)
    fit, validation = inner_split(table, train, seed)
    test_rows, _ = rows_of(table, test)
    val_rows, val_offsets = rows_of(table, validation)
    diagnostics: dict = {}
    if method.baseline == "random":
        rng = np.random.default_rng(seed)
        all_scores = rng.random(len(table.step_label))
        score_fn = lambda rows: all_scores[rows]  # noqa: E731
    else:
        candidates = [BASELINE_RECIPES[method.baseline]] if method.baseline else list(method.recipes)
        if only is not None:
            candidates = [r for r in candidates if r.name == only]
        best = None
        for recipe in candidates:
            if recipe.labels == "outcome":
                fit_solutions, targets = outcome_targets(table, method, fit)
                data = make_data(table, x, fit_solutions, targets)
            else:
                data = make_data(table, x, fit)
            head, info = heads.train(recipe, data, seed)
            val_scores = heads.scores(head, x[val_rows])
            known = ~np.isnan(table.step_label[val_rows])
            val_auroc = stats.auroc(val_scores[known], table.step_label[val_rows][known])
            if best is None or (val_auroc or 0) > best[0]:
                best = (val_auroc or 0, recipe, head, info)
        val_auroc, recipe, head, info = best
        diagnostics.update(info)
        diagnostics["validation_step_auroc"] = val_auroc
        if len(method.recipes) > 1:
            diagnostics["chosen"] = recipe.name
        score_fn = lambda rows: heads.scores(head, x[rows])  # noqa: E731
    val_scores = score_fn(val_rows)
    if method.threshold == "outcome":
        threshold = outcome_threshold(val_scores, val_offsets, table.outcome[validation])
    elif method.threshold == "step_correct50":
        threshold = constrained_threshold(val_scores, val_offsets, table.first_error[validation],
                                          table.groups[validation])
    else:
        threshold = stats.pick_threshold(val_scores, val_offsets, table.first_error[validation],
                                         table.groups[validation])
    test_scores = score_fn(test_rows)
    diagnostics["score_std"] = float(np.std(test_scores))
    diagnostics["score_p10_p90"] = [float(np.quantile(test_scores, 0.1)), float(np.quantile(test_scores, 0.9))]
    return {"scores": test_scores, "threshold": threshold, "diagnostics": diagnostics}


# -- running and summarising ---------------------------------------------------------------------------------------


@dataclass
class Context:
    table: Table
    seeds: tuple[int, ...]
    resamples: int
    cache: Path
    log: callable = print
    counts: dict = field(default_factory=dict)  # group -> [R, n] resample counts, shared by every method

    def resample_counts(self, group: str) -> np.ndarray:
        if group not in self.counts:
            n = int((self.table.groups == group).sum())
            rng = np.random.default_rng([20261204, self.table.group_names.index(group)])
            self.counts[group] = stats.resample_counts(n, self.resamples, rng)
        return self.counts[group]

    def data_key(self) -> str:
        t = self.table
        payload = [t.name, t.ids.tolist(), t.layers, int(len(t.step_label))]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]


def fold_runs(ctx: Context, method: Method) -> dict:
    """``{group: [per seed run]}``, from the cache or by training."""
    folder = ctx.cache / "runs" / f"{ctx.table.name}-{ctx.data_key()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{method.key()}.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    x = None
    changed = False
    for group in ctx.table.group_names:
        for seed in ctx.seeds:
            key = f"{group}/{seed}"
            if key in done:
                continue
            if x is None:
                x = feature_matrix(ctx.table, method) if method.baseline != "random" else None
            start = time.time()
            only = None
            if method.tune_first_seed_only and seed != ctx.seeds[0]:
                only = done[f"{group}/{ctx.seeds[0]}"]["diagnostics"].get("chosen")
            run = run_fold(ctx.table, method, x, group, seed, only)
            run["scores"] = run["scores"].astype(np.float32).tolist()
            run["seconds"] = round(time.time() - start, 1)
            done[key] = run
            changed = True
            ctx.log(f"  {method.name:<40} {group:<26} seed {seed}: threshold {run['threshold']:.2f} "
                    f"({run['seconds']:.0f} s)")
    if changed:
        path.write_text(json.dumps(done))
    return {g: [done[f"{g}/{s}"] for s in ctx.seeds] for g in ctx.table.group_names}


def evaluate(ctx: Context, method: Method) -> dict:
    """Point metrics, bootstrap values and diagnostics of ``method`` over the folds and seeds."""
    table = ctx.table
    runs = fold_runs(ctx, method)
    per_group, boot = {}, {}
    for group, seed_runs in runs.items():
        solutions = np.flatnonzero(table.groups == group)
        rows, offsets = rows_of(table, solutions)
        first_error, labels = table.first_error[solutions], table.step_label[rows]
        counts = ctx.resample_counts(group)
        points, boots = [], []
        for run in seed_runs:
            scores = np.asarray(run["scores"], dtype=np.float64)
            point = stats.point_metrics(scores, offsets, first_error, labels, run["threshold"])
            point["auroc_within_length_deciles"] = stats.auroc_within_bins(scores, labels, table.record_chars[rows])
            points.append(point)
            boots.append(stats.bootstrap_metrics(counts, scores, offsets, first_error, labels, run["threshold"]))
        boot[group] = {m: np.mean([b[m] for b in boots], axis=0) for m in stats.METRICS}
        per_group[group] = {
            "metrics": {m: _mean([p[m] for p in points]) for m in points[0]},
            "per_seed": {m: [p[m] for p in points] for m in points[0]},
            "interval": {m: stats.interval(boot[group][m]) for m in stats.METRICS},
            "thresholds": [r["threshold"] for r in seed_runs],
            "diagnostics": [r["diagnostics"] for r in seed_runs],
        }
    averages = {}
    for name, groups in average_sets(table).items():
        if not groups:
            continue
        values = {m: _mean([_mean(per_group[g]["per_seed"][m]) for g in groups]) for m in per_group[groups[0]]["metrics"]}
        boot_avg = {m: np.mean([boot[g][m] for g in groups], axis=0) for m in stats.METRICS}
        averages[name] = {"groups": groups, "metrics": values,
                          "interval": {m: stats.interval(boot_avg[m]) for m in stats.METRICS}}
        boot[name] = boot_avg
    return {"method": method.describe(), "per_group": per_group, "averages": averages, "_boot": boot}


def average_sets(table: Table) -> dict[str, list[str]]:
    groups = table.group_names
    out = {"average": groups}
    if table.name == "processbench":
        out["average3"] = [g for g in groups if g != OMITTED_FROM_AVERAGE3]
    return out


def compare(a: dict, b: dict, metric: str = "f1", average: str = "average") -> dict:
    """Paired bootstrap of ``a - b`` (same resamples): the difference of the point estimates and its interval."""
    diff = a["_boot"][average][metric] - b["_boot"][average][metric]
    point = a["averages"][average]["metrics"][metric] - b["averages"][average]["metrics"][metric]
    ci = stats.interval(diff)
    return {"a": a["method"]["name"], "b": b["method"]["name"], "metric": metric, "average": average,
            "difference": point, "interval": ci, "a_beats_b": bool(ci is not None and ci[0] > 0)}


def _mean(values):
    kept = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    return float(np.mean(kept)) if kept else None
