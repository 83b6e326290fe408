"""Final-answer extraction and comparison, for grading generated solutions and for voting.

Built in: GSM8K style (``#### 18``, ``The answer is 18``, or the last number) and LaTeX ``\\boxed{...}``.
Pass any ``Callable[[str], str | None]`` where an extractor is accepted to plug in your own.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable

AnswerExtractor = Callable[[str], "str | None"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*\$?\s*(-?[\d,]*\.?\d+(?:/\d+)?)", re.I)


def normalize_number(text: str) -> str | None:
    """Canonical form of a number written as text (``"1,000.50"`` -> ``"1000.5"``, ``"$18."`` -> ``"18"``,
    ``"3/4"`` -> ``"0.75"``), or None when it is not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if not cleaned:
        return None
    try:
        value = Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return format(float(value), ".10g")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start == -1:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip() or None
    return None


def extract_gsm8k_answer(text: str) -> str | None:
    """GSM8K style: the number after ``####``, else after "the answer is", else the last number in the text."""
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        match = _NUMBER.search(tail)
        return normalize_number(match.group()) if match else None
    matches = _ANSWER_IS.findall(text)
    if matches:
        return normalize_number(matches[-1])
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def extract_answer(text: str) -> str | None:
    """``\\boxed{}`` when present (normalised if numeric), else GSM8K style."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    boxed = extract_boxed(text)
    if boxed is not None:
        return normalize_number(boxed) or boxed
    return extract_gsm8k_answer(text)


EXTRACTORS: dict[str, AnswerExtractor] = {
    "auto": extract_answer,
    "gsm8k": extract_gsm8k_answer,
    "boxed": extract_boxed,
}


def get_extractor(extractor: str | AnswerExtractor) -> AnswerExtractor:
    if callable(extractor):
        return extractor
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown answer extractor {extractor!r}; expected one of {sorted(EXTRACTORS)} or a callable")
    return EXTRACTORS[extractor]


def answers_match(predicted: str | None, reference: str | None) -> bool:
    """Numbers compare by value (1e-6 relative), other answers as whitespace-normalised strings; None never
    matches."""
    if predicted is None or reference is None:
        return False
    a, b = normalize_number(predicted), normalize_number(reference)
    if a is not None and b is not None:
        x, y = float(a), float(b)
        return abs(x - y) <= 1e-6 * max(1.0, abs(x), abs(y))
    return " ".join(predicted.split()).lower() == " ".join(reference.split()).lower()


def answer_key(answer: str) -> str:
    """Answers that mean the same vote together: numbers by value, other answers whitespace-normalised."""
    return normalize_number(answer) or " ".join(answer.split())


def weighted_vote(answers: list[str | None], weights: list[float] | None = None) -> str | None:
    """The answer with the largest total weight (one vote each without ``weights``). ``None`` answers do not vote.
    Ties go to the answer with more votes, then to the one that appears first. Returns the first spelling of
    the winning answer, or None when no candidate has an answer."""
    weights = [1.0] * len(answers) if weights is None else weights
    if len(weights) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    totals: dict[str, list] = {}  # key -> [total weight, votes, -first index, first spelling]
    for i, (answer, weight) in enumerate(zip(answers, weights)):
        if answer is None:
            continue
        entry = totals.setdefault(answer_key(answer), [0.0, 0, -i, answer])
        entry[0] += float(weight)
        entry[1] += 1
    if not totals:
        return None
    return max(totals.values(), key=lambda entry: entry[:3])[3]


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent answer (self-consistency); ties go to the answer that appears first."""
    return weighted_vote(answers)
