"""Data adapters: every supported format -> one record type, a plain dict (so it drops into ``datasets``)::

    {
        "id": str,                      # unique within the data set
        "group": str,                   # split or task name (for leave-one-group-out protocols)
        "question": str,
        "steps": list[str] | None,      # exactly one of steps / solution is set
        "solution": str | None,
        "outcome_label": float | None,  # 1 = final answer correct, 0 = wrong, or a soft value in [0, 1]
        "step_labels": list[float | None] | None,  # per step in [0, 1]; None = unknown (e.g. after the first error)
        "first_error": int | None,      # index of the first wrong step, -1 = none, None = unknown
        "rollout_truncated": bool,      # the solution was cut off (MetaStone-S1 can exclude such rollouts)
    }

Adapters validate their rows and name the file, row and field of the first bad one.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any, Iterable

RECORD_FIELDS = (
    "id",
    "group",
    "question",
    "steps",
    "solution",
    "outcome_label",
    "step_labels",
    "first_error",
    "rollout_truncated",
)


class DataFormatError(ValueError):
    """A row of an input data set does not have the expected shape."""


def make_record(
    *,
    id: str,
    question: str,
    group: str = "",
    steps: list[str] | None = None,
    solution: str | None = None,
    outcome_label: float | None = None,
    step_labels: list[float | None] | None = None,
    first_error: int | None = None,
    rollout_truncated: bool = False,
    where: str = "",
) -> dict:
    """Build and validate one record; ``where`` (e.g. ``"file.jsonl row 3"``) prefixes error messages."""

    def fail(field: str, problem: str) -> None:
        raise DataFormatError(f"{where}: field {field!r} {problem}" if where else f"field {field!r} {problem}")

    if not isinstance(question, str) or not question.strip():
        fail("question", "must be a non-empty string")
    if (steps is None) == (solution is None):
        fail("steps/solution", "exactly one of them must be given")
    if steps is not None:
        if not isinstance(steps, list) or not steps:
            fail("steps", "must be a non-empty list of strings")
        for i, step in enumerate(steps):
            if not isinstance(step, str) or not step.strip():
                fail("steps", f"item {i} must be a non-empty string")
    if solution is not None and (not isinstance(solution, str) or not solution.strip()):
        fail("solution", "must be a non-empty string")
    if outcome_label is not None:
        if isinstance(outcome_label, bool):
            outcome_label = float(outcome_label)
        if not isinstance(outcome_label, (int, float)) or math.isnan(outcome_label) or not 0 <= outcome_label <= 1:
            fail("outcome_label", f"must be a number in [0, 1], got {outcome_label!r}")
        outcome_label = float(outcome_label)
    if step_labels is not None:
        if steps is None:
            fail("step_labels", "needs `steps` (labels are per given step)")
        if not isinstance(step_labels, list) or len(step_labels) != len(steps):
            fail("step_labels", f"must be a list with one label per step ({len(steps)}), got {step_labels!r}")
        checked = []
        for i, label in enumerate(step_labels):
            if label is None:
                checked.append(None)
                continue
            if isinstance(label, bool):
                label = float(label)
            if not isinstance(label, (int, float)) or math.isnan(label) or not 0 <= label <= 1:
                fail("step_labels", f"item {i} must be a number in [0, 1] or null, got {label!r}")
            checked.append(float(label))
        step_labels = checked
    return {
        "id": str(id),
        "group": str(group),
        "question": question,
        "steps": steps,
        "solution": solution,
        "outcome_label": outcome_label,
        "step_labels": step_labels,
        "first_error": first_error,
        "rollout_truncated": bool(rollout_truncated),
    }


def labels_from_first_error(num_steps: int, first_error: int) -> list[float | None]:
    """Step labels from the index of the first wrong step (-1 = none): correct before it, wrong at it, unknown
    after it (ProcessBench and BIG-Bench Mistake label only the first error)."""
    if first_error == -1:
        return [1.0] * num_steps
    return [1.0] * first_error + [0.0] + [None] * (num_steps - first_error - 1)


def drop_empty_steps(steps: list[str], first_error: int) -> tuple[list[str], int]:
    """Remove whitespace-only steps (a few upstream rows have them) and move ``first_error`` to the same step in
    the shortened list (to the next non-empty step if the error sat on an empty one)."""
    kept = [i for i, step in enumerate(steps) if isinstance(step, str) and step.strip()]
    if len(kept) == len(steps):
        return steps, first_error
    if first_error != -1:
        later = [j for j, i in enumerate(kept) if i >= first_error]
        first_error = later[0] if later else -1
    return [steps[i] for i in kept], first_error


# -- ProcessBench -------------------------------------------------------------------------------------------------

PROCESSBENCH_SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")


def _processbench_rows(path: str, splits: Iterable[str]) -> Iterable[tuple[str, str, int, dict]]:
    root = Path(path)
    for split in splits:
        if root.is_dir():
            file = root / f"{split}.json"
            if not file.is_file():
                raise FileNotFoundError(f"ProcessBench split file {file} not found")
            rows = json.loads(file.read_text(encoding="utf-8"))
            where = str(file)
        elif root.is_file():
            rows, where = json.loads(root.read_text(encoding="utf-8")), str(root)
        else:  # a Hub id such as "Qwen/ProcessBench"
            from datasets import load_dataset

            rows, where = load_dataset(path, split=split), f"{path}[{split}]"
        if not isinstance(rows, (list,)) and not hasattr(rows, "__iter__"):
            raise DataFormatError(f"{where}: expected a JSON list of rows")
        for i, row in enumerate(rows):
            yield split, where, i, row
        if root.is_file():
            return


def load_processbench(path: str = "Qwen/ProcessBench", splits: Iterable[str] = PROCESSBENCH_SPLITS) -> list[dict]:
    """ProcessBench (Qwen/ProcessBench): ``problem``, ``steps``, ``final_answer_correct`` -> outcome label,
    ``label`` (index of the earliest wrong step, -1 if none) -> step labels and ``first_error``.

    ``path``: a folder with ``{split}.json`` files, one such file, or a Hub id. Whitespace-only steps are
    dropped, with ``label`` moved accordingly.
    """
    records = []
    for split, where, i, row in _processbench_rows(path, splits):
        at = f"{where} row {i}"
        for field in ("problem", "steps", "final_answer_correct", "label"):
            if field not in row:
                raise DataFormatError(f"{at}: missing field {field!r}")
        steps, label = row["steps"], row["label"]
        if not isinstance(steps, list):
            raise DataFormatError(f"{at}: field 'steps' must be a list of strings")
        if not isinstance(label, int) or not -1 <= label < max(len(steps), 1):
            raise DataFormatError(f"{at}: field 'label' must be -1 or a step index < {len(steps)}, got {label!r}")
        steps, label = drop_empty_steps(steps, label)
        records.append(
            make_record(
                id=row.get("id", f"{split}-{i}"),
                group=split,
                question=row["problem"],
                steps=steps,
                outcome_label=float(bool(row["final_answer_correct"])),
                step_labels=labels_from_first_error(len(steps), label),
                first_error=label,
                where=at,
            )
        )
    return records


# -- BIG-Bench Mistake -------------------------------------------------------------------------------------------

BBM_TASKS = ("dyck_languages", "logical_deduction", "multistep_arithmetic", "tracking_shuffled_objects", "word_sorting")


def _bbm_steps(value: Any, at: str) -> list[str]:
    # Some upstream files store the list of steps as a Python literal inside a string.
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise DataFormatError(f"{at}: field 'steps' is a string that is not a list literal") from None
    if not isinstance(value, list):
        raise DataFormatError(f"{at}: field 'steps' must be a list of strings")
    return value


def load_bbm(path: str, tasks: Iterable[str] = BBM_TASKS) -> list[dict]:
    """BIG-Bench Mistake: ``input`` -> question, ``steps``, ``answer == target`` (whitespace-normalised string
    equality) -> outcome label, ``mistake_index`` (0-based first logical mistake, null = none) -> step labels.

    ``path``: a folder with ``{task}.jsonl`` files (the upstream repository layout). Whitespace-only steps
    (one upstream row has one) are dropped, with ``mistake_index`` moved accordingly.
    """
    records = []
    for task in tasks:
        file = Path(path) / f"{task}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"BIG-Bench Mistake task file {file} not found")
        for i, line in enumerate(file.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            at = f"{file} row {i}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{at}: not valid JSON ({err})") from None
            for field in ("input", "steps", "answer", "target", "mistake_index"):
                if field not in row:
                    raise DataFormatError(f"{at}: missing field {field!r}")
            steps = _bbm_steps(row["steps"], at)
            mistake = row["mistake_index"]
            first_error = -1 if mistake is None else mistake
            if not isinstance(first_error, int) or not -1 <= first_error < len(steps):
                raise DataFormatError(f"{at}: field 'mistake_index' must be null or a step index, got {mistake!r}")
            steps, first_error = drop_empty_steps(steps, first_error)
            correct = " ".join(str(row["answer"]).split()) == " ".join(str(row["target"]).split())
            records.append(
                make_record(
                    id=f"{task}-{i}",
                    group=task,
                    question=row["input"],
                    steps=steps,
                    outcome_label=float(correct),
                    step_labels=labels_from_first_error(len(steps), first_error),
                    first_error=first_error,
                    where=at,
                )
            )
    return records


LOADERS = {
    "processbench": load_processbench,
    "bbm": load_bbm,
}


def load_records(path: str, format: str, **kwargs) -> list[dict]:
    """Load a data set in one of the supported formats (``LOADERS``) as records."""
    if format not in LOADERS:
        raise ValueError(f"unknown data format {format!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[format](path, **kwargs)
