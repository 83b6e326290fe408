"""Typed results: what scoring, Best-of-N, step search and evaluation return.

Each result is a dataclass **and** a ``dict`` (in the spirit of transformers' ``ModelOutput``): ``result.score`` and
``result["score"]`` both work, ``json.dumps(result)`` writes the same JSON as before these classes existed, and
``to_dict()`` gives plain nested dicts. Fields listed in ``_omit_if_none`` are left out of the dict while they are
None (``part_scores`` exists only with ``score_span="both"``).

Shipped as remote code: imports only the package's remote-code modules.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

from .aggregation import aggregate_scores, first_error_step
from .steps import EncodedTrace, StepRules, scored_regions

SCORE_PARTS = ("think", "response")
UNSCORED_REASONS = {
    "outside_span": "outside the scored span",
    "truncated": "after the model's maximum length",
    "not_a_step": "not part of any step",
}


class NonFiniteScoreError(ValueError):
    """A score that is NaN or infinite: an error, never a result (NaN compares as "no error" against a threshold)."""


class DictOutput(dict):
    """Base of the result dataclasses: every field is also a dict item, kept in step with the attribute."""

    _omit_if_none: tuple[str, ...] = ()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in self.__dataclass_fields__:
            if value is None and name in self._omit_if_none:
                dict.pop(self, name, None)
            else:
                dict.__setitem__(self, name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.__dataclass_fields__:
            setattr(self, key, value)
        else:  # an extra key a caller adds (kept in the dict only)
            dict.__setitem__(self, key, value)

    def to_dict(self) -> dict:
        """A plain (nested) dict: what ``json.dumps`` writes for this result."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------------------------
# Scored solutions


@dataclass(eq=False)
class StepScore(DictOutput):
    """One step: its text (stripped), its score (None when truncation cut it off), the part of a ``<think>``
    trace it belongs to (``"think"`` or ``"response"``)."""

    text: str
    score: float | None
    part: str


@dataclass(eq=False)
class UnscoredText(DictOutput):
    """A part of the input that no step score covers: its text (stripped), its character range ``start:end`` in
    the solution as given (or in ``text`` for a formatted trace; in the joined steps for a step list), and
    ``reason``: ``"outside_span"`` (outside the scored span, see ``SPRMConfig.score_span``), ``"truncated"``
    (after the model's maximum length) or ``"not_a_step"`` (inside the scored span but in no step: the text
    after the last delimiter when ``score_trailing_step`` is off)."""

    text: str
    start: int
    end: int
    reason: str


def unscored_text(trace: EncodedTrace, rules: StepRules) -> list[UnscoredText]:
    """The parts of ``trace``'s solution (its text from ``solution_start``) that carry no step score, with their
    reasons (`UnscoredText`); whitespace and the think tags themselves do not count, and parts with the same
    reason separated by whitespace only are one part."""
    text, origin = trace.text, trace.solution_start
    why: list[str | None] = ["outside_span"] * (len(text) - origin)  # per character of the solution

    def mark(start: int, end: int, reason: str | None) -> None:
        start, end = max(start - origin, 0), max(end - origin, 0)
        why[start:end] = [reason] * (end - start)

    for start, end, _ in scored_regions(text, origin, len(text), rules):
        mark(start, end, "not_a_step")
    for step, position in zip(trace.steps, trace.positions):
        mark(step.start, step.end, None if position is not None else "truncated")
    for tag in (rules.think_start_tag, rules.think_end_tag):
        at = text.find(tag, origin)
        while at != -1:
            mark(at, at + len(tag), None)
            at = text.find(tag, at + len(tag))
    solution = text[origin:]
    parts: list[UnscoredText] = []
    for reason, run in itertools.groupby(range(len(why)), key=why.__getitem__):
        run = list(run)
        piece = solution[run[0] : run[-1] + 1]
        if reason is None or not piece.strip():
            continue
        start = run[0] + len(piece) - len(piece.lstrip())
        end = run[0] + len(piece.rstrip())
        if parts and parts[-1].reason == reason and not solution[parts[-1].end : start].strip():
            start = parts.pop().start
        parts.append(UnscoredText(solution[start:end], start, end, reason))
    return parts


@dataclass(eq=False)
class ScoredSolution(DictOutput):
    """One scored solution (a pipeline output). ``first_error_step``: the first step scoring strictly below the
    threshold (`aggregation.first_error_step`), None if none; ``truncated``: steps after the model's context were
    not scored; ``no_steps``: the text had no step; ``part_scores``: the aggregated score of each part, with
    ``score_span="both"`` only; ``unscored``: the text no step score covers (`UnscoredText`, `unscored_text`)."""

    _omit_if_none = ("part_scores",)

    steps: list[StepScore]
    score: float
    first_error_step: int | None
    truncated: bool
    no_steps: bool
    part_scores: dict[str, float] | None = None
    unscored: list[UnscoredText] = dataclasses.field(default_factory=list)

    @classmethod
    def from_trace(
        cls,
        trace: EncodedTrace,
        step_scores: list[float],
        score: float,
        *,
        threshold: float,
        aggregation: str,
        empty_score: float,
        score_span: str,
        rules: StepRules | None = None,
    ) -> "ScoredSolution":
        """The result of one scored trace: ``step_scores`` are the scores of its scored steps in order (steps
        cut off by truncation have none); ``score`` the model's solution score; ``rules`` how the trace was cut
        into steps (default `StepRules`; ``score_span`` replaces its own). A non-finite score raises a
        `NonFiniteScoreError`."""
        for i, value in [*enumerate(step_scores), ("solution", score)]:
            if not math.isfinite(value):
                where = f"step {i}" if i != "solution" else "the solution"
                raise NonFiniteScoreError(
                    f"the model gave a non-finite score ({value}) for {where}: its weights or activations "
                    "overflow; no score is reported"
                )
        scored = iter(step_scores)
        steps = [
            StepScore(step.text.strip(), float(next(scored)) if position is not None else None, step.part)
            for step, position in zip(trace.steps, trace.positions)
        ]
        part_scores = None
        if score_span == "both":
            part_scores = {
                part: aggregate_scores([s.score for s in steps if s.part == part], aggregation, empty_score)
                for part in SCORE_PARTS
            }
        rules = dataclasses.replace(rules or StepRules(), score_span=score_span)
        return cls(
            steps=steps,
            score=float(score),
            first_error_step=first_error_step([s.score for s in steps], threshold),
            truncated=trace.truncated,
            no_steps=not trace.steps,
            part_scores=part_scores,
            unscored=unscored_text(trace, rules),
        )

    def public_json(self, model_name: str) -> dict:
        """The public JSON object of a scored solution, as ``sprm score --json`` prints it and the demo's ``/score``
        API returns it: ``{"steps": [{"text", "score"}], "score", "first_error_step", "model", "truncated",
        "no_steps", "unscored": [{"text", "start", "end", "reason"}]}``. The one place that defines it."""
        return {
            "steps": [{"text": s.text, "score": s.score} for s in self.steps],
            "score": self.score,
            "first_error_step": self.first_error_step,
            "model": model_name,
            "truncated": self.truncated,
            "no_steps": self.no_steps,
            "unscored": [u.to_dict() for u in self.unscored],
        }


def score_json(result: dict, model_name: str) -> dict:
    """`ScoredSolution.public_json` of a pipeline result (also of one given as a plain dict)."""
    if not isinstance(result, ScoredSolution):
        result = ScoredSolution(
            steps=[StepScore(s["text"], s["score"], s.get("part", "response")) for s in result["steps"]],
            **{k: result[k] for k in ("score", "first_error_step", "truncated", "no_steps")},
            unscored=[UnscoredText(**u) for u in result.get("unscored", [])],
        )
    return result.public_json(model_name)


# ----------------------------------------------------------------------------------------------------------------
# Generate and score


@dataclass(eq=False)
class Candidate(DictOutput):
    """One sampled candidate of Best-of-N or step search: its text, the fields of a `ScoredSolution`, and
    ``truncated`` (generation stopped at ``max_new_tokens`` before the end-of-sequence token), ``no_delimiter``
    (no step delimiter: the whole text is one step), ``answer`` (the extracted final answer, None if none),
    ``num_tokens`` (generated tokens), ``unscored`` (as `ScoredSolution`'s)."""

    _omit_if_none = ("part_scores",)

    text: str
    steps: list[StepScore]
    score: float
    first_error_step: int | None
    truncated: bool
    no_steps: bool
    part_scores: dict[str, float] | None
    no_delimiter: bool
    answer: str | None
    num_tokens: int
    unscored: list[UnscoredText] = dataclasses.field(default_factory=list)


@dataclass(eq=False)
class BestOfNResult(DictOutput):
    """Candidates in sampling order; ``best`` and ``ranking`` (indices by SPRM score, best first, the earliest on
    ties); the SPRM pick's answer, the majority answer and the SPRM-weighted answer (candidates without an answer
    do not vote; ``num_without_answer`` counts them)."""

    question: str
    candidates: list[Candidate]
    best: int | None
    ranking: list[int]
    majority_answer: str | None
    sprm_answer: str | None
    weighted_answer: str | None
    num_without_answer: int


@dataclass(eq=False)
class StepSearchResult(BestOfNResult):
    """`BestOfNResult` of the finished beams, plus ``generated_tokens`` (every sampled token, discarded
    continuations included: the search's budget) and ``rounds``."""

    generated_tokens: int = 0
    rounds: int = 0


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(eq=False)
class GroupMetrics(DictOutput):
    """Metrics of one group (split or task) of scored records: ProcessBench's ``f1``, ``error_acc``,
    ``correct_acc`` (None where undefined), counts, step and outcome AUROC, records with an unknown first error
    (``n_unlabelled``, not in the F1) and truncated inputs."""

    f1: float | None
    error_acc: float | None
    correct_acc: float | None
    n: int
    n_error: int
    n_correct: int
    step_auroc: float | None
    outcome_auroc: float | None
    n_unlabelled: int
    truncated: int


@dataclass(eq=False)
class EvaluationReport(DictOutput):
    """Metrics per group and their unweighted mean over the groups where each is defined (ProcessBench's reported
    F1 is this mean over its four splits); ``n`` and ``truncated`` are totals."""

    f1: float | None
    error_acc: float | None
    correct_acc: float | None
    step_auroc: float | None
    outcome_auroc: float | None
    threshold: float
    n: int
    truncated: int
    per_group: dict[str, GroupMetrics]


__all__ = [
    "BestOfNResult",
    "Candidate",
    "DictOutput",
    "EvaluationReport",
    "GroupMetrics",
    "NonFiniteScoreError",
    "ScoredSolution",
    "StepScore",
    "StepSearchResult",
    "UnscoredText",
    "score_json",
    "unscored_text",
]
