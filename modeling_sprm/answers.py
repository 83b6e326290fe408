"""Final-answer extraction and comparison, for grading generated solutions and for voting.

Built in: GSM8K style (``#### 18``, ``The answer is 18``, or the last number) and LaTeX ``\\boxed{...}``.
Pass any ``Callable[[str], str | None]`` where an extractor is accepted to plug in your own.

Equivalence (`answers_match`, and the voting keys `answer_keys`): two plain numbers compare by value here (the
fast path: ``"1,000.0"`` == ``"1000"``, ``"3/4"`` == ``"0.75"``); anything else goes to Hugging Face's
``math-verify`` (LaTeX and symbolic equivalence: ``\\frac{1}{2}`` == ``0.5``, ``x+1`` == ``1+x``), and answers that
are the same text up to case and spaces always match. ``benchmarks/answer_equivalence.py`` measures the fast path
against math-verify on numbers (same verdicts, faster). Shipped as remote code: where ``math-verify`` is not
installed (a checkpoint used without this package), only the number and text rules apply.
"""

from __future__ import annotations

import re
import threading
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


def _normalized_text(answer: str) -> str:
    return " ".join(answer.split()).lower()


def numbers_match(a: str, b: str) -> bool:
    """Two normalised numbers (`normalize_number`) are equal after rounding to 6 decimal places (math-verify's
    ``float_rounding``, so both rules give the same verdicts: ``1450001`` is not ``1450000``, ``0.333333`` is
    ``1/3``)."""
    return round(Fraction(a), 6) == round(Fraction(b), 6)


def _parse_math(answer: str):
    """math-verify's parse of an answer (as LaTeX math), or None without math-verify or when nothing parses."""
    try:
        import math_verify
    except ImportError:  # remote code without this package's dependencies
        return None
    text = answer if "$" in answer or "\\(" in answer or "\\[" in answer else f"${answer}$"
    # math-verify's time limit uses signal.alarm, which only the main thread may set (the demo scores elsewhere)
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        parsed = math_verify.parse(text, parsing_timeout=timeout)
    except Exception:  # noqa: BLE001 (math-verify raises on what it cannot parse or on its time limit)
        return None
    return parsed or None


def math_equivalent(predicted: str, reference: str) -> bool:
    """math-verify's verdict (``verify(gold, prediction)``); False without math-verify or when either fails to
    parse."""
    gold, guess = _parse_math(reference), _parse_math(predicted)
    if gold is None or guess is None:
        return False
    import math_verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        return bool(math_verify.verify(gold, guess, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001
        return False


def answers_match(predicted: str | None, reference: str | None) -> bool:
    """Whether two final answers are the same (see the module docstring); None never matches."""
    if predicted is None or reference is None:
        return False
    a, b = normalize_number(predicted), normalize_number(reference)
    if a is not None and b is not None:
        return numbers_match(a, b)
    return _normalized_text(predicted) == _normalized_text(reference) or math_equivalent(predicted, reference)


def _math_number(answer: str) -> str | None:
    """The normalised number a LaTeX answer denotes (``\\frac{1}{2}`` -> ``"0.5"``), via math-verify, or None."""
    parsed = _parse_math(answer)
    value = parsed[0] if parsed else None
    if value is None or not getattr(value, "is_number", False) or not getattr(value, "is_real", False):
        return None
    return normalize_number(str(value))


def answer_keys(answers: list[str | None]) -> list[str | None]:
    """One voting key per answer (None for None): equivalent answers (`answers_match`) get the same key. Numbers,
    also LaTeX ones, key by value; other answers join the first earlier answer they match, else start a key of
    their own (their whitespace-normalised text)."""
    keys: list[str | None] = []
    others: list[tuple[str, str]] = []  # (key, first answer) of the non-numeric keys so far
    for answer in answers:
        if answer is None:
            keys.append(None)
            continue
        number = normalize_number(answer) or _math_number(answer)
        if number is not None:
            keys.append(number)
            continue
        key = next((k for k, first in others if answers_match(answer, first)), None)
        if key is None:
            key = " ".join(answer.split())
            others.append((key, answer))
        keys.append(key)
    return keys


def weighted_vote(answers: list[str | None], weights: list[float] | None = None) -> str | None:
    """The answer with the largest total weight (one vote each without ``weights``). ``None`` answers do not vote.
    Ties go to the answer with more votes, then to the one that appears first. Returns the first spelling of
    the winning answer, or None when no candidate has an answer."""
    weights = [1.0] * len(answers) if weights is None else weights
    if len(weights) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    totals: dict[str, list] = {}  # key -> [total weight, votes, -first index, first spelling]
    for i, (answer, weight, key) in enumerate(zip(answers, weights, answer_keys(answers))):
        if answer is None:
            continue
        entry = totals.setdefault(key, [0.0, 0, -i, answer])
        entry[0] += float(weight)
        entry[1] += 1
    if not totals:
        return None
    return max(totals.values(), key=lambda entry: entry[:3])[3]


def majority_vote(answers: list[str | None]) -> str | None:
    """The most frequent answer (self-consistency); ties go to the answer that appears first."""
    return weighted_vote(answers)
