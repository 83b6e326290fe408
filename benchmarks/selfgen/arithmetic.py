"""Multi-step arithmetic word problems whose every step can be checked: ground truth for the self-generated loop
(MetaStone-S1 in miniature: a policy samples solutions, outcome labels come from the final answer only, and the
true step labels are known, so step-error detection can be measured exactly).

A problem is a chain ``start op1 a1 op2 a2 ...`` told as a story; its reference solution has one step per
operation, ``"17 - 3 = 14."``, then ``"The answer is 14."``, joined with ``".\\n\\n"`` as SPRM steps.

A generated solution is graded step by step against the reference chain: step i is correct when it states the
reference operation i (operands in either order for ``+`` and ``*``) with the right result. The first step that is
not is the first error; the outcome label checks only the final answer, as a verifier would.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

NAMES = ("Sam", "Mia", "Leo", "Ava", "Noah", "Zoe", "Eli", "Ivy", "Max", "Ruby")
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "shells", "cards", "pencils")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a // b}
_EQUATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*([+\-*/x×÷])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")
_SYMBOLS = {"x": "*", "×": "*", "÷": "/"}


@dataclass
class Problem:
    question: str
    start: int
    operations: list[tuple[str, int]]  # (op, operand) applied in order

    @property
    def chain(self) -> list[tuple[int, str, int, int]]:
        """``(left, op, right, result)`` per step."""
        steps, value = [], self.start
        for op, operand in self.operations:
            result = OPS[op](value, operand)
            steps.append((value, op, operand, result))
            value = result
        return steps

    @property
    def answer(self) -> int:
        return self.chain[-1][3]

    def reference_steps(self) -> list[str]:
        steps = [f"{a} {op} {b} = {c}" for a, op, b, c in self.chain]
        return steps + [f"The answer is {self.answer}"]


def _story(name: str, item: str, start: int, operations: list[tuple[str, int]]) -> str:
    parts = [f"{name} has {start} {item}."]
    for op, n in operations:
        parts.append(
            {
                "+": f"Then {name} gets {n} more {item}.",
                "-": f"Then {name} gives away {n} {item}.",
                "*": f"Then the number of {item} becomes {n} times as many.",
                "/": f"Then {name} shares them equally among {n} friends and keeps one share.",
            }[op]
        )
    parts.append(f"How many {item} does {name} have now?")
    return " ".join(parts)


def make_problem(rng: random.Random, num_ops: int, max_number: int = 30) -> Problem:
    """A random chain of ``num_ops`` operations on numbers up to ``max_number``; every intermediate value stays a
    non-negative integer (subtraction never below 0, division exact, multiplication by 2-5)."""
    if num_ops < 1:
        raise ValueError(f"num_ops must be >= 1, got {num_ops}")
    value = rng.randint(2, max_number)
    start, operations = value, []
    for _ in range(num_ops):
        choices = ["+", "-", "*", "/"]
        op = rng.choice(choices)
        if op == "-" and value < 2:
            op = "+"
        if op == "/":
            divisors = [d for d in range(2, 6) if value % d == 0]
            if not divisors:
                op = "+"
        if op == "+":
            n = rng.randint(1, max_number)
        elif op == "-":
            n = rng.randint(1, value - 1)
        elif op == "*":
            n = rng.randint(2, 5)
        else:
            n = rng.choice(divisors)
        operations.append((op, n))
        value = OPS[op](value, n)
    return Problem(_story(rng.choice(NAMES), rng.choice(ITEMS), start, operations), start, operations)


def make_problems(n: int, min_ops: int = 2, max_ops: int = 4, max_number: int = 30, seed: int = 0) -> list[Problem]:
    rng = random.Random(seed)
    return [make_problem(rng, rng.randint(min_ops, max_ops), max_number) for _ in range(n)]


def parse_equation(step: str) -> tuple[float, str, float, float] | None:
    """The first ``a op b = c`` in a step, or None."""
    match = _EQUATION.search(step)
    if match is None:
        return None
    a, op, b, c = match.groups()
    return float(a), _SYMBOLS.get(op, op), float(b), float(c)


def _states(equation, reference) -> bool:
    a, op, b, c = equation
    ra, rop, rb, rc = reference
    if op != rop or c != rc:
        return False
    return (a, b) == (ra, rb) or (op in "+*" and (a, b) == (rb, ra))


@dataclass
class Grade:
    step_labels: list[float]  # 1 = correct, 0 = wrong, per generated step (every step after the first error is 0)
    first_error: int  # -1 when every step is correct
    outcome_label: float  # final answer only
    answer: str | None


def grade_steps(problem: Problem, steps: list[str], answer: str | None) -> Grade:
    """Grade generated ``steps`` (and its extracted final ``answer``) against the problem's reference chain."""
    from modeling_sprm.answers import answers_match

    chain = problem.chain
    labels: list[float] = []
    ok, seen = True, 0
    for i, step in enumerate(steps):
        equation = parse_equation(step)
        if equation is not None:
            ok = ok and seen < len(chain) and _states(equation, chain[seen])
            seen += 1
        elif i == len(steps) - 1:  # the closing statement: right only if the chain is done and the answer right
            ok = ok and seen == len(chain) and answers_match(answer, str(problem.answer))
        # other steps without an equation (a remark) are neither right nor wrong: they keep the current status
        labels.append(1.0 if ok else 0.0)
    first_error = next((i for i, label in enumerate(labels) if label == 0.0), -1)
    outcome = 1.0 if answers_match(answer, str(problem.answer)) else 0.0
    return Grade(labels, first_error, outcome, answer)
