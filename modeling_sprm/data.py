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

Formats (``load_records(path, format)``; ``LOADERS`` maps each name to its loader):

* ``outcome``: generic outcome-labelled rows ``{"question", "solution" | "steps", "label"}`` (see ``load_outcome``);
* ``trl``: TRL stepwise supervision ``{"prompt", "completions", "labels"}`` (``load_trl``; ``to_trl`` writes it);
* ``processbench``, ``bbm`` (BIG-Bench Mistake), ``prmbench``, ``gsm8k``: the benchmarks in their upstream layout.

Adapters validate their rows and name the file, row and field of the first bad one (``DataFormatError``). Rows
are counted from 0; in a ``.jsonl`` file the row number is the line number counted from 0.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .answers import answers_match, extract_gsm8k_answer, get_extractor

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


def first_error_from_labels(step_labels: Sequence[float | None]) -> int | None:
    """Index of the first step labelled wrong (label < 0.5), -1 when every step is labelled correct, None when an
    unknown label comes before any wrong one."""
    for i, label in enumerate(step_labels):
        if label is None:
            return None
        if label < 0.5:
            return i
    return -1


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


# -- Reading rows ---------------------------------------------------------------------------------------------------

# Files `datasets` reads by their suffix (its packaged builders); a folder of such files holds one group per file.
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
FOLDER_SUFFIXES = (".jsonl", ".csv", ".parquet")


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No "Generating train split" bars for the small local files read here (restored afterwards)."""
    from datasets.utils import logging as ds_logging
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled, verbosity = are_progress_bars_disabled(), ds_logging.get_verbosity()
    disable_progress_bars()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(verbosity)
        if not was_disabled:
            enable_progress_bars()


def _json_rows_by_hand(file: Path) -> Iterator[tuple[int, str, dict]]:
    """``(row number, where, row)`` of a JSON-lines file or a file holding one JSON list of objects, read with the
    json module, which keeps every float exact. `file_rows` uses it where `datasets` would not: for a ``.json`` list
    and for JSON lines whose fields change type between rows, `datasets` parses numbers with pandas' fast float
    parser, which changes many floats in their last bit (805 of 2,000 random floats in a test here, 0.7 ->
    0.7000000000000001), and its errors do not name the row."""
    text = file.read_text(encoding="utf-8")
    whole = _json_value(text) if file.suffix == ".json" else None  # a .json file: one list, or JSON lines
    if whole is not None:
        if not isinstance(whole, list):
            raise DataFormatError(f"{file}: expected a JSON list of rows, got {type(whole).__name__}")
        numbered = list(enumerate(whole))
    else:
        numbered = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                numbered.append((i, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{file} row {i}: not valid JSON ({err})") from None
    for i, row in numbered:
        if not isinstance(row, dict):
            raise DataFormatError(f"{file} row {i}: expected a JSON object, got {type(row).__name__}")
        yield i, f"{file} row {i}", row


def _json_value(text: str) -> Any:
    """The JSON value of a whole text, or None when it is not one (JSON lines, or broken)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _has_mixed_json_types(features) -> bool:
    """Whether `datasets` stored a JSON field as `datasets.Json` (its fallback for a field whose type changes
    between rows, read with the lossy float parser)."""
    from datasets import Json
    from datasets.features.features import _visit

    found = []
    _visit(features, lambda feature: found.append(feature) if isinstance(feature, Json) else None)
    return bool(found)


def file_rows(file: Path) -> Iterator[tuple[int, str, dict]]:
    """``(row number, where, row)`` for each row of a ``.jsonl``, ``.csv`` or ``.parquet`` file, read by
    ``datasets.load_dataset`` (Arrow's readers), or of a ``.json`` file holding one list of objects (see
    `_json_rows_by_hand` for why the json module reads that one). In a ``.jsonl`` file the row number is the line
    number counted from 0."""
    import datasets

    builder = FILE_BUILDERS.get(file.suffix)
    if builder is None:
        raise DataFormatError(f"{file}: expected a {', '.join(FILE_BUILDERS)} file")
    if file.suffix == ".json":
        yield from _json_rows_by_hand(file)
        return
    try:
        with _quiet_datasets():
            table = datasets.load_dataset(builder, data_files=str(file), split="train")
    except Exception as err:  # noqa: BLE001 (Arrow's schema and parse errors have many types)
        if builder != "json":
            raise DataFormatError(f"{file}: cannot be read as {builder} ({str(err).splitlines()[0]})") from None
        yield from _json_rows_by_hand(file)  # a broken line: named there
        return
    if builder == "json" and _has_mixed_json_types(table.features):
        yield from _json_rows_by_hand(file)
        return
    lines = _line_numbers(file) if builder == "json" else None
    for i, row in enumerate(table):
        n = lines[i] if lines is not None else i
        yield n, f"{file} row {n}", row


def _line_numbers(file: Path) -> list[int]:
    """The line number of each non-blank line (what `datasets` makes a row) of a JSON-lines file."""
    with file.open(encoding="utf-8") as handle:
        return [i for i, line in enumerate(handle) if line.strip()]


def _split_names(path: str, available: Sequence[str], splits: Sequence[str] | None) -> list[str]:
    """The splits to read: ``splits`` (each must exist), or the only one there is; several and no choice is an error
    that lists them (merging a train and a test split silently would leak one into the other)."""
    if splits:
        missing = [s for s in splits if s not in available]
        if missing:
            raise DataFormatError(f"{path}: no split {missing[0]!r} (it has {sorted(available)})")
        return list(splits)
    if len(available) > 1:
        raise DataFormatError(f"{path} has several splits {sorted(available)}: choose one with --split (or splits=)")
    return list(available)


def _dataset_rows(dataset, name: str, splits: Sequence[str] | None) -> Iterator[tuple[str, int, str, dict]]:
    """``(group, row number, where, row)`` for a ``datasets.Dataset`` (group = the folder name) or the chosen splits
    of a ``DatasetDict`` (group = the split)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        if splits:
            raise DataFormatError(f"{name} is a single data set without splits; drop --split")
        parts = {Path(name).name: (dataset, name)}
    else:
        parts = {s: (dataset[s], f"{name}[{s}]") for s in _split_names(name, list(dataset), splits)}
    for split, (part, label) in parts.items():
        for i, row in enumerate(part):
            yield split, i, f"{label} row {i}", row


def _hub_rows(path: str, splits: Sequence[str] | None, config: str | None) -> Iterator[tuple[str, int, str, dict]]:
    import datasets

    try:
        available = datasets.get_dataset_split_names(path, config)
    except Exception as err:  # noqa: BLE001 (offline, unknown id, ...: say what was tried)
        raise FileNotFoundError(
            f"{path} is not a local file or folder, and loading it as a Hub data set failed: {err}"
        ) from err
    for split in _split_names(path, available, splits):
        part = datasets.load_dataset(path, config, split=split)
        for i, row in enumerate(part):
            yield split, i, f"{path}[{split}] row {i}", row


def read_rows(
    path: str, splits: Sequence[str] | None = None, config: str | None = None
) -> Iterator[tuple[str, int, str, dict]]:
    """``(group, row number, where, row)`` for every row of a table-like data set, read with ``datasets``:

    * a ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` file (`file_rows`): group = the file name without extension;
    * a folder of ``.jsonl`` / ``.csv`` / ``.parquet`` files: each file is a group (``splits`` picks the files
      ``{split}.{ext}``);
    * a folder written by ``datasets``' ``save_to_disk``: a ``Dataset`` (group = the folder name) or the chosen
      splits of a ``DatasetDict`` (group = the split);
    * otherwise a Hugging Face Hub data set id, loaded with ``datasets.load_dataset(path, config, split=...)``:
      group = the split.

    A source with several splits (a ``DatasetDict``, a Hub id) needs ``splits``: without it, it is an error that
    lists them. In ``datasets`` tables every row has every column, so a field that is None counts as absent.
    """
    root = Path(path)
    if root.is_file():
        if splits:
            raise DataFormatError(f"{root} is one file, without splits; drop --split")
        yield from ((root.stem, *item) for item in file_rows(root))
    elif root.is_dir():
        if (root / "state.json").is_file() or (root / "dataset_dict.json").is_file():
            import datasets

            yield from _dataset_rows(datasets.load_from_disk(str(root)), str(root), splits)
            return
        files = sorted(p for p in root.iterdir() if p.suffix in FOLDER_SUFFIXES and p.is_file())
        if splits:
            by_stem = {p.stem: p for p in files}
            missing = [s for s in splits if s not in by_stem]
            if missing:
                raise FileNotFoundError(f"{root / missing[0]}.jsonl not found (expected one file per split: "
                                        f"{sorted(by_stem) or 'none there'})")
            files = [by_stem[s] for s in splits]
        elif not files:
            raise FileNotFoundError(
                f"{root} holds no {', '.join(FOLDER_SUFFIXES)} files and is not a saved `datasets` folder"
            )
        for file in files:
            yield from ((file.stem, *item) for item in file_rows(file))
    else:
        yield from _hub_rows(path, splits, config)


def _require(row: dict, fields: Iterable[str], at: str) -> None:
    """Each field is present and not null."""
    for field in fields:
        if row.get(field) is None:
            raise DataFormatError(f"{at}: missing field {field!r}")


def _optional(row: dict, field: str, default: Any) -> Any:
    value = row.get(field)
    return default if value is None else value


def _check_label(value: Any, field: str, at: str) -> float:
    """A 0/1 (bool or int) or soft float label in [0, 1]."""
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0 <= value <= 1:
        raise DataFormatError(f"{at}: field {field!r} must be 0/1, true/false or a number in [0, 1], got {value!r}")
    return float(value)


# -- Generic outcome-labelled data ----------------------------------------------------------------------------------


def load_outcome(path: str, splits: Sequence[str] | None = None) -> list[dict]:
    """Outcome-labelled rows: ``{"question": str, "solution": str}`` or ``{"question": str, "steps": [str, ...]}``,
    plus ``"label"``: 0/1, true/false, or a soft value in [0, 1] (1 = the final answer is right). Rows without a
    label load with ``outcome_label`` None (scoring needs none; the trainers refuse them by name).

    Optional fields: ``"id"`` (default ``"{group}-{row}"``), ``"group"`` (default: the file name without extension,
    or the split name), ``"truncated"`` (bool -> ``rollout_truncated``), ``"step_labels"`` (with ``steps`` only;
    numbers in [0, 1] or null; ``first_error`` is then the first label below 0.5). ``path``: see ``read_rows``.
    """
    records = []
    for group, i, at, row in read_rows(path, splits):
        _require(row, ("question",), at)
        if (row.get("steps") is None) == (row.get("solution") is None):
            raise DataFormatError(f"{at}: exactly one of the fields 'steps' and 'solution' must be given")
        truncated = _optional(row, "truncated", False)
        if not isinstance(truncated, bool):
            raise DataFormatError(f"{at}: field 'truncated' must be true or false, got {truncated!r}")
        step_labels = row.get("step_labels")
        if step_labels is not None and row.get("steps") is None:
            raise DataFormatError(f"{at}: field 'step_labels' needs 'steps' (labels are per given step)")
        record = make_record(
            id=_optional(row, "id", f"{group}-{i}"),
            group=_optional(row, "group", group),
            question=row["question"],
            steps=row.get("steps"),
            solution=row.get("solution"),
            outcome_label=None if row.get("label") is None else _check_label(row["label"], "label", at),
            step_labels=step_labels,
            rollout_truncated=truncated,
            where=at,
        )
        if record["step_labels"] is not None:
            record["first_error"] = first_error_from_labels(record["step_labels"])
        records.append(record)
    return records


# -- TRL stepwise supervision ---------------------------------------------------------------------------------------


def load_trl(path: str, splits: Sequence[str] | None = None) -> list[dict]:
    """TRL stepwise supervision (``PRMTrainer``'s format): ``{"prompt": str, "completions": [str, ...],
    "labels": [bool | float, ...]}`` -> ``question``, ``steps``, ``step_labels``.

    Float labels are kept as they are (TRL itself casts them with ``int()``; we do not). The outcome label is
    ``"outcome_label"`` when a row has that field, else the lowest step label ("all steps correct": 1 only when
    every step is labelled 1). ``first_error`` is the first step labelled below 0.5. ``"id"`` and ``"group"`` are
    read when present. ``path``: a ``.jsonl`` file or folder, a saved ``datasets`` folder, or a Hub id (for
    example ``trl-lib/math_shepherd``); see ``read_rows``.
    """
    return [trl_record(row, at, f"{group}-{i}", group) for group, i, at, row in read_rows(path, splits)]


def trl_record(row: dict, at: str, default_id: str, group: str = "") -> dict:
    """One TRL stepwise-supervision row -> a record (the rule of `load_trl`)."""
    _require(row, ("prompt", "completions"), at)
    completions, labels = row["completions"], row.get("labels")
    if not isinstance(row["prompt"], str):
        raise DataFormatError(f"{at}: only TRL's standard (string) prompts are supported, not conversational ones")
    if not isinstance(completions, list) or not completions:
        raise DataFormatError(f"{at}: field 'completions' must be a non-empty list of strings")
    if labels is None:  # unlabelled rows: fine to score; the trainers refuse them by name
        return make_record(id=_optional(row, "id", default_id), group=_optional(row, "group", group),
                           question=row["prompt"], steps=completions, where=at)
    if not isinstance(labels, list) or len(labels) != len(completions):
        raise DataFormatError(
            f"{at}: field 'labels' must be a list with one label per completion ({len(completions)}), got {labels!r}"
        )
    step_labels = [_check_label(label, f"labels[{k}]", at) for k, label in enumerate(labels)]
    outcome = row.get("outcome_label")
    outcome = min(step_labels) if outcome is None else _check_label(outcome, "outcome_label", at)
    return make_record(
        id=_optional(row, "id", default_id),
        group=_optional(row, "group", group),
        question=row["prompt"],
        steps=completions,
        outcome_label=outcome,
        step_labels=step_labels,
        first_error=first_error_from_labels(step_labels),
        rollout_truncated=bool(row.get("rollout_truncated", False)),
        where=at,
    )


def as_record(row: dict, where: str) -> dict:
    """A record from a row of any in-memory form the trainers take: a record (fields it leaves out get their
    defaults; ``id`` defaults to ``where``) or a TRL stepwise-supervision row ``{"prompt", "completions",
    "labels"}`` (`trl_record`: the outcome label is ``outcome_label`` if present, else the lowest step label)."""
    if "question" in row:
        return {**{field: None for field in RECORD_FIELDS}, "group": "", "rollout_truncated": False, "id": where, **row}
    if "prompt" in row and "completions" in row:
        return trl_record(row, where, where)
    raise DataFormatError(
        f"{where}: a row needs 'question' and 'steps' or 'solution' (a modeling_sprm.data record), or 'prompt' and "
        f"'completions' (TRL stepwise supervision); it has {sorted(row)}"
    )


def to_trl(records: Iterable[dict]) -> list[dict]:
    """Records -> TRL stepwise-supervision rows ``{"prompt", "completions", "labels"}`` (float labels kept).

    TRL has no "unknown" label, so only the steps before the first unknown one are kept (ProcessBench-style labels
    ``[1, 1, 0, None]`` -> 3 completions). Records without step labels raise.
    """
    rows = []
    for record in records:
        labels = record.get("step_labels")
        if record.get("steps") is None or labels is None:
            raise DataFormatError(f"record {record.get('id')!r}: TRL rows need `steps` with `step_labels`")
        known = next((i for i, label in enumerate(labels) if label is None), len(labels))
        if known == 0:
            raise DataFormatError(f"record {record.get('id')!r}: the first step has no label")
        rows.append(
            {"prompt": record["question"], "completions": record["steps"][:known], "labels": list(labels[:known])}
        )
    return rows


# -- ProcessBench -------------------------------------------------------------------------------------------------

PROCESSBENCH_SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")


def _processbench_rows(path: str, splits: Iterable[str]) -> Iterable[tuple[str, int, str, dict]]:
    root = Path(path)
    if root.is_file():  # one split file
        yield from ((root.stem, *item) for item in file_rows(root))
        return
    for split in splits:
        if root.is_dir():
            file = root / f"{split}.json"
            if not file.is_file():
                raise FileNotFoundError(f"ProcessBench split file {file} not found")
            yield from ((split, *item) for item in file_rows(file))
        else:  # a Hub id such as "Qwen/ProcessBench"
            from datasets import load_dataset

            for i, row in enumerate(load_dataset(path, split=split)):
                yield split, i, f"{path}[{split}] row {i}", row


def load_processbench(path: str = "Qwen/ProcessBench", splits: Iterable[str] = PROCESSBENCH_SPLITS) -> list[dict]:
    """ProcessBench (Qwen/ProcessBench): ``problem``, ``steps``, ``final_answer_correct`` -> outcome label,
    ``label`` (index of the earliest wrong step, -1 if none) -> step labels and ``first_error``.

    ``path``: a folder with ``{split}.json`` files, one such file, or a Hub id. Whitespace-only steps are
    dropped, with ``label`` moved accordingly. Group = the split.
    """
    records = []
    for split, i, at, row in _processbench_rows(path, splits):
        _require(row, ("problem", "steps", "final_answer_correct", "label"), at)
        steps, label = row["steps"], row["label"]
        if not isinstance(steps, list):
            raise DataFormatError(f"{at}: field 'steps' must be a list of strings")
        if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < max(len(steps), 1):
            raise DataFormatError(f"{at}: field 'label' must be -1 or a step index < {len(steps)}, got {label!r}")
        if not isinstance(row["final_answer_correct"], bool):
            raise DataFormatError(f"{at}: field 'final_answer_correct' must be true or false")
        steps, label = drop_empty_steps(steps, label)
        records.append(
            make_record(
                id=row.get("id", f"{split}-{i}"),
                group=split,
                question=row["problem"],
                steps=steps,
                outcome_label=float(row["final_answer_correct"]),
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
    (one upstream row has one) are dropped, with ``mistake_index`` moved accordingly; a null ``answer`` (one
    upstream row) counts as wrong. Group = the task.
    """
    records = []
    for task in tasks:
        file = Path(path) / f"{task}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"BIG-Bench Mistake task file {file} not found")
        for i, at, row in file_rows(file):
            _require(row, ("input", "steps", "target"), at)
            for field in ("answer", "mistake_index"):  # null is a value here: no answer / no mistake
                if field not in row:
                    raise DataFormatError(f"{at}: missing field {field!r}")
            steps = _bbm_steps(row["steps"], at)
            mistake = row["mistake_index"]
            first_error = -1 if mistake is None else mistake
            if isinstance(first_error, bool) or not isinstance(first_error, int) or not -1 <= first_error < len(steps):
                raise DataFormatError(f"{at}: field 'mistake_index' must be null or a step index, got {mistake!r}")
            steps, first_error = drop_empty_steps(steps, first_error)
            answer = row["answer"]  # null when the trace gave no answer (one upstream row): wrong
            correct = answer is not None and " ".join(str(answer).split()) == " ".join(str(row["target"]).split())
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


# -- PRMBench -----------------------------------------------------------------------------------------------------

# Item ids name the PRM800K part a problem comes from: prm_test_p1_*, prm_test_p2_*, prm_train_p1_*.
_PRMBENCH_SOURCE = re.compile(r"^prm_(test_p1|test_p2|train_p1)_\d+$")
PRMBENCH_SPLITS = {"test": ("test_p1", "test_p2"), "train": ("train_p1",), "all": ("test_p1", "test_p2", "train_p1")}


def _prmbench_files(path: str) -> list[Path]:
    root = Path(path)
    if root.is_file():
        return [root]
    if (root / "prmtest_classified").is_dir():
        root = root / "prmtest_classified"
    files = sorted(root.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no PRMBench .jsonl files in {root} (expected the prmtest_classified/ folder)")
    return files


def _prmbench_steps(process: Any, field: str, at: str) -> tuple[list[str], list[int | None]]:
    """The non-empty steps of a process, and for each original index its index among them (None if dropped)."""
    if not isinstance(process, list) or not all(isinstance(s, str) for s in process):
        raise DataFormatError(f"{at}: field {field!r} must be a list of strings")
    kept, index = [], []
    for step in process:
        index.append(len(kept) if step.strip() else None)
        if step.strip():
            kept.append(step)
    return kept, index


def load_prmbench(
    path: str,
    split: str = "all",
    group_by: str = "source",
    include_original: bool = True,
    misaligned: str = "skip",
) -> list[dict]:
    """PRMBench (ssmisya/PRMBench task data, built from PRM800K with GPT-4o-injected errors).

    Each row gives a record of its ``modified_question`` and ``modified_process``: the steps in ``error_steps``
    (1-indexed) are labelled 0, all others 1; ``first_error`` is the first of them. PRMBench does not say
    whether the final answer of a modified process is still right, so its outcome label is "the process has no
    error step": 0 with error steps, 1 without (the ``multi_solutions`` rows, correct alternative solutions).

    ``include_original``: as upstream's evaluation does, one all-correct record (outcome 1, ``first_error`` -1)
    per item from the ``original_process`` of its ``redundency`` row (the original PRM800K solution; the other
    error types reformat it slightly differently), id ``"correct_{idx}"``, error type ``"correct"``.

    Ids are ``"{classification}_{idx}"`` as upstream; a repeated id (5 ``multi_solutions`` rows) keeps its first
    row, as upstream does. ``split``: ``"test"`` keeps items built from PRM800K test problems (``prm_test_p1_*``,
    ``prm_test_p2_*``), ``"train"`` those from the ``train_p1_first400`` files, ``"all"`` both. The
    ``train_p1_first400`` files are part of the benchmark: train on them only if you evaluate on ``split="test"``
    alone. ``group_by``: ``"source"`` (``test_p1``, ``test_p2``, ``train_p1``: each holds both erroneous and
    correct records) or ``"category"`` (the error type: ``circular``, ..., ``multi_solutions``, ``correct``).

    ``misaligned``: about 100 upstream rows list an error step past the end of their process, so their labels
    may be shifted. ``"skip"`` leaves them out (with a warning naming how many), ``"keep"`` ignores the indices
    past the end as upstream's scorer does (``first_error`` is None when none is left), ``"error"`` raises.

    ``path``: the PRMBench data folder (holding ``prmtest_classified/``), that folder, or one ``.jsonl`` file
    (e.g. ``prmtest_classified_subset400/target_data.jsonl``). Whitespace-only steps are dropped; an error on
    one moves to the next step.
    """
    if split not in PRMBENCH_SPLITS:
        raise ValueError(f"split must be one of {sorted(PRMBENCH_SPLITS)}, got {split!r}")
    if group_by not in ("source", "category"):
        raise ValueError(f"group_by must be 'source' or 'category', got {group_by!r}")
    if misaligned not in ("skip", "keep", "error"):
        raise ValueError(f"misaligned must be 'skip', 'keep' or 'error', got {misaligned!r}")
    records, seen, skipped = [], set(), []
    for file in _prmbench_files(path):
        for _, at, row in file_rows(file):
            _require(row, ("modified_question", "modified_process", "error_steps", "idx", "classification"), at)
            idx, category = row["idx"], row["classification"]
            match = _PRMBENCH_SOURCE.match(idx) if isinstance(idx, str) else None
            if match is None:
                raise DataFormatError(f"{at}: field 'idx' must look like 'prm_test_p1_12', got {idx!r}")
            if not isinstance(category, str) or not category:
                raise DataFormatError(f"{at}: field 'classification' must be a non-empty string")
            source = match.group(1)
            if source not in PRMBENCH_SPLITS[split]:
                continue
            steps, index = _prmbench_steps(row["modified_process"], "modified_process", at)
            errors = row["error_steps"]
            if not isinstance(errors, list) or not all(_is_step_number(e) for e in errors):
                raise DataFormatError(f"{at}: field 'error_steps' must be a list of step numbers (from 1)")
            past_end = [e for e in errors if e > len(index)]
            if past_end:
                if misaligned == "error":
                    raise DataFormatError(
                        f"{at}: field 'error_steps' holds {past_end}, past the {len(index)} steps of "
                        "'modified_process' (pass misaligned='skip' or 'keep')"
                    )
                if misaligned == "skip":
                    skipped.append(f"{category}_{idx}")
                    continue
            wrong = sorted({_next_kept(index, e - 1) for e in errors if e <= len(index)} - {None})
            record_id = f"{category}_{idx}"
            if record_id not in seen:
                seen.add(record_id)
                records.append(
                    make_record(
                        id=record_id,
                        group=source if group_by == "source" else category,
                        question=row["modified_question"],
                        steps=steps,
                        outcome_label=0.0 if errors else 1.0,
                        step_labels=[0.0 if i in wrong else 1.0 for i in range(len(steps))],
                        first_error=wrong[0] if wrong else (-1 if not errors else None),
                        where=at,
                    )
                )
            if include_original and category == "redundency" and f"correct_{idx}" not in seen:
                _require(row, ("original_question", "original_process"), at)
                original, _ = _prmbench_steps(row["original_process"], "original_process", at)
                seen.add(f"correct_{idx}")
                records.append(
                    make_record(
                        id=f"correct_{idx}",
                        group=source if group_by == "source" else "correct",
                        question=row["original_question"],
                        steps=original,
                        outcome_label=1.0,
                        step_labels=[1.0] * len(original),
                        first_error=-1,
                        where=at,
                    )
                )
    if skipped:
        warnings.warn(
            f"PRMBench: left out {len(skipped)} rows whose 'error_steps' point past the end of 'modified_process' "
            f"(e.g. {', '.join(skipped[:3])}); pass misaligned='keep' to keep them as upstream does",
            stacklevel=2,
        )
    return records


def _is_step_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _next_kept(index: list[int | None], i: int) -> int | None:
    """Index among the kept steps of original step ``i``, or of the next kept step when ``i`` was dropped."""
    return next((k for k in index[i:] if k is not None), None)


# -- GSM8K --------------------------------------------------------------------------------------------------------

GSM8K_SPLITS = ("train", "test")
_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_reference(answer: str, at: str = "") -> tuple[list[str], str]:
    """A GSM8K ``answer`` -> (reference steps, final answer): the lines before ``#### <final answer>`` with the
    calculator annotations ``<<48/2=24>>`` removed and blank lines dropped, and the text after ``####``."""
    prefix = f"{at}: " if at else ""
    if not isinstance(answer, str):
        raise DataFormatError(f"{prefix}field 'answer' must be a string")
    body, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise DataFormatError(f"{prefix}field 'answer' must end with a '#### <final answer>' line")
    steps = [line for line in (_CALCULATOR.sub("", raw).strip() for raw in body.splitlines()) if line]
    if not steps:
        raise DataFormatError(f"{prefix}field 'answer' has no solution lines before '####'")
    return steps, final.strip()


def _gsm8k_rows(path: str, splits: Sequence[str] | None) -> Iterator[tuple[str, int, str, dict]]:
    root = Path(path)
    # A local file or folder as published (openai/grade-school-math: both splits by default), else a Hub id with
    # the "main" config (which has two splits: choose one).
    if root.is_dir() and splits is None:
        splits = GSM8K_SPLITS
    yield from read_rows(path, None if root.is_file() else splits, None if root.exists() else "main")


def load_gsm8k(path: str, splits: Sequence[str] | None = None, final_answer_step: bool = True) -> list[dict]:
    """GSM8K reference solutions as correct records: ``question``, steps = ``gsm8k_reference(answer)`` (plus
    ``"The answer is {final}."`` as the last step with ``final_answer_step``, so the solution states its answer
    the way generated ones do), outcome label 1, every step labelled 1. Group = the split; id ``"{split}-{row}"``.

    ``path``: the upstream folder (``train.jsonl``, ``test.jsonl``; both unless ``splits`` says), one such file, or
    a Hub id (``openai/gsm8k``; ``splits`` required: it has two).
    Grade generated solutions against the reference answers with ``grade_solution``; ``load_gsm8k_problems``
    gives the questions with their answers.
    """
    records = []
    for group, i, at, row in _gsm8k_rows(path, splits):
        _require(row, ("question", "answer"), at)
        steps, final = gsm8k_reference(row["answer"], at)
        if final_answer_step:
            steps = steps + [f"The answer is {final}."]
        records.append(
            make_record(
                id=f"{group}-{i}",
                group=group,
                question=row["question"],
                steps=steps,
                outcome_label=1.0,
                step_labels=[1.0] * len(steps),
                first_error=-1,
                where=at,
            )
        )
    return records


def load_gsm8k_problems(path: str, splits: Sequence[str] = ("test",)) -> list[dict]:
    """GSM8K questions to generate solutions for: ``[{"id", "group", "question", "answer"}]`` with ``answer`` the
    reference final answer (the text after ``####``); ids match ``load_gsm8k``'s."""
    problems = []
    for group, i, at, row in _gsm8k_rows(path, splits):
        _require(row, ("question", "answer"), at)
        if not isinstance(row["question"], str) or not row["question"].strip():
            raise DataFormatError(f"{at}: field 'question' must be a non-empty string")
        _, final = gsm8k_reference(row["answer"], at)
        problems.append({"id": f"{group}-{i}", "group": group, "question": row["question"], "answer": final})
    return problems


def grade_solution(solution_text: str, reference_answer: str, extractor: Any = "auto") -> float:
    """1.0 when the final answer of a generated solution matches the reference, else 0.0 (numbers compare by
    value: ``"1,000.0"`` matches ``"1000"``; no answer found counts as wrong).

    ``reference_answer``: the bare answer (``"18"``) or a whole GSM8K ``answer`` text ending in ``#### 18``.
    ``extractor``: ``"auto"`` (``\\boxed{}`` else GSM8K style), ``"gsm8k"``, ``"boxed"`` or a callable; see
    ``modeling_sprm.answers``.
    """
    if not isinstance(solution_text, str) or not isinstance(reference_answer, str):
        raise TypeError("solution_text and reference_answer must be strings")
    reference = extract_gsm8k_answer(reference_answer) if "####" in reference_answer else reference_answer.strip()
    return float(answers_match(get_extractor(extractor)(solution_text), reference))


LOADERS = {
    "outcome": load_outcome,
    "trl": load_trl,
    "processbench": load_processbench,
    "bbm": load_bbm,
    "prmbench": load_prmbench,
    "gsm8k": load_gsm8k,
}


# The argument through which each loader picks a part of its data (`load_records(split=...)`, ``--split``).
SPLIT_ARGUMENTS = {"bbm": "tasks", "prmbench": "split"}  # the others: splits


def load_records(path: str, format: str, split: str | None = None, **kwargs) -> list[dict]:
    """Load a data set in one of the supported formats (``LOADERS``) as records; ``kwargs`` go to the loader.

    ``split`` (``--split``) picks a part: a split of a Hub id or saved ``DatasetDict``, a file ``{split}.jsonl`` of a
    folder, a ProcessBench split, a BIG-Bench Mistake task, or PRMBench's ``test`` / ``train`` / ``all``; several,
    comma-separated (``"gsm8k,math"``), where the format allows it."""
    if format not in LOADERS:
        raise ValueError(f"unknown data format {format!r}; expected one of {sorted(LOADERS)}")
    if split is not None:
        name = SPLIT_ARGUMENTS.get(format, "splits")
        if name in kwargs:
            raise ValueError(f"give either split or {name}, not both")
        kwargs[name] = split if format == "prmbench" else [s.strip() for s in split.split(",") if s.strip()]
    return LOADERS[format](path, **kwargs)
