"""Training objectives for the SPRM head: small pure functions of the step logits.

Every loss has the signature the model's forward and the trainers call::

    loss_fn(step_logits=[B, S], step_mask=[B, S] (bool), outcome_labels=[B] | None, step_labels=[B, S] | None,
            *, solution_mask=[B] (bool) | None, global_sum=None, **options) -> scalar tensor

* ``step_logits`` are the head's logits z_i (padding positions are ignored through ``step_mask``).
* ``outcome_labels`` y in [0, 1] per solution: 1 = final answer right, 0 = wrong, anything between is a soft label
  (a pass rate, a judge score, a noisy or graded correctness).
* ``step_labels`` s_i in [0, 1] per step, NaN where unknown (e.g. after the first error in ProcessBench).
* ``solution_mask`` drops whole solutions (e.g. truncated rollouts); None keeps all.
* ``global_sum`` sums a tensor over all training processes (DDP) and returns it; the trainers pass it so that a
  run on N processes normalises over the whole global batch, as one process would. None = this process only.

The self-training losses (``spr``, ``asymmetric_spr``, ``first_error``) also take ``teacher_logits`` ([B, S] or
None): the logits their pseudo-labels (the filter, the first-error guess) are read from. None reads them from
``step_logits`` (detached: the head is its own teacher, as in MetaStone-S1); the trainers pass the logits of an
exponential-moving-average copy of the head there (``--ema_teacher_decay``). The trained logits are always
``step_logits``.

A loss reads only the labels it needs and ignores the others. Each is a weighted mean of per-step binary
cross-entropies, ``L = sum_i c_i * BCE(z_i, t_i) / (sum_i c_i + eps)``, with weights c_i that carry no gradient, so a
batch where every weight is 0 gives a loss of exactly 0 (no NaN). Options are bound with ``functools.partial``.

To add an objective, write one function with this signature and add it to ``LOSSES``.

``trajectory_loss`` is not an objective of its own but a term added to one (``--trajectory_loss_weight``): the
aggregated score of all scored steps of a trace (`modeling_sprm.aggregation`, the score the model reports for a
solution) trained against the outcome, as ReasonFlux-PRM adds a trajectory-level reward to its step-level one.

**Thinking traces that self-revise** (``<think>`` with "wait, that is wrong" and a correction, then a response; see
``steps.py`` for the spans). Every outcome-only objective reads a step's label off the final answer, and each one's
assumption fails in its own way when a wrong step in the thinking is *later corrected* and the answer is right:

* ``outcome_bce`` / ``spr``: "a step is right iff the answer is". The corrected slip sits in a right trace and is
  trained as right (``spr``'s filter keeps it whenever the head already scores it high); a right step of a trace
  whose answer is wrong for another reason is trained as wrong.
* ``asymmetric_spr``: "right answer => every step right": the corrected slip is a positive with full weight.
* ``mil``: "a trace is right iff every step is right", i.e. "any wrong step makes the answer wrong". Under
  self-revision that is false: a right trace holding a corrected error trains the product of its step scores, and
  so the error's own score, up; and a wrong trace whose errors in the scored span were all corrected (the carried
  one is in the other span, or is no single step) still needs a low product, so the blame lands on the corrected
  error or on right steps. A step score trained this way estimates "this step does not sink the answer", not
  "this step is right".
* ``first_error``: "the first wrong step made the answer wrong". When the first error was corrected and a later
  one carried, a head that finds the first error blames the harmless one and leaves the carried one (after it)
  unlabelled.
* the trajectory term: it never labels a step; it only asks the aggregate of the trace to predict the outcome, so
  a corrected error can keep a low score as long as the rest of the trace outweighs it (with the geometric mean:
  one low step among many). It inherits ``mil``'s assumption only with ``aggregation="product"`` or ``"min"``.

Which assumption breaks how often in a data set is measured by ``benchmarks/trajectory/analysis.py``
(``assumption_violations``), which also trains the heads per span and with the trajectory term.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..aggregation import aggregate

GlobalSum = Callable[[torch.Tensor], torch.Tensor]


# -- shared pieces --------------------------------------------------------------------------------------------------


def _check(step_logits: torch.Tensor, step_mask: torch.Tensor, solution_mask: torch.Tensor | None) -> torch.Tensor:
    """Validate shapes; return the float mask m_i of steps that count (step exists and its solution is kept)."""
    if step_logits.dim() != 2 or step_logits.shape != step_mask.shape:
        raise ValueError(
            f"step_logits and step_mask must both be [batch, steps], got {tuple(step_logits.shape)} and "
            f"{tuple(step_mask.shape)}"
        )
    mask = step_mask.bool()
    if solution_mask is not None:
        if solution_mask.shape != step_logits.shape[:1]:
            raise ValueError(f"solution_mask must be [batch]={step_logits.shape[0]}, got {tuple(solution_mask.shape)}")
        mask = mask & solution_mask.bool().to(mask.device).unsqueeze(-1)
    return mask.float()


def _outcome_targets(outcome_labels: torch.Tensor | None, step_logits: torch.Tensor, loss: str) -> torch.Tensor:
    """The outcome label of each solution broadcast to its steps: ``[B, S]``."""
    if outcome_labels is None:
        raise ValueError(f"the {loss} loss needs outcome labels (one per solution), got none")
    y = outcome_labels.to(device=step_logits.device, dtype=torch.float32)
    if y.shape != step_logits.shape[:1]:
        raise ValueError(f"outcome_labels must be [batch]={step_logits.shape[0]}, got {tuple(y.shape)}")
    if torch.isnan(y).any() or (y < 0).any() or (y > 1).any():
        raise ValueError(f"outcome_labels must be numbers in [0, 1] (no missing labels), got {y.tolist()}")
    return y.unsqueeze(-1).expand_as(step_logits)


def class_balance_weights(
    targets: torch.Tensor, weights: torch.Tensor, positive_factor: float = 1.5, global_sum: GlobalSum | None = None
) -> torch.Tensor:
    r"""MetaStone-S1's class balancing (its training code, not the paper), for targets t_i in [0, 1]::

        P = sum_i w_i t_i + 1,   N = sum_i w_i (1 - t_i) + 1          (counted over the global batch)
        c_i = w_i * (positive_factor * t_i * N / (P + N) + (1 - t_i) * P / (P + N))

    The rarer class gets the larger weight; positives get an extra ``positive_factor`` (1.5 in MetaStone-S1).
    """
    counts = torch.stack([(weights * targets).sum(), (weights * (1 - targets)).sum()]).detach()
    if global_sum is not None:
        counts = global_sum(counts)
    positives, negatives = counts[0] + 1, counts[1] + 1
    total = positives + negatives
    return weights * (positive_factor * targets * negatives / total + (1 - targets) * positives / total)


def weighted_mean(
    values: torch.Tensor, weights: torch.Tensor, eps: float = 1e-5, global_sum: GlobalSum | None = None
) -> torch.Tensor:
    r"""``sum_i c_i v_i / (sum_i c_i + eps)`` with weights c_i treated as constants.

    With ``global_sum`` the denominator is the global batch's weight sum divided by the number of processes, so
    that DDP's gradient averaging yields exactly the one-process gradient of the global batch.
    """
    weights = weights.detach()
    numerator = (values * weights).sum()
    denominator = weights.sum()
    if global_sum is not None:
        total, processes = global_sum(torch.stack([denominator, torch.ones_like(denominator)]))
        denominator = total / processes
    return numerator / (denominator + eps)


def weighted_bce(
    step_logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""``sum_i c_i BCE(z_i, t_i) / (sum_i c_i + eps)`` with weights c_i treated as constants (``weighted_mean``)."""
    per_step = F.binary_cross_entropy_with_logits(step_logits.float(), targets.float(), reduction="none")
    return weighted_mean(per_step, weights, eps, global_sum)


def pseudo_label_probs(step_logits: torch.Tensor, teacher_logits: torch.Tensor | None) -> torch.Tensor:
    """``sigmoid`` of the logits pseudo-labels come from: ``teacher_logits`` when given, else ``step_logits``;
    detached (pseudo-labels carry no gradient)."""
    source = step_logits if teacher_logits is None else teacher_logits.to(step_logits.device)
    if source.shape != step_logits.shape:
        raise ValueError(f"teacher_logits must be [batch, steps]={tuple(step_logits.shape)}, got {tuple(source.shape)}")
    return torch.sigmoid(source.detach().float())


def log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for x < 0, computed stably (Maechler 2012): the log-probability of the complement."""
    return torch.where(log_p > -0.6931, torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p)))


def bce_from_log_prob(log_p: torch.Tensor, targets: torch.Tensor, max_log_p: float = -1e-6) -> torch.Tensor:
    """``-(t log P + (1 - t) log(1 - P))`` from log P; log P is capped just below 0 so that log(1 - P) stays
    finite (the cap's gradient is 0 there, never NaN)."""
    log_p = log_p.clamp(max=max_log_p)
    return -(targets * log_p + (1 - targets) * log1mexp(log_p))


# -- the objectives -------------------------------------------------------------------------------------------------


def spr_loss(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    threshold: float = 0.5,
    use_filter: bool = True,
    teacher_logits: torch.Tensor | None = None,
    soft_agreement: bool = False,
    class_balance: bool = False,
    positive_factor: float = 1.5,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""MetaStone-S1's self-supervised process reward (SPR) loss; uses outcome labels only.

    Every step of a solution gets the solution's outcome label y as its target, and a step counts only when the
    head's own pseudo-label agrees with y::

        h_i = 1[sigmoid(z_i) > threshold]                  pseudo-label of step i
        w_i = y * h_i + (1 - y) * (1 - h_i)                 agreement weight (1 if use_filter=False)
        L   = sum_i m_i w_i BCE(z_i, y) / (sum_i m_i w_i + eps)

    with m_i = 1 for existing steps of kept solutions. For y in {0, 1}, w_i = 1[h_i == y]: the paper's Eq. 6 and
    the code's ``get_filter_mask`` (which keeps z_i > 0 for y = 1 and z_i < 0 for y = 0; it differs only at
    z_i = 0 exactly). For a **soft** label y in (0, 1), w_i is the probability that the pseudo-label agrees with
    an outcome drawn as Bernoulli(y), and the BCE target is y itself.

    Options:
        threshold: the pseudo-label threshold (0.5 in MetaStone-S1).
        use_filter: False gives every step weight 1 (= ``outcome_bce``; the trainers use it for a warm-up).
        teacher_logits: the pseudo-labels h_i (and p_i) come from these logits instead of z_i (module docstring).
        soft_agreement: use the head's probability p_i = sigmoid(z_i) instead of the hard pseudo-label h_i, so
            w_i = y p_i + (1 - y)(1 - p_i): a step the head is unsure about still gets about half a weight, where
            the hard filter drops it (not in MetaStone-S1; ``threshold`` is then unused).
        class_balance: multiply the weights by MetaStone-S1's class balancing (``class_balance_weights``, with
            ``positive_factor``; in its code, not in the paper).
        solution_mask: exclude solutions, e.g. truncated rollouts (MetaStone-S1 means to drop rollouts with
            reward 0.1, but its trainer zeroes those rewards in place first, so its exclusion never happens).
        eps: added to the weight sum (1e-5 in MetaStone-S1); a batch with every step filtered out gives 0.
    """
    mask = _check(step_logits, step_mask, solution_mask)
    y = _outcome_targets(outcome_labels, step_logits, "spr")
    weights = mask
    if use_filter:
        probs = pseudo_label_probs(step_logits, teacher_logits)
        pseudo = probs if soft_agreement else (probs > threshold).float()
        weights = weights * (y * pseudo + (1 - y) * (1 - pseudo))
    if class_balance:
        weights = class_balance_weights(y, weights, positive_factor, global_sum)
    return weighted_bce(step_logits, y, weights, eps, global_sum)


def outcome_bce(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    class_balance: bool = False,
    positive_factor: float = 1.5,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""Outcome supervision without the filter (the baseline SPR must beat): every step gets its solution's
    outcome label, ``L = sum_i m_i BCE(z_i, y) / (sum_i m_i + eps)``. Equals ``spr_loss(use_filter=False)``."""
    return spr_loss(
        step_logits,
        step_mask,
        outcome_labels,
        solution_mask=solution_mask,
        use_filter=False,
        class_balance=class_balance,
        positive_factor=positive_factor,
        eps=eps,
        global_sum=global_sum,
    )


def step_bce(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    class_balance: bool = False,
    positive_factor: float = 1.5,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""Step supervision (human or synthetic step labels), ``L = sum_i m_i k_i BCE(z_i, s_i) / (sum_i m_i k_i +
    eps)`` with k_i = 0 where s_i is unknown (NaN). Labels may be floats in [0, 1] (soft labels are kept as they
    are, unlike TRL's PRMTrainer, which casts them with ``int()``)."""
    mask = _check(step_logits, step_mask, solution_mask)
    if step_labels is None:
        raise ValueError("the step_bce loss needs step labels ([batch, steps], NaN where unknown), got none")
    if step_labels.shape != step_logits.shape:
        raise ValueError(f"step_labels must be [batch, steps]={tuple(step_logits.shape)}, got {tuple(step_labels.shape)}")
    s = step_labels.to(device=step_logits.device, dtype=torch.float32)
    known = ~torch.isnan(s)
    if ((s[known] < 0) | (s[known] > 1)).any():
        raise ValueError("step_labels must be numbers in [0, 1] (NaN = unknown)")
    s = torch.nan_to_num(s, nan=0.0)
    weights = mask * known.float()
    if class_balance:
        weights = class_balance_weights(s, weights, positive_factor, global_sum)
    return weighted_bce(step_logits, s, weights, eps, global_sum)


def asymmetric_spr_loss(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    threshold: float = 0.5,
    negative_weight: str = "soft",
    use_filter: bool = True,
    teacher_logits: torch.Tensor | None = None,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""Asymmetric self-supervised weighting; uses outcome labels only.

    A right final answer says little about a single step, but under the usual assumption (a wrong step leads to a
    wrong answer) every step of a right solution is right; a wrong answer only says that *some* step is wrong. So
    steps of right solutions are all positives with weight 1, and only steps of wrong solutions are weighted::

        a_i = 1[sigmoid(z_i) <= threshold]     (negative_weight="filter": MetaStone's filter, negatives only)
        a_i = 1 - sigmoid(z_i)                  (negative_weight="soft": the head's own belief that i is wrong)
        w_i = y + (1 - y) a_i,    L = sum_i m_i w_i BCE(z_i, y) / (sum_i m_i w_i + eps)

    Weights carry no gradient; with ``teacher_logits`` the teacher's sigmoid replaces sigmoid(z_i) in a_i. For a
    soft label y the weight mixes the two cases. ``use_filter=False`` (the trainers' warm-up) gives every step
    weight 1, i.e. ``outcome_bce``.
    """
    if negative_weight not in ("filter", "soft"):
        raise ValueError(f"negative_weight must be 'filter' or 'soft', got {negative_weight!r}")
    mask = _check(step_logits, step_mask, solution_mask)
    y = _outcome_targets(outcome_labels, step_logits, "asymmetric_spr")
    weights = mask
    if use_filter:
        probs = pseudo_label_probs(step_logits, teacher_logits)
        agree = (probs <= threshold).float() if negative_weight == "filter" else 1 - probs
        weights = mask * (y + (1 - y) * agree)
    return weighted_bce(step_logits, y, weights, eps, global_sum)


def mil_loss(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    aggregation: str = "product",
    prefixes: bool = False,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""Multiple-instance outcome loss; uses outcome labels only (no pseudo-labels, no filter).

    A solution is right iff all its steps are right, so the probability that it is right is an aggregate of the step
    scores p_i = sigmoid(z_i), and that aggregate, not each step, is trained against the outcome label y::

        log P = sum_i m_i log p_i                     aggregation="product" (noisy-OR of step errors)
        log P = sum_i m_i log p_i / sum_i m_i         "geometric_mean" (the package's default aggregation)
        log P = min_i log p_i                         "min"
        L = sum_b k_b BCE(P_b, y_b) / (sum_b k_b + eps)

    with k_b = 1 for kept solutions that have steps. For y = 0 the gradient of the product form on z_i is
    proportional to 1 - p_i: the blame goes to the steps that already look wrong, and the other steps of a wrong
    solution are left alone; for y = 1 every step is pushed up. Step scores are never given a target of their own.

    ``prefixes=True`` trains every prefix instead: V_k = prod_{i<=k} p_i is the probability that the solution is
    still right after step k and gets the target y at every k (outcome supervision of prefix values, as in the
    implicit PRM of Yuan et al. 2024, arXiv 2412.01981, where the step reward is V_k / V_{k-1}; here that ratio is
    p_k itself, so the head's scores need no readout change). Only ``aggregation="product"`` has this form.
    """
    if aggregation not in ("product", "geometric_mean", "min"):
        raise ValueError(f"aggregation must be 'product', 'geometric_mean' or 'min', got {aggregation!r}")
    if prefixes and aggregation != "product":
        raise ValueError("prefixes=True needs aggregation='product'")
    mask = _check(step_logits, step_mask, solution_mask)
    y = _outcome_targets(outcome_labels, step_logits, "mil")[:, 0]
    log_p = F.logsigmoid(step_logits.float()) * mask
    if prefixes:
        prefix_log_values = log_p.cumsum(dim=-1)
        per_prefix = bce_from_log_prob(prefix_log_values, y.unsqueeze(-1).expand_as(prefix_log_values))
        return weighted_mean(per_prefix, mask, eps, global_sum)
    steps = mask.sum(dim=-1)
    if aggregation == "product":
        log_solution = log_p.sum(dim=-1)
    elif aggregation == "geometric_mean":
        log_solution = log_p.sum(dim=-1) / steps.clamp(min=1)
    else:
        log_solution = log_p.masked_fill(mask == 0, float("inf")).min(dim=-1).values.clamp(max=0)
    kept = (steps > 0).float()
    return weighted_mean(bce_from_log_prob(log_solution, y), kept, eps, global_sum)


def first_error_loss(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    threshold: float = 0.5,
    use_filter: bool = True,
    teacher_logits: torch.Tensor | None = None,
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""Self-training on the head's own first-error guess; uses outcome labels only.

    Steps of right solutions are positives. In a wrong solution the head (detached) locates the first error,
    k = the first step with sigmoid(z_k) <= threshold, or the lowest-scoring step when none is below it (a wrong
    answer needs a wrong step somewhere); steps before k become positives, step k the negative, and steps after k
    are left out (unknown, as in ProcessBench's labels); with ``teacher_logits`` the teacher locates it::

        t_i = 1 (i < k),  t_k = 0,  c_i = m_i (i <= k) else 0;   L = sum_i c_i BCE(z_i, t_i) / (sum_i c_i + eps)

    For a soft label y the two cases are mixed: c_i BCE = y * (right-solution term) + (1 - y) * (wrong-solution
    term). ``use_filter=False`` (the trainers' warm-up) is ``outcome_bce``: every step gets y.
    """
    mask = _check(step_logits, step_mask, solution_mask)
    y = _outcome_targets(outcome_labels, step_logits, "first_error")
    if not use_filter:
        return weighted_bce(step_logits, y, mask, eps, global_sum)
    probs = pseudo_label_probs(step_logits, teacher_logits).masked_fill(mask == 0, 2.0)  # padding is never the error
    below = (probs <= threshold) & (mask > 0)
    index = torch.arange(probs.shape[-1], device=probs.device).expand_as(probs)
    first_below = torch.where(below, index, probs.shape[-1]).min(dim=-1).values
    first_error = torch.where(below.any(dim=-1), first_below, probs.argmin(dim=-1)).unsqueeze(-1)
    targets_wrong = (index < first_error).float()
    weights_wrong = mask * (index <= first_error).float()
    # BCE is linear in its target, so y * (right term) + (1 - y) * (wrong term) is one BCE with mixed weight/target.
    weights = y * mask + (1 - y) * weights_wrong
    mixed = (y * mask + (1 - y) * weights_wrong * targets_wrong) / weights.clamp(min=1e-12)
    targets = torch.where(weights > 0, mixed, 0.0)
    return weighted_bce(step_logits, targets, weights, eps, global_sum)


def trajectory_loss(
    step_logits: torch.Tensor,
    step_mask: torch.Tensor,
    outcome_labels: torch.Tensor | None = None,
    step_labels: torch.Tensor | None = None,
    *,
    solution_mask: torch.Tensor | None = None,
    aggregation: str = "geometric_mean",
    eps: float = 1e-5,
    global_sum: GlobalSum | None = None,
) -> torch.Tensor:
    r"""The trajectory-level term (ReasonFlux-PRM's idea, from outcome labels only): the aggregated score of all
    scored steps of a trace, the solution score the model reports, trained against the trace's outcome::

        S_b = aggregate_i(sigmoid(z_bi))          `modeling_sprm.aggregation` (``aggregation``: its method name)
        L   = sum_b k_b BCE(S_b, y_b) / (sum_b k_b + eps)

    with k_b = 1 for kept solutions that have at least one scored step (a trace whose scored span is empty has no
    score to train). The loss is always finite; it is computed in float64 with log S capped at -2.2e-16 (float64's
    epsilon), so a confident score (S up to 1 - 2e-16, z up to about 36) still gets a gradient toward y = 0, and
    below ``aggregation``'s own clamps (the geometric mean's 1e-10) a step gets none, as its score does not move
    there. The trainers add ``trajectory_loss_weight`` times this to their loss; on its own, with
    ``"product"``, ``"geometric_mean"`` or ``"min"``, it is ``mil_loss`` with that aggregation computed from
    probabilities instead of log-probabilities (the same value up to float precision, as the tests check).
    """
    mask = _check(step_logits, step_mask, solution_mask)
    y = _outcome_targets(outcome_labels, step_logits, "trajectory")[:, 0].double()
    scores = aggregate(torch.sigmoid(step_logits.double()), step_mask.bool(), aggregation)
    log_scores = torch.log(scores.clamp(min=torch.finfo(torch.float64).tiny))
    per_solution = bce_from_log_prob(log_scores, y, max_log_p=-torch.finfo(torch.float64).eps).float()
    return weighted_mean(per_solution, (mask.sum(dim=-1) > 0).float(), eps, global_sum)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "spr": spr_loss,
    "outcome_bce": outcome_bce,
    "step_bce": step_bce,
    "asymmetric_spr": asymmetric_spr_loss,
    "mil": mil_loss,
    "first_error": first_error_loss,
}


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss function registered as ``name`` in ``LOSSES``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name]

