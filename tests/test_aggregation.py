import math

import pytest
import torch

from modeling_sprm.aggregation import aggregate, aggregate_scores, first_error_step

SCORES = torch.tensor([[0.9, 0.5, 0.2, 0.0], [0.8, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[True, True, True, False], [True, False, False, False], [False, False, False, False]])


@pytest.mark.parametrize(
    "method, first_row",
    [
        ("geometric_mean", (0.9 * 0.5 * 0.2) ** (1 / 3)),  # 0.09 ** (1/3) = 0.4481
        ("product", 0.9 * 0.5 * 0.2),  # 0.09
        ("min", 0.2),
        ("mean", (0.9 + 0.5 + 0.2) / 3),  # 0.5333
        ("last", 0.2),
    ],
)
def test_aggregations_by_hand(method, first_row):
    out = aggregate(SCORES, MASK, method, empty_score=0.0)
    assert out.shape == (3,)
    assert out[0].item() == pytest.approx(first_row, rel=1e-6)
    assert out[1].item() == pytest.approx(0.8, rel=1e-6)  # one step: every aggregation is that step's score
    assert out[2].item() == 0.0  # no steps -> empty score (MetaStone-S1 returns 0)


def test_empty_score_is_configurable_and_never_nan():
    out = aggregate(SCORES, MASK, "geometric_mean", empty_score=0.25)
    assert out[2].item() == 0.25
    assert not torch.isnan(out).any()


def test_geometric_mean_clamps_zero_scores_like_metastone():
    scores = torch.tensor([[0.0, 1.0]])
    out = aggregate(scores, torch.tensor([[True, True]]), "geometric_mean")
    assert out.item() == pytest.approx(math.sqrt(1e-10), rel=1e-4)


def test_bad_method_and_shape():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(SCORES, MASK, "median")
    with pytest.raises(ValueError, match="differ"):
        aggregate(SCORES, MASK[:, :2], "mean")


# Masks that are not prefixes, and padding that is not 0: a step-less position must never count, whatever it holds.
# Row 0: steps 0 and 2 (0.9, 0.4), padding 0.7 and 0.05 in between and after. Row 1: the last position only (0.3),
# padding 0.99 before it. Row 2: no step, padding 0.6 everywhere.
HOLEY_SCORES = torch.tensor([[0.9, 0.7, 0.4, 0.05], [0.99, 0.99, 0.99, 0.3], [0.6, 0.6, 0.6, 0.6]])
HOLEY_MASK = torch.tensor([[True, False, True, False], [False, False, False, True], [False, False, False, False]])


@pytest.mark.parametrize(
    "method, row0",
    [
        ("geometric_mean", math.sqrt(0.9 * 0.4)),  # 0.6
        ("product", 0.9 * 0.4),
        ("min", 0.4),
        ("mean", (0.9 + 0.4) / 2),
        ("last", 0.4),  # the last step is at index 2, not at (number of steps - 1) = 1
    ],
)
def test_aggregations_ignore_padding_anywhere(method, row0):
    out = aggregate(HOLEY_SCORES, HOLEY_MASK, method, empty_score=0.25)
    assert out[0].item() == pytest.approx(row0, rel=1e-6)
    assert out[1].item() == pytest.approx(0.3, rel=1e-6)
    assert out[2].item() == 0.25


def test_aggregate_scores_of_one_solution_by_hand():
    assert aggregate_scores([0.25, 1.0], "geometric_mean", 0.0) == pytest.approx(0.5)
    assert aggregate_scores([0.25, None, 1.0], "min", 0.0) == pytest.approx(0.25)  # a cut step is skipped
    assert aggregate_scores([0.2, 0.4], "mean", 0.0) == pytest.approx(0.3)
    assert aggregate_scores([0.5, 0.5], "product", 0.0) == pytest.approx(0.25)
    assert aggregate_scores([0.9, 0.1], "last", 0.0) == pytest.approx(0.1)
    assert aggregate_scores([], "geometric_mean", 0.7) == pytest.approx(0.7)
    assert aggregate_scores([None], "mean", 0.3) == pytest.approx(0.3)


def test_first_error_step_is_strictly_below_the_threshold():
    assert first_error_step([0.9, 0.5, 0.2], 0.5) == 2  # a score equal to the threshold is not an error
    assert first_error_step([0.9, None, 0.4], 0.5) == 2  # a cut step is skipped
    assert first_error_step([0.9, 0.8], 0.5) is None
    assert first_error_step([], 0.5) is None
