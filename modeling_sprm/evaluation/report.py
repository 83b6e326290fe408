"""Scoring a data set of records (``modeling_sprm.data``) with an SPRM and reporting the metrics of
``modeling_sprm.evaluation.metrics`` per group (split or task): ``evaluate_model`` (what ``sprm eval`` runs).

With ``score_span`` (think / response / both: which part of ``<think>...</think>`` traces is scored, default the
model's ``config.score_span``) the metrics are those of that span: a record given as a step list is judged on the
steps the span scores, with their step labels and the first error among them (`span_view`)."""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

import numpy as np

from ..data import first_error_from_labels
from ..outputs import EvaluationReport, GroupMetrics
from ..steps import StepRules, anchor_parts, join_steps
from .batch import record_input, record_length
from .metrics import (
    bootstrap_mean,
    choose_threshold,
    outcome_auroc,
    predict_first_error,
    processbench_f1,
    step_auroc,
)


def sample_per_group(records: Sequence[dict], limit: int, seed: int = 0) -> list[dict]:
    """At most ``limit`` records of each group, drawn at random (``seed``), in their original order. (The
    benchmark files are often sorted by label, so the first rows would not be a fair sample.)"""
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_group.setdefault(record["group"], []).append(i)
    chosen = sorted(i for indices in by_group.values() for i in rng.sample(indices, min(limit, len(indices))))
    return [records[i] for i in chosen]


def span_view(record: dict, rules: StepRules) -> dict:
    """``record`` as ``rules.score_span`` sees it: of a step list, only the given steps the span scores (joined and
    placed as the scorer does, `steps.anchor_parts`), with their step labels and, from those, the first error
    (`data.first_error_from_labels`: -1 when the span's steps are all right, None when unknown). A record whose
    steps are all scored, or one given as a solution text, is returned as it is."""
    if record["steps"] is None:
        return record
    text, spans = join_steps(record["steps"], rules)
    kept = [i for i, part in enumerate(anchor_parts(text, [anchor for _, _, anchor in spans], 0, rules)) if part]
    if len(kept) == len(record["steps"]):
        return record
    labels = None if record["step_labels"] is None else [record["step_labels"][i] for i in kept]
    first_error = first_error_from_labels(labels) if labels else None  # no label, or no step: nothing to judge
    return {**record, "steps": [record["steps"][i] for i in kept], "step_labels": labels, "first_error": first_error}


def span_rules(model, score_span: str | None) -> StepRules:
    """The model's step rules with ``score_span`` (None: the model's own)."""
    rules = StepRules.from_config(model.config)
    return rules if score_span is None else dataclasses.replace(rules, score_span=score_span)


def scoring_pipeline(model, tokenizer):
    """The step-scoring pipeline on the device the model was loaded on (``--device``, ``--device_map``): a plain
    `Pipeline` would move a model that has no ``device_map`` to ``cuda:0`` whenever a GPU exists."""
    from ..pipeline_sprm import StepScoringPipeline

    placed = getattr(model, "hf_device_map", None) is not None
    return StepScoringPipeline(model=model, tokenizer=tokenizer, **({} if placed else {"device": model.device}))


def score_records(
    model,
    tokenizer,
    records: Sequence[dict],
    batch_size: int | None = None,
    max_length: int | None = None,
    desc: str = "Scoring",
    max_batch_tokens: int | None = None,
    score_span: str | None = None,
) -> list[dict]:
    """Score every record with the step-scoring pipeline (batched, similar lengths together, with a progress bar):
    at most ``batch_size`` records (None: no limit) and ``max_batch_tokens`` padded tokens per forward (default:
    the device's `processing_sprm.DEFAULT_MAX_BATCH_TOKENS`).

    Returns, per record in input order, ``{"step_scores": [float | None, ...], "score": float, "truncated": bool}``
    with one step score per given step that ``score_span`` (default: the model's) scores (`span_view`; None where
    truncation cut the step off); ``score`` aggregates those steps.
    """
    from tqdm.auto import tqdm

    from ..processing_sprm import default_max_batch_tokens

    order = sorted(range(len(records)), key=lambda i: record_length(records[i]))
    inputs = (record_input(records[i]) for i in order)
    scorer = scoring_pipeline(model, tokenizer)
    kwargs = {k: v for k, v in {"max_length": max_length, "score_span": score_span}.items() if v is not None}
    rules = span_rules(model, score_span)
    results: list[dict | None] = [None] * len(records)
    max_batch_tokens = max_batch_tokens or default_max_batch_tokens(scorer.device)
    outputs = scorer(inputs, batch_size=batch_size, max_batch_tokens=max_batch_tokens, **kwargs)
    for i, out in zip(order, tqdm(outputs, total=len(records), desc=desc)):
        record = records[i]
        given = span_view(record, rules)["steps"]
        if given is not None and len(out["steps"]) != len(given):
            raise ValueError(
                f"record {record['id']!r}: the model found {len(out['steps'])} steps in the {len(given)} given steps "
                f"its {rules.score_span!r} span scores (a step containing a delimiter or a think tag splits "
                "differently); labels cannot be aligned"
            )
        results[i] = {
            "step_scores": [s["score"] for s in out["steps"]],
            "score": out["score"],
            "truncated": out["truncated"],
        }
    return results


def _mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def group_metrics(records: Sequence[dict], scored: Sequence[dict], threshold: float) -> GroupMetrics:
    """ProcessBench F1, step AUROC and outcome AUROC of one group of scored records (``scored``: per record
    ``{"step_scores", "score", "truncated"}``, as `score_records` returns). Records with an unknown first error do
    not count in the F1 (``n_unlabelled``)."""
    known = [i for i, r in enumerate(records) if r["first_error"] is not None]
    predictions = [predict_first_error(scored[i]["step_scores"], threshold) for i in known]
    f1 = processbench_f1(predictions, [records[i]["first_error"] for i in known])
    return GroupMetrics(
        **{**f1, "n": len(records)},
        step_auroc=step_auroc([s["step_scores"] for s in scored], [r["step_labels"] for r in records]),
        outcome_auroc=outcome_auroc([s["score"] for s in scored], [r["outcome_label"] for r in records]),
        n_unlabelled=len(records) - len(known),
        truncated=sum(s["truncated"] for s in scored),
    )


def evaluation_report(records: Sequence[dict], scored: Sequence[dict], threshold: float) -> EvaluationReport:
    """Metrics per group (``per_group``) and their unweighted mean over groups at the top level, each mean over the
    groups where the metric is defined (ProcessBench's reported F1 is this mean over its four splits); ``n`` and
    ``truncated`` are totals.

    ``{"f1", "error_acc", "correct_acc", "step_auroc", "outcome_auroc", "threshold", "n", "truncated",
    "per_group": {group: {... the same per group, plus "n_error", "n_correct", "n_unlabelled"}}}``
    """
    if len(records) != len(scored):
        raise ValueError(f"{len(scored)} scored results for {len(records)} records")
    groups = list(dict.fromkeys(r["group"] for r in records))
    per_group = {}
    for group in groups:
        idx = [i for i, r in enumerate(records) if r["group"] == group]
        per_group[group] = group_metrics([records[i] for i in idx], [scored[i] for i in idx], threshold)
    means = {
        key: _mean_defined([m[key] for m in per_group.values()])
        for key in ("f1", "error_acc", "correct_acc", "step_auroc", "outcome_auroc")
    }
    return EvaluationReport(
        **means,
        threshold=threshold,
        n=len(records),
        truncated=sum(m["truncated"] for m in per_group.values()),
        per_group=per_group,
    )


def evaluate_model(
    model,
    tokenizer,
    records: Sequence[dict],
    threshold: float | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    max_batch_tokens: int | None = None,
    score_span: str | None = None,
) -> EvaluationReport:
    """Score ``records`` with ``model`` (batched as `score_records`) and return ``evaluation_report`` of the
    ``score_span`` (default: the model's) steps of each record (`span_view`; threshold default:
    ``model.config.threshold``)."""
    threshold = model.config.threshold if threshold is None else threshold
    scored = score_records(model, tokenizer, records, batch_size, max_length, max_batch_tokens=max_batch_tokens,
                           score_span=score_span)
    rules = span_rules(model, score_span)
    return evaluation_report([span_view(r, rules) for r in records], scored, threshold)


def choose_threshold_for_model(
    model,
    tokenizer,
    records: Sequence[dict],
    batch_size: int | None = None,
    max_length: int | None = None,
    max_batch_tokens: int | None = None,
    score_span: str | None = None,
) -> float:
    """Score ``records`` (training data, not the test set) and return the F1-maximising threshold on them (on the
    ``score_span`` steps, as `evaluate_model`), the F1 averaged over their groups."""
    scored = score_records(model, tokenizer, records, batch_size, max_length, "Scoring threshold data", max_batch_tokens,
                           score_span)
    rules = span_rules(model, score_span)
    views = [span_view(r, rules) for r in records]
    return choose_threshold(
        [s["step_scores"] for s in scored], [r["first_error"] for r in views], groups=[r["group"] for r in views]
    )


PICKS = {"sprm": "SPRM pick", "majority": "majority vote", "weighted": "SPRM-weighted vote"}


def pick_accuracy_summary(lines: list[dict], num_resamples: int = 1000, seed: int = 0) -> dict:
    """The accuracy of each pick (`PICKS`) over the per-problem lines of ``sprm bon --data`` / ``sprm search --data``
    (each with ``correct: {pick: bool}``), with its 95% bootstrap interval over problems (`metrics.bootstrap_mean`,
    the same resamples for every pick)."""
    accuracy = {pick: bootstrap_mean([float(line["correct"][pick]) for line in lines], num_resamples, 0.95, seed)
                for pick in PICKS}
    return {"num_problems": len(lines), "confidence": 0.95, "num_resamples": num_resamples, "seed": seed,
            "accuracy": accuracy}


def plot_pick_accuracy(summary: dict, path, title: str) -> None:
    """A bar chart of `pick_accuracy_summary`'s accuracies with their intervals, saved as a PNG (Agg canvas, no global
    backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    cells = [summary["accuracy"][pick] for pick in PICKS]
    means = [c["mean"] for c in cells]
    errors = [[c["mean"] - c["low"] for c in cells], [c["high"] - c["mean"] for c in cells]]
    axes.bar(list(PICKS.values()), means, yerr=errors, capsize=6, color=["tab:blue", "tab:gray", "tab:orange"])
    axes.set_ylim(0, 1)
    axes.set_ylabel("accuracy")
    axes.set_title(f"{title}: {summary['num_problems']} problems, 95% bootstrap intervals", fontsize=9)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
