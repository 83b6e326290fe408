"""SPRM-guided tree search over many questions at once: step-level beam search and diverse verifier tree search
(DVTS), the test-time scaling methods of search-and-learn, scored from the features the policy computes while it
samples (``generation``: no second forward pass).

search-and-learn's terms: a budget of N sequences per round and question, M continuations per kept beam.

* **Beam search**: one subtree with N / M kept beams, each expanded into M continuations per round.
* **DVTS** (diverse verifier tree search): N / M independent subtrees with one kept beam each, expanded into M
  continuations per round; a subtree never competes with another, which keeps the candidates diverse.

Both are `tree_search` (``num_subtrees``, ``beam_width`` kept beams per subtree, ``num_continuations`` = M). A
subtree follows these rules:

1. every round, each kept beam samples ``num_continuations`` continuations up to the first step delimiter in the
   new text (or ``max_step_tokens`` tokens, or its end-of-sequence token, or ``sampling.max_new_tokens`` tokens in
   all); the first round expands ``beam_width`` copies of the question, so that every round samples the whole
   budget;
2. identical continuations are merged; one that ended (end-of-sequence, or ``max_new_tokens`` in all) is finished;
3. the continuations are ranked by score, the full score (`generation.score_rollouts`) of a finished one and the
   partial score of an open one (the aggregate of its closed steps, `generation.partial_score`); the best
   ``beam_width - finished so far`` are kept (ties keep the earlier one): kept finished ones become the subtree's
   candidates, kept open ones go on, the others are dropped;
4. the subtree stops when it has ``beam_width`` candidates or no open beam, or after ``max_steps`` rounds (its open
   beams are then finished as truncated).

With one kept beam (DVTS) this is search-and-learn's rule: a subtree follows its best continuation and ends when that
one has ended. `generation.step_search` differs in two points: it keeps every finished continuation as a candidate,
its first round expands the question once (``num_continuations`` sequences, not the whole budget), and a round
ends at the first delimiter completed anywhere after the beam's last closed step (here: one wholly in the new text;
the two differ only when a beam was cut, by ``max_step_tokens``, inside a delimiter).

All subtrees of all questions advance together: one ``generate()`` call per round (per ``batch_size`` sequences and
per distinct token room) and one head pass to score them. A continuation is generated as a fresh rollout of the
text so far (``_continuation``), so that a round captures and decides the features of its new tokens only, and is
then joined to its beam (``_join``): the cost of a round does not grow with the length of the beams. A
question's answer is its best-scored finished candidate (`generation.summarize`, which also gives the majority and
SPRM-weighted votes over its candidates). Every sampled token counts in ``generated_tokens``, discarded
continuations included: the search's cost, to compare methods at equal generated tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .aggregation import aggregate_scores
from .answers import get_extractor
from .generation import (
    MAX_NUM_CANDIDATES,
    Rollout,
    SamplingConfig,
    candidate_record,
    copy_rollout,
    generate_rollouts,
    partial_score,
    prompt_rollout,
    score_rollouts,
    summarize,
)
from .outputs import StepSearchResult
from .processing_sprm import SPRMProcessor
from .steps import EncodedTrace


@dataclass
class _Subtree:
    question: int
    index: int
    beams: list[Rollout]
    beam_nodes: list[int | None]  # node id of each kept beam in the question's tree log (None: the root)
    finished: list[tuple[Rollout, EncodedTrace, list[float], float]] = field(default_factory=list)
    rounds: int = 0


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def tree_search(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    num_subtrees: int = 1,
    beam_width: int = 2,
    num_continuations: int = 4,
    max_steps: int = 32,
    max_step_tokens: int = 128,
    sampling: SamplingConfig | None = None,
    answer_extractor: str | Callable[[str], str | None] = "auto",
    threshold: float | None = None,
    batch_size: int | None = None,
    return_tree: bool = False,
    progress: bool = False,
    **sampling_overrides,
) -> list[StepSearchResult]:
    """Search every question of ``questions`` (rules in the module docstring). Returns, per question, an
    `outputs.StepSearchResult` over its finished candidates (all subtrees; each candidate also has ``subtree``):
    ``generated_tokens`` counts every token sampled for the question; with ``return_tree``, it also has
    ``tree``: one node per scored continuation, ``{"round", "subtree", "parent" (node id or None for the question),
    "new_tokens", "score" (partial score if open, full if finished), "finished", "kept"}``, node id = list index.

    Args:
        num_subtrees / beam_width / num_continuations: DVTS is (N / M, 1, M), beam search (1, N / M, M).
        max_steps: rounds at most; max_step_tokens: tokens per continuation per round at most.
        sampling / sampling_overrides: a `SamplingConfig` or its fields (``temperature=``, ``max_new_tokens=``,
            ``seed=`` ...); ``sampling.batch_size`` is not used, ``batch_size`` is.
        batch_size: sequences per ``generate()`` call and per head pass (default: all of a round at once).
    """
    if isinstance(questions, str):
        raise TypeError("questions must be a list of strings, not one string")
    for name, value in (
        ("num_subtrees", num_subtrees),
        ("beam_width", beam_width),
        ("num_continuations", num_continuations),
        ("max_steps", max_steps),
        ("max_step_tokens", max_step_tokens),
    ):
        _positive_int(name, value)
    if batch_size is not None:
        _positive_int("batch_size", batch_size)
    if num_subtrees * beam_width * num_continuations > MAX_NUM_CANDIDATES:
        raise ValueError(f"num_subtrees * beam_width * num_continuations must be at most {MAX_NUM_CANDIDATES}")
    sampling = SamplingConfig.from_kwargs(sampling, **sampling_overrides)
    extractor = get_extractor(answer_extractor)
    config = model.config
    threshold = config.threshold if threshold is None else threshold
    processor = SPRMProcessor.from_model(model, tokenizer)
    rules = processor.rules

    def aggregate_fn(values: list[float]) -> float:
        return aggregate_scores(values, config.aggregation, config.empty_solution_score)

    starts = [prompt_rollout(model, processor, q) for q in questions]
    trees = [
        _Subtree(q, s, [copy_rollout(start) for _ in range(beam_width)], [None] * beam_width)
        for q, start in enumerate(starts)
        for s in range(num_subtrees)
    ]
    generated = [0] * len(questions)
    logs: list[list[dict]] = [[] for _ in questions]
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    from tqdm.auto import tqdm

    for round_index in tqdm(range(1, max_steps + 1), desc="tree search rounds", disable=not progress):
        live = [t for t in trees if t.beams and len(t.finished) < beam_width]
        if not live:
            break
        # (subtree, parent node, parent beam, its continuation) for every continuation of this round
        pairs = [
            (t, node, b, _continuation(b))
            for t in live
            for b, node in zip(t.beams, t.beam_nodes)
            for _ in range(num_continuations)
        ]
        by_room: dict[int, list[int]] = {}
        for i, (_, _, parent, _) in enumerate(pairs):
            by_room.setdefault(min(max_step_tokens, sampling.max_new_tokens - len(parent.token_ids)), []).append(i)
        for room, members in by_room.items():
            step = batch_size or len(members)
            for first in range(0, len(members), step):
                part = [pairs[i][3] for i in members[first : first + step]]
                generate_rollouts(model, processor, part, sampling, max_new_tokens=room, stop_at_step=True)
        children = [(t, node, _join(parent, c), len(parent.token_ids)) for t, node, parent, c in pairs]
        for t, _, child, before in children:
            generated[t.question] += len(child.token_ids) - before
        for t in live:
            t.rounds = round_index

        unique: dict[tuple, tuple] = {}
        for t, node, child, before in children:
            unique.setdefault(
                (id(t),) + tuple(child.token_ids) + (child.stop_reason == "eos",), (t, node, child, before)
            )
        kept = list(unique.values())
        traces = [c.trace(rules) for _, _, c, _ in kept]
        step_scores, scores = _score(model, [c for _, _, c, _ in kept], traces, batch_size)
        ranked: dict[int, list] = {}  # per subtree: (score, finished record or None, child, node id)
        for (t, parent, child, before), trace, steps, score in zip(kept, traces, step_scores, scores):
            done = child.stop_reason == "eos" or len(child.token_ids) >= sampling.max_new_tokens
            if done:
                child.stop_reason = "eos" if child.stop_reason == "eos" else "length"
            else:
                delimited = [s.has_delimiter for s, p in zip(trace.steps, trace.positions) if p is not None]
                score = partial_score(aggregate_fn, steps, delimited)
            logs[t.question].append(
                {
                    "round": round_index,
                    "subtree": t.index,
                    "parent": parent,
                    "new_tokens": len(child.token_ids) - before,
                    "score": score,
                    "finished": done,
                    "kept": False,
                }
            )
            record = (child, trace, steps, score) if done else None
            ranked.setdefault(id(t), []).append((score, record, child, len(logs[t.question]) - 1))
        for t in live:
            chosen = sorted(ranked[id(t)], key=lambda item: -item[0])[: beam_width - len(t.finished)]
            t.finished += [record for _, record, _, _ in chosen if record is not None]
            t.beams = [child for _, record, child, _ in chosen if record is None]
            t.beam_nodes = [node_id for _, record, _, node_id in chosen if record is None]
            for _, _, _, node_id in chosen:
                logs[t.question][node_id]["kept"] = True

    leftovers = [(t, b) for t in trees for b in t.beams if len(t.finished) < beam_width]
    if leftovers:  # out of rounds: the open beams are finished as they are
        for _, beam in leftovers:
            beam.stop_reason = "length"
        traces = [b.trace(rules) for _, b in leftovers]
        step_scores, scores = _score(model, [b for _, b in leftovers], traces, batch_size)
        for (t, beam), trace, steps, score in zip(leftovers, traces, step_scores, scores):
            t.finished.append((beam, trace, steps, score))

    results = []
    for q, question in enumerate(questions):
        candidates = []
        for t in (t for t in trees if t.question == q):
            for rollout, trace, steps, score in t.finished:
                record = candidate_record(rollout, trace, steps, score, threshold, config, extractor)
                record["subtree"] = t.index
                candidates.append(record)
        rounds = max(t.rounds for t in trees if t.question == q)
        result = summarize(question, candidates, StepSearchResult, generated_tokens=generated[q], rounds=rounds)
        if return_tree:
            result["tree"] = logs[q]
        results.append(result)
    return results


def _continuation(beam: Rollout) -> Rollout:
    """A fresh rollout whose prompt is ``beam``'s prompt and text: generating it decides only the new tokens'
    features (a continued rollout would decide its whole text again, every round)."""
    return Rollout(beam.prompt_ids + beam.token_ids, beam.prompt_text + beam.text, beam.full_offsets())


def _join(beam: Rollout, continuation: Rollout) -> Rollout:
    """``beam`` extended by ``continuation`` (`_continuation`): tokens, text, offsets and features in ``beam``'s
    coordinates. The beam's features cover its steps; the continuation's cover its new tokens and the beam's last
    token (position -1), where a step that ends in the new text may be read."""
    tokens, chars = len(beam.token_ids), len(beam.text)
    features = {**beam.features, **{p + tokens: f for p, f in continuation.features.items()}}
    offsets = beam.offsets + [(s + chars, e + chars) for s, e in continuation.offsets]
    return Rollout(
        beam.prompt_ids,
        beam.prompt_text,
        beam.prompt_offsets,
        beam.token_ids + continuation.token_ids,
        beam.text + continuation.text,
        offsets,
        features,
        continuation.stop_reason,
    )


def _score(model: Any, rollouts: list[Rollout], traces: list[EncodedTrace], batch_size: int | None):
    """`generation.score_rollouts` in batches of ``batch_size``."""
    step_scores: list[list[float]] = []
    scores: list[float] = []
    step = batch_size or max(1, len(rollouts))
    for first in range(0, len(rollouts), step):
        s, sc = score_rollouts(model, rollouts[first : first + step], traces[first : first + step])
        step_scores += s
        scores += sc
    return step_scores, scores


def beam_search(
    model: Any, tokenizer: Any, questions: Sequence[str], num_sequences: int, num_continuations: int = 4, **kwargs
) -> list[StepSearchResult]:
    """Step-level beam search with a budget of ``num_sequences`` (N) per round: N / M kept beams, M =
    ``num_continuations`` continuations each (N < M: one beam with N continuations). ``kwargs``: `tree_search`."""
    width, continuations = _split_budget(num_sequences, num_continuations)
    return tree_search(
        model, tokenizer, questions, num_subtrees=1, beam_width=width, num_continuations=continuations, **kwargs
    )


def dvts(
    model: Any, tokenizer: Any, questions: Sequence[str], num_sequences: int, num_continuations: int = 4, **kwargs
) -> list[StepSearchResult]:
    """Diverse verifier tree search with a budget of ``num_sequences`` (N) per round: N / M independent subtrees of
    one beam, M = ``num_continuations`` continuations each (N < M: one subtree with N continuations).
    ``kwargs``: `tree_search`."""
    subtrees, continuations = _split_budget(num_sequences, num_continuations)
    return tree_search(
        model, tokenizer, questions, num_subtrees=subtrees, beam_width=1, num_continuations=continuations, **kwargs
    )


def _split_budget(num_sequences: int, num_continuations: int) -> tuple[int, int]:
    _positive_int("num_sequences", num_sequences)
    _positive_int("num_continuations", num_continuations)
    if num_sequences < num_continuations:
        return 1, num_sequences
    if num_sequences % num_continuations:
        raise ValueError(
            f"num_sequences ({num_sequences}) must be a multiple of num_continuations ({num_continuations})"
        )
    return num_sequences // num_continuations, num_continuations


__all__ = ["beam_search", "dvts", "tree_search"]
