"""Step scores -> one solution score. Pure functions on tensors.

Every function takes ``step_scores`` (float, ``[batch, num_steps]``, probabilities in [0, 1]) and ``step_mask``
(bool, ``[batch, num_steps]``, True where a step exists) and returns ``[batch]``. A row without steps gets
``empty_score`` (MetaStone-S1 returns 0). This module is shipped as remote code: it imports only torch.
"""

from __future__ import annotations

import torch

_MIN_SCORE = 1e-10  # MetaStone-S1 clamps step scores before the log of the geometric mean


def _finish(values: torch.Tensor, step_mask: torch.Tensor, empty_score: float) -> torch.Tensor:
    has_steps = step_mask.any(dim=-1)
    return torch.where(has_steps, values, torch.full_like(values, empty_score))


def geometric_mean(step_scores: torch.Tensor, step_mask: torch.Tensor, empty_score: float = 0.0) -> torch.Tensor:
    """``exp(mean_i log(max(s_i, 1e-10)))`` over the steps of each row (MetaStone-S1, paper Eq. 5)."""
    mask = step_mask.to(step_scores.dtype)
    logs = torch.log(step_scores.clamp(min=_MIN_SCORE)) * mask
    counts = mask.sum(dim=-1).clamp(min=1)
    return _finish(torch.exp(logs.sum(dim=-1) / counts), step_mask, empty_score)


def product(step_scores: torch.Tensor, step_mask: torch.Tensor, empty_score: float = 0.0) -> torch.Tensor:
    """``prod_i s_i`` (PRM800K's solution score)."""
    values = torch.where(step_mask, step_scores, torch.ones_like(step_scores)).prod(dim=-1)
    return _finish(values, step_mask, empty_score)


def minimum(step_scores: torch.Tensor, step_mask: torch.Tensor, empty_score: float = 0.0) -> torch.Tensor:
    """``min_i s_i``: a solution is as good as its weakest step."""
    values = torch.where(step_mask, step_scores, torch.full_like(step_scores, float("inf"))).min(dim=-1).values
    return _finish(values, step_mask, empty_score)


def mean(step_scores: torch.Tensor, step_mask: torch.Tensor, empty_score: float = 0.0) -> torch.Tensor:
    """Arithmetic mean of the step scores."""
    mask = step_mask.to(step_scores.dtype)
    values = (step_scores * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    return _finish(values, step_mask, empty_score)


def last(step_scores: torch.Tensor, step_mask: torch.Tensor, empty_score: float = 0.0) -> torch.Tensor:
    """The score of the last step of each row (an ablation in MetaStone-S1: worse than the aggregate)."""
    idx = torch.arange(step_mask.shape[-1], device=step_mask.device).expand_as(step_mask)
    last_idx = torch.where(step_mask, idx, torch.full_like(idx, -1)).max(dim=-1).values.clamp(min=0)
    values = step_scores.gather(-1, last_idx.unsqueeze(-1)).squeeze(-1)
    return _finish(values, step_mask, empty_score)


AGGREGATIONS = {
    "geometric_mean": geometric_mean,
    "min": minimum,
    "mean": mean,
    "last": last,
    "product": product,
}


def aggregate(
    step_scores: torch.Tensor, step_mask: torch.Tensor, method: str = "geometric_mean", empty_score: float = 0.0
) -> torch.Tensor:
    """Apply the aggregation named ``method`` (one of ``AGGREGATIONS``)."""
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; expected one of {sorted(AGGREGATIONS)}")
    if step_scores.shape != step_mask.shape:
        raise ValueError(f"step_scores {tuple(step_scores.shape)} and step_mask {tuple(step_mask.shape)} differ")
    return AGGREGATIONS[method](step_scores, step_mask.bool(), empty_score)


# -- plain lists of step scores (one solution) ----------------------------------------------------------------------


def aggregate_scores(
    step_scores: "list[float | None]", method: str = "geometric_mean", empty_score: float = 0.0
) -> float:
    """`aggregate` for one solution given as a list of step scores; ``None`` (a step cut off by truncation) is
    skipped, and a list without scores gets ``empty_score``."""
    values = [float(s) for s in step_scores if s is not None]
    scores = torch.tensor([values or [0.0]], dtype=torch.float32)
    mask = torch.tensor([[bool(values)] * max(1, len(values))])
    return float(aggregate(scores, mask, method, empty_score)[0])


def first_error_step(step_scores: "list[float | None]", threshold: float) -> int | None:
    """Index of the first step whose score is **strictly** below ``threshold`` (a score equal to the threshold is
    not an error), or None when there is none. Steps without a score (``None``: cut off by truncation) are
    skipped. The one rule for a predicted error: the pipeline, generation, the demo and the evaluation use it."""
    return next((i for i, s in enumerate(step_scores) if s is not None and s < threshold), None)
