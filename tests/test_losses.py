"""The training losses against numbers computed by hand (math, not torch, on the right-hand side), at ties with the
threshold, across two processes, and on random batches against a plain second implementation
(tests/reference_losses.py)."""

import math
import random
import threading

import pytest
import reference_losses
import torch

from modeling_sprm.training.losses import (
    LOSSES,
    asymmetric_spr_loss,
    first_error_loss,
    get_loss,
    mil_loss,
    outcome_bce,
    spr_loss,
    step_bce,
)
from modeling_sprm.training.losses import trajectory_loss

EPS = 1e-5
NAN = float("nan")


def bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -t * math.log(p) - (1 - t) * math.log(1 - p)


# Two solutions: the first right (y=1) with three steps, the second wrong (y=0) with two steps and one pad.
LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.3, -0.2, 0.0]])
MASK = torch.tensor([[True, True, True], [True, True, False]])
Y = torch.tensor([1.0, 0.0])


def test_spr_filter_keeps_steps_whose_pseudo_label_agrees_with_the_outcome():
    # y=1: z=2 and z=0.5 predict "right" (kept), z=-1 predicts "wrong" (dropped).
    # y=0: z=-0.2 predicts "wrong" (kept), z=0.3 predicts "right" (dropped); the pad never counts.
    expected = (bce(2.0, 1) + bce(0.5, 1) + bce(-0.2, 0)) / (3 + EPS)
    assert spr_loss(LOGITS, MASK, Y).item() == pytest.approx(expected, rel=1e-6)


def test_without_filter_every_step_counts_and_equals_outcome_bce():
    expected = (bce(2.0, 1) + bce(-1.0, 1) + bce(0.5, 1) + bce(0.3, 0) + bce(-0.2, 0)) / (5 + EPS)
    assert spr_loss(LOGITS, MASK, Y, use_filter=False).item() == pytest.approx(expected, rel=1e-6)
    assert outcome_bce(LOGITS, MASK, Y).item() == pytest.approx(expected, rel=1e-6)


def test_threshold_moves_the_pseudo_label():
    # sigmoid(0.5) = 0.622 < 0.7: with threshold 0.7 that step now predicts "wrong" and is dropped (y=1);
    # sigmoid(0.3) = 0.574 < 0.7 predicts "wrong" and is now kept (y=0).
    expected = (bce(2.0, 1) + bce(0.3, 0) + bce(-0.2, 0)) / (3 + EPS)
    assert spr_loss(LOGITS, MASK, Y, threshold=0.7).item() == pytest.approx(expected, rel=1e-6)


# -- ties at the threshold -----------------------------------------------------------------------------------------
# The losses' rule at a tie (their docstrings): a step whose probability equals the threshold is pseudo-labelled
# "wrong" (SPR: h = 1[p > threshold]; asymmetric filter and first-error guess: p <= threshold). sigmoid(0) is 0.5
# exactly, and sigmoid(0.5) in float32 is hit exactly by a threshold set to that float.
TIE_HALF = 0.5
TIE_OTHER = torch.sigmoid(torch.tensor(0.5)).item()


@pytest.mark.parametrize("z, threshold", [(0.0, TIE_HALF), (0.5, TIE_OTHER)])
def test_spr_filter_at_the_threshold_pseudo_labels_the_step_wrong(z, threshold):
    # Right solution: the tied step is pseudo-labelled wrong, so it is dropped; wrong solution: it is kept.
    logits = torch.tensor([[z, 2.0], [z, 3.0]], requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss = spr_loss(logits, mask, torch.tensor([1.0, 0.0]), threshold=threshold)
    assert loss.item() == pytest.approx((bce(2.0, 1) + bce(z, 0)) / (2 + EPS), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 0] == 0 and logits.grad[1, 0] != 0


@pytest.mark.parametrize("z, threshold", [(0.0, TIE_HALF), (0.5, TIE_OTHER)])
def test_asymmetric_filter_at_the_threshold_keeps_the_step_of_a_wrong_solution(z, threshold):
    logits = torch.tensor([[2.0, 0.0], [z, 3.0]])
    mask = torch.tensor([[True, False], [True, True]])  # the right solution's padding is never counted
    got = asymmetric_spr_loss(logits, mask, torch.tensor([1.0, 0.0]), negative_weight="filter", threshold=threshold)
    assert got.item() == pytest.approx((bce(2.0, 1) + bce(z, 0)) / (2 + EPS), rel=1e-6)


@pytest.mark.parametrize("z, threshold", [(0.0, TIE_HALF), (0.5, TIE_OTHER)])
def test_first_error_guess_at_the_threshold_is_the_tied_step(z, threshold):
    # p = (0.73 or 0.82, tie, 0.12): the first step at or below the threshold is step 1, not step 2.
    first = 1.0 if z == 0.0 else 1.5
    logits = torch.tensor([[first, z, -2.0]])
    got = first_error_loss(logits, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0.0]), threshold=threshold)
    assert got.item() == pytest.approx((bce(first, 1) + bce(z, 0)) / (2 + EPS), rel=1e-6)


# -- every loss against the plain reference (tests/reference_losses.py) on random batches ----------------------------

REFERENCE_CASES = [
    ("spr", {}), ("spr", {"class_balance": True}), ("spr", {"soft_agreement": True}), ("spr", {"threshold": 0.3}),
    ("spr", {"use_filter": False, "eps": 0.5}), ("spr", {"class_balance": True, "positive_factor": 1.0}),
    ("outcome_bce", {}), ("outcome_bce", {"class_balance": True, "positive_factor": 2.0, "eps": 0.5}),
    ("step_bce", {}), ("step_bce", {"class_balance": True, "positive_factor": 2.0, "eps": 0.5}),
    ("asymmetric_spr", {}), ("asymmetric_spr", {"negative_weight": "filter"}),
    ("asymmetric_spr", {"negative_weight": "filter", "threshold": 0.7}), ("asymmetric_spr", {"use_filter": False}),
    ("first_error", {}), ("first_error", {"threshold": 0.3}), ("first_error", {"use_filter": False, "eps": 0.5}),
    ("mil", {}), ("mil", {"aggregation": "geometric_mean"}), ("mil", {"aggregation": "min", "eps": 0.5}),
    ("mil", {"prefixes": True}),
]


def reference(name: str, logits, mask, outcomes, step_labels, keep, options):
    options = dict(options)
    if name == "outcome_bce" or (name in ("asymmetric_spr", "first_error") and not options.pop("use_filter", True)):
        options = {k: v for k, v in options.items() if k not in ("threshold", "negative_weight")}
        return reference_losses.spr(logits, mask, outcomes, keep, use_filter=False, **options)
    if name == "step_bce":
        return reference_losses.step_bce(logits, mask, step_labels, keep, **options)
    return getattr(reference_losses, name)(logits, mask, outcomes, keep, **options)


def random_batch(rng: random.Random, batch: int = 4, steps: int = 5):
    """Logits with exact ties at 0.5 (z = 0) and non-zero padding, masks that are not prefixes, hard and soft
    outcomes, step labels with unknowns, and dropped solutions."""
    logits = [[rng.choice([0.0, round(rng.uniform(-4, 4), 2)]) for _ in range(steps)] for _ in range(batch)]
    mask = [[rng.random() < 0.7 for _ in range(steps)] for _ in range(batch)]
    outcomes = [rng.choice([0.0, 1.0, round(rng.random(), 3)]) for _ in range(batch)]
    step_labels = [[rng.choice([None, 0.0, 1.0, round(rng.random(), 3)]) for _ in range(steps)] for _ in range(batch)]
    keep = rng.choice([None, [rng.random() < 0.8 for _ in range(batch)]])
    return logits, mask, outcomes, step_labels, keep


@pytest.mark.parametrize("name, options", REFERENCE_CASES, ids=[f"{n}-{o}" for n, o in REFERENCE_CASES])
def test_loss_and_gradient_equal_the_plain_reference_on_random_batches(name, options):
    rng = random.Random(f"{name}-{sorted(options.items())}")
    for _ in range(25):
        logits, mask, outcomes, step_labels, keep = random_batch(rng)
        expected, expected_grad = reference(name, logits, mask, outcomes, step_labels, keep, options)
        z = torch.tensor(logits, requires_grad=True)
        labels = torch.tensor([[NAN if s is None else s for s in row] for row in step_labels])
        got = LOSSES[name](z, torch.tensor(mask), torch.tensor(outcomes), labels,
                           solution_mask=None if keep is None else torch.tensor(keep), **options)
        assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6), (logits, mask, outcomes, keep)
        got.backward()
        if expected_grad is not None:
            torch.testing.assert_close(z.grad, torch.tensor(expected_grad), rtol=1e-4, atol=1e-6)


def test_class_balancing_as_in_metastone_code():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0], [0.3, -0.2, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    # Kept after the filter: 3 positive steps (z = 2, 0.5, 1), 1 negative (z = -0.2).
    positives, negatives = 3 + 1, 1 + 1
    total = positives + negatives
    w_pos, w_neg = 1.5 * negatives / total, positives / total  # 0.5 and 0.667
    numerator = w_pos * (bce(2.0, 1) + bce(0.5, 1) + bce(1.0, 1)) + w_neg * bce(-0.2, 0)
    expected = numerator / (3 * w_pos + w_neg + EPS)
    assert spr_loss(logits, mask, Y, class_balance=True).item() == pytest.approx(expected, rel=1e-6)
    # The positive factor is an option.
    w_pos1 = 1.0 * negatives / total
    numerator1 = w_pos1 * (bce(2.0, 1) + bce(0.5, 1) + bce(1.0, 1)) + w_neg * bce(-0.2, 0)
    got = spr_loss(logits, mask, Y, class_balance=True, positive_factor=1.0).item()
    assert got == pytest.approx(numerator1 / (3 * w_pos1 + w_neg + EPS), rel=1e-6)


def test_soft_outcome_label_gives_soft_agreement_weights_and_soft_targets():
    logits = torch.tensor([[1.0, -1.0]])
    mask = torch.tensor([[True, True]])
    # y = 0.7: the step predicting "right" agrees with probability 0.7, the one predicting "wrong" with 0.3.
    expected = (0.7 * bce(1.0, 0.7) + 0.3 * bce(-1.0, 0.7)) / (0.7 + 0.3 + EPS)
    assert spr_loss(logits, mask, torch.tensor([0.7])).item() == pytest.approx(expected, rel=1e-6)


def test_hard_labels_in_any_dtype_and_soft_labels_near_the_ends_give_the_hard_filter():
    """At y in {0, 1} the soft-label weight y h + (1 - y)(1 - h) is the hard filter 1[h == y]: the hand-computed
    value of the first test, from bool and integer labels, and (continuously) from labels a hair inside (0, 1)."""
    expected = (bce(2.0, 1) + bce(0.5, 1) + bce(-0.2, 0)) / (3 + EPS)
    assert spr_loss(LOGITS, MASK, torch.tensor([True, False])).item() == pytest.approx(expected, rel=1e-6)
    assert spr_loss(LOGITS, MASK, torch.tensor([1, 0])).item() == pytest.approx(expected, rel=1e-6)
    assert spr_loss(LOGITS, MASK, torch.tensor([1 - 1e-6, 1e-6])).item() == pytest.approx(expected, rel=1e-4)


def test_batch_with_every_step_filtered_out_gives_zero_loss_and_zero_gradient():
    # Every pseudo-label disagrees with its outcome.
    logits = torch.tensor([[-1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss = spr_loss(logits, mask, Y, class_balance=True)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


def test_empty_batch_gives_zero_not_nan():
    assert spr_loss(torch.zeros(2, 1), torch.zeros(2, 1, dtype=torch.bool), Y).item() == 0.0
    assert step_bce(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), None, torch.full((1, 2), float("nan"))).item() == 0.0


def test_excluding_truncated_rollouts_drops_the_whole_solution():
    # MetaStone-S1's exclusion is a no-op in its code (the in-place bug); here the masked solution really goes.
    truncated = torch.tensor([False, True])
    expected = (bce(2.0, 1) + bce(0.5, 1)) / (2 + EPS)
    assert spr_loss(LOGITS, MASK, Y, solution_mask=~truncated).item() == pytest.approx(expected, rel=1e-6)
    assert spr_loss(LOGITS, MASK, Y, solution_mask=~truncated).item() == pytest.approx(
        spr_loss(LOGITS[:1], MASK[:1], Y[:1]).item(), rel=1e-6
    )


def test_gradient_flows_only_through_the_bce_not_the_weights():
    logits = LOGITS.clone().requires_grad_(True)
    spr_loss(logits, MASK, Y).backward()
    kept = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    expected = kept * (torch.sigmoid(LOGITS) - targets) / (3 + EPS)
    torch.testing.assert_close(logits.grad, expected)


def test_step_bce_with_float_labels_and_unknown_steps():
    labels = torch.tensor([[1.0, 0.0, float("nan")], [0.25, float("nan"), 0.0]])
    # The third column of row 2 is padding (mask False) even though it has a label.
    expected = (bce(2.0, 1) + bce(-1.0, 0) + bce(0.3, 0.25)) / (3 + EPS)
    assert step_bce(LOGITS, MASK, None, labels).item() == pytest.approx(expected, rel=1e-6)


def test_step_bce_class_balance():
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, float("nan"), float("nan")]])
    positives, negatives = 3 + 1, 1 + 1
    w_pos, w_neg = 1.5 * negatives / 6, positives / 6
    numerator = w_pos * (bce(2.0, 1) + bce(0.5, 1) + bce(0.3, 1)) + w_neg * bce(-1.0, 0)
    got = step_bce(LOGITS, MASK, None, labels, class_balance=True).item()
    assert got == pytest.approx(numerator / (3 * w_pos + w_neg + EPS), rel=1e-6)


# Four solutions; the second half holds a solution without steps (mil counts solutions) and a soft label, and the
# halves differ in their class mix (class balancing counts classes): a process that normalised over its own half
# only would get other numbers.
DDP_LOGITS = torch.tensor(
    [[2.0, -1.0, 0.5, 1.0], [0.3, -0.2, -3.0, 0.0], [1.5, 0.2, 0.0, 0.7], [-0.4, 0.9, 0.0, 0.0]]
)
DDP_MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]).bool()
DDP_Y = torch.tensor([1.0, 0.0, 0.6, 0.0])
DDP_STEP_LABELS = torch.tensor(
    [[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, NAN, NAN], [0.0, NAN, 0.25, NAN], [NAN, NAN, NAN, NAN]]
)


def run_as_two_processes(loss, **options) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The loss and gradient of each half of the DDP batch, computed in two threads that stand in for two
    processes, with ``global_sum`` an all-reduce between them (the trainers pass ``torch.distributed.all_reduce``)."""
    halves = [slice(0, 2), slice(2, 4)]
    barrier, slots = threading.Barrier(2), [None, None]
    losses, grads = [None, None], [None, None]

    def all_reduce_sum(rank: int, t: torch.Tensor) -> torch.Tensor:
        slots[rank] = t.clone()
        barrier.wait()
        total = slots[0] + slots[1]
        barrier.wait()
        return total

    def process(rank: int) -> None:
        part = halves[rank]
        logits = DDP_LOGITS[part].clone().requires_grad_(True)
        value = loss(logits, DDP_MASK[part], DDP_Y[part], DDP_STEP_LABELS[part],
                     global_sum=lambda t: all_reduce_sum(rank, t), **options)
        value.backward()
        losses[rank], grads[rank] = value.detach(), logits.grad

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return losses, grads


EVERY_LOSS = [
    ("spr", {}), ("spr", {"class_balance": True}), ("spr", {"soft_agreement": True, "class_balance": True}),
    ("outcome_bce", {}), ("outcome_bce", {"class_balance": True}),
    ("step_bce", {}), ("step_bce", {"class_balance": True}),
    ("asymmetric_spr", {}), ("asymmetric_spr", {"negative_weight": "filter"}),
    ("mil", {}), ("mil", {"aggregation": "geometric_mean"}), ("mil", {"aggregation": "min"}),
    ("mil", {"prefixes": True}), ("first_error", {}),
]


def test_every_loss_is_checked_across_processes():
    assert {name for name, _ in EVERY_LOSS} == set(LOSSES)


@pytest.mark.parametrize("name, options", EVERY_LOSS, ids=[f"{n}-{o}" for n, o in EVERY_LOSS])
def test_two_process_normalisation_equals_one_process(name, options):
    """With ``global_sum``, averaging the per-process losses and gradients (what DDP does) gives exactly the
    one-process loss and gradient of the whole batch: filters, class balancing and solution counts included."""
    options = dict(options, eps=0.0)  # eps is added once per process, so compare without it
    loss = LOSSES[name]
    full_logits = DDP_LOGITS.clone().requires_grad_(True)
    full = loss(full_logits, DDP_MASK, DDP_Y, DDP_STEP_LABELS, **options)
    full.backward()
    assert full.item() > 0 and full_logits.grad.abs().sum() > 0
    losses, grads = run_as_two_processes(loss, **options)
    assert ((losses[0] + losses[1]) / 2).item() == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(torch.cat(grads) / 2, full_logits.grad)  # DDP averages gradients over 2 processes
    # Without the all-reduce each half is normalised on its own: the data above makes that visibly different.
    alone = [loss(DDP_LOGITS[part], DDP_MASK[part], DDP_Y[part], DDP_STEP_LABELS[part], **options)
             for part in (slice(0, 2), slice(2, 4))]
    assert ((alone[0] + alone[1]) / 2).item() != pytest.approx(full.item(), rel=1e-3)


def test_bad_labels_give_clear_errors():
    with pytest.raises(ValueError, match="needs outcome labels"):
        spr_loss(LOGITS, MASK, None)
    with pytest.raises(ValueError, match="no missing labels"):
        spr_loss(LOGITS, MASK, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        outcome_bce(LOGITS, MASK, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # one bad label among good ones is enough
        outcome_bce(LOGITS, MASK, torch.tensor([-0.5, 1.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        step_bce(LOGITS, MASK, None, torch.tensor([[1.0, -0.5, NAN], [0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        step_bce(LOGITS, MASK, None, torch.tensor([[1.0, 1.5, NAN], [0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="needs step labels"):
        step_bce(LOGITS, MASK, Y)
    with pytest.raises(ValueError, match="step_mask"):
        spr_loss(LOGITS, MASK[:, :2], Y)


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_spr_soft_agreement_weights_are_the_heads_probabilities():
    # y=1: w = p_i; y=0: w = 1 - p_i.
    w = [sig(2.0), sig(-1.0), sig(0.5), 1 - sig(0.3), 1 - sig(-0.2)]
    terms = [bce(2.0, 1), bce(-1.0, 1), bce(0.5, 1), bce(0.3, 0), bce(-0.2, 0)]
    expected = sum(a * b for a, b in zip(w, terms)) / (sum(w) + EPS)
    assert spr_loss(LOGITS, MASK, Y, soft_agreement=True).item() == pytest.approx(expected, rel=1e-6)


def test_asymmetric_spr_weights_only_the_steps_of_wrong_solutions():
    # Right solution: all three steps, weight 1. Wrong solution: filter keeps z=-0.2 (p<=0.5) and drops z=0.3.
    expected = (bce(2.0, 1) + bce(-1.0, 1) + bce(0.5, 1) + bce(-0.2, 0)) / (4 + EPS)
    assert asymmetric_spr_loss(LOGITS, MASK, Y, negative_weight="filter").item() == pytest.approx(expected, rel=1e-6)
    # Soft: a step of the wrong solution weighs 1 - p_i.
    w = [1, 1, 1, 1 - sig(0.3), 1 - sig(-0.2)]
    terms = [bce(2.0, 1), bce(-1.0, 1), bce(0.5, 1), bce(0.3, 0), bce(-0.2, 0)]
    expected = sum(a * b for a, b in zip(w, terms)) / (sum(w) + EPS)
    assert asymmetric_spr_loss(LOGITS, MASK, Y).item() == pytest.approx(expected, rel=1e-6)
    # The warm-up switch turns it into outcome BCE.
    assert asymmetric_spr_loss(LOGITS, MASK, Y, use_filter=False).item() == pytest.approx(
        outcome_bce(LOGITS, MASK, Y).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="negative_weight"):
        asymmetric_spr_loss(LOGITS, MASK, Y, negative_weight="hard")


def test_mil_trains_the_aggregated_score_against_the_outcome():
    right = [sig(2.0), sig(-1.0), sig(0.5)]
    wrong = [sig(0.3), sig(-0.2)]

    def bce_p(p: float, t: float) -> float:
        return -t * math.log(p) - (1 - t) * math.log(1 - p)

    product = (bce_p(math.prod(right), 1) + bce_p(math.prod(wrong), 0)) / (2 + EPS)
    assert mil_loss(LOGITS, MASK, Y).item() == pytest.approx(product, rel=1e-6)
    geo = (bce_p(math.prod(right) ** (1 / 3), 1) + bce_p(math.prod(wrong) ** 0.5, 0)) / (2 + EPS)
    assert mil_loss(LOGITS, MASK, Y, aggregation="geometric_mean").item() == pytest.approx(geo, rel=1e-6)
    smallest = (bce_p(min(right), 1) + bce_p(min(wrong), 0)) / (2 + EPS)
    assert mil_loss(LOGITS, MASK, Y, aggregation="min").item() == pytest.approx(smallest, rel=1e-6)
    # Prefixes: every prefix value prod_{i<=k} p_i gets the outcome label.
    values = [(math.prod(right[: k + 1]), 1) for k in range(3)] + [(math.prod(wrong[: k + 1]), 0) for k in range(2)]
    prefix = sum(bce_p(v, t) for v, t in values) / (5 + EPS)
    assert mil_loss(LOGITS, MASK, Y, prefixes=True).item() == pytest.approx(prefix, rel=1e-6)
    with pytest.raises(ValueError, match="prefixes"):
        mil_loss(LOGITS, MASK, Y, aggregation="min", prefixes=True)


def test_mil_blames_the_step_that_already_looks_wrong():
    logits = torch.tensor([[3.0, -1.0]], requires_grad=True)
    mil_loss(logits, torch.ones(1, 2, dtype=torch.bool), torch.tensor([0.0])).backward()
    # d/dz_i of -log(1 - prod p) = P / (1 - P) * (1 - p_i): larger for the low-scoring step.
    p = [sig(3.0), sig(-1.0)]
    big_p = p[0] * p[1]
    expected = [big_p / (1 - big_p) * (1 - q) / (1 + EPS) for q in p]
    torch.testing.assert_close(logits.grad[0], torch.tensor(expected))
    assert logits.grad[0, 1] > 5 * logits.grad[0, 0]


def test_mil_is_finite_for_saturated_scores_and_empty_solutions():
    logits = torch.tensor([[40.0, 40.0], [0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, False]])
    loss = mil_loss(logits, mask, torch.tensor([0.0, 1.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert mil_loss(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool), torch.ones(1)).item() == 0.0


def test_mil_keeps_its_precision_at_both_ends():
    """log(1 - P) from log P: near P = 1 (log P capped at -1e-6) and for a tiny P the loss keeps its digits in
    float32 (the other formula of each end gives 13.8023 instead of 13.8155 at the cap, and 0 instead of 2e-9)."""
    near_one = mil_loss(torch.tensor([[20.0, 20.0]]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([0.0]))
    assert near_one.item() == pytest.approx(-math.log(-math.expm1(-1e-6)) / (1 + EPS), rel=1e-5)
    tiny = mil_loss(torch.tensor([[-20.0]]), torch.ones(1, 1, dtype=torch.bool), torch.tensor([0.0]))
    log_p = -20.0 - math.log1p(math.exp(-20.0))  # log sigmoid(-20)
    assert tiny.item() == pytest.approx(-math.log1p(-math.exp(log_p)) / (1 + EPS), rel=1e-4)


def test_first_error_loss_uses_the_heads_first_error_guess():
    # Wrong solution: p = (0.574, 0.450): the first step at or below 0.5 is step 1: step 0 -> 1, step 1 -> 0.
    expected = (bce(2.0, 1) + bce(-1.0, 1) + bce(0.5, 1) + bce(0.3, 1) + bce(-0.2, 0)) / (5 + EPS)
    assert first_error_loss(LOGITS, MASK, Y).item() == pytest.approx(expected, rel=1e-6)
    # Steps after the guessed error are left out; with no step below the threshold the lowest one is the error.
    logits = torch.tensor([[-1.0, 2.0, -3.0], [2.0, 1.0, 3.0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    y = torch.tensor([0.0, 0.0])
    expected = (bce(-1.0, 0) + bce(2.0, 1) + bce(1.0, 0)) / (3 + EPS)
    assert first_error_loss(logits, mask, y).item() == pytest.approx(expected, rel=1e-6)
    # A soft label mixes the right-solution and wrong-solution terms.
    y = torch.tensor([0.25, 0.0])
    right = sum(bce(z, 1) for z in (-1.0, 2.0, -3.0))
    wrong = bce(-1.0, 0)
    expected = (0.25 * right + 0.75 * wrong + bce(2.0, 1) + bce(1.0, 0)) / (0.25 * 3 + 0.75 * 1 + 2 + EPS)
    assert first_error_loss(logits, mask, y).item() == pytest.approx(expected, rel=1e-6)
    assert first_error_loss(LOGITS, MASK, Y, use_filter=False).item() == pytest.approx(
        outcome_bce(LOGITS, MASK, Y).item(), rel=1e-6
    )


def test_registry():
    assert set(LOSSES) == {"spr", "outcome_bce", "step_bce", "asymmetric_spr", "mil", "first_error"}
    assert get_loss("spr") is spr_loss
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("nope")


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_teacher_logits_give_the_pseudo_labels_and_the_student_logits_are_trained():
    # spr: the teacher keeps y=1 steps 1 and 2 (teacher > 0) and the y=0 step 0 (teacher <= 0); the BCE is the
    # student's at those steps.
    teacher = torch.tensor([[-1.0, 2.0, 0.5], [-0.2, 0.3, 0.0]], requires_grad=True)
    logits = LOGITS.clone().requires_grad_(True)
    loss = spr_loss(logits, MASK, Y, teacher_logits=teacher)
    assert loss.item() == pytest.approx((bce(-1.0, 1) + bce(0.5, 1) + bce(0.3, 0)) / (3 + EPS), rel=1e-6)
    loss.backward()
    assert teacher.grad is None and logits.grad[0, 1] != 0 and logits.grad[0, 0] == 0  # step 0 filtered out
    # first_error: the teacher puts the wrong solution's first error at step 0 (the student would say step 1).
    teacher = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 2.0, 0.0]])
    expected = (bce(2.0, 1) + bce(-1.0, 1) + bce(0.5, 1) + bce(0.3, 0)) / (4 + EPS)
    assert first_error_loss(LOGITS, MASK, Y, teacher_logits=teacher).item() == pytest.approx(expected, rel=1e-6)
    # asymmetric_spr (soft): the wrong solution's steps weigh 1 - sigmoid(teacher).
    teacher = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]])
    a, b = 1 - sigmoid(1.0), 1 - sigmoid(-1.0)
    expected = (bce(2.0, 1) + bce(-1.0, 1) + bce(0.5, 1) + a * bce(0.3, 0) + b * bce(-0.2, 0)) / (3 + a + b + EPS)
    assert asymmetric_spr_loss(LOGITS, MASK, Y, teacher_logits=teacher).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="teacher_logits must be"):
        spr_loss(LOGITS, MASK, Y, teacher_logits=torch.zeros(2, 2))


# -- the trajectory term ----------------------------------------------------------------------------------------------


def bce_p(p: float, t: float) -> float:
    return -t * math.log(p) - (1 - t) * math.log(1 - p)


def test_trajectory_loss_trains_the_aggregated_score_against_the_outcome():
    right = [sig(2.0), sig(-1.0), sig(0.5)]
    wrong = [sig(0.3), sig(-0.2)]
    by_hand = {
        "geometric_mean": (math.prod(right) ** (1 / 3), math.prod(wrong) ** 0.5),
        "product": (math.prod(right), math.prod(wrong)),
        "min": (min(right), min(wrong)),
        "mean": (sum(right) / 3, sum(wrong) / 2),
        "last": (right[-1], wrong[-1]),
    }
    for aggregation, (s_right, s_wrong) in by_hand.items():
        expected = (bce_p(s_right, 1) + bce_p(s_wrong, 0)) / (2 + EPS)
        got = trajectory_loss(LOGITS, MASK, Y, aggregation=aggregation).item()
        assert got == pytest.approx(expected, rel=1e-6), aggregation
    assert trajectory_loss(LOGITS, MASK, Y).item() == pytest.approx(
        (bce_p(by_hand["geometric_mean"][0], 1) + bce_p(by_hand["geometric_mean"][1], 0)) / (2 + EPS), rel=1e-6)
    for aggregation in ("product", "geometric_mean", "min"):  # the same value as mil, from probabilities
        assert trajectory_loss(LOGITS, MASK, Y, aggregation=aggregation).item() == pytest.approx(
            mil_loss(LOGITS, MASK, Y, aggregation=aggregation).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        trajectory_loss(LOGITS, MASK, Y, aggregation="median")


def test_trajectory_loss_soft_labels_kept_solutions_and_gradient_by_hand():
    soft = torch.tensor([0.25, 0.0])
    s_right = (sig(2.0) * sig(-1.0) * sig(0.5)) ** (1 / 3)
    s_wrong = (sig(0.3) * sig(-0.2)) ** 0.5
    expected = (bce_p(s_right, 0.25) + bce_p(s_wrong, 0)) / (2 + EPS)
    assert trajectory_loss(LOGITS, MASK, soft).item() == pytest.approx(expected, rel=1e-6)
    kept = torch.tensor([False, True])  # e.g. a truncated rollout left out: only the wrong solution counts
    assert trajectory_loss(LOGITS, MASK, Y, solution_mask=kept).item() == pytest.approx(bce_p(s_wrong, 0) / (1 + EPS),
                                                                                         rel=1e-6)
    # y = 1, geometric mean of two steps: L = -(log p_a + log p_b) / 2, so dL/dz_i = -(1 - p_i) / 2.
    logits = torch.tensor([[1.0, -2.0]], requires_grad=True)
    trajectory_loss(logits, torch.ones(1, 2, dtype=torch.bool), torch.ones(1)).backward()
    expected_grad = [-(1 - sig(1.0)) / 2 / (1 + EPS), -(1 - sig(-2.0)) / 2 / (1 + EPS)]
    torch.testing.assert_close(logits.grad[0], torch.tensor(expected_grad))


def test_trajectory_loss_is_finite_for_saturated_scores_and_skips_traces_without_steps():
    logits = torch.tensor([[30.0, 30.0], [0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, False]])  # the second trace has no step in the scored span
    loss = trajectory_loss(logits, mask, torch.tensor([0.0, 1.0]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log1p(math.exp(30.0)) / (1 + EPS), rel=1e-3)  # -log(1 - sigmoid(30))
    assert torch.isfinite(logits.grad).all() and (logits.grad[0] > 0).all() and (logits.grad[1] == 0).all()
    assert trajectory_loss(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.bool), torch.ones(1)).item() == 0.0
    with pytest.raises(ValueError, match="trajectory loss needs outcome labels"):
        trajectory_loss(LOGITS, MASK, None)
