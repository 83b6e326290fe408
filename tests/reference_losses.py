"""A second implementation of the training losses (modeling_sprm.training.losses), written plainly from their docstrings:
Python floats and loops, no torch. Tests compare the package's tensors with these numbers; the two share no code.

Each function takes nested lists: ``logits[b][i]``, ``mask[b][i]`` (bool), ``outcomes[b]`` (y in [0, 1]),
``step_labels[b][i]`` (float or None), ``keep[b]`` (the solution mask, bool) and returns ``(loss, gradient)``,
where ``gradient[b][i]`` is dL/dz for the weighted-BCE losses (weights are constants) and None for ``mil``.
The rules at the threshold are the docstrings': the SPR pseudo-label is "right" iff sigmoid(z) > threshold, the
asymmetric filter and the first-error guess take sigmoid(z) <= threshold as "wrong".
"""

from __future__ import annotations

import math


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def bce(z: float, t: float) -> float:
    """-(t log p + (1 - t) log(1 - p)) with p = sigmoid(z), in the stable softplus form."""
    softplus = max(z, 0.0) + math.log1p(math.exp(-abs(z)))  # log(1 + e^z)
    return softplus - t * z


def _steps(mask, keep):
    """(b, i) of every step that counts: it exists and its solution is kept."""
    return [(b, i) for b, row in enumerate(mask) for i, m in enumerate(row) if m and (keep is None or keep[b])]


def _weighted_bce(logits, cells, eps):
    """cells: {(b, i): (weight c, target t)} -> sum c BCE / (sum c + eps) and its gradient (weights constant)."""
    total = sum(c for c, _ in cells.values())
    loss = sum(c * bce(logits[b][i], t) for (b, i), (c, t) in cells.items()) / (total + eps)
    grad = [[0.0] * len(row) for row in logits]
    for (b, i), (c, t) in cells.items():
        grad[b][i] = c * (sigmoid(logits[b][i]) - t) / (total + eps)
    return loss, grad


def _balance(cells, positive_factor):
    """MetaStone-S1's class balancing of {(b, i): (w, t)}: P = sum w t + 1, N = sum w (1 - t) + 1."""
    positives = sum(w * t for w, t in cells.values()) + 1
    negatives = sum(w * (1 - t) for w, t in cells.values()) + 1
    total = positives + negatives
    return {
        k: (w * (positive_factor * t * negatives / total + (1 - t) * positives / total), t)
        for k, (w, t) in cells.items()
    }


def spr(logits, mask, outcomes, keep=None, threshold=0.5, use_filter=True, soft_agreement=False,
        class_balance=False, positive_factor=1.5, eps=1e-5):
    cells = {}
    for b, i in _steps(mask, keep):
        y, p = outcomes[b], sigmoid(logits[b][i])
        weight = 1.0
        if use_filter:
            h = p if soft_agreement else (1.0 if p > threshold else 0.0)
            weight = y * h + (1 - y) * (1 - h)
        cells[b, i] = (weight, y)
    if class_balance:
        cells = _balance(cells, positive_factor)
    return _weighted_bce(logits, cells, eps)


def step_bce(logits, mask, step_labels, keep=None, class_balance=False, positive_factor=1.5, eps=1e-5):
    cells = {(b, i): (1.0, step_labels[b][i]) for b, i in _steps(mask, keep) if step_labels[b][i] is not None}
    if class_balance:
        cells = _balance(cells, positive_factor)
    return _weighted_bce(logits, cells, eps)


def asymmetric_spr(logits, mask, outcomes, keep=None, threshold=0.5, negative_weight="soft", eps=1e-5):
    cells = {}
    for b, i in _steps(mask, keep):
        y, p = outcomes[b], sigmoid(logits[b][i])
        a = (1.0 if p <= threshold else 0.0) if negative_weight == "filter" else 1 - p
        cells[b, i] = (y + (1 - y) * a, y)
    return _weighted_bce(logits, cells, eps)


def first_error(logits, mask, outcomes, keep=None, threshold=0.5, eps=1e-5):
    """y * (every step a positive) + (1 - y) * (steps before the guessed error positive, the error negative)."""
    counted = set(_steps(mask, keep))
    terms = []  # (b, i, weight, target), one BCE each (BCE is linear in the target, so they may simply be added)
    for b, row in enumerate(logits):
        steps = [i for i in range(len(row)) if (b, i) in counted]
        if not steps:
            continue
        y = outcomes[b]
        below = [i for i in steps if sigmoid(row[i]) <= threshold]
        k = below[0] if below else min(steps, key=lambda i: (sigmoid(row[i]), i))
        for i in steps:
            terms.append((b, i, y, 1.0))
            if i <= k:
                terms.append((b, i, 1 - y, 1.0 if i < k else 0.0))
    total = sum(w for _, _, w, _ in terms)
    loss = sum(w * bce(logits[b][i], t) for b, i, w, t in terms) / (total + eps)
    grad = [[0.0] * len(row) for row in logits]
    for b, i, w, t in terms:
        grad[b][i] += w * (sigmoid(logits[b][i]) - t) / (total + eps)
    return loss, grad


def _bce_from_log_prob(log_p: float, y: float) -> float:
    log_p = min(log_p, -1e-6)
    return -(y * log_p + (1 - y) * math.log(-math.expm1(log_p)))


def mil(logits, mask, outcomes, keep=None, aggregation="product", prefixes=False, eps=1e-5):
    counted = set(_steps(mask, keep))
    terms = []  # (BCE of an aggregate, its weight 1)
    for b, row in enumerate(logits):
        logs = [math.log(sigmoid(row[i])) for i in range(len(row)) if (b, i) in counted]
        if not logs:
            continue
        if prefixes:
            terms += [_bce_from_log_prob(sum(logs[: k + 1]), outcomes[b]) for k in range(len(logs))]
        elif aggregation == "product":
            terms.append(_bce_from_log_prob(sum(logs), outcomes[b]))
        elif aggregation == "geometric_mean":
            terms.append(_bce_from_log_prob(sum(logs) / len(logs), outcomes[b]))
        else:
            terms.append(_bce_from_log_prob(min(logs), outcomes[b]))
    return sum(terms) / (len(terms) + eps), None
