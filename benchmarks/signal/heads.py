"""Training a step head on cached readouts: a recipe (head, objective, optimiser budget) -> step scores.

Two heads, both reading standardised features (mean and std of the training steps):

* ``mlp``: the package's ``SPRMHead`` (MetaStone-S1's Linear(c, 2c)-ReLU-Dropout-Linear(2c, 1)), the shipped head;
* ``linear``: one Linear(c, 1) (a logistic-regression probe).

Two solvers: ``adamw`` (mini-batches of solutions, linear learning-rate decay, as the package's trainers run) and
``lbfgs`` (full batch, deterministic, with an explicit L2 penalty on the weights: the regularised linear probe).
Every objective is one of ``modeling_sprm.losses.LOSSES``, called on ``[batch, steps]`` logits exactly as the
trainers call it. Written here rather than through ``SPRMTrainer`` because the experiments train a few thousand
small heads on 2 shared CPU cores, where the HF Trainer's per-run overhead would dominate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from modeling_sprm.training.losses import LOSSES
from modeling_sprm.modeling_sprm import SPRMHead

FILTER_LOSSES = ("spr", "asymmetric_spr", "first_error")  # losses whose weights depend on the head's own scores


@dataclass(frozen=True)
class Recipe:
    """How to train one head. ``labels``: ``"step"`` (human step labels) or ``"outcome"`` (one label per solution,
    which ``run.py`` sets to the real outcome, the outcome without right-answer-but-flawed solutions, or the ideal
    "has no error" label)."""

    name: str
    labels: str = "step"
    loss: str = "step_bce"
    loss_options: dict = field(default_factory=dict)
    head: str = "mlp"
    solver: str = "adamw"
    dropout: float = 0.5
    epochs: float = 8
    learning_rate: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 0.01
    l2: float = 0.0  # lbfgs: penalty l2/2 * |w|^2 added to the (weighted mean) loss
    warmup_steps: int = 0  # optimiser steps trained with the filter off (outcome-BCE warm-up)

    def describe(self) -> dict:
        return asdict(self)

    def but(self, **changes) -> "Recipe":
        return replace(self, **changes)


class LinearHead(nn.Module):
    """Standardise, then one Linear(c, 1): ``[..., c]`` features -> ``[...]`` logits."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)  # PyTorch's default init, as the MLP head's layers
        self.register_buffer("feature_mean", torch.zeros(hidden_size))
        self.register_buffer("feature_std", torch.ones(hidden_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.feature_mean) / self.feature_std).squeeze(-1)

    @torch.no_grad()
    def set_feature_statistics(self, features: torch.Tensor) -> None:
        values = features.double()
        self.feature_mean.copy_(values.mean(0).float())
        self.feature_std.copy_(values.std(0).clamp(min=1e-6).float())


def make_head(recipe: Recipe, hidden_size: int) -> nn.Module:
    if recipe.head == "mlp":
        return SPRMHead(hidden_size, 2, recipe.dropout, standardize=True)
    if recipe.head == "linear":
        return LinearHead(hidden_size)
    raise ValueError(f"unknown head {recipe.head!r}")


@dataclass
class Data:
    """Training inputs on the rows of some solutions: ``x`` ``[N, c]``; per solution ``offsets`` (``[n + 1]``, rows
    contiguous) and ``outcome`` ``[n]``; per step ``step_label`` ``[N]`` (nan = unknown)."""

    x: torch.Tensor
    offsets: np.ndarray
    outcome: torch.Tensor
    step_label: torch.Tensor

    @property
    def num_solutions(self) -> int:
        return len(self.offsets) - 1

    def batch(self, solutions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row indices, and (solution-in-batch, step) coordinates of each row, for a batch of solutions."""
        lengths = self.offsets[solutions + 1] - self.offsets[solutions]
        rows = np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1]) for s in solutions])
        which = np.repeat(np.arange(len(solutions)), lengths)
        position = rows - np.repeat(self.offsets[solutions], lengths)
        return (torch.from_numpy(rows), torch.from_numpy(which), torch.from_numpy(position),
                torch.from_numpy(lengths))


def padded(values: torch.Tensor, which: torch.Tensor, position: torch.Tensor, batch: int, width: int,
           fill: float = 0.0) -> torch.Tensor:
    out = torch.full((batch, width), fill, dtype=values.dtype)
    return out.index_put((which, position), values)


def _loss(recipe: Recipe, logits_flat: torch.Tensor, data: Data, solutions: np.ndarray, warm: bool,
          coordinates=None) -> torch.Tensor:
    rows, which, position, lengths = coordinates if coordinates is not None else data.batch(solutions)
    width = max(1, int(lengths.max()))
    logits = padded(logits_flat, which, position, len(solutions), width)
    mask = padded(torch.ones(len(rows), dtype=torch.bool), which, position, len(solutions), width, False)
    options = dict(recipe.loss_options)
    if warm:
        options["use_filter"] = False
    if recipe.labels == "step":
        step_labels = padded(data.step_label[rows], which, position, len(solutions), width, float("nan"))
        return LOSSES[recipe.loss](step_logits=logits, step_mask=mask, step_labels=step_labels, **options)
    return LOSSES[recipe.loss](step_logits=logits, step_mask=mask, outcome_labels=data.outcome[solutions], **options)


def train(recipe: Recipe, data: Data, seed: int) -> tuple[nn.Module, dict]:
    """A fresh head trained on ``data``; returns ``(head in eval mode, diagnostics)``. Diagnostics: for objectives
    with outcome labels, the share of training steps whose pseudo-label (score > 0.5) agrees with their solution's
    label (= the share the SPR filter keeps) after each epoch."""
    torch.manual_seed(seed)
    head = make_head(recipe, data.x.shape[1])
    head.set_feature_statistics(data.x)
    diagnostics: dict = {}
    if recipe.solver == "lbfgs":
        _train_lbfgs(head, recipe, data)
    elif recipe.solver == "adamw":
        diagnostics["kept_share_by_epoch"] = _train_adamw(head, recipe, data, seed)
    else:
        raise ValueError(f"unknown solver {recipe.solver!r}")
    head.eval()
    if recipe.labels == "outcome":
        diagnostics["kept_share"] = kept_share(head, data)
    return head, diagnostics


def _train_lbfgs(head: nn.Module, recipe: Recipe, data: Data) -> None:
    everything = np.arange(data.num_solutions)
    coordinates = data.batch(everything)
    weights = [p for name, p in head.named_parameters() if name.endswith("weight")]
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=int(recipe.epochs), history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)
    head.train()

    def closure():
        optimizer.zero_grad()
        loss = _loss(recipe, head(data.x), data, everything, warm=False, coordinates=coordinates)
        loss = loss + 0.5 * recipe.l2 * sum((w**2).sum() for w in weights)
        loss.backward()
        return loss

    optimizer.step(closure)


def _train_adamw(head: nn.Module, recipe: Recipe, data: Data, seed: int) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    n = data.num_solutions
    per_epoch = math.ceil(n / recipe.batch_size)
    total = max(1, math.ceil(recipe.epochs * per_epoch))
    optimizer = torch.optim.AdamW(head.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    kept = []
    order = None
    for step in range(total):
        if step % per_epoch == 0:
            if step and recipe.labels == "outcome":
                kept.append(kept_share(head, data))
            order = torch.randperm(n, generator=generator).numpy()
        head.train()
        start = (step % per_epoch) * recipe.batch_size
        solutions = order[start : start + recipe.batch_size]
        coordinates = data.batch(solutions)
        loss = _loss(recipe, head(data.x[coordinates[0]]), data, solutions, warm=step < recipe.warmup_steps,
                     coordinates=coordinates)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return kept


@torch.no_grad()
def scores(head: nn.Module, x: torch.Tensor, batch: int = 65536) -> np.ndarray:
    """Step scores ``sigmoid(head(x))``, float64 ``[N]``."""
    head.eval()
    return np.concatenate([torch.sigmoid(head(x[i : i + batch])).double().numpy() for i in range(0, len(x), batch)])


@torch.no_grad()
def kept_share(head: nn.Module, data: Data) -> float:
    """Share of steps whose pseudo-label ``score > 0.5`` agrees with their solution's (hard) label."""
    was_training = head.training
    predicted = scores(head, data.x) > 0.5
    head.train(was_training)
    lengths = data.offsets[1:] - data.offsets[:-1]
    label = np.repeat(data.outcome.numpy() > 0.5, lengths)
    return float((predicted == label).mean())
