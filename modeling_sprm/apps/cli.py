"""The ``sprm`` command line, made from dataclasses (TRL style).

Each subcommand is a `Command`: its argument dataclasses (parsed together by transformers' `HfArgumentParser`: the
subcommand's own dataclass, the shared `ModelArguments`, and `SamplingConfig` for the generating commands) and a
``run`` function that calls the package; no other logic lives here. Every flag exists as ``--snake_case`` and
``--kebab-case``. Every subcommand also reads its arguments from a YAML or JSON file (``sprm train config.yaml`` or
``--config config.yaml``; keys are the flag names, flags on the command line win).

Imports of torch and transformers happen inside the ``run`` functions, so ``sprm --help`` and ``sprm score --help``
start in a fraction of a second (``benchmarks/cli_startup.py`` measures it).

To add a subcommand: write a dataclass with one documented field per flag (``metadata={"help": ...}``), a
``run_<name>(args, model_args)`` function, and a `Command` in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

from ..arguments import ModelArguments
from ..steps import SCORE_SPANS

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class CommandError(Exception):
    """A user mistake: printed as ``sprm: error: <message>`` (exit status 2), never as a traceback."""


def _fail(message: str) -> None:
    raise CommandError(message)


def _read_text_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _fail(f"cannot read {what} {path}: {err}")


def _print_json(value: Any) -> None:
    """Print one strict JSON object: a NaN or infinity (which strict parsers reject) is an error, never printed."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        _fail(f"the result holds a non-finite number ({err}); no JSON is printed")
    print(text)


def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        _fail(f"--threshold must be in [0, 1], got {threshold}")


def load_scorer(model_args: ModelArguments, threshold: float | None = None):
    """The one model loading of the commands: check ``--threshold``, load (`loading.load_model`, which warns about
    an untrained head on stderr), return ``(model, tokenizer, name, threshold)`` with the model's threshold as the
    default."""
    _check_threshold(threshold)
    from ..loading import load_model

    model, tokenizer, name = load_model(model_args)
    return model, tokenizer, name, model.config.threshold if threshold is None else threshold


SPLIT_HELP = (
    "The part of the data to read: a split of a Hub id or saved DatasetDict (required when it has several), a file "
    "{split}.jsonl of a folder, a ProcessBench split, a BIG-Bench Mistake task, PRMBench test/train/all; "
    "comma-separated for several."
)


def _data_formats() -> list[str]:
    from ..data import LOADERS  # the standard library only: cheap

    return sorted(LOADERS)


# -- sprm score ---------------------------------------------------------------------------------------------------


@dataclass
class ScoreArguments:
    """``sprm score``: score a solution step by step, or every solution of a data set (``--data``)."""

    question: str | None = field(default=None, metadata={"help": "The question the solution answers."})
    solution: str | None = field(
        default=None, metadata={"help": "The solution text (cut into steps at the model's delimiters)."}
    )
    solution_file: str | None = field(default=None, metadata={"help": "A UTF-8 file holding the solution text."})
    steps_json: str | None = field(
        default=None, metadata={"help": 'A JSON file holding a list of step strings, e.g. ["step 1", "step 2"].'}
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "A step scoring below this is a predicted error (default: the model's, usually 0.5)."},
    )
    json: bool = field(default=False, metadata={"help": "Print one JSON object instead of a table."})
    data: str | None = field(
        default=None,
        metadata={"help": "Batch scoring: score every solution of this data set (file, folder, saved data set or Hub "
                  "id; labels not needed) into --output, one JSON line per solution (the --json object plus the "
                  "record's id). Resumes an interrupted run; runs sharded under torchrun / accelerate launch."},
    )
    format: str | None = field(
        default=None, metadata={"help": "--data's format (see modeling_sprm.data).", "choices": _data_formats()}
    )
    split: str | None = field(default=None, metadata={"help": SPLIT_HELP})
    limit: int | None = field(default=None, metadata={"help": "Score only the first N records of --data."})
    output: str | None = field(default=None, metadata={"help": "--data: the JSON-lines file to write (or resume)."})
    batch_size: int = field(default=8, metadata={"help": "--data: solutions per forward pass."})
    max_length: int | None = field(default=None, metadata={"help": "Longest input in tokens (default: the model's)."})


def _score_input(args: ScoreArguments) -> dict:
    if args.question is None:
        _fail("give --question (with --solution, --solution-file or --steps-json), or --data to score a data set")
    given = [name for name in ("solution", "solution_file", "steps_json") if getattr(args, name) is not None]
    if len(given) != 1:
        _fail("give exactly one of --solution, --solution-file, --steps-json")
    record = {"question": args.question}
    if args.steps_json:
        try:
            steps = json.loads(_read_text_file(args.steps_json, "--steps-json file"))
        except json.JSONDecodeError as err:
            _fail(f"--steps-json file {args.steps_json} is not valid JSON: {err}")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            _fail(f"--steps-json file {args.steps_json} must hold a non-empty JSON list of strings")
        record["steps"] = steps
    elif args.solution is not None:
        record["solution"] = args.solution
    else:
        record["solution"] = _read_text_file(args.solution_file, "--solution-file")
    return record


DATA_ONLY = ("format", "split", "limit", "output")


def run_score(args: ScoreArguments, model_args: ModelArguments) -> None:
    if args.data is not None:
        return run_score_data(args, model_args)
    if used := [name for name in DATA_ONLY if getattr(args, name) is not None]:
        _fail(f"--{used[0]} applies to batch scoring only (with --data)")
    record = _score_input(args)
    model, tokenizer, name, threshold = load_scorer(model_args, args.threshold)
    from ..evaluation.report import scoring_pipeline

    kwargs = {} if args.max_length is None else {"max_length": args.max_length}
    try:
        result = scoring_pipeline(model, tokenizer)(record, threshold=threshold, **kwargs)
    except (TypeError, ValueError) as err:
        _fail(str(err))
    if result.truncated:
        print("warning: the input is longer than the model's context; steps after the cut are not scored", file=sys.stderr)
    if result.unscored:
        print(f"warning: {len(result.unscored)} part(s) of the text are not scored (see \"unscored\")", file=sys.stderr)
    if args.json:
        _print_json(result.public_json(name))
        return
    print(format_score_table(result, name, threshold))


def distributed_environment() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as torchrun and accelerate launch set them (0, 1, 0 when run alone)."""
    import os

    return tuple(int(os.environ.get(name, default)) for name, default in
                 (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)))  # type: ignore[return-value]


def run_score_data(args: ScoreArguments, model_args: ModelArguments) -> None:
    """``sprm score --data``: see `modeling_sprm.evaluation.batch` for the rules (fixed batches, resume, shards)."""
    if used := [f"--{name}" for name in ("question", "solution", "solution_file", "steps_json")
                if getattr(args, name) is not None] + (["--json"] if args.json else []):
        _fail(f"{used[0]} does not go with --data (each line of --output is the --json object of one solution)")
    if args.format is None or args.output is None:
        _fail("--data needs --format and --output")
    if args.limit is not None and args.limit < 1:
        _fail(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        _fail(f"--batch-size must be >= 1, got {args.batch_size}")
    rank, world, local_rank = distributed_environment()
    records = _load_records(args.data, args.format, args.split, "--data")[: args.limit]
    if not records:
        _fail(f"--data {args.data} holds no records")
    output = Path(args.output)
    if output.is_dir() or not output.parent.is_dir():
        _fail(f"--output {output} must be a file in an existing folder")
    import torch

    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")  # barriers only: each process runs the model on its own device
        if model_args.device is None and model_args.device_map is None and torch.cuda.is_available():
            model_args.device = f"cuda:{local_rank}"
    from ..evaluation.batch import merge_parts, score_shard
    from ..evaluation.report import scoring_pipeline

    model, tokenizer, name, threshold = load_scorer(model_args, args.threshold)
    kwargs = {"threshold": threshold, **({} if args.max_length is None else {"max_length": args.max_length})}
    try:
        scored = score_shard(scoring_pipeline(model, tokenizer), records, output, name, args.batch_size, rank, world,
                             progress=rank == 0, **kwargs)
    except (TypeError, ValueError) as err:
        _fail(f"--data {args.data}: {err}")
    if world > 1:
        dist.barrier()
    if rank == 0:
        merge_parts(records, output)
        print(f"wrote {len(records)} scored solutions to {output} ({scored} scored by this run"
              f"{f' on process 0 of {world}' if world > 1 else ''})", file=sys.stderr)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def format_score_table(result: dict, model_name: str, threshold: float) -> str:
    lines = [f"{'step':>4}  {'score':>6}  text"]
    for i, step in enumerate(result["steps"]):
        score = "  cut" if step["score"] is None else f"{step['score']:.3f}"
        marker = " <- first predicted error" if i == result["first_error_step"] else ""
        text = " ".join(step["text"].split())
        lines.append(f"{i:>4}  {score:>6}  {text[:100]}{'...' if len(text) > 100 else ''}{marker}")
    if result["no_steps"]:
        lines.append("(no steps found)")
    from ..outputs import UNSCORED_REASONS

    for part in result.get("unscored", []):
        text = " ".join(part["text"].split())
        lines.append(f"not scored ({UNSCORED_REASONS[part['reason']]}), chars {part['start']}-{part['end']}: "
                     f"{text[:100]}{'...' if len(text) > 100 else ''}")
    lines.append(f"solution score: {result['score']:.4f}   model: {model_name}   threshold: {threshold}")
    return "\n".join(lines)


def _load_problems(path: str, split: str | None, limit: int | None, what: str) -> list[dict]:
    """`data.load_problems` for a command: a data error is a one-line ``sprm: error``."""
    from ..data import DataFormatError, load_problems

    if limit is not None and limit < 1:
        _fail(f"--limit must be >= 1, got {limit}")
    try:
        problems = load_problems(path, split.split(",") if split else None)[:limit]
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        _fail(f"cannot load {what} {path} as problems (question and answer): {err}")
    if not problems:
        _fail(f"{what} {path} holds no problems")
    return problems


# -- sprm bon / sprm search: generate and score ---------------------------------------------------------------------


@dataclass
class GenerateArguments:
    """What ``sprm bon`` and ``sprm search`` answer and how they report it."""

    question: str | None = field(default=None, metadata={"help": "The question to answer."})
    data: str | None = field(
        default=None,
        metadata={"help": "Answer every problem of this data set instead of --question (rows with 'question' or "
                  "'problem' and the reference 'answer', as for sprm label) and write one JSON line per problem to "
                  "--output (the --json object plus id, reference_answer and whether each pick is right); an "
                  "interrupted run resumes after the last complete line. At the end, the accuracy of the SPRM pick, "
                  "majority vote and SPRM-weighted vote with 95%% bootstrap intervals over problems goes to --output "
                  "with suffix .summary.json and as a bar chart to --output with suffix .png."},
    )
    split: str | None = field(default=None, metadata={"help": "--data: " + SPLIT_HELP})
    limit: int | None = field(default=None, metadata={"help": "--data: answer only the first N problems."})
    output: str | None = field(default=None, metadata={"help": "--data: the JSON-lines file to write (or resume)."})
    answer_extractor: Literal["auto", "gsm8k", "boxed"] = field(
        default="auto",
        metadata={"help": "How final answers are read: \\boxed{} else GSM8K style (auto), GSM8K style, or \\boxed{} only."},
    )
    threshold: float | None = field(
        default=None, metadata={"help": "A step scoring below this is a predicted error (default: the model's)."}
    )
    json: bool = field(default=False, metadata={"help": "Print one JSON object instead of a table."})


@dataclass
class BonArguments:
    """``sprm bon``: Best-of-N."""

    mode: str | None = field(
        default=None, metadata={"help": "low, medium or high: N = 2, 8 or 32 candidates (MetaStone-S1); default low."}
    )
    num_candidates: int | None = field(default=None, metadata={"help": "Sample this many candidates instead of a mode."})


@dataclass
class SearchArguments:
    """``sprm search``: SPRM-guided search over steps (``--method``)."""

    method: Literal["step", "beam", "dvts"] = field(
        default="step",
        metadata={"help": "step: generation.step_search (--beam-width beams kept, every finished one a candidate); "
                  "beam: search.beam_search and dvts: search.dvts (diverse verifier tree search), both with a budget "
                  "of --num-sequences sequences per round (beam: one subtree of N / M beams; dvts: N / M independent "
                  "subtrees of one beam; M = --num-continuations)."},
    )
    beam_width: int | None = field(
        default=None, metadata={"help": "--method step: beams kept after each step (default 2)."}
    )
    num_sequences: int | None = field(
        default=None,
        metadata={"help": "--method beam / dvts (needed there): N, the sequences sampled per round and question; a "
                  "multiple of --num-continuations, or fewer (then one beam with N continuations)."},
    )
    num_continuations: int = field(default=4, metadata={"help": "Continuations sampled per beam and step (M)."})
    max_steps: int = field(default=32, metadata={"help": "Most search rounds."})
    max_step_tokens: int = field(default=128, metadata={"help": "Most tokens of one step."})


class _ProgressBar:
    """A tqdm bar on stderr fed by the generation progress callback ``(stage, done, total)``."""

    def __init__(self, description: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(desc=description, unit="tok step", file=sys.stderr, leave=False)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.set_description(stage)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


GENERATION_KEYS = ("text", "score", "answer", "truncated", "no_steps", "no_delimiter", "first_error_step")


def _generation_json(result: dict, name: str) -> dict:
    """The ``--json`` object of a `best_of_n` / `step_search` result (candidates with their step texts and scores)."""
    out = {k: v for k, v in result.items() if k not in ("candidates", "question")}
    out["candidates"] = [
        {**{k: c[k] for k in GENERATION_KEYS}, "num_tokens": c["num_tokens"],
         **({"subtree": c["subtree"]} if "subtree" in c else {}),  # beam / dvts: the subtree it finished in
         "steps": [{"text": s["text"], "score": s["score"]} for s in c["steps"]]}
        for c in result["candidates"]
    ]
    out["model"] = name
    return out


def _run_generation(args: GenerateArguments, model_args: ModelArguments, sampling, function, **kwargs) -> None:
    if args.data is not None:
        _run_generation_data(args, model_args, sampling, function, **kwargs)
        return
    if args.question is None:
        _fail("give --question, or --data (with --output) to answer every problem of a data set")
    if used := [f"--{name}" for name in ("split", "limit", "output") if getattr(args, name) is not None]:
        _fail(f"{used[0]} applies to --data only")
    model, tokenizer, name, threshold = load_scorer(model_args, args.threshold)
    progress = _ProgressBar("generate")
    try:
        result = function(
            model, tokenizer, args.question, sampling=sampling, answer_extractor=args.answer_extractor,
            threshold=threshold, progress_callback=progress, **kwargs,
        )
    except (TypeError, ValueError) as err:
        _fail(str(err))
    finally:
        progress.close()
    if args.json:
        _print_json(_generation_json(result, name))
        return
    print(format_generation_table(result, name, threshold))


def _done_lines(output: Path, settings: dict) -> list[dict]:
    """The complete lines of an earlier run's ``output`` (a last line cut off by a kill is dropped from the file);
    an output written with other settings is an error, not mixed in."""
    if not output.is_file():
        return []
    done = []
    for line in output.read_text(encoding="utf-8").splitlines():
        try:
            done.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if done and done[0].get("settings") != settings:
        _fail(f"--output {output} holds answers made with other settings ({done[0].get('settings')}); give another "
              "--output or delete it")
    output.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in done), encoding="utf-8")
    return done


def _run_generation_data(args: GenerateArguments, model_args: ModelArguments, sampling, function, **kwargs) -> None:
    """``sprm bon --data`` / ``sprm search --data``: every problem answered, one JSON line each, resumable. Problem
    i is sampled with seed ``--seed + i`` (default --seed 0), so a resumed run gives what one run would."""
    if args.question is not None or args.json:
        _fail(f"{'--question' if args.question is not None else '--json'} does not go with --data (each line of "
              "--output is the --json object of one problem)")
    if args.output is None:
        _fail("--data needs --output (the JSON-lines file to write)")
    output = Path(args.output)
    if output.is_dir() or not output.parent.is_dir():
        _fail(f"--output {output} must be a file in an existing folder")
    if output.suffix == ".png" or output.name.endswith(".summary.json"):
        _fail(f"--output {output} must not end in .png or .summary.json (the figure and its numbers are written "
              "next to it under those suffixes)")
    problems = _load_problems(args.data, args.split, args.limit, "--data")
    ids = [p["id"] for p in problems]
    if len(set(ids)) != len(ids):
        _fail(f"--data {args.data}: problem ids repeat (e.g. {next(x for x in ids if ids.count(x) > 1)!r}); each line "
              "of --output is found again by its id")
    from dataclasses import asdict

    from tqdm.auto import tqdm

    from ..answers import answers_match
    from ..evaluation.report import PICKS, pick_accuracy_summary, plot_pick_accuracy

    model, tokenizer, name, threshold = load_scorer(model_args, args.threshold)
    settings = {"command": function.__name__, **kwargs, "sampling": asdict(sampling), "model": name,
                "threshold": threshold, "answer_extractor": args.answer_extractor}
    done = _done_lines(output, settings)
    done_ids = {d["id"] for d in done}
    base_seed = sampling.seed if sampling.seed is not None else 0
    with output.open("a", encoding="utf-8") as sink:
        for i, problem in enumerate(tqdm(problems, desc=function.__name__, file=sys.stderr)):
            if problem["id"] in done_ids:
                continue
            try:
                result = function(
                    model, tokenizer, problem["question"], sampling=replace(sampling, seed=base_seed + i),
                    answer_extractor=args.answer_extractor, threshold=threshold, **kwargs,
                )
            except (TypeError, ValueError) as err:
                _fail(f"--data {args.data} problem {problem['id']}: {err}")
            line = _generation_json(result, name)
            reference = problem["answer"]
            line.update(
                id=problem["id"], question=problem["question"], reference_answer=reference, settings=settings,
                generated_tokens=line.get("generated_tokens", sum(c["num_tokens"] for c in line["candidates"])),
                correct={pick: answers_match(result[f"{pick}_answer"], reference)
                         for pick in PICKS},
            )
            try:
                text = json.dumps(line, ensure_ascii=False, allow_nan=False)
            except ValueError as err:
                _fail(f"problem {problem['id']}: the result holds a non-finite number ({err}); not written")
            sink.write(text + "\n")
            sink.flush()  # a killed run loses at most the problem it was on
            done.append(line)
    done = [d for d in done if d["id"] in set(ids)]  # an earlier run may have answered more (a larger --limit)
    summary = pick_accuracy_summary(done)
    summary_path, figure_path = output.with_suffix(".summary.json"), output.with_suffix(".png")
    summary_path.write_text(json.dumps({**summary, "output": output.name, "settings": settings}, indent=2) + "\n",
                            encoding="utf-8")
    plot_pick_accuracy(summary, figure_path, function.__name__)
    accuracy = {pick: summary["accuracy"][pick]["mean"] for pick in PICKS}
    print(f"answered {len(done)} problems ({len(done) - len(done_ids & set(ids))} by this run): accuracy of the SPRM pick "
          f"{accuracy['sprm']:.3f}, majority vote {accuracy['majority']:.3f}, SPRM-weighted vote "
          f"{accuracy['weighted']:.3f}; wrote {output}, {summary_path.name} and {figure_path.name}", file=sys.stderr)


def run_bon(bon: BonArguments, args: GenerateArguments, sampling, model_args: ModelArguments) -> None:
    from ..generation import best_of_n

    _run_generation(args, model_args, sampling, best_of_n, mode=bon.mode, num_candidates=bon.num_candidates)


def _one_question(search_function: Callable) -> Callable:
    """`search.beam_search` / `search.dvts` (a list of questions in, a list of results out) as the one-question
    function `_run_generation` calls; its progress is tree_search's own bar of rounds."""

    def run(model, tokenizer, question: str, progress_callback=None, **kwargs):
        return search_function(model, tokenizer, [question], progress=progress_callback is not None, **kwargs)[0]

    run.__name__ = search_function.__name__  # names the command in --data's settings
    return run


def run_search(search: SearchArguments, args: GenerateArguments, sampling, model_args: ModelArguments) -> None:
    common = dict(num_continuations=search.num_continuations, max_steps=search.max_steps,
                  max_step_tokens=search.max_step_tokens)
    if search.method == "step":
        from ..generation import step_search

        if search.num_sequences is not None:
            _fail("--num_sequences applies to --method beam and dvts only (--method step keeps --beam_width beams)")
        if sampling.batch_size is not None:
            _fail("--batch_size applies to sprm bon and sprm search --method beam / dvts only (step search samples "
                  "every beam's continuations at once)")
        beam_width = 2 if search.beam_width is None else search.beam_width
        _run_generation(args, model_args, sampling, step_search, beam_width=beam_width, **common)
        return
    from ..search import beam_search, dvts

    if search.beam_width is not None:
        _fail(f"--beam_width applies to --method step only (--method {search.method} sets its beams from "
              "--num_sequences / --num_continuations)")
    if search.num_sequences is None:
        _fail(f"--method {search.method} needs --num_sequences (N, the sequences sampled per round and question)")
    # tree_search reads its batch size from its own argument, not from the SamplingConfig
    batch_size, sampling = sampling.batch_size, replace(sampling, batch_size=None)
    function = _one_question(beam_search if search.method == "beam" else dvts)
    _run_generation(args, model_args, sampling, function, num_sequences=search.num_sequences, batch_size=batch_size,
                    **common)


def format_generation_table(result: dict, model_name: str, threshold: float) -> str:
    lines = [f"{'rank':>4}  {'cand':>4}  {'score':>6}  {'steps':>5}  {'answer':>10}  flags"]
    for rank, i in enumerate(result["ranking"]):
        c = result["candidates"][i]
        flags = [flag for flag in ("truncated", "no_steps", "no_delimiter") if c[flag]]
        answer = "-" if c["answer"] is None else c["answer"]
        lines.append(f"{rank:>4}  {i:>4}  {c['score']:.4f}  {len(c['steps']):>5}  {answer[:10]:>10}  {' '.join(flags)}")
    best = result["candidates"][result["best"]]
    lines.append(f"\nbest candidate ({result['best']}), step by step:")
    lines.append(format_score_table(best, model_name, threshold))
    lines.append(
        f"SPRM answer: {result['sprm_answer']}   majority: {result['majority_answer']}   "
        f"SPRM-weighted: {result['weighted_answer']}   without an answer: {result['num_without_answer']}"
    )
    if "generated_tokens" in result:
        lines.append(f"generated tokens: {result['generated_tokens']}   rounds: {result['rounds']}")
    lines.append(f"model: {model_name}")
    return "\n".join(lines)


# -- sprm label: Monte-Carlo step labels ------------------------------------------------------------------------

LABEL_HELP = """Monte-Carlo step labels (Math-Shepherd): the policy (--model: an SPRM checkpoint, whose backbone is the
policy, or any causal LM; default the embedded one) samples --num-samples solutions per problem of --data (or labels
the problem's own 'solutions'), then finishes the solution K = --num-rollouts times from the end of every step.
A step's soft label (labels) is the share of finishes whose final answer matches the reference, its hard label
(hard_labels) whether any does. --output gets TRL stepwise rows, one chunk-XXXXX.jsonl per --chunk-size problems
(+ .safetensors with the step features captured while sampling): train on them with
`sprm train --data OUTPUT --format trl --labels step`. An interrupted run resumes at the first missing chunk;
under torchrun / accelerate launch each process labels every WORLD_SIZE-th chunk. Chunk c is sampled from seed
(--seed, default 0; c), so the labels do not depend on the number of processes. --batch-size: sequences per
generate() call (default 256). Rules: modeling_sprm.labeling."""


@dataclass
class LabelArguments:
    """``sprm label``: Monte-Carlo step labels for a data set of problems."""

    data: str = field(
        metadata={"help": "Problems with reference answers: a .jsonl/.json/.csv/.parquet file, a folder of them or a "
                  "Hub id, rows with 'question' (or 'problem') and 'answer' (a GSM8K '#### x' answer or the bare "
                  "answer); optional 'solutions' (a list of strings) to label instead of sampling."}
    )
    output: str = field(metadata={"help": "The folder to write the labelled chunks into (or to resume)."})
    num_rollouts: int = field(default=8, metadata={"help": "K: finishes sampled from the end of every step."})
    num_samples: int = field(default=1, metadata={"help": "Solutions sampled per problem (problems without 'solutions')."})
    split: str | None = field(default=None, metadata={"help": SPLIT_HELP})
    limit: int | None = field(default=None, metadata={"help": "Label only the first N problems."})
    chunk_size: int = field(default=16, metadata={"help": "Problems per chunk file (the unit of resuming and sharding)."})
    share_prefixes: bool = field(
        default=True, metadata={"help": "Identical step prefixes of one problem share their K finishes."}
    )
    answer_extractor: Literal["auto", "gsm8k", "boxed"] = field(
        default="auto",
        metadata={"help": "How final answers are read: \\boxed{} else GSM8K style (auto), GSM8K style, or \\boxed{} only."},
    )


def _load_policy(model_args: ModelArguments):
    """The SPRM checkpoint of ``--model``, or a fresh (unused) head on ``--model`` when it is a plain causal LM:
    labelling needs only the backbone, the feature layer and the step rules."""
    folder = Path(model_args.model) if model_args.model else None
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (TypeError, OSError, ValueError, AttributeError):  # no local folder, or a config load_model names
        model_type = None
    if model_type in (None, "sprm"):
        from ..loading import load_model

        return load_model(model_args, warn=False)
    import torch

    from ..loading import default_device, load_tokenizer, quantization_config, torch_dtype

    dtype = torch_dtype(model_args.dtype)
    kwargs = {k: v for k, v in (("dtype", dtype), ("device_map", model_args.device_map)) if v is not None}
    if model_args.quantization is not None:  # as loading.load_model_and_tokenizer
        compute = dtype if isinstance(dtype, torch.dtype) else torch.float32
        kwargs["quantization_config"] = quantization_config(model_args.quantization, compute)
    from ..modeling_sprm import SPRMForStepScoring

    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = SPRMForStepScoring.from_backbone(str(folder), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        _fail(f"cannot load --model {folder} as a causal LM: {' '.join(str(err).split())}")
    if model_args.device_map is None and model_args.quantization is None:
        model.to(model_args.device or default_device())
    return model, load_tokenizer(model, str(folder)), str(folder)


def run_label(args: LabelArguments, sampling, model_args: ModelArguments) -> None:
    for flag, value in (("--num-rollouts", args.num_rollouts), ("--num-samples", args.num_samples),
                        ("--chunk-size", args.chunk_size)):
        if value < 1:
            _fail(f"{flag} must be >= 1, got {value}")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        _fail(f"--output {output} is a file; expected a folder for the labelled chunks")
    problems = _load_problems(args.data, args.split, args.limit, "--data")
    given = sum(p.get("solutions") is not None for p in problems)
    if given and given != len(problems):
        _fail(f"--data {args.data}: {given} of {len(problems)} problems have 'solutions'; either all or none")
    rank, world, local_rank = distributed_environment()
    if world > 1 and model_args.device is None and model_args.device_map is None:
        import torch

        if torch.cuda.is_available():
            model_args.device = f"cuda:{local_rank}"
    model, tokenizer, name = _load_policy(model_args)
    from ..data import grade_solution
    from ..labeling import label_to_folder

    def grader(text: str, reference: str) -> bool:
        return grade_solution(text, reference, args.answer_extractor) == 1.0

    # Chunk c is seeded with (--seed, c) by label_to_folder: the labels do not depend on the number of processes.
    seed = sampling.seed if sampling.seed is not None else 0
    try:
        written = label_to_folder(
            model, tokenizer, problems, output, args.num_rollouts, chunk_size=args.chunk_size, seed=seed,
            progress=rank == 0, num_samples=args.num_samples, sampling=replace(sampling, seed=None), grader=grader,
            share_prefixes=args.share_prefixes, batch_size=sampling.batch_size or 256,
        )
    except (TypeError, ValueError) as err:
        _fail(f"--data {args.data}: {err}")
    rows = [json.loads(line) for path in written for line in path.read_text().splitlines()]
    steps = sum(len(r["labels"]) for r in rows)
    tokens = sum(r["num_tokens"] + r["rollout_tokens"] for r in rows)
    chunks = (len(problems) + args.chunk_size - 1) // args.chunk_size
    print(f"labelled {len(rows)} solutions ({steps} steps, {round(tokens)} generated tokens) in {len(written)} new "
          f"chunks of {chunks} with {name}{f' on process {rank} of {world}' if world > 1 else ''}; wrote {output}",
          file=sys.stderr)


# -- sprm eval ----------------------------------------------------------------------------------------------------

EVAL_HELP = """Evaluate a step scorer on a step-labelled data set: ProcessBench F1 (error_acc, correct_acc and their
harmonic mean), step AUROC and outcome AUROC, per group (split or task) and averaged over groups.

The threshold (a step scoring below it is a predicted error) is --threshold, else the model's config.threshold.
Tuning it on the test data is not allowed: it inflates the F1. To tune it, pass a separate (training) data set
with --threshold-from and --threshold-format; the threshold that maximises the F1 there is used on --data.

For <think>...</think> traces, --score-span think|response|both evaluates that span instead of the model's
config.score_span: a record given as steps is judged on the steps the span scores, with their labels and the first
error among them; run it once per span for a per-span report."""


@dataclass
class EvalArguments:
    """``sprm eval``: ProcessBench-style evaluation on a step-labelled data set."""

    data: str = field(metadata={"help": "Data folder or file (e.g. ../shared/data/processbench)."})
    format: str = field(metadata={"help": "Data format (see modeling_sprm.data).", "choices": _data_formats()})
    split: str | None = field(default=None, metadata={"help": SPLIT_HELP})
    threshold: float | None = field(
        default=None, metadata={"help": "A step below this is a predicted error (default: the model's threshold)."}
    )
    threshold_from: str | None = field(
        default=None,
        metadata={"help": "Choose the threshold on this separate (training) data set instead.", "metavar": "PATH"},
    )
    threshold_format: str | None = field(
        default=None, metadata={"help": "Format of --threshold-from (default: --format).", "choices": _data_formats()}
    )
    threshold_split: str | None = field(default=None, metadata={"help": "--split of --threshold-from."})
    limit: int | None = field(
        default=None, metadata={"help": "Evaluate at most this many records per group, drawn at random."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the --limit draw."})
    batch_size: int | None = field(
        default=None, metadata={"help": "At most this many solutions per forward pass (default: --max-batch-tokens only)."}
    )
    max_batch_tokens: int | None = field(
        default=None,
        metadata={"help": "Fill each forward pass with solutions of similar length up to this many tokens, padding "
                          "included (default: 4096 on CPU, 32768 on a GPU; benchmarks/scoring_speed.py)."},
    )
    max_length: int | None = field(default=None, metadata={"help": "Longest input in tokens (default: the model's)."})
    score_span: str | None = field(
        default=None,
        metadata={"help": "Evaluate this span of <think>...</think> traces (default: the model's config.score_span): "
                  "the steps, labels and first error of each record within the span.", "choices": list(SCORE_SPANS)},
    )
    json: bool = field(default=False, metadata={"help": "Print one JSON object instead of a table."})


def _load_records(path: str, format: str, split: str | None, what: str) -> list[dict]:
    """`data.load_records` for a command: a data error is a one-line ``sprm: error``."""
    from ..data import DataFormatError, load_records

    try:
        return load_records(path, format, split=split)
    except (DataFormatError, FileNotFoundError, ValueError) as err:
        _fail(f"cannot load {what} {path} as {format}: {err}")


def _load_eval_records(
    path: str, format: str, limit: int | None, seed: int, what: str, split: str | None = None
) -> list[dict]:
    from ..evaluation import sample_per_group

    records = _load_records(path, format, split, what)
    if not records:
        _fail(f"{what} {path} holds no records")
    return records if limit is None else sample_per_group(records, limit, seed)


def run_eval(args: EvalArguments, model_args: ModelArguments) -> None:
    _check_threshold(args.threshold)
    for flag, value in (("--batch-size", args.batch_size), ("--max-batch-tokens", args.max_batch_tokens)):
        if value is not None and value < 1:
            _fail(f"{flag} must be >= 1, got {value}")
    if args.threshold is not None and args.threshold_from:
        _fail("give either --threshold or --threshold-from, not both")
    if args.threshold_format and not args.threshold_from:
        _fail("--threshold-format needs --threshold-from")
    if args.limit is not None and args.limit < 1:
        _fail(f"--limit must be >= 1, got {args.limit}")
    if args.threshold_split and not args.threshold_from:
        _fail("--threshold-split needs --threshold-from")
    if args.threshold_from:
        test, tune = Path(args.data).resolve(), Path(args.threshold_from).resolve()
        # the same source is allowed only as two named, disjoint splits (e.g. a Hub id's train and test)
        other_split = (test == tune and bool(args.split) and bool(args.threshold_split)
                       and not set(args.split.split(",")) & set(args.threshold_split.split(",")))
        if (test == tune or test in tune.parents or tune in test.parents) and not other_split:
            _fail(f"--threshold-from {args.threshold_from} overlaps --data {args.data}: tuning the threshold on the "
                  "test data is not allowed; give a separate (training) data set, or another --threshold-split")
    records = _load_eval_records(args.data, args.format, args.limit, args.seed, "--data", args.split)
    model, tokenizer, name, threshold = load_scorer(model_args, args.threshold)
    from ..evaluation import choose_threshold_for_model, evaluate_model

    source = "--threshold" if args.threshold is not None else "config.threshold"
    if args.threshold_from:
        tune_format = args.threshold_format or args.format
        tune_records = _load_eval_records(args.threshold_from, tune_format, args.limit, args.seed, "--threshold-from",
                                          args.threshold_split)
        shared = {r["question"] for r in tune_records} & {r["question"] for r in records}
        if shared:
            print(f"warning: {len(shared)} questions of --threshold-from also appear in --data", file=sys.stderr)
        try:
            threshold = choose_threshold_for_model(
                model, tokenizer, tune_records, args.batch_size, args.max_length, args.max_batch_tokens, args.score_span
            )
        except ValueError as err:
            _fail(f"cannot choose a threshold on --threshold-from {args.threshold_from}: {err}")
        source = f"chosen on {args.threshold_from} ({tune_format})"
    try:
        report = evaluate_model(model, tokenizer, records, threshold, args.batch_size, args.max_length,
                                args.max_batch_tokens, args.score_span)
    except ValueError as err:  # step labels that cannot be aligned with the steps the span scores
        _fail(f"cannot evaluate --data {args.data}: {err}")
    span = args.score_span or model.config.score_span
    report = {**report.to_dict(), "threshold_source": source, "model": name, "data": args.data, "format": args.format,
              "split": args.split, "score_span": span}
    if args.json:
        _print_json(report)
    else:
        print(format_eval_table(report))


def format_eval_table(report: dict) -> str:
    def cell(value) -> str:
        return "     -" if value is None else f"{value:6.3f}"

    lines = [f"{'group':<20} {'n':>6}  {'error_acc':>9}  {'correct_acc':>11}  {'f1':>6}  {'step_auroc':>10}  "
             f"{'outcome_auroc':>13}"]
    rows = list(report["per_group"].items()) + [("mean over groups", report)]
    for group, m in rows:
        lines.append(f"{group or '(all)':<20} {m['n']:>6}  {cell(m['error_acc']):>9}  {cell(m['correct_acc']):>11}  "
                     f"{cell(m['f1']):>6}  {cell(m['step_auroc']):>10}  {cell(m['outcome_auroc']):>13}")
    lines.append(f"threshold: {report['threshold']:g} ({report['threshold_source']})   model: {report['model']}   "
                 f"span: {report['score_span']}")
    if report["truncated"]:
        lines.append(f"{report['truncated']} inputs were longer than the model's context: their steps after the cut "
                     "were not scored")
    return "\n".join(lines)


# -- sprm push ----------------------------------------------------------------------------------------------------


@dataclass
class PushArguments:
    """``sprm push``: upload a trained SPRM (and its demo Space) to the Hugging Face Hub."""

    repo_id: str = field(metadata={"help": "The model repo, e.g. you/sprm-smollm2."})
    space_id: str | None = field(default=None, metadata={"help": "Also build the demo Space and upload it here."})
    private: bool = field(default=False, metadata={"help": "Create the repos as private."})
    dry_run: str | None = field(
        default=None,
        metadata={"help": "Write the repo folders to DIR/model and DIR/space; upload nothing.", "metavar": "DIR"},
    )
    model: str | None = field(
        default=None, metadata={"help": "SPRM checkpoint folder (default: the shipped default head)."}
    )
    eval_results: str | None = field(
        default=None, metadata={"help": "Evaluation results JSON for the card (default: MODEL/eval_results.json)."}
    )
    training_info: str | None = field(
        default=None, metadata={"help": "Training description JSON for the card (default: MODEL/training.json)."}
    )
    demo_dir: str = field(
        default="demo",
        metadata={"help": "The Space's source folder (app.py, requirements.txt, README.md): demo/ of the repository."},
    )
    license: str = field(default="apache-2.0", metadata={"help": "License id for both cards."})
    exist_ok: bool = field(default=False, metadata={"help": "Add a commit to repos that already exist."})


def run_push(args: PushArguments) -> None:
    from .hub import HubError, push

    try:
        push(
            args.repo_id, model=args.model, space_id=args.space_id, private=args.private, dry_run=args.dry_run,
            exist_ok=args.exist_ok, eval_results=args.eval_results, training_info=args.training_info,
            demo_dir=args.demo_dir, license=args.license,
        )
    except HubError as err:
        _fail(str(err))


# -- sprm convert -------------------------------------------------------------------------------------------------

CONVERT_FAMILIES = {
    "metastone": "MetaStone-S1 / XBai-o4 folder (Qwen2 safetensors + score_module.pt) -> SPRM",
    "reasonflux": "ReasonFlux-PRM-1.5B style folder (causal LM + reward_head.pt) -> SPRM",
    "token-classification": "TRL token-classification PRM or Qwen2.5-Math-PRM layout -> SPRM",
    "to-metastone": "SPRM checkpoint -> MetaStone-S1 layout (backbone safetensors + score_module.pt)",
}
CONVERT_HELP = "sprm convert FAMILY SRC_DIR DST_DIR [flags]\n\n" + "\n".join(
    f"  {name:<21} {text}" for name, text in CONVERT_FAMILIES.items()
)


@dataclass
class ConvertArguments:
    """``sprm convert``: convert released PRM checkpoints to and from SPRM checkpoints."""

    family: Literal["metastone", "reasonflux", "token-classification", "to-metastone"] = field(
        metadata={"help": "The converter (also the first positional argument)."}
    )
    src: str = field(metadata={"help": "The source checkpoint folder (also the second positional argument)."})
    dst: str = field(
        metadata={"help": "Where to write, empty or not existing (also the third positional argument)."}
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "dtype of the converted backbone (auto: the checkpoint's)."}
    )
    head_dtype: str | None = field(
        default=None,
        metadata={"help": "to-metastone: dtype of score_module.pt (default: the dtype it was converted from)."},
    )
    separator: str | None = field(
        default=None,
        metadata={"help": 'token-classification: step separator (default: "<extra_0>" for a Qwen2.5-Math-PRM head, '
                  'else TRL\'s "\\n").'},
    )
    prompt: Literal["chat", "plain"] | None = field(
        default=None,
        metadata={"help": "token-classification: chat template or question + separator (default: chat for a "
                  "Qwen2.5-Math-PRM head, plain for TRL)."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "token-classification: system turn of the chat prompt ('' for none; default: the "
                  "Qwen2.5-Math-PRM card's)."},
    )
    backbone_type: str | None = field(
        default=None,
        metadata={"help": "token-classification: transformers model type of the backbone (e.g. qwen2) when "
                  "config.json names a custom one."},
    )


def _convert_positionals(argv: list[str]) -> list[str]:
    """``FAMILY SRC DST`` (the positional form) -> ``--family FAMILY --src SRC --dst DST``."""
    names, out = ["--family", "--src", "--dst"], []
    for i, token in enumerate(argv):
        if token.startswith("-") or not names:
            out.extend(argv[i:])
            break
        out += [names.pop(0), token]
    return out


def run_convert(args: ConvertArguments) -> None:
    from . import conversion

    only = {"to-metastone": ("head_dtype",), "token-classification": ("separator", "prompt", "system_prompt",
                                                                       "backbone_type")}  # fmt: skip
    for family, names in only.items():
        for name in names:
            if getattr(args, name) is not None and args.family != family:
                _fail(f"--{name} applies to `sprm convert {family}` only")
    if args.family == "to-metastone" and args.dtype != "auto":
        _fail("--dtype does not apply to to-metastone (use --head_dtype)")
    try:
        if args.family == "to-metastone":
            dst = conversion.export_metastone(args.src, args.dst, head_dtype=args.head_dtype)
        else:
            options = {"dtype": args.dtype}
            if args.family == "token-classification":
                options.update(separator=args.separator, prompt=args.prompt, backbone_type=args.backbone_type)
                if args.system_prompt is not None:
                    options["system_prompt"] = args.system_prompt
            dst = conversion.convert(args.family, args.src, args.dst, **options)
    except (conversion.ConversionError, OSError) as err:
        _fail(str(err))
    print(f"wrote {dst}")


# -- sprm demo ----------------------------------------------------------------------------------------------------


@dataclass
class DemoArguments:
    """``sprm demo``: start the web demo (Gradio) and serve it until Ctrl+C."""

    port: int = field(default=7860, metadata={"help": "Port to listen on."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0 serves the network)."})
    max_candidates: int | None = field(
        default=None, metadata={"help": "Largest Best-of-N a request may ask for (default 8)."}
    )


def run_demo(args: DemoArguments, model_args: ModelArguments) -> None:
    if not 0 < args.port < 65536:
        _fail(f"--port must be in 1..65535, got {args.port}")
    if args.max_candidates is not None and args.max_candidates < 1:
        _fail(f"--max-candidates must be at least 1, got {args.max_candidates}")
    model, tokenizer, name, _ = load_scorer(model_args)
    from .demo import DemoLimits, build_demo, hub_model_url, launch

    limits = DemoLimits() if args.max_candidates is None else DemoLimits(max_candidates=args.max_candidates)
    demo = build_demo(model, tokenizer, name, limits, model_card_url=hub_model_url(model_args.model))
    launch(demo, host=args.host, port=args.port)


# -- sprm train ---------------------------------------------------------------------------------------------------


def _train_dataclasses() -> tuple[type, ...]:
    from ..training.arguments import SPRMTrainingArguments
    from ..training.script import TrainScriptArguments

    return TrainScriptArguments, ModelArguments, SPRMTrainingArguments


def run_train(script_args, model_args: ModelArguments, training_args) -> None:
    from ..training.script import main as train

    try:
        train(script_args, model_args, training_args)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))


# -- commands, parsing, main ----------------------------------------------------------------------------------------


def _sampling_config() -> type:
    from ..generation import SamplingConfig

    return SamplingConfig


@dataclass
class Command:
    """A subcommand: its argument dataclasses (a function, so that their imports wait until the command runs), the
    function it runs with the parsed dataclasses, and how ``--help`` describes it."""

    help: str
    dataclasses: Callable[[], tuple[type, ...]]
    run: Callable[..., None]
    description: str | None = None
    rewrite_argv: Callable[[list[str]], list[str]] | None = None


COMMANDS: dict[str, Command] = {
    "score": Command("score a solution step by step", lambda: (ScoreArguments, ModelArguments), run_score),
    "bon": Command(
        "Best-of-N: sample N candidates, score every step, pick the best",
        lambda: (BonArguments, GenerateArguments, _sampling_config(), ModelArguments),
        run_bon,
    ),
    "search": Command(
        "SPRM-guided search over steps: step-level beam search, beam search or DVTS",
        lambda: (SearchArguments, GenerateArguments, _sampling_config(), ModelArguments),
        run_search,
    ),
    "label": Command(
        "Monte-Carlo step labels: finish every step prefix K times, label a step by the share of right finishes",
        lambda: (LabelArguments, _sampling_config(), ModelArguments),
        run_label,
        description=LABEL_HELP,
    ),
    "eval": Command(
        "ProcessBench-style evaluation on a step-labelled data set",
        lambda: (EvalArguments, ModelArguments),
        run_eval,
        description=EVAL_HELP,
    ),
    "push": Command(
        "upload a trained SPRM (and its demo Space) to the Hugging Face Hub", lambda: (PushArguments,), run_push
    ),
    "convert": Command(
        "convert released PRM checkpoints to and from SPRM checkpoints",
        lambda: (ConvertArguments,),
        run_convert,
        description=CONVERT_HELP,
        rewrite_argv=_convert_positionals,
    ),
    "demo": Command(
        "start the web demo (Gradio) and serve it until Ctrl+C", lambda: (DemoArguments, ModelArguments), run_demo
    ),
    "train": Command(
        "train an SPRM head (run `sprm train --help` for all flags)",
        _train_dataclasses,
        run_train,
        description="Train an SPRM head and save a head-only checkpoint (plus training_log.json and score_curves.png) "
        "that `sprm score --model DIR` uses. Flags: the data (TrainScriptArguments), the model (ModelArguments) and "
        "SPRMTrainingArguments (transformers' TrainingArguments plus the SPRM ones).",
    ),
}


def hf_argument_parser_class() -> type:
    """transformers' `HfArgumentParser`. Its module needs only the standard library and PyYAML, but ``import
    transformers`` takes 1.5-5 s on the project's machine (numpy, huggingface_hub, httpx), which is most of a
    ``--help``. So, when transformers is not imported yet, the module file is loaded on its own (the same class)."""
    if "transformers" not in sys.modules:
        try:
            spec = importlib.util.find_spec("transformers")
            path = Path(spec.origin).with_name("hf_argparser.py")
            module_spec = importlib.util.spec_from_file_location("_sprm_hf_argparser", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module.HfArgumentParser
        except (ImportError, AttributeError, OSError):  # a transformers whose parser module needs more
            pass
    from transformers import HfArgumentParser

    return HfArgumentParser


def _config_values(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The values of a YAML/JSON config file (JSON is YAML), keyed by flag name, checked against the parser."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        _fail(f"cannot read the config file {path}: {err}".splitlines()[0])
    if not isinstance(values, dict):
        _fail(f"the config file {path} must hold a mapping of flag names to values")
    values = {str(k).lstrip("-").replace("-", "_"): v for k, v in values.items()}
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - known - {"config"})
    if unknown:
        _fail(f"the config file {path} has unknown keys {unknown}")
    return values


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written, defaults shown after each flag's help."""


def parse_command(name: str, argv: list[str]) -> tuple:
    """Parse ``sprm NAME ARGV`` into the command's dataclasses. A config file (``ARGV[0]`` ending in .yaml, .yml or
    .json, or ``--config FILE``) gives defaults; flags on the command line override them."""
    command = COMMANDS[name]
    parser = hf_argument_parser_class()(
        command.dataclasses(),
        prog=f"sprm {name}",
        description=command.description or command.help,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML or JSON file of flag values (`sprm %s FILE.yaml` works too); "
        "flags on the command line win." % name,
    )
    config = None
    if argv and not argv[0].startswith("-") and argv[0].endswith(CONFIG_SUFFIXES):
        config, argv = argv[0], argv[1:]
    if "--config" in argv:
        at = argv.index("--config")
        if at + 1 >= len(argv):
            parser.error("argument --config: expected one argument")
        config, argv = argv[at + 1], argv[:at] + argv[at + 2 :]
    if command.rewrite_argv is not None:
        argv = command.rewrite_argv(argv)
    if config is not None:
        for key, value in _config_values(config, parser).items():
            for action in parser._actions:
                if action.dest == key:
                    action.default, action.required = value, False
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except (TypeError, ValueError) as err:  # a dataclass's own check (SamplingConfig, TrainingArguments)
        _fail(str(err))
    return tuple(p for p in parsed if not isinstance(p, argparse.Namespace))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: the list of commands (each command's flags come from `parse_command`)."""
    parser = argparse.ArgumentParser(prog="sprm", description="Self-supervised process reward models (SPRMs).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        subparsers.add_parser(name, help=command.help, add_help=False)
    return parser


def _check_utf8(argv: list[str]) -> None:
    """Arguments that are not valid UTF-8 reach Python with lone surrogates (PEP 383), which no tokenizer takes."""
    for i, value in enumerate(argv):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            flag = None if value.startswith("-") else next((a for a in reversed(argv[:i]) if a.startswith("--")), None)
            what = f"the value of {flag}" if flag else f"the argument {value.encode('utf-8', 'replace').decode()!r}"
            _fail(f"{what} is not valid UTF-8 (byte {err.object[err.start].encode('utf-8', 'surrogateescape')!r} at "
                  f"character {err.start}); expected UTF-8 text")


def _fault_errors() -> tuple[type, ...]:
    """The errors that are a damaged input, not a bug, of the modules imported so far (a module not imported
    raised nothing): `loading.ModelLoadError` (a model folder that cannot be loaded) and
    `outputs.NonFiniteScoreError` (a NaN or infinite score)."""
    package = __name__.rsplit(".", 2)[0]
    found = [(sys.modules.get(f"{package}.{module}"), name)
             for module, name in (("loading", "ModelLoadError"), ("outputs", "NonFiniteScoreError"))]  # fmt: skip
    return tuple(getattr(module, name) for module, name in found if module is not None)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv[:1])  # prints the help, or the error for an unknown command, and exits
    try:
        _check_utf8(argv)
        parsed = parse_command(argv[0], argv[1:])
        COMMANDS[argv[0]].run(*parsed)
    except CommandError as err:
        print(f"sprm: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:
        if not isinstance(err, _fault_errors()):
            raise
        print(f"sprm: error: {err}", file=sys.stderr)  # a damaged model or a NaN score: one line, no traceback
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
