"""Readouts: what the step head reads from the backbone, computed from hidden states and step boundaries.

Pure tensor functions, shared by feature extraction (benchmarks) and the model's forward, so a head sees exactly
the features it was trained on. Notation: ``B`` solutions, ``T`` tokens, ``S`` steps (padded), ``C`` hidden size.

Inputs, as the processor produces them (``steps.build_trace`` + ``steps.token_index``):

* ``step_positions`` ``[B, S]``: the token where each step's score is read (MetaStone-S1: the token before the
  step delimiter), ``-1`` for padding and for steps cut off by truncation;
* ``step_starts`` ``[B, S]``: the first token of each step (``token_index(offsets, step.start)``), ``-1`` likewise.

Readouts:

* ``delimiter``: the hidden state at the read position (MetaStone-S1's feature);
* ``mean``: the mean of the hidden states of the step's tokens, ``step_starts .. step_positions`` inclusive;
* ``structure_features``: where the step is and how long it is (see ``STRUCTURE_FEATURES``), computed from the
  positions alone (and the steps' character lengths when given), never from the text.

Padded steps get zeros everywhere, so a mask (``step_positions >= 0``) tells real steps apart.
"""

from __future__ import annotations

import torch

POOLINGS = ("delimiter", "mean")

# Per step, in this order. The number of steps is the number of steps read (inside the context window).
STRUCTURE_FEATURES = (
    "log_step_index",  # log(1 + i), i counted from 0
    "relative_position",  # i / (n - 1), 0 for a one-step solution
    "log_num_steps",  # log(n)
    "log_step_tokens",  # log(step_positions - step_starts + 1)
    "log_solution_tokens",  # log(tokens from the first step's start to this step's read position, inclusive)
)
CHARACTER_FEATURES = (
    "log_step_chars",  # log(1 + characters of the step)
    "log_solution_chars",  # log(1 + characters of the solution up to the end of this step)
)


def step_mask(step_positions: torch.Tensor) -> torch.Tensor:
    """``[B, S]`` bool: True where a step is read."""
    return step_positions >= 0


def gather_positions(hidden: torch.Tensor, step_positions: torch.Tensor) -> torch.Tensor:
    """Hidden states at the read positions.

    Args:
        hidden: ``[B, T, C]``.
        step_positions: ``[B, S]`` long, ``-1`` for padding.
    Returns:
        ``[B, S, C]`` in ``hidden``'s dtype, zeros at padded steps.
    """
    mask = step_mask(step_positions).to(hidden.device)
    index = step_positions.clamp(min=0).to(hidden.device).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
    return hidden.gather(1, index) * mask.unsqueeze(-1).to(hidden.dtype)


def step_means(hidden: torch.Tensor, step_starts: torch.Tensor, step_positions: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states of each step's tokens, ``step_starts .. step_positions`` inclusive (a start after
    its position is clamped to the position, so every real step averages at least one token).

    Args:
        hidden: ``[B, T, C]``.
        step_starts, step_positions: ``[B, S]`` long, ``-1`` for padding.
    Returns:
        ``[B, S, C]`` in ``hidden``'s dtype (summed in float32), zeros at padded steps.
    """
    mask = step_mask(step_positions).to(hidden.device)
    ends = step_positions.clamp(min=0).to(hidden.device)
    starts = torch.minimum(step_starts.clamp(min=0).to(hidden.device), ends)
    # Prefix sums with a leading zero row: sum(hidden[a..b]) = cum[b + 1] - cum[a].
    cum = torch.nn.functional.pad(hidden.float().cumsum(dim=1), (0, 0, 1, 0))
    width = hidden.shape[-1]
    upper = cum.gather(1, (ends + 1).unsqueeze(-1).expand(-1, -1, width))
    lower = cum.gather(1, starts.unsqueeze(-1).expand(-1, -1, width))
    counts = (ends - starts + 1).clamp(min=1).unsqueeze(-1).float()
    return ((upper - lower) / counts * mask.unsqueeze(-1)).to(hidden.dtype)


def pool(hidden: torch.Tensor, step_starts: torch.Tensor, step_positions: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[B, S, C]`` readout of one layer: ``pooling`` is ``"delimiter"`` or ``"mean"`` (module docstring)."""
    if pooling == "delimiter":
        return gather_positions(hidden, step_positions)
    if pooling == "mean":
        return step_means(hidden, step_starts, step_positions)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def structure_features(
    step_positions: torch.Tensor,
    step_starts: torch.Tensor,
    step_chars: torch.Tensor | None = None,
    solution_chars: torch.Tensor | None = None,
) -> torch.Tensor:
    """Where each step is and how long it is (``STRUCTURE_FEATURES``, then ``CHARACTER_FEATURES`` when character
    lengths are given).

    Args:
        step_positions, step_starts: ``[B, S]`` long, ``-1`` for padding; real steps come first in each row.
        step_chars: ``[B, S]`` characters of each step (its text and delimiter), optional.
        solution_chars: ``[B, S]`` characters from the solution's start to the end of each step, optional
            (needed when ``step_chars`` is given).
    Returns:
        ``[B, S, F]`` float32 with ``F = 5`` (``+ 2`` with characters), zeros at padded steps.
    """
    mask = step_mask(step_positions)
    maskf = mask.float()
    n = maskf.sum(dim=1, keepdim=True)  # [B, 1]
    index = torch.arange(step_positions.shape[1], device=step_positions.device).float().expand_as(maskf)
    first_start = step_starts[:, :1].clamp(min=0).float()
    positions = step_positions.clamp(min=0).float()
    starts = torch.minimum(step_starts.clamp(min=0).float(), positions)
    columns = [
        torch.log1p(index),
        index / (n - 1).clamp(min=1),
        torch.log(n.clamp(min=1)).expand_as(maskf),
        torch.log(positions - starts + 1),
        torch.log((positions - first_start + 1).clamp(min=1)),
    ]
    if step_chars is not None:
        if solution_chars is None:
            raise ValueError("structure_features: step_chars needs solution_chars too")
        columns += [torch.log1p(step_chars.float().clamp(min=0)), torch.log1p(solution_chars.float().clamp(min=0))]
    return torch.stack(columns, dim=-1) * maskf.unsqueeze(-1)
