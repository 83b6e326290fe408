"""Thinking trajectories, the CPU part: outcome-only SPRM heads trained per span and with a trajectory-level term on
the features the policy captured while it sampled (``gpu_job.py``), judged against the true step labels and by
Best-of-N on held-out problems. Writes benchmarks/results/trajectory.json.

    python -m benchmarks.trajectory.analysis --job-dir OUT        # OUT: the four files of gpu_job.py
    python -m benchmarks.trajectory.report --write                 # README block and plot from the JSON

**Heads** (MetaStone-S1's head, standardised features, same budget for all, ``--seeds`` seeds each). Every head
learns from outcome labels only (the final answer of the response), except the step-label ceiling. ``CONFIGS``
say which heads read which steps and which losses train them:

* ``think_only``: one head, the outcome loss on the thinking steps (MetaStone-S1 scores the thinking only);
* ``response_only``: one head, the loss on the response steps;
* ``both_shared``: one head, the loss on every step, the two parts not told apart;
* ``span_heads``: a head per part (the span-aware head), each with the loss on its part;
* ``shared_trajectory`` / ``span_heads_trajectory``: the same plus the **trajectory term**: the geometric mean of
  all step scores of the trace (the package's aggregation, as its solution score) trained against the outcome
  (``losses.mil_loss(aggregation="geometric_mean")``), added with weight 1 to the step-level loss: a step reward and
  a trajectory reward trained together, as ReasonFlux-PRM combines them, from outcome labels alone.

Step-level losses (``OBJECTIVES``, from ``modeling_sprm.losses``), each with the assumption that self-revision
breaks (``assumption_violations`` measures how often, in the training traces, per part):

* ``outcome_bce``: every step gets its trace's outcome; assumes a step is right iff the answer is. A slip that is
  corrected sits in a right trace and is trained as right.
* ``spr`` (MetaStone-S1): the same targets, kept where the head's pseudo-label agrees; same assumption, filtered
  by the head's own belief.
* ``asymmetric_spr``: steps of right traces are all positives; assumes "right answer => every step right".
* ``mil``: the product of step scores is the probability that the trace is right; assumes "a trace is right iff
  every step is right", so a right trace with a corrected error pushes that error's score up, and "any wrong
  step makes the answer wrong" is false.
* ``first_error``: positives before the head's guessed first error of a wrong trace; assumes the first wrong step
  is the one that made it wrong, which fails when the first error was corrected and a later one carried.

**Metrics** on the held-out test problems, each with a 95% cluster-bootstrap interval over problems
(``bootstrap.py``; seeds averaged inside every resample): step AUROC per part (right vs wrong; thinking also right
vs carried), the AUROC of corrected against carried thinking errors (corrected = positive: a self-revising trace
should not be punished for the error it fixed), mean step scores per label, outcome AUROC and Best-of-N (MetaStone
disjoint groups) choosing by the thinking score, the response score and the score of all steps (geometric means);
next to majority vote, a random pick, the shortest trace, the oracle, and position-only / random step scores.
Paired intervals for the comparisons named in ``COMPARISONS``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.trajectory.bootstrap import (  # noqa: E402
    interval,
    problem_weights,
    resample_counts,
    resampled_mean,
    weighted_auroc,
)
from modeling_sprm.aggregation import geometric_mean  # noqa: E402
from modeling_sprm.evaluation import auroc, best_of_n_accuracy, majority_vote_accuracy  # noqa: E402
from modeling_sprm.training.losses import get_loss, mil_loss  # noqa: E402
from modeling_sprm.modeling_sprm import SPRMHead  # noqa: E402

PARTS = ("think", "response")
SELECTIONS = ("think", "response", "all")  # which steps' geometric mean chooses a trace


@dataclass
class Config:
    """Which heads read which steps, and what trains them."""

    name: str
    heads: str  # "shared" (one head for every step) or "per_span" (a head per part)
    loss_parts: tuple[str, ...]  # parts whose steps get the step-level loss
    trajectory_weight: float = 0.0  # weight of the trajectory term (all steps' geometric mean vs the outcome)
    description: str = ""


CONFIGS = [
    Config("think_only", "shared", ("think",), description="one head, loss on the thinking steps"),
    Config("response_only", "shared", ("response",), description="one head, loss on the response steps"),
    Config("both_shared", "shared", PARTS, description="one head, loss on every step"),
    Config("span_heads", "per_span", PARTS, description="a head per part, each with the loss on its part"),
    Config("shared_trajectory", "shared", PARTS, 1.0, "one head, step loss + trajectory term"),
    Config("span_heads_trajectory", "per_span", PARTS, 1.0, "a head per part, step loss + trajectory term"),
]
OBJECTIVES = {  # name -> (losses.py loss, options)
    "outcome_bce": ("outcome_bce", {}),
    "spr": ("spr", {}),
    "asymmetric_spr": ("asymmetric_spr", {}),
    "mil": ("mil", {}),
    "first_error": ("first_error", {}),
}
PRIMARY_OBJECTIVE = "outcome_bce"  # fixed before any result: the plain outcome objective
CEILING = ("step_supervised", "step_bce", "span_heads")  # true right/wrong step labels, a head per part
COMPARISONS = [  # (a, b): a's metric minus b's, paired; methods named "<objective>/<config>/<selection>"
    ("{o}/span_heads_trajectory/all", "{o}/think_only/think"),
    ("{o}/span_heads_trajectory/all", "{o}/response_only/response"),
    ("{o}/span_heads_trajectory/all", "{o}/span_heads/all"),
    ("{o}/span_heads_trajectory/all", "majority_vote"),
]


@dataclass
class Budget:
    epochs: float = 20
    learning_rate: float = 2e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


# -- data ----------------------------------------------------------------------------------------------------------


@dataclass
class Split:
    """The graded traces of one split as padded tensors. Step arrays are ``[N, S]``; ``labels`` 1 right, 0 wrong,
    NaN unverifiable; ``names`` the grader's label strings."""

    rows: list[dict]
    features: torch.Tensor  # [N, S, C] float32
    mask: torch.Tensor  # [N, S] bool
    think: torch.Tensor  # [N, S] bool: a thinking step
    labels: torch.Tensor  # [N, S] float
    names: list[list[str | None]]
    outcome: torch.Tensor  # [N]
    problems: np.ndarray  # [N] problem index 0..P-1 (in order of the rows' problem numbers)

    @property
    def num_problems(self) -> int:
        return int(self.problems.max()) + 1 if len(self.problems) else 0


def load_job(job_dir: str | Path) -> tuple[dict, dict[str, Split]]:
    """``(job record, {"train": Split, "test": Split})`` from the four files of ``gpu_job.py``."""
    from safetensors.torch import load_file

    job_dir = Path(job_dir)
    missing = [n for n in ("trajectory_job.json", "trajectory_rows.jsonl.gz", "trajectory_train.safetensors",
                           "trajectory_test.safetensors") if not (job_dir / n).is_file()]
    if missing:
        raise SystemExit(f"--job-dir {job_dir}: missing {', '.join(missing)} (the outputs of gpu_job.py)")
    record = json.loads((job_dir / "trajectory_job.json").read_text())
    with gzip.open(job_dir / "trajectory_rows.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    splits = {}
    for name in ("train", "test"):
        features = load_file(str(job_dir / f"trajectory_{name}.safetensors"))["features"]
        chosen = sorted((r for r in rows if r["split"] == name), key=lambda r: (r["problem"], r["sample"]))
        splits[name] = make_split(chosen, features)
    return record, splits


def make_split(rows: list[dict], features: torch.Tensor) -> Split:
    """Pad the rows (each with ``offset`` into ``features``) into a ``Split``."""
    width = max([1] + [len(r["steps"]) for r in rows])
    hidden = features.shape[-1]
    n = len(rows)
    padded = torch.zeros((n, width, hidden))
    mask = torch.zeros((n, width), dtype=torch.bool)
    think = torch.zeros((n, width), dtype=torch.bool)
    labels = torch.full((n, width), float("nan"))
    for i, row in enumerate(rows):
        k = len(row["steps"])
        padded[i, :k] = features[row["offset"] : row["offset"] + k].float()
        mask[i, :k] = True
        think[i, :k] = torch.tensor([p == "think" for p in row["parts"]], dtype=torch.bool)
        labels[i, :k] = torch.tensor([math.nan if v is None else float(v == "right") for v in row["labels"]])
    index = {p: j for j, p in enumerate(sorted({r["problem"] for r in rows}))}
    return Split(rows, padded, mask, think, labels, [r["labels"] for r in rows],
                 torch.tensor([float(r["outcome_label"]) for r in rows]),
                 np.array([index[r["problem"]] for r in rows], dtype=int))


def part_mask(split: Split, part: str) -> torch.Tensor:
    return split.mask & (split.think if part == "think" else ~split.think)


# -- what each objective assumes, and how often the traces break it -------------------------------------------------


def assumption_violations(split: Split) -> dict:
    """Per part (and all steps), from the true labels of the (training) traces:

    * ``steps_whose_outcome_is_not_their_label``: steps whose trace outcome differs from their own label (the
      targets of ``outcome_bce`` / ``spr`` that are wrong);
    * ``right_traces_with_a_wrong_step``: right traces that hold a wrong step ("right answer => every step
      right": ``asymmetric_spr``, ``mil``, ``first_error``);
    * ``wrong_traces_without_a_wrong_step``: wrong traces with no wrong step in the part ("wrong answer => some
      step wrong": ``mil``, ``first_error``);
    * ``wrong_traces_whose_first_error_was_corrected``: wrong traces whose first wrong step in the part is a
      corrected one ("the first wrong step made it wrong": ``first_error``).
    """
    out = {}
    for part in PARTS + ("all",):
        mask = split.mask if part == "all" else part_mask(split, part)
        known = mask & ~torch.isnan(split.labels)
        y = split.outcome.unsqueeze(-1).expand_as(split.labels)
        mismatch = (split.labels != y) & known
        wrong_step = (split.labels == 0) & known
        has_wrong = wrong_step.any(-1)
        has_steps = known.any(-1)
        right = (split.outcome == 1) & has_steps
        wrong = (split.outcome == 0) & has_steps
        first_corrected = []
        for i in torch.nonzero(wrong & has_wrong).flatten().tolist():
            j = int(torch.nonzero(wrong_step[i]).flatten()[0])
            first_corrected.append(split.names[i][j] == "corrected")

        def share(a, b):
            return {"share": float(a) / float(b) if b else None, "count": int(a), "of": int(b)}

        out[part] = {
            "steps_whose_outcome_is_not_their_label": share(mismatch.sum(), known.sum()),
            "right_traces_with_a_wrong_step": share((has_wrong & right).sum(), right.sum()),
            "wrong_traces_without_a_wrong_step": share((~has_wrong & wrong).sum(), wrong.sum()),
            "wrong_traces_whose_first_error_was_corrected": share(sum(first_corrected), len(first_corrected)),
        }
    return out


# -- heads ---------------------------------------------------------------------------------------------------------


def build_heads(config: Config, split: Split, loss_parts: tuple[str, ...]) -> dict[str, SPRMHead]:
    """``{"think": head, "response": head}`` (the same object for a shared head), features standardised with the
    statistics of the training steps each head learns from."""
    hidden = split.features.shape[-1]
    if config.heads == "shared":
        head = SPRMHead(hidden, standardize=True)
        chosen = torch.zeros_like(split.mask)
        for part in loss_parts:
            chosen |= part_mask(split, part)
        head.set_feature_statistics(split.features[chosen])
        return {"think": head, "response": head}
    heads = {}
    for part in PARTS:
        heads[part] = SPRMHead(hidden, standardize=True)
        heads[part].set_feature_statistics(split.features[part_mask(split, part)])
    return heads


def step_logits(heads: dict[str, SPRMHead], features: torch.Tensor, think: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` logits, each step from the head of its part (0 at padding; heads run on real steps only)."""
    logits = features.new_zeros(mask.shape)
    if heads["think"] is heads["response"]:
        chosen = [(mask, heads["think"])]
    else:
        chosen = [(mask & think, heads["think"]), (mask & ~think, heads["response"])]
    for where, head in chosen:
        if where.any():
            logits = logits.masked_scatter(where, head(features[where]))
    return logits


def train_heads(config: Config, loss_name: str, options: dict, split: Split, seed: int, budget: Budget,
                labels: str = "outcome") -> dict[str, SPRMHead]:
    """Train fresh heads (seeded) on ``split``: the step-level loss on each of ``config.loss_parts`` (with the
    outcome labels, or the true step labels for ``labels="step"``) plus the trajectory term."""
    torch.manual_seed(seed)
    heads = build_heads(config, split, config.loss_parts)
    params = list({id(p): p for h in heads.values() for p in h.parameters()}.values())
    optimizer = torch.optim.AdamW(params, lr=budget.learning_rate, weight_decay=budget.weight_decay)
    loss_fn = get_loss(loss_name)
    generator = torch.Generator().manual_seed(seed)
    n = len(split.rows)
    steps = max(1, round(budget.epochs * n / budget.batch_size))
    for h in heads.values():
        h.train()
    order = torch.zeros(0, dtype=torch.long)
    for _ in range(steps):
        if len(order) < budget.batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        batch, order = order[: budget.batch_size], order[budget.batch_size :]
        logits = step_logits(heads, split.features[batch], split.think[batch], split.mask[batch])
        step_labels = split.labels[batch] if labels == "step" else None
        loss = logits.new_zeros(())
        for part in config.loss_parts:
            loss = loss + loss_fn(logits, part_mask(split, part)[batch], split.outcome[batch], step_labels, **options)
        if config.trajectory_weight:
            loss = loss + config.trajectory_weight * mil_loss(logits, split.mask[batch], split.outcome[batch],
                                                              aggregation="geometric_mean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for h in heads.values():
        h.eval()
    return heads


@torch.no_grad()
def score_steps(heads: dict[str, SPRMHead], split: Split) -> np.ndarray:
    """``[N, S]`` step scores (sigmoid), NaN at padding."""
    scores = torch.sigmoid(step_logits(heads, split.features, split.think, split.mask))
    return torch.where(split.mask, scores, torch.nan).numpy()


# -- baselines -----------------------------------------------------------------------------------------------------

KINDS = ("compute", "revise", "conclude", "other", "response")


def position_features(split: Split) -> torch.Tensor:
    """``[N, S, 9]`` per step: index, relative position, 1/(index+1), log length, number of steps, part, and the
    step's kind as text (one-hot: compute / revise / conclude / other / response): everything but the content."""
    n, width = split.mask.shape
    out = torch.zeros((n, width, 4 + 1 + len(KINDS)))
    for i, row in enumerate(split.rows):
        k = len(row["steps"])
        for j in range(k):
            out[i, j, :4] = torch.tensor([j / 10, j / max(1, k - 1), 1 / (j + 1), math.log1p(len(row["steps"][j])) / 5])
            out[i, j, 4] = k / 10
            out[i, j, 5 + KINDS.index(row["kinds"][j])] = 1.0
    return out


def logistic_scores(train: Split, test: Split, target, iterations: int = 200) -> np.ndarray:
    """A logistic regression on ``position_features``, fit on the training steps where ``target(split)``
    (``[N, S]`` floats, NaN = not used) is known; ``[N, S]`` test scores (NaN at padding)."""
    x_train, y_train = position_features(train), target(train)
    known = train.mask & ~torch.isnan(y_train)
    x, y = x_train[known], y_train[known]
    weights = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    if len(y) and 0 < y.sum() < len(y):
        optimizer = torch.optim.LBFGS([weights, bias], max_iter=iterations)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weights + bias, y)
            loss.backward()
            return loss

        optimizer.step(closure)
    with torch.no_grad():
        scores = torch.sigmoid(position_features(test) @ weights + bias)
    return torch.where(test.mask, scores, torch.nan).numpy()


def corrected_target(split: Split) -> torch.Tensor:
    """1 corrected, 0 carried, NaN otherwise (thinking errors only)."""
    out = torch.full(split.labels.shape, float("nan"))
    for i, names in enumerate(split.names):
        for j, name in enumerate(names):
            if name in ("corrected", "carried"):
                out[i, j] = float(name == "corrected")
    return out


# -- metrics -------------------------------------------------------------------------------------------------------


def selection_scores(step_scores: np.ndarray, split: Split) -> dict[str, np.ndarray]:
    """Per trace, the geometric mean of its thinking steps' scores, its response steps', all steps' (0 if none)."""
    scores = torch.nan_to_num(torch.from_numpy(step_scores), nan=0.0)
    out = {}
    for name in SELECTIONS:
        mask = split.mask if name == "all" else part_mask(split, name)
        out[name] = geometric_mean(scores, mask).numpy()
    return out


def by_problem(split: Split, values) -> list[list]:
    """``[problem][sample]`` of per-trace ``values`` (rows are sorted by problem, then sample)."""
    groups: list[list] = [[] for _ in range(split.num_problems)]
    for p, v in zip(split.problems, values):
        groups[p].append(v)
    return groups


def step_items(split: Split, names: dict[str, float], part: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(i, j)`` flattened and 0/1 labels of the steps whose label name is in ``names`` (name -> label)."""
    index, labels = [], []
    width = split.mask.shape[1]
    for i, row_names in enumerate(split.names):
        for j, name in enumerate(row_names):
            in_part = part is None or (split.rows[i]["parts"][j] == part)
            if in_part and name in names:
                index.append(i * width + j)
                labels.append(names[name])
    return np.array(index, dtype=int), np.array(labels, dtype=float)


STEP_AUROCS = {  # metric -> (part, label name -> 1 / 0)
    "step_auroc/think": ("think", {"right": 1.0, "corrected": 0.0, "carried": 0.0, "wrong": 0.0}),
    "step_auroc/think_right_vs_carried": ("think", {"right": 1.0, "carried": 0.0}),
    "step_auroc/response": ("response", {"right": 1.0, "wrong": 0.0}),
    "corrected_vs_carried": ("think", {"corrected": 1.0, "carried": 0.0}),
}
MEAN_SCORES = {"right": ("think", "right"), "corrected": ("think", "corrected"), "carried": ("think", "carried"),
               "response_right": ("response", "right"), "response_wrong": ("response", "wrong")}


def metric_samples(seed_scores: list[np.ndarray], split: Split, counts: np.ndarray, ns: list[int]) -> dict:
    """Every metric of one method as ``(point, resampled [B])``: the mean over seeds of each seed's value, in the
    original sample and in each bootstrap resample (``counts``)."""
    out: dict[str, tuple[float, np.ndarray]] = {}

    def add(name, points, resampled):
        points = [p for p in points if p is not None and not np.isnan(p)]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no seed has a value: NaN
            out[name] = (float(np.mean(points)) if points else math.nan, np.nanmean(np.stack(resampled), axis=0))

    for name, (part, names) in STEP_AUROCS.items():
        index, labels = step_items(split, names, part)
        weights = problem_weights(split.problems[index // split.mask.shape[1]], counts)
        values = [s.reshape(-1)[index] for s in seed_scores]
        with np.errstate(all="ignore"):
            add(name, [auroc(v, labels) if len(v) else None for v in values],
                [weighted_auroc(v, labels, weights) for v in values])
    for name, (part, label) in MEAN_SCORES.items():
        index, _ = step_items(split, {label: 1.0}, part)
        weights = problem_weights(split.problems[index // split.mask.shape[1]], counts)
        values = [s.reshape(-1)[index] for s in seed_scores]
        with np.errstate(all="ignore"):
            add(f"mean_score/{name}", [float(v.mean()) if len(v) else None for v in values],
                [(weights * v).sum(1) / weights.sum(1) for v in values])
    selections = [selection_scores(s, split) for s in seed_scores]
    correct = split.outcome.numpy()
    trace_weights = problem_weights(split.problems, counts)
    for name in SELECTIONS:
        add(f"outcome_auroc/{name}", [auroc(sel[name], correct) for sel in selections],
            [weighted_auroc(sel[name], correct, trace_weights) for sel in selections])
        for n in ns:
            per_problem = np.mean([[best_of_n_accuracy([s], [c], n) for s, c in
                                    zip(by_problem(split, sel[name]), by_problem(split, correct))]
                                   for sel in selections], axis=0)
            out[f"bon@{n}/{name}"] = (float(per_problem.mean()), resampled_mean(per_problem, counts))
    return out


def selection_baselines(split: Split, counts: np.ndarray, ns: list[int]) -> dict:
    """Best-of-N without a learned scorer, per problem: majority vote, random pick (expected), shortest trace,
    oracle; as ``(point, resampled)``."""
    correct = by_problem(split, split.outcome.numpy())
    answers = by_problem(split, [r["answer"] for r in split.rows])
    shortness = by_problem(split, [-r["num_tokens"] for r in split.rows])
    out = {}
    for n in ns:
        per = {
            "majority_vote": [majority_vote_accuracy([a], [c], n) for a, c in zip(answers, correct)],
            "random_pick": [float(np.mean(c)) for c in correct],
            "shortest_trace": [best_of_n_accuracy([s], [c], n) for s, c in zip(shortness, correct)],
            "oracle": [best_of_n_accuracy([c], [c], n) for c in correct],
        }
        for name, values in per.items():
            values = np.array(values, dtype=float)
            out.setdefault(name, {})[f"bon@{n}"] = (float(values.mean()), resampled_mean(values, counts))
    return out


def intervals(samples: dict) -> dict:
    return {name: interval(point, resampled) for name, (point, resampled) in samples.items()}


def paired(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray]) -> dict:
    out = interval(a[0] - b[0], a[1] - b[1])
    out["above_zero"] = out["low"] is not None and out["low"] > 0
    return out


# -- bookkeeping ---------------------------------------------------------------------------------------------------


def provenance() -> dict:
    """Machine, date, the commit, and whether the tree was clean (else the hash of the diff)."""
    def git(*args):
        return subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True, text=True).stdout

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        "python": platform.python_version(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "clean_tree": status == "",
        "diff_sha256": None if status == "" else hashlib.sha256(git("diff", "HEAD").encode()).hexdigest()[:16],
        "load_average": os.getloadavg(),
    }


def run_key(job_dir: str, budget: Budget) -> str:
    """A folder name for the cached scores of one job's outputs under one head-training budget."""
    digest = hashlib.sha256((Path(job_dir) / "trajectory_rows.jsonl.gz").read_bytes())
    for name in ("trajectory_train.safetensors", "trajectory_test.safetensors"):
        digest.update(str((Path(job_dir) / name).stat().st_size).encode())
    digest.update(json.dumps({k: v for k, v in asdict(budget).items() if k != "seeds"}).encode())
    return digest.hexdigest()[:16]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-dir", required=True, help="the folder with gpu_job.py's four files")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/trajectory.json"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=20)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--configs", nargs="+", default=[c.name for c in CONFIGS], choices=[c.name for c in CONFIGS])
    parser.add_argument("--ns", nargs="+", type=int, default=[2, 4, 8], help="Best-of-N sizes")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache/sprm/trajectory"),
                        help="test step scores of finished heads, per job and budget (a rerun resumes)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)  # small tensors: one thread is as fast, and far faster on a shared machine
    started = time.time()
    record, splits = load_job(args.job_dir)
    train, test = splits["train"], splits["test"]
    if not train.rows or not test.rows:
        raise SystemExit(f"--job-dir {args.job_dir}: {len(train.rows)} training and {len(test.rows)} test traces; "
                         "need both")
    samples_per_problem = min(len(g) for g in by_problem(test, test.rows))
    ns = [n for n in args.ns if n <= samples_per_problem]
    budget = Budget(args.epochs, args.learning_rate, args.batch_size, seeds=args.seeds)
    counts = resample_counts(test.num_problems, args.resamples)
    cache = Path(args.cache_dir) / run_key(args.job_dir, budget)
    cache.mkdir(parents=True, exist_ok=True)
    configs = [c for c in CONFIGS if c.name in args.configs]
    methods: dict[str, dict] = {}
    samples: dict[str, dict] = {}  # method -> metric -> (point, resampled)
    skipped: dict[str, str] = {}
    runs = [(o, OBJECTIVES[o][0], OBJECTIVES[o][1], c, "outcome") for o in args.objectives for c in configs]
    ceiling_config = next(c for c in CONFIGS if c.name == CEILING[2])
    runs.append((CEILING[0], CEILING[1], {}, ceiling_config, "step"))
    for objective, loss, options, config, labels in runs:
        name = f"{objective}/{config.name}"
        parts_needed = config.loss_parts if config.heads == "shared" else PARTS
        too_few = [p for p in parts_needed if int(part_mask(train, p).sum()) < 2]
        if too_few:
            skipped[name] = f"fewer than 2 training steps in {', '.join(too_few)}"
            continue
        start = time.time()
        seed_scores = []
        for seed in budget.seeds:  # test step scores per seed, cached: an interrupted run resumes
            cached = cache / f"{name.replace('/', '__')}__seed{seed}.npy"
            if not cached.is_file():
                scores = score_steps(train_heads(config, loss, options, train, seed, budget, labels), test)
                np.save(cached.with_suffix(".tmp.npy"), scores)
                cached.with_suffix(".tmp.npy").replace(cached)
            seed_scores.append(np.load(cached))
        samples[name] = metric_samples(seed_scores, test, counts, ns)
        methods[name] = {"objective": objective, "loss": loss, "loss_options": options, "labels": labels,
                         "config": asdict(config), "seconds": round(time.time() - start, 1)}
        point = samples[name]
        print(f"{name:<40} corrected>carried {point['corrected_vs_carried'][0]:.3f}  think AUROC "
              f"{point['step_auroc/think'][0]:.3f}  response AUROC {point['step_auroc/response'][0]:.3f}  "
              + "  ".join(f"BoN@{ns[-1]} {s} {point[f'bon@{ns[-1]}/{s}'][0]:.3f}" for s in SELECTIONS if ns)
              + f"  ({methods[name]['seconds']:.0f} s)", flush=True)
    for name, scorer in {
        "position_only": lambda seed: logistic_scores(train, test, lambda s: s.labels),
        "position_only_corrected": lambda seed: logistic_scores(train, test, corrected_target),
        "random_scores": lambda seed: np.where(test.mask.numpy(),
                                               np.random.default_rng(seed).random(test.mask.shape), np.nan),
    }.items():
        samples[name] = metric_samples([scorer(seed) for seed in budget.seeds], test, counts, ns)
    baselines = selection_baselines(test, counts, ns)

    # selections of one method as their own entries, so comparisons name "<objective>/<config>/<selection>"
    flat = {f"{m}/{s}": {k.split("/")[0]: v for k, v in metrics.items() if k.endswith(f"/{s}")}
            for m, metrics in samples.items() for s in SELECTIONS}
    flat.update(baselines)
    comparisons = {}
    for objective in args.objectives:
        for a, b in COMPARISONS:
            a, b = a.format(o=objective), b.format(o=objective)
            if a in flat and b in flat:
                for n in ns:
                    comparisons[f"bon@{n}: {a} - {b}"] = paired(flat[a][f"bon@{n}"], flat[b][f"bon@{n}"])
    primary = f"{PRIMARY_OBJECTIVE}/span_heads_trajectory"
    goals = {
        "corrected_vs_carried_auroc_at_least_0.7": {
            m: {**interval(*samples[m]["corrected_vs_carried"]), "met": bool(samples[m]["corrected_vs_carried"][0]
                                                                          >= 0.7)}
            for m in methods
        },
        "trajectory_head_beats_think_only_and_response_only_at_bon8": {
            o: {"vs_think_only": comparisons.get(f"bon@8: {o}/span_heads_trajectory/all - {o}/think_only/think"),
                "vs_response_only": comparisons.get(
                    f"bon@8: {o}/span_heads_trajectory/all - {o}/response_only/response")}
            for o in args.objectives
        },
        "primary": f"{primary}, chosen before the results: the plain outcome objective with the span heads and the "
                   "trajectory term, its all-steps score",
    }
    for entry in goals["trajectory_head_beats_think_only_and_response_only_at_bon8"].values():
        entry["met"] = all(v is not None and v["above_zero"] for v in entry.values())

    result = {
        **provenance(),
        "command": "python -m benchmarks.trajectory.analysis " + " ".join(argv if argv is not None else sys.argv[1:]),
        "scale": record["config"]["scale"],
        "job": {k: record.get(k) for k in ("command", "date", "machine", "config", "time_budget_s", "stages", "sft",
                                           "sampling", "samples", "files", "elapsed_s")},
        "budget": asdict(budget),
        "ns": ns,
        "resamples": args.resamples,
        "confidence": 0.95,
        "assumptions_in_training_traces": assumption_violations(train),
        "methods": methods,
        "skipped": skipped,
        "results": {m: intervals(s) for m, s in samples.items()},
        "selection_baselines": {m: intervals(s) for m, s in baselines.items()},
        "comparisons": comparisons,
        "goals": goals,
        "analysis_seconds": round(time.time() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} ({result['analysis_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
