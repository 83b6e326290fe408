"""Scoring a data set of records (``modeling_sprm.data``) with an SPRM and reporting the metrics of
``modeling_sprm.evaluation.metrics`` per group (split or task): ``evaluate_model`` (what ``sprm eval`` runs)."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np

from ..outputs import EvaluationReport, GroupMetrics
from .batch import record_input, record_length
from .metrics import choose_threshold, outcome_auroc, predict_first_error, processbench_f1, step_auroc


def sample_per_group(records: Sequence[dict], limit: int, seed: int = 0) -> list[dict]:
    """At most ``limit`` records of each group, drawn at random (``seed``), in their original order. (The
    benchmark files are often sorted by label, so the first rows would not be a fair sample.)"""
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_group.setdefault(record["group"], []).append(i)
    chosen = sorted(i for indices in by_group.values() for i in rng.sample(indices, min(limit, len(indices))))
    return [records[i] for i in chosen]


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
) -> list[dict]:
    """Score every record with the step-scoring pipeline (batched, similar lengths together, with a progress bar):
    at most ``batch_size`` records (None: no limit) and ``max_batch_tokens`` padded tokens per forward (default:
    the device's `processing_sprm.DEFAULT_MAX_BATCH_TOKENS`).

    Returns, per record in input order, ``{"step_scores": [float | None, ...], "score": float, "truncated": bool}``
    with one step score per given step (None where truncation cut the step off).
    """
    from tqdm.auto import tqdm

    from ..processing_sprm import default_max_batch_tokens

    order = sorted(range(len(records)), key=lambda i: record_length(records[i]))
    inputs = (record_input(records[i]) for i in order)
    scorer = scoring_pipeline(model, tokenizer)
    kwargs = {} if max_length is None else {"max_length": max_length}
    results: list[dict | None] = [None] * len(records)
    max_batch_tokens = max_batch_tokens or default_max_batch_tokens(scorer.device)
    outputs = scorer(inputs, batch_size=batch_size, max_batch_tokens=max_batch_tokens, **kwargs)
    for i, out in zip(order, tqdm(outputs, total=len(records), desc=desc)):
        record = records[i]
        if record["steps"] is not None and len(out["steps"]) != len(record["steps"]):
            raise ValueError(
                f"record {record['id']!r}: the model found {len(out['steps'])} steps in {len(record['steps'])} given "
                "steps (its think-span rules may drop some); labels cannot be aligned"
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
) -> EvaluationReport:
    """Score ``records`` with ``model`` (batched as `score_records`) and return ``evaluation_report`` (threshold
    default: ``model.config.threshold``)."""
    threshold = model.config.threshold if threshold is None else threshold
    scored = score_records(model, tokenizer, records, batch_size, max_length, max_batch_tokens=max_batch_tokens)
    return evaluation_report(records, scored, threshold)


def choose_threshold_for_model(
    model,
    tokenizer,
    records: Sequence[dict],
    batch_size: int | None = None,
    max_length: int | None = None,
    max_batch_tokens: int | None = None,
) -> float:
    """Score ``records`` (training data, not the test set) and return the F1-maximising threshold on them, the F1
    averaged over their groups."""
    scored = score_records(model, tokenizer, records, batch_size, max_length, "Scoring threshold data", max_batch_tokens)
    return choose_threshold(
        [s["step_scores"] for s in scored], [r["first_error"] for r in records], groups=[r["group"] for r in records]
    )
