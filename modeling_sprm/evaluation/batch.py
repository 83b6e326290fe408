"""Scoring a whole data set into a JSON-lines file (``sprm score --data``): one line per solution, resumable, and
sharded over several processes (``torchrun`` / ``accelerate launch``) with the same file as one process gives.

Rules:

* One output line per record, in input order: ``{"id": <record id>, **ScoredSolution.public_json(model)}`` (the
  object ``sprm score --json`` prints, plus the record's id). Labels are not needed.
* **Batches are fixed by the input alone**: the records are ordered by length (similar lengths together, less
  padding) and cut into batches of ``batch_size``; batch ``b`` is scored by process ``b % world_size``. So a
  record is scored in the same padded batch whatever the number of processes, and an interrupted run redoes a
  batch with its full membership: the numbers do not depend on how the work was split or resumed.
* **Resumable, no duplicates, no lost lines**: each process appends the lines of a finished batch to its own part
  file (``OUTPUT.parts/rank-R-of-W.jsonl``) in one write, flushed to disk. On a restart, the ids in ``OUTPUT`` and in
  every part file are done; an unterminated last line (a write cut by a kill) is dropped. When every process is
  done, process 0 writes ``OUTPUT`` in input order to a temporary file, renames it into place (atomic), and removes
  the parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

PARTS_SUFFIX = ".parts"


def record_input(record: dict) -> dict:
    """The step-scoring pipeline input of a record (`modeling_sprm.data`): its question and steps or solution."""
    return {"question": record["question"], "steps": record["steps"], "solution": record["solution"]}


def record_length(record: dict) -> int:
    """Characters of a record's question and solution: a cheap stand-in for its token count."""
    return len(record["question"]) + sum(map(len, record["steps"] or [record["solution"] or ""]))


def batches_by_length(records: Sequence[dict], batch_size: int) -> list[list[int]]:
    """Record indices cut into batches of ``batch_size`` after a stable sort by text length (a function of the input
    only, so every process and every resumed run agrees on it)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(records)), key=lambda i: record_length(records[i]))
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def read_done(path: Path) -> dict[str, str]:
    """``{id: line}`` of the complete lines of a JSON-lines output file; an unterminated last line (a write cut by a
    kill) is cut off the file, so that appending starts on a fresh line."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
    done = {}
    for number, line in enumerate(data[:end].decode("utf-8").splitlines()):
        if line.strip():
            try:
                done[str(json.loads(line)["id"])] = line
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{path} line {number} is not a scored record (JSON with an 'id'); not resuming "
                                 "into a file this command did not write") from None
    return done


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + PARTS_SUFFIX)


def done_lines(output: Path) -> dict[str, str]:
    """Every finished line so far: the output file's and all part files' (of any earlier number of processes)."""
    done = read_done(output)
    folder = parts_folder(output)
    if folder.is_dir():
        for part in sorted(folder.glob("*.jsonl")):
            done.update(read_done(part))
    return done


def score_shard(
    scorer,
    records: Sequence[dict],
    output: str | os.PathLike,
    model_name: str,
    batch_size: int = 8,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    **pipeline_kwargs,
) -> int:
    """Score this process's batches of ``records`` that are not done yet, appending to its part file; returns the
    number of records scored now. ``scorer``: a step-scoring pipeline; ``pipeline_kwargs`` go to its calls.
    ``on_batch(n)`` is called after each written batch (tests interrupt a run with it)."""
    output = Path(output)
    ids = [str(r["id"]) for r in records]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"record id {duplicate!r} appears more than once: scoring resumes by id, so ids must be unique")
    done = done_lines(output)
    mine = [b for k, b in enumerate(batches_by_length(records, batch_size)) if k % world_size == rank]
    todo = [b for b in mine if any(ids[i] not in done for i in b)]
    folder = parts_folder(output)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"rank-{rank}-of-{world_size}.jsonl"
    read_done(part)  # cuts an unterminated last line before appending
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum(len(b) for b in mine)
        bar = tqdm(total=total, initial=total - sum(len(b) for b in todo), unit="solution",
                   desc="scoring" if world_size == 1 else f"scoring (process {rank} of {world_size})")
    scored = 0
    with part.open("a", encoding="utf-8") as handle:
        for batch in todo:
            results = scorer([record_input(records[i]) for i in batch], batch_size=len(batch), **pipeline_kwargs)
            lines = [json.dumps({"id": ids[i], **result.public_json(model_name)}, ensure_ascii=False)
                     for i, result in zip(batch, results) if ids[i] not in done]
            handle.write("".join(line + "\n" for line in lines))  # one write per batch, then to disk
            handle.flush()
            os.fsync(handle.fileno())
            scored += len(lines)
            if bar is not None:
                bar.update(len(batch))
            if on_batch is not None:
                on_batch(scored)
    if bar is not None:
        bar.close()
    return scored


def merge_parts(records: Sequence[dict], output: str | os.PathLike) -> Path:
    """Write ``output`` with one line per record in input order from the finished lines (output + part files), via a
    temporary file renamed into place, then remove the part files. Raises when a record has no line yet."""
    output = Path(output)
    done = done_lines(output)
    missing = [str(r["id"]) for r in records if str(r["id"]) not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} records are not scored yet (e.g. {missing[0]!r}); run the command again "
                           "to finish them")
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write("".join(done[str(r["id"])] + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, output)
    folder = parts_folder(output)
    if folder.is_dir():
        for part in folder.glob("*.jsonl"):
            part.unlink()
        folder.rmdir()
    return output
