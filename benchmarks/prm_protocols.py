"""Shared pieces of the step-error experiments (central_experiment.py, objectives_sweep.py): cached SmolLM2 features
of ProcessBench and BIG-Bench Mistake, leave-one-group-out folds, training a head with the package's trainers,
scoring, the ProcessBench metrics, label noise, and the trivial baselines.

Every head is trained by `modeling_sprm.training.SPRMTrainer` (outcome labels) or `StepSupervisedTrainer` (step
labels) on cached features; scores come from `SPRMForStepScoring.score_step_features`, the same head path as
`pipeline("step-scoring")`; metrics come from `modeling_sprm.evaluation` (`group_metrics`).
"""

from __future__ import annotations

import json
import math
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.trainer_callback import PrinterCallback

from modeling_sprm.data import load_bbm, load_processbench
from modeling_sprm.evaluation import choose_threshold, group_metrics
from modeling_sprm.processing_sprm import pad_step_features
from modeling_sprm.training.features import cache_key, extract_step_features
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments, StepSupervisedTrainer
from modeling_sprm.training.trainer import feature_rows

PROTOCOLS = {"processbench": "leave one split out", "bbm": "leave one task out"}


# -- data ---------------------------------------------------------------------------------------------------------


CHUNK = 200  # records per cached feature chunk (benchmarks/extract_features.py uses the same)


def load_rows(
    model, tokenizer, protocol: str, data_root: str, cache_dir: str, max_length: int = 4096, cached_only: bool = False
) -> list[dict]:
    """Cached-feature rows (``trainer.feature_rows``) of a protocol's data set, with the record fields the
    experiments need (group, first_error, step_labels, outcome_label, num_steps, steps' lengths).
    ``cached_only`` keeps only the chunks whose features are already cached (when extraction could not finish)."""
    root = Path(data_root)
    if protocol == "processbench":
        records = load_processbench(str(root / "processbench"))
    elif protocol == "bbm":
        records = load_bbm(str(root / "big_bench_mistake"))
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    if cached_only:
        chunks = [records[i : i + CHUNK] for i in range(0, len(records), CHUNK)]
        kept = [c for c in chunks if (Path(cache_dir) / f"step-features-{cache_key(model, c, max_length)}").is_dir()]
        print(f"{protocol}: features cached for {sum(map(len, kept))} of {len(records)} records", flush=True)
        records = [r for c in kept for r in c]
    dataset = extract_step_features(
        model, tokenizer, records, batch_size=4, max_length=max_length, cache_dir=cache_dir, chunk_size=CHUNK
    )
    rows = feature_rows(dataset)
    for row, record in zip(rows, records):
        assert row["id"] == record["id"]
        row.update(
            group=record["group"],
            first_error=record["first_error"],
            step_labels=record["step_labels"],
            outcome_label=record["outcome_label"],
            step_chars=[len(s) for s in record["steps"]],
        )
    return rows


def group_sizes(protocol: str, data_root: str) -> dict[str, int]:
    """Solutions per group in the whole data set (to tell which groups ``cached_only`` left incomplete)."""
    root = Path(data_root)
    records = load_processbench(str(root / "processbench")) if protocol == "processbench" else load_bbm(
        str(root / "big_bench_mistake"))
    groups = [r["group"] for r in records]
    return {g: groups.count(g) for g in dict.fromkeys(groups)}


def folds(rows: list[dict]) -> list[tuple[str, list[dict], list[dict]]]:
    """Leave one group out: ``(test_group, training_rows, test_rows)`` per group."""
    groups = list(dict.fromkeys(r["group"] for r in rows))
    return [(g, [r for r in rows if r["group"] != g], [r for r in rows if r["group"] == g]) for g in groups]


def split_validation(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out ``fraction`` of each group (seeded) for choosing the threshold: training data only."""
    rng = random.Random(seed)
    fit, validation = [], []
    for group in dict.fromkeys(r["group"] for r in rows):
        members = [r for r in rows if r["group"] == group]
        rng.shuffle(members)
        cut = int(round(len(members) * fraction))
        validation += members[:cut]
        fit += members[cut:]
    return fit, validation


# -- label noise (training labels only) ----------------------------------------------------------------------------


def noisy_rows(rows: list[dict], rate: float, kind: str, seed: int) -> list[dict]:
    """Copies of ``rows`` whose training labels are corrupted: each outcome label and each known step label is
    flipped with probability ``rate`` (``kind="hard"``), or, for ``kind="soft"``, replaced by the probability
    that it is 1 given the flipped label and the known rate (1 - rate or rate): calibrated soft labels."""
    if kind not in ("hard", "soft"):
        raise ValueError(f"kind must be 'hard' or 'soft', got {kind!r}")
    rng = random.Random(seed)

    def corrupt(label: float | None) -> float | None:
        if label is None:
            return None
        observed = 1.0 - label if rng.random() < rate else label
        return observed if kind == "hard" else (1.0 - rate if observed >= 0.5 else rate)

    out = []
    for row in rows:
        copy = dict(row)
        copy["outcome_label"] = corrupt(row["outcome_label"])
        copy["step_labels"] = [corrupt(v) for v in row["step_labels"]]
        out.append(copy)
    return out


# -- training and scoring ------------------------------------------------------------------------------------------


@dataclass
class Method:
    """A way to train the head: which labels (``"outcome"`` or ``"step"``), which loss, its options."""

    name: str
    labels: str
    loss: str
    loss_options: dict = field(default_factory=dict)
    args: dict = field(default_factory=dict)  # SPRMTrainingArguments overrides (e.g. spr_warmup_steps)
    feature_normalization: str = "none"  # "none" (MetaStone-S1's head) or "standardize"


@dataclass
class Budget:
    epochs: float = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01


def head_for(model, method: Method):
    """The SPRM to train for ``method``: ``model`` itself, or a second SPRM on the same (frozen) backbone whose
    head standardises its features."""
    if method.feature_normalization == model.config.feature_normalization:
        return model
    cache = model.__dict__.setdefault("_heads_by_normalization", {})
    if method.feature_normalization not in cache:
        from modeling_sprm import SPRMForStepScoring

        cache[method.feature_normalization] = SPRMForStepScoring.from_backbone(
            model.backbone, backbone_name_or_path=model.config.backbone_name_or_path,
            feature_normalization=method.feature_normalization,
        )
    return cache[method.feature_normalization]


def fit_head(model, method: Method, rows: list[dict], seed: int, budget: Budget, output_dir: str) -> SPRMTrainer:
    """Train a fresh head (seeded) on cached-feature ``rows`` with the package's trainer for ``method``; ``model``
    must be ``head_for(...)`` of the method."""
    model.config.head_training = None  # a fresh head: the trainer re-initialises it from the seed
    args = SPRMTrainingArguments(
        output_dir=output_dir,
        loss=method.loss,
        loss_options=json.dumps(method.loss_options) if method.loss_options else None,
        num_train_epochs=budget.epochs,
        learning_rate=budget.learning_rate,
        weight_decay=budget.weight_decay,
        per_device_train_batch_size=budget.batch_size,
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        **method.args,
    )
    trainer_class = SPRMTrainer if method.labels == "outcome" else StepSupervisedTrainer
    trainer = trainer_class(model, args, train_dataset=rows)
    trainer.remove_callback(PrinterCallback)  # no per-run log lines; the experiment prints its own
    trainer.train()
    model.eval()
    return trainer


@torch.no_grad()
def score_rows(model, rows: list[dict], batch_size: int = 256) -> list[dict]:
    """``{"step_scores": [float | None per step], "score": float}`` per row, through the model's head path.
    Steps cut off by truncation (beyond the cached ones) get None."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        features, mask = pad_step_features([r["step_features"] for r in chunk], dtype=torch.float32)
        _, step_scores, scores = model.score_step_features(features, mask)
        for i, r in enumerate(chunk):
            n = r["step_features"].shape[0]
            values = step_scores[i, :n].tolist() + [None] * (int(r["num_steps"]) - n)
            out.append({"step_scores": values, "score": float(scores[i])})
    return out


def fold_metrics(scored: list[dict], rows: list[dict], threshold: float) -> dict:
    """ProcessBench F1 (with its two accuracies), step AUROC and outcome AUROC of one test set
    (`evaluation.group_metrics`; a solution with an unscored step counts as truncated)."""
    scored = [{"truncated": any(v is None for v in s["step_scores"]), **s} for s in scored]
    return group_metrics(rows, scored, threshold).to_dict()


def pick_threshold(scored: list[dict], rows: list[dict]) -> float:
    return choose_threshold([s["step_scores"] for s in scored], [r["first_error"] for r in rows],
                            groups=[r["group"] for r in rows])


# -- trivial baselines --------------------------------------------------------------------------------------------


def position_features(row: dict) -> torch.Tensor:
    """Per step: index, relative position, 1 / (index + 1), log length in characters, number of steps."""
    n = int(row["num_steps"])
    rows = []
    for i in range(n):
        rows.append([i / 10.0, i / max(1, n - 1), 1.0 / (i + 1), math.log1p(row["step_chars"][i]) / 5.0, n / 10.0])
    return torch.tensor(rows, dtype=torch.float32)


def position_baseline(train: list[dict], seed: int, epochs: int = 200) -> callable:
    """A logistic regression on step position and length only (no text), trained on the human step labels: how far
    knowing only where a step is and how long it is goes. Returns a scorer like ``score_rows``."""
    torch.manual_seed(seed)
    xs, ys = [], []
    for row in train:
        feats = position_features(row)
        for i, label in enumerate(row["step_labels"]):
            if label is not None:
                xs.append(feats[i])
                ys.append(label)
    x, y = torch.stack(xs), torch.tensor(ys)
    weights = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=epochs)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ weights + bias, y)
        loss.backward()
        return loss

    optimizer.step(closure)

    def score(rows: list[dict]) -> list[dict]:
        out = []
        for row in rows:
            with torch.no_grad():
                probs = torch.sigmoid(position_features(row) @ weights + bias).tolist()
            out.append({"step_scores": probs, "score": float(np.exp(np.mean(np.log(np.clip(probs, 1e-10, 1)))))})
        return out

    return score


def random_baseline(rows: list[dict], seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for row in rows:
        probs = rng.random(int(row["num_steps"])).tolist()
        out.append({"step_scores": probs, "score": float(np.exp(np.mean(np.log(np.clip(probs, 1e-10, 1)))))})
    return out


def constant_baseline(rows: list[dict]) -> list[dict]:
    return [{"step_scores": [0.5] * int(r["num_steps"]), "score": 0.5} for r in rows]


# -- bookkeeping ---------------------------------------------------------------------------------------------------


def summarize_seeds(values: list[float | None]) -> dict:
    """Mean and sample standard deviation over seeds (None values, e.g. an undefined AUROC, are left out)."""
    kept = [v for v in values if v is not None]
    if not kept:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept, ddof=1)) if len(kept) > 1 else 0.0, "n": len(kept)}


def machine_info() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    return {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
        "cpu_count": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
    }
