"""The ``sprm`` command line. Each subcommand parses its arguments and calls the package; no logic lives here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _fail(message: str) -> None:
    print(f"sprm: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _read_text_file(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _fail(f"cannot read {what} {path}: {err}")


# -- sprm score ---------------------------------------------------------------------------------------------------


def add_score_parser(subparsers) -> None:
    p = subparsers.add_parser("score", help="score a solution step by step")
    p.add_argument("--question", required=True, help="the question the solution answers")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--solution", help="the solution text (cut into steps at the model's delimiters)")
    source.add_argument("--solution-file", help="a UTF-8 file holding the solution text")
    source.add_argument("--steps-json", help='a JSON file holding a list of step strings, e.g. ["step 1", "step 2"]')
    p.add_argument("--model", help="SPRM folder or Hub id (default: the embedded SmolLM2 default)")
    p.add_argument("--threshold", type=float, default=0.5, help="a step below this is a predicted error (0.5)")
    p.add_argument("--quantization", choices=["4bit", "8bit"], help="load the backbone quantized (bitsandbytes)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run_score)


def run_score(args) -> None:
    if not 0.0 <= args.threshold <= 1.0:
        _fail(f"--threshold must be in [0, 1], got {args.threshold}")
    record = {"question": args.question}
    if args.steps_json:
        try:
            steps = json.loads(_read_text_file(args.steps_json, "--steps-json file"))
        except json.JSONDecodeError as err:
            _fail(f"--steps-json file {args.steps_json} is not valid JSON: {err}")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            _fail(f"--steps-json file {args.steps_json} must hold a non-empty JSON list of strings")
        record["steps"] = steps
    else:
        record["solution"] = args.solution if args.solution is not None else _read_text_file(args.solution_file, "--solution-file")

    from transformers import pipeline

    from .loading import load_model_and_tokenizer, untrained_head_warning

    model, tokenizer, name = load_model_and_tokenizer(args.model, quantization=args.quantization)
    if (warning := untrained_head_warning(model, name)) is not None:
        print(warning, file=sys.stderr)
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    try:
        result = scorer(record, threshold=args.threshold)
    except (TypeError, ValueError) as err:
        _fail(str(err))
    if result["truncated"]:
        print("warning: the input is longer than the model's context; steps after the cut are not scored", file=sys.stderr)
    if args.json:
        out = {
            "steps": [{"text": s["text"], "score": s["score"]} for s in result["steps"]],
            "score": result["score"],
            "first_error_step": result["first_error_step"],
            "model": name,
            "truncated": result["truncated"],
            "no_steps": result["no_steps"],
        }
        print(json.dumps(out, ensure_ascii=False))
        return
    print(format_score_table(result, name, args.threshold))


def format_score_table(result: dict, model_name: str, threshold: float) -> str:
    lines = [f"{'step':>4}  {'score':>6}  text"]
    for i, step in enumerate(result["steps"]):
        score = "  cut" if step["score"] is None else f"{step['score']:.3f}"
        marker = " <- first predicted error" if i == result["first_error_step"] else ""
        text = " ".join(step["text"].split())
        lines.append(f"{i:>4}  {score:>6}  {text[:100]}{'...' if len(text) > 100 else ''}{marker}")
    if result["no_steps"]:
        lines.append("(no steps found)")
    lines.append(f"solution score: {result['score']:.4f}   model: {model_name}   threshold: {threshold}")
    return "\n".join(lines)


# -- sprm train ---------------------------------------------------------------------------------------------------


def add_train_parser(subparsers) -> None:
    # The training flags come from SPRMTrainingArguments (HfArgumentParser), built only when `sprm train` runs.
    p = subparsers.add_parser(
        "train", help="train an SPRM head (run `sprm train --help` for all flags)", add_help=False
    )
    p.set_defaults(run=run_train, takes_extra_args=True)


def build_train_parser():
    from transformers import HfArgumentParser

    from .data import LOADERS
    from .trainer import LABEL_KINDS, SPRMTrainingArguments

    p = HfArgumentParser(
        SPRMTrainingArguments,
        prog="sprm train",
        description="Train an SPRM head and save a head-only checkpoint (plus training_log.json and "
        "score_curves.png) that `sprm score --model DIR` uses. The flags after the first group are "
        "SPRMTrainingArguments (transformers TrainingArguments plus the SPRM ones).",
    )
    g = p.add_argument_group("sprm train")
    g.add_argument("--data", required=True, help="the training data: a file, folder or Hub id (see --format)")
    g.add_argument("--format", required=True, choices=sorted(LOADERS), help="the data format (modeling_sprm.data)")
    g.add_argument("--labels", choices=LABEL_KINDS, default="outcome",
                   help="learn from outcome labels (SPRMTrainer, default) or step labels (StepSupervisedTrainer)")
    g.add_argument("--output", required=True, help="folder for the checkpoint (sets --output_dir)")
    g.add_argument("--model", help="a causal LM to put a fresh head on, or an SPRM to train further "
                   "(default: the embedded SmolLM2-135M-Instruct)")
    g.add_argument("--eval-data", help="held-out data in the same format, for the score curves and metrics")
    g.add_argument("--eval-fraction", type=float, default=0.0,
                   help="without --eval-data, hold out this fraction of --data (seeded by --seed)")
    g.add_argument("--limit", type=int, help="use only the first N records (quick runs)")
    g.add_argument("--resume", nargs="?", const="last", metavar="CHECKPOINT",
                   help="resume from a Trainer checkpoint folder (or the last one in --output)")
    return p


def run_train(args) -> None:
    import dataclasses

    from .trainer import SPRMTrainingArguments, train_head

    parser = build_train_parser()
    ns = parser.parse_args(args.extra)
    fields = {f.name for f in dataclasses.fields(SPRMTrainingArguments) if f.init}
    values = {k: v for k, v in vars(ns).items() if k in fields}
    values["output_dir"] = ns.output
    held_out = ns.eval_data is not None or ns.eval_fraction > 0
    if held_out and values["eval_strategy"] == "no":
        values["eval_strategy"] = "epoch"  # score curves on the held-out data after every epoch
    resume = ns.resume
    if resume == "last":
        from transformers.trainer_utils import get_last_checkpoint

        resume = get_last_checkpoint(ns.output) if Path(ns.output).is_dir() else None
        if resume is None:
            _fail(f"--resume: no checkpoint-* folder in {ns.output}")
    try:
        training_args = SPRMTrainingArguments(**values)
        train_head(
            training_args,
            data=ns.data,
            format=ns.format,
            labels=ns.labels,
            model_name_or_path=ns.model,
            eval_data=ns.eval_data,
            eval_fraction=ns.eval_fraction,
            limit=ns.limit,
            resume_from_checkpoint=resume,
        )
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))


# -----------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprm", description="Self-supervised process reward models (SPRMs).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_score_parser(subparsers)
    add_train_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    args.run(args)


if __name__ == "__main__":
    main()
