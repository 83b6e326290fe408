"""Step search keeps the best-scored beams: the selection itself, watched round by round.

A tiny random model samples (the model is not what is under test); its head is made decisive (the last layer
scaled up, so step scores spread out) and is deterministic (eval mode). Spies around
``generate_rollouts`` and ``score_rollouts`` record what each round sampled and scored and which beams the next
round continues; the test recomputes, plainly, which open continuations should have been kept: the
``beam_width - finished`` best by the partial score (the geometric mean of a trajectory's closed steps, or of its
open step when none is closed yet).
"""

import math

import pytest
import torch

from modeling_sprm import generation

QUESTION = (
    "Weng earns $12 an hour for babysitting. Yesterday, she did 50 minutes of babysitting. How much did she earn?"
)


def partial_score(step_scores: list[float], closed: list[bool]) -> float:
    chosen = [s for s, c in zip(step_scores, closed) if c] or step_scores
    return math.exp(sum(math.log(max(s, 1e-10)) for s in chosen) / len(chosen))


@pytest.fixture
def decisive_model(tiny_sprm):
    model, tokenizer = tiny_sprm
    model.config.step_delimiters = ["e"]  # frequent in random text: many short steps
    with torch.no_grad():
        model.score_head[3].weight.mul_(40.0)
    return model.eval(), tokenizer


def watch(monkeypatch) -> list[tuple]:
    """Record ("generate", [token ids of each rollout before the call]) and ("score", rollouts, traces, step scores,
    scores) in call order, and the token ids of every rollout that ended with the end-of-sequence token."""
    events, eos = [], set()
    real_generate, real_score = generation.generate_rollouts, generation.score_rollouts

    def generate(model, tokenizer, rollouts, *args, **kwargs):
        events.append(("generate", [tuple(r.token_ids) for r in rollouts]))
        out = real_generate(model, tokenizer, rollouts, *args, **kwargs)
        eos.update(tuple(r.token_ids) for r in out if r.stop_reason == "eos")  # before the search relabels them
        return out

    def score(model, rollouts, traces):
        step_scores, scores = real_score(model, rollouts, traces)
        events.append(("score", list(rollouts), list(traces), step_scores, scores))
        return step_scores, scores

    monkeypatch.setattr(generation, "generate_rollouts", generate)
    monkeypatch.setattr(generation, "score_rollouts", score)
    return events, eos


@pytest.mark.parametrize("seed", [0, 2])
def test_each_round_continues_the_best_scored_open_beams(decisive_model, monkeypatch, seed):
    model, tokenizer = decisive_model
    beam_width, num_continuations, max_new_tokens = 3, 2, 14
    events, eos = watch(monkeypatch)
    result = generation.step_search(
        model, tokenizer, QUESTION, beam_width=beam_width, num_continuations=num_continuations, max_steps=6,
        max_step_tokens=5, max_new_tokens=max_new_tokens, seed=seed, temperature=1.0, top_p=1.0,
    )
    rounds = [i for i, e in enumerate(events) if e[0] == "generate"]
    assert len(rounds) == result["rounds"] >= 3
    finished, choices, with_finished, strict_choices = [], 0, 0, 0
    for r, at in enumerate(rounds):
        _, rollouts, traces, step_scores, _ = events[at + 1]
        open_ones = []
        for rollout, trace, scores in zip(rollouts, traces, step_scores):
            if tuple(rollout.token_ids) in eos or len(rollout.token_ids) >= max_new_tokens:
                finished.append(tuple(rollout.token_ids))
            else:
                closed = [s.has_delimiter for s, p in zip(trace.steps, trace.positions) if p is not None]
                open_ones.append((partial_score(scores, closed), tuple(rollout.token_ids)))
        slots = max(0, beam_width - len(finished))
        if len(open_ones) > slots > 0:
            choices += 1
            with_finished += len(finished) > 0
        # What the search continued: the beams behind the next round's samples, or the beams it finished as they
        # were when it ran out of rounds or had enough finished ones.
        if r + 1 < len(rounds):
            kept = set(events[rounds[r + 1]][1])
        else:
            last = events[-1] if len(events) > at + 2 else None
            kept = {tuple(b.token_ids) for b in last[1]} if last else set()
        # Continuations of one beam that closed no new step share its partial score: among ties any may go on.
        score_of = dict((ids, score) for score, ids in open_ones)
        assert kept <= set(score_of) and len(kept) == min(slots, len(open_ones)), f"round {r + 1}"
        dropped = [score for score, ids in open_ones if ids not in kept]
        assert not (kept and dropped) or min(score_of[ids] for ids in kept) >= max(dropped), (
            f"round {r + 1}: a continuation scoring {max(dropped):.4f} was dropped for one scoring "
            f"{min(score_of[ids] for ids in kept):.4f}"
        )
        strict_choices += len({round(s, 9) for s in dropped} | {round(score_of[i], 9) for i in kept}) > 1
    assert choices >= 2  # rounds where more beams were open than could be kept
    assert strict_choices >= 2  # ...and their scores differed
    assert with_finished >= 1  # ...also after some beams finished (then fewer are kept)
    texts = [c["text"] for c in result["candidates"]]
    assert len(texts) == len(set(texts)) <= beam_width
    # Finished by the end-of-sequence token: not truncated; out of room, or open when the rounds ran out: truncated.
    assert sum(not c["truncated"] for c in result["candidates"]) == len(eos & set(finished))
    assert all(c["num_tokens"] <= max_new_tokens for c in result["candidates"])  # the budget holds for every beam


def test_a_continuation_without_any_step_yet_is_ranked_not_an_error(tiny_sprm, monkeypatch):
    """A beam whose text so far is only whitespace has no step to score: it ranks with the empty-solution score
    (the sampler is replaced by one that writes spaces)."""
    model, tokenizer = tiny_sprm
    space = tokenizer(" ", add_special_tokens=False)["input_ids"]
    assert len(space) == 1 and tokenizer.decode(space) == " "

    def write_spaces(model, tokenizer, rollouts, sampling, max_new_tokens=None, stop_at_step=False, progress=None):
        for r in rollouts:
            r.token_ids = r.token_ids + space * 2
            r.text, r.offsets = " " * len(r.token_ids), [(i, i + 1) for i in range(len(r.token_ids))]
            r.stop_reason = "length"
        return rollouts

    monkeypatch.setattr(generation, "generate_rollouts", write_spaces)
    result = generation.step_search(model, tokenizer, QUESTION, beam_width=2, num_continuations=2, max_steps=2,
                                    max_step_tokens=2, max_new_tokens=20)
    assert result["rounds"] == 2 and len(result["candidates"]) == 1  # identical continuations are merged
    candidate = result["candidates"][0]
    assert candidate["no_steps"] and candidate["num_tokens"] == 4
    assert candidate["score"] == model.config.empty_solution_score
