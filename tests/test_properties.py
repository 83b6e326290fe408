"""Property-based tests (hypothesis): step segmentation and read positions on any text, the same scores for a text
and the equivalent step list, and the loss and aggregation functions (finite for any finite input, masks respected).
Kept fast: modest ``max_examples``, no deadline (the machine is shared)."""

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modeling_sprm.aggregation import AGGREGATIONS, aggregate
from modeling_sprm.outputs import unscored_text
from modeling_sprm.pipeline_sprm import StepScoringPipeline
from modeling_sprm.steps import StepRules, build_trace, join_steps, scored_regions, segment
from modeling_sprm.training.losses import LOSSES

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text made of the pieces the rules care about (delimiters, think tags, code fences, digits) and anything else.
PIECES = st.sampled_from([".\n\n", ".", "\n\n", "\n", " ", "<think>", "</think>", "```", "3", "3.5", "x = 2", "。"])
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=25).map("".join)
RULES = st.builds(
    StepRules,
    delimiters=st.sampled_from([(".\n\n",), ("\n\n",), (".\n\n", "。"), (".",)]),
    score_offset=st.sampled_from([-1, 0, 1]),
    skip_empty_steps=st.booleans(),
    protect_code_and_numbers=st.booleans(),
    score_trailing_step=st.booleans(),
    score_span=st.sampled_from(["think", "response", "both"]),
)


@FAST
@given(text=TEXT, rules=RULES)
def test_segment_maps_every_step_back_to_its_characters(text, rules):
    steps = segment(text, rules)
    regions = scored_regions(text, 0, len(text), rules)
    previous_end = 0
    for step in steps:
        assert text[step.start : step.end] == step.text and step.start < step.end
        assert step.start >= previous_end  # in order, no overlap
        assert step.start <= step.anchor <= step.end
        assert any(a <= step.start and step.end <= b and part == step.part for a, b, part in regions)
        if step.has_delimiter:
            assert text[step.anchor : step.end] in rules.delimiters
        previous_end = step.end


@FAST
@given(text=TEXT, rules=RULES, max_length=st.one_of(st.none(), st.integers(1, 40)))
def test_read_positions_land_on_the_step_anchor(smollm2_tokenizer, text, rules, max_length):
    assume(text.strip())
    trace = build_trace(smollm2_tokenizer, rules, text=text, max_length=max_length)
    assert len(trace.positions) == len(trace.steps) and len(trace.input_ids) <= (max_length or math.inf)
    offsets = smollm2_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    kept = [p for p in trace.positions if p is not None]
    assert kept == sorted(kept) and all(0 <= p < len(trace.input_ids) for p in kept)
    assert trace.truncated == (max_length is not None and trace.num_tokens > max_length)
    for step, position in zip(trace.steps, trace.positions):
        covering = [i for i, (a, b) in enumerate(offsets) if a <= step.anchor < b]
        if position is None or not covering:
            continue
        # The score is read score_offset tokens from the token holding the anchor (clamped to the sequence).
        assert position == min(max(covering[0] + rules.score_offset, 0), len(offsets) - 1)
    # Every non-blank character is in a scored step or reported unscored, never both.
    unscored = unscored_text(trace, rules)
    for u in unscored:
        assert text[u.start : u.end] == u.text and u.text == u.text.strip() and u.text
    covered = [(s.start, s.end) for s, p in zip(trace.steps, trace.positions) if p is not None]
    reported = [(u.start, u.end) for u in unscored]
    tags = [(i, i + len(tag)) for tag in (rules.think_start_tag, rules.think_end_tag)
            for i in range(len(text)) if text.startswith(tag, i)]  # fmt: skip
    for i, ch in enumerate(text):
        inside = [a <= i < b for a, b in covered + reported]
        assert sum(inside) <= 1
        if not ch.isspace() and not any(a <= i < b for a, b in tags):
            assert sum(inside) == 1, (i, ch)


STEP = st.text(st.characters(blacklist_characters="<`", blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s.strip() and ".\n\n" not in s
)


@SLOW
@given(steps=st.lists(STEP, min_size=1, max_size=5))
def test_a_text_and_its_step_list_score_the_same(tiny_sprm, steps):
    model, tokenizer = tiny_sprm
    pipe = StepScoringPipeline(model=model, tokenizer=tokenizer)
    question = "What is 2 + 3?"
    solution, _ = join_steps(steps, pipe.sprm_processor.rules)
    from_text = pipe({"question": question, "solution": solution})
    from_steps = pipe({"question": question, "steps": steps})
    assert [s.text for s in from_text.steps] == [s.text for s in from_steps.steps]
    assert len(from_text.steps) == len(steps)
    assert [s.score for s in from_text.steps] == pytest.approx([s.score for s in from_steps.steps], abs=1e-6)
    assert from_text.score == pytest.approx(from_steps.score, abs=1e-6)


# -- aggregation and losses -----------------------------------------------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=32)  # any finite float32


@st.composite
def batches(draw, values=FINITE):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    grid = st.lists(st.lists(values, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
    mask = st.lists(st.lists(st.booleans(), min_size=cols, max_size=cols), min_size=rows, max_size=rows)
    return torch.tensor(draw(grid)), torch.tensor(draw(mask)), torch.tensor(draw(grid))


@FAST
@given(batch=batches(st.floats(0, 1, width=32)), method=st.sampled_from(sorted(AGGREGATIONS)),
       empty=st.floats(0, 1))  # fmt: skip
def test_aggregation_is_finite_in_range_and_ignores_masked_steps(batch, method, empty):
    scores, mask, other = batch
    result = aggregate(scores, mask, method, empty)
    assert torch.isfinite(result).all() and ((result >= 0) & (result <= 1 + 1e-6)).all()
    changed = torch.where(mask, scores, other.clamp(0, 1))  # other values where there is no step
    torch.testing.assert_close(aggregate(changed, mask, method, empty), result)
    assert (result[~mask.any(-1)] == torch.tensor(empty, dtype=result.dtype)).all()


@FAST
@given(batch=batches(), name=st.sampled_from(sorted(LOSSES)), data=st.data())
def test_losses_are_finite_and_ignore_masked_steps_and_solutions(batch, name, data):
    logits, mask, other = batch
    rows, cols = logits.shape
    outcome = torch.tensor(data.draw(st.lists(st.floats(0, 1), min_size=rows, max_size=rows)))
    labels = torch.tensor(data.draw(st.lists(st.lists(st.sampled_from([0.0, 1.0, 0.5, math.nan]), min_size=cols,
                                                      max_size=cols), min_size=rows, max_size=rows)))  # fmt: skip
    keep = torch.tensor(data.draw(st.lists(st.booleans(), min_size=rows, max_size=rows)))
    loss_fn = LOSSES[name]

    def loss(z, solution_mask=None):
        z = z.clone().requires_grad_(True)
        value = loss_fn(step_logits=z, step_mask=mask, outcome_labels=outcome, step_labels=labels,
                        solution_mask=solution_mask)
        value.backward()
        return value.detach(), z.grad

    value, grad = loss(logits)
    assert value.dim() == 0 and torch.isfinite(value) and torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()
    torch.testing.assert_close(loss(torch.where(mask, logits, other))[0], value)  # masked steps do not count
    kept = mask & keep.unsqueeze(-1)
    dropped = torch.where(kept, logits, other)  # other logits in the solutions solution_mask leaves out
    torch.testing.assert_close(loss(dropped, keep)[0], loss(logits, keep)[0])
