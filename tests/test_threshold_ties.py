"""One rule for a step exactly at the threshold, the same in every place that predicts a first error.

The rule: a step is a predicted error iff its score is **strictly below** the threshold; a score equal to the
threshold is not an error. The rule is ``aggregation.first_error_step``; the places that apply it:
``evaluation.predict_first_error`` (ProcessBench F1, ``sprm eval``), its vectorised form
``evaluation.metrics._first_below`` (``choose_threshold``), the ``evaluate`` metric module's ``first_below``, and
the pipeline's ``ScoredSolution.first_error_step`` (``sprm score``, generation, the demo's page and ``/score``).
(The training losses' pseudo-labels have their own documented tie rule: see tests/test_losses.py.)
"""

import numpy as np
import pytest

from modeling_sprm.aggregation import first_error_step
from modeling_sprm.evaluation.metrics import METRIC_PATH, _first_below, choose_threshold, predict_first_error
from modeling_sprm.evaluation.sprm_processbench.processbench import first_below
from modeling_sprm.outputs import ScoredSolution
from modeling_sprm.steps import EncodedTrace, Step

# (scores, threshold, expected first error): every case has a score equal to the threshold.
CASES = [
    ([0.7, 0.5, 0.2], 0.5, 2),  # the tie is skipped; the next step below is the error
    ([0.5, 0.5], 0.5, -1),  # only ties: no error
    ([0.25, 0.9], 0.25, -1),
    ([0.9, 0.3, 0.3], 0.3, -1),
    ([0.9, 0.3, 0.1], 0.3, 2),
    ([0.125, 0.0], 0.125, 1),
    ([1.0, 0.75], 1.0, 1),  # threshold 1: every score but 1.0 is below it
    ([0.0, 0.0], 0.0, -1),  # threshold 0: nothing is below it
]


@pytest.mark.parametrize("scores, threshold, expected", CASES)
def test_every_first_error_predictor_skips_a_step_at_the_threshold(scores, threshold, expected):
    assert first_error_step(scores, threshold) == (None if expected == -1 else expected)
    assert predict_first_error(scores, threshold) == expected
    assert _first_below(scores, np.array([threshold])).tolist() == [expected]
    assert first_below(scores, threshold) == expected
    trace = EncodedTrace(
        text="", input_ids=[], truncated=False, num_tokens=0, positions=list(range(len(scores))),
        steps=[Step(f"step {i}", 0, 0, 0, "response", True) for i in range(len(scores))],
    )
    result = ScoredSolution.from_trace(trace, scores, 0.5, threshold=threshold, aggregation="min", empty_score=0.0,
                                       score_span="response")
    assert result.first_error_step == (None if expected == -1 else expected)


def test_vectorised_predictions_at_many_tied_thresholds():
    scores = [0.9, 0.6, 0.6, 0.3, None, 0.1]
    thresholds = np.array([0.05, 0.1, 0.3, 0.31, 0.6, 0.61, 0.9, 0.95])
    # At t = 0.1, 0.3, 0.6 and 0.9 a score ties; only scores strictly below t are errors.
    assert _first_below(scores, thresholds).tolist() == [-1, -1, 5, 3, 3, 1, 1, 0]
    assert [predict_first_error(scores, t) for t in thresholds] == [-1, -1, 5, 3, 3, 1, 1, 0]


def test_choose_threshold_at_a_tied_candidate():
    # A errs at step 1 (0.3), B is correct (0.8, 0.6). At t = 0.3 A's error ties and is not found (F1 0); at
    # t = 0.6 B's second step ties and B stays error-free, A's error is found (F1 1): 0.6 wins, though 0.61 would
    # call B wrong.
    scores, labels = [[0.9, 0.3], [0.8, 0.6]], [1, -1]
    assert choose_threshold(scores, labels, candidates=[0.3, 0.6, 0.61]) == 0.6
    assert choose_threshold(scores, labels, candidates=[0.3, 0.61, 0.2]) == 0.2  # all F1 0: the smallest wins


def test_the_evaluate_metric_at_a_tie():
    import evaluate

    metric = evaluate.load(METRIC_PATH)
    result = metric.compute(predictions=[[0.9, 0.5, 0.2], [0.5, 0.8]], references=[2, -1], threshold=0.5)
    assert (result["error_acc"], result["correct_acc"], result["f1"]) == (1.0, 1.0, 1.0)


def test_the_pipeline_at_a_threshold_equal_to_a_score(tiny_sprm):
    """End to end: the threshold set to the lowest step score itself flags nothing; just above it flags that step."""
    from transformers import pipeline

    model, tokenizer = tiny_sprm
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    record = {"question": "What is 2 + 3?", "steps": ["2 + 3 = 5.", "So 5 + 0 = 5.", "The answer is 5."]}
    scores = [s["score"] for s in scorer(record)["steps"]]
    lowest = min(scores)
    assert len(set(scores)) == 3  # distinct, so the lowest step is one step
    assert scorer(record, threshold=lowest)["first_error_step"] is None
    flagged = scorer(record, threshold=float(np.nextafter(lowest, 1.0)))["first_error_step"]
    assert flagged == scores.index(lowest) == predict_first_error(scores, float(np.nextafter(lowest, 1.0)))
