"""Thinking trajectories with checkable steps: reference traces that explore and self-revise, and a grader that
labels every step of any trace (a reference one, or one the policy sampled) against the problem's chain.

The problems are the self-generated loop's arithmetic chains (``modeling_sprm.arithmetic``). A trace is::

    <think>
    17 - 3 = 13.                        compute   (a slip)
    Wait, 17 - 3 is not 13.             revise    (an explicit check of the previous computation)
    17 - 3 = 14.                        compute   (the correction)
    Maybe 14 + 2 = 16.                  compute   (a branch: the wrong operation)
    No, that is the wrong operation.    revise    (the branch is abandoned)
    14 * 2 = 28.                        compute
    So the answer is 28.                conclude
    </think>
    17 - 3 = 14.                        the response: the concise chain, as the loop's solutions
    14 * 2 = 28.
    The answer is 28

with every step ending in ``".\\n\\n"`` (the SPRM's delimiter), so ``steps.segment`` with ``score_span="both"``
cuts it into the thinking steps (part ``"think"``) and the response steps (part ``"response"``).

**Grading rules** (``grade_trace``; pure functions of the step texts and the problem):

* A thinking step's *kind*: ``revise`` if it starts with "Wait" or "No"; ``compute`` if it holds an equation
  ``a op b = c``; ``conclude`` if it says "answer is X"; else ``other``.
* ``compute`` is right when it states one of the problem's chain operations with the right result (operands in
  either order for + and *; the same rule as ``arithmetic.grade_steps``, in any order); ``conclude`` is right when
  X is the problem's answer; ``revise`` claims that the previous ``compute`` step is wrong and is right when that
  claim is true (unverifiable, label None, when there is no previous ``compute``); ``other`` is unverifiable (None).
* **Carried or corrected.** The final answer A is read from the response (``answers.extract_answer``; None if
  there is no response). The *answer path* is traced back through the thinking from A: a value comes from the
  latest earlier ``compute`` / ``conclude`` step with that value. The source of A is on the path; from a wrong
  ``compute`` step on it the search goes on, further back, for the source of its left operand (of its right one
  when the left has none, for + and *); from a wrong ``conclude`` step, for the source of A again. The search
  stops at a right step: its value is right, so no error before it reaches the answer through it (a slip that
  happens to equal the start number, a misreading such as ``10 * 1 = 10`` for ``10 - 0 = 10``, two errors that
  cancel). A wrong ``compute`` / ``conclude``
  step on the path is **carried** (its value reaches the answer); off the path it is **corrected** (revised,
  abandoned, or superseded: its value never reaches the answer). A wrong ``revise`` (a false alarm) is carried
  when the next ``compute`` step after it is carried, else corrected. If the response's answer never appears in
  the thinking (the response does not follow it), no thinking step is carried. A trace without a final answer
  (no response: cut off, or no ``</think>``) has nothing to carry an error into, nor a sign that it was
  corrected: its wrong thinking steps are just **wrong**.
* Response steps are graded by ``arithmetic.grade_steps`` (1 right, 0 wrong; every step after the first error is
  wrong), and the outcome label is the response's final answer against the problem's answer, as a verifier would.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from modeling_sprm.answers import answers_match, extract_answer, normalize_number
from benchmarks.selfgen.arithmetic import OPS, Problem, grade_steps, parse_equation
from modeling_sprm.steps import Step, StepRules, join_steps, segment

THINK_START, THINK_END = "<think>", "</think>"
RULES = StepRules(score_span="both")  # the SPRM's default delimiters, both parts scored
TRACE_KINDS = ("clean", "corrected", "carried")
THINK_LABELS = ("right", "corrected", "carried", "wrong")  # None: unverifiable
STEP_KINDS = ("compute", "revise", "conclude", "other")
_REVISE = re.compile(r"\s*(wait|no)\b", re.IGNORECASE)
_CONCLUDE = re.compile(r"answer\s+is\s+(-?\d+(?:\.\d+)?)", re.IGNORECASE)


# -- reference traces ----------------------------------------------------------------------------------------------


@dataclass
class ReferenceTrace:
    """A trace written for supervised fine-tuning: thinking steps, response steps (texts without delimiters)."""

    think: list[str]
    response: list[str]
    kind: str  # "clean", "corrected" or "carried"
    events: list[str] = field(default_factory=list)  # what was injected, e.g. ["slip@1", "branch@2"]

    @property
    def text(self) -> str:
        return format_trace(self.think, self.response)


def format_trace(think: list[str], response: list[str]) -> str:
    """``<think>`` + thinking steps each closed by ``".\\n\\n"`` + ``</think>`` + the response steps joined by
    ``steps.join_steps`` (its last step has no delimiter, as the loop's solutions)."""
    body = "".join(f"{step.strip()}.\n\n" for step in think)
    return f"{THINK_START}\n{body}{THINK_END}\n\n{join_steps(response, RULES)[0]}"


def _equation(a: int, op: str, b: int, c: int) -> str:
    return f"{a} {op} {b} = {c}"


def _slip(rng: random.Random, c: int, positive: bool = False) -> int:
    """A plausible wrong result near ``c`` (never ``c``, never negative)."""
    deltas = [1, 2, 10] if positive else [-10, -2, -1, 1, 2, 10]
    choices = [c + d for d in deltas if c + d >= 0]
    return rng.choice(choices)


def _branch(rng: random.Random, a: int, op: str, b: int) -> tuple[str, int] | None:
    """A wrong operation on the same numbers whose result is a non-negative integer (a misreading), or None."""
    options = [o for o in ("+", "-", "*") if o != op and OPS[o](a, b) >= 0]
    if not options:
        return None
    other = rng.choice(options)
    return other, OPS[other](a, b)


def make_reference_trace(problem: Problem, kind: str, rng: random.Random, attempts: int = 50) -> ReferenceTrace:
    """A thinking trace of ``kind`` for ``problem``:

    * ``clean``: the chain, then "So the answer is X"; the response restates the chain.
    * ``corrected``: one or two revisions at random operations, each a *slip* (a wrong result, then "Wait, a op b
      is not c'." and the right step) or a *branch* (a wrong operation "Maybe a op' b = c'.", then "No, that is
      the wrong operation." and the right step); the response is right.
    * ``carried``: a slip (a larger result) that is never revised, at an operation after which no division comes
      (so the rest of the chain stays exact on the wrong value); the thinking and the response go on from it and
      give a wrong answer.

    A draw whose numbers coincide so that ``grade_trace`` would not label it as intended (a wrong value that
    happens to equal a right one) is drawn again, up to ``attempts`` times.
    """
    if kind not in TRACE_KINDS:
        raise ValueError(f"kind must be one of {TRACE_KINDS}, got {kind!r}")
    for _ in range(attempts):
        trace = _draw_trace(problem, kind, rng)
        grade = grade_trace(problem, trace.think, trace.response)
        if kind == "carried":
            intended = grade.num_corrected == 0 and grade.think_labels[-1] == "carried"
        else:
            intended = grade.num_carried == 0 and grade.num_corrected == len(trace.events)
        if intended and grade.outcome_label == float(kind != "carried"):
            return trace
    raise RuntimeError(f"no unambiguous {kind} trace for {problem.question!r} in {attempts} draws")


def _draw_trace(problem: Problem, kind: str, rng: random.Random) -> ReferenceTrace:
    chain = problem.chain
    events: list[str] = []
    revise_at: dict[int, str] = {}
    if kind == "corrected":
        positions = rng.sample(range(len(chain)), k=min(len(chain), rng.choice([1, 1, 2])))
        for j in positions:
            revise_at[j] = rng.choice(["slip", "slip", "branch"])
    carried_at = None
    if kind == "carried":
        eligible = [j for j in range(len(chain)) if all(op != "/" for _, op, _, _ in chain[j + 1 :])]
        carried_at = rng.choice(eligible)  # the last operation is always eligible
    think, response = [], []
    value = problem.start
    for j, (_, op, b, c) in enumerate(chain):
        a = value
        if j == carried_at:
            wrong = _slip(rng, OPS[op](a, b), positive=True)
            think.append(_equation(a, op, b, wrong))
            response.append(_equation(a, op, b, wrong))
            events.append(f"carried@{j}")
            value = wrong
            continue
        c = OPS[op](a, b)  # on the wrong value after a carried slip, the chain goes on from it
        how = revise_at.get(j)
        if how == "branch":
            branch = _branch(rng, a, op, b)
            if branch is None:
                how = "slip"
            else:
                think += [f"Maybe {_equation(a, branch[0], b, branch[1])}", "No, that is the wrong operation"]
                events.append(f"branch@{j}")
        if how == "slip":
            wrong = _slip(rng, c)
            think += [_equation(a, op, b, wrong), f"Wait, {a} {op} {b} is not {wrong}"]
            events.append(f"slip@{j}")
        think.append(_equation(a, op, b, c))
        response.append(_equation(a, op, b, c))
        value = c
    think.append(f"So the answer is {value}")
    response.append(f"The answer is {value}")
    return ReferenceTrace(think, response, kind, events)


def make_reference_traces(
    problems: list[Problem], mix: dict[str, float], seed: int = 0
) -> list[tuple[Problem, ReferenceTrace]]:
    """One reference trace per problem, its kind drawn from ``mix`` (kind -> weight), seeded."""
    unknown = set(mix) - set(TRACE_KINDS)
    if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix must give non-negative weights to some of {TRACE_KINDS}, got {mix!r}")
    rng = random.Random(seed)
    kinds, weights = zip(*mix.items())
    return [(p, make_reference_trace(p, rng.choices(kinds, weights)[0], rng)) for p in problems]


# -- grading -------------------------------------------------------------------------------------------------------


def step_kind(text: str) -> str:
    """``revise``, ``compute``, ``conclude`` or ``other`` (rules in the module docstring)."""
    if _REVISE.match(text):
        return "revise"
    if parse_equation(text) is not None:
        return "compute"
    if _CONCLUDE.search(text):
        return "conclude"
    return "other"


def _states_chain_step(equation: tuple[float, str, float, float], problem: Problem) -> bool:
    a, op, b, c = equation
    for ra, rop, rb, rc in problem.chain:
        if op == rop and c == rc and ((a, b) == (ra, rb) or (op in "+*" and (a, b) == (rb, ra))):
            return True
    return False


@dataclass
class TraceGrade:
    """Labels of one trace. ``think_labels[i]``: "right", "corrected", "carried", "wrong" (no final answer) or None
    (unverifiable);
    ``response_labels[i]``: 1.0 right, 0.0 wrong."""

    think_kinds: list[str]
    think_labels: list[str | None]
    on_answer_path: list[bool]
    response_labels: list[float]
    answer: str | None
    outcome_label: float

    @property
    def num_corrected(self) -> int:
        return self.think_labels.count("corrected")

    @property
    def num_carried(self) -> int:
        return self.think_labels.count("carried")


def grade_trace(problem: Problem, think: list[str], response: list[str]) -> TraceGrade:
    """Label every thinking and response step of a trace (step texts without delimiters); see the module
    docstring for the rules."""
    kinds = [step_kind(s) for s in think]
    equations = [parse_equation(s) if k == "compute" else None for s, k in zip(think, kinds)]
    values: list[float | None] = []
    wrong: list[bool | None] = []
    for text, kind, equation in zip(think, kinds, equations):
        if kind == "compute":
            values.append(equation[3])
            wrong.append(not _states_chain_step(equation, problem))
        elif kind == "conclude":
            stated = _CONCLUDE.search(text).group(1)
            values.append(float(stated))
            wrong.append(not answers_match(stated, str(problem.answer)))
        else:
            values.append(None)
            wrong.append(None)
    previous_compute = None
    for i, kind in enumerate(kinds):  # a revision claims the previous computation is wrong
        if kind == "revise" and previous_compute is not None:
            wrong[i] = not wrong[previous_compute]
        if kind == "compute":
            previous_compute = i

    answer = extract_answer(" ".join(response)) if response else None
    normalized = normalize_number(answer) if answer is not None else None

    on_path = [False] * len(think)
    pending = [float(normalized)] if normalized is not None else []
    position = len(think)
    while pending:
        target = pending.pop(0)
        k = next((k for k in range(position - 1, -1, -1) if values[k] == target), None)
        if k is None:
            continue  # try the other operand, if any
        on_path[k], position = True, k
        if not wrong[k]:
            break  # a right step's value is right: no error upstream of it reaches the answer
        if kinds[k] == "conclude":
            pending = [target]
        else:
            a, op, b, _ = equations[k]
            pending = [a, b] if op in "+*" else [a]

    labels: list[str | None] = []
    for i, kind in enumerate(kinds):
        if wrong[i] is None:
            labels.append(None)
        elif not wrong[i]:
            labels.append("right")
        elif answer is None:
            labels.append("wrong")
        elif kind == "revise":
            after = next((k for k in range(i + 1, len(think)) if kinds[k] == "compute"), None)
            carried = after is not None and wrong[after] and on_path[after]
            labels.append("carried" if carried else "corrected")
        else:
            labels.append("carried" if on_path[i] else "corrected")
    response_grade = grade_steps(problem, response, answer)
    return TraceGrade(kinds, labels, on_path, response_grade.step_labels, answer, response_grade.outcome_label)


def step_content(step: Step) -> str:
    """A segmented step's text without its delimiter (what the grader reads)."""
    return step.text[: step.anchor - step.start].strip()


def split_trace(text: str, start: int = 0) -> tuple[list[Step], list[str], list[str]]:
    """``segment`` a trace (from character ``start``, e.g. after a prompt) with both parts scored:
    ``(steps, thinking step texts, response step texts)``, steps in text order (thinking first)."""
    steps = segment(text, RULES, start=start)
    think = [step_content(s) for s in steps if s.part == "think"]
    response = [step_content(s) for s in steps if s.part == "response"]
    return steps, think, response


def step_labels(grade: TraceGrade) -> list[str | None]:
    """One label per step in text order (thinking, then response): the thinking labels, then "right" / "wrong"."""
    return grade.think_labels + ["right" if v == 1.0 else "wrong" for v in grade.response_labels]
