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


# -- sprm push ----------------------------------------------------------------------------------------------------


def add_push_parser(subparsers) -> None:
    p = subparsers.add_parser("push", help="upload a trained SPRM (and its demo Space) to the Hugging Face Hub")
    p.add_argument("--repo-id", required=True, help="the model repo, e.g. you/sprm-smollm2")
    p.add_argument("--space-id", help="also build the demo Space from demo/ and upload it here")
    p.add_argument("--private", action="store_true", help="create the repos as private")
    p.add_argument("--dry-run", metavar="DIR", help="write the repo folders to DIR/model and DIR/space; upload nothing")
    p.add_argument("--model", help="SPRM checkpoint folder (default: the shipped default head)")
    p.add_argument("--eval-results", help="evaluation results JSON for the card (default: MODEL/eval_results.json)")
    p.add_argument("--training-info", help="training description JSON for the card (default: MODEL/training.json)")
    p.add_argument("--demo-dir", help="the Space's source folder (default: demo/ of this checkout)")
    p.add_argument("--license", default="apache-2.0", help="license id for both cards (apache-2.0)")
    p.add_argument("--exist-ok", action="store_true", help="add a commit to repos that already exist")
    p.set_defaults(run=run_push)


def run_push(args) -> None:
    from .hub import HubError, push

    try:
        push(
            args.repo_id,
            model=args.model,
            space_id=args.space_id,
            private=args.private,
            dry_run=args.dry_run,
            exist_ok=args.exist_ok,
            eval_results=args.eval_results,
            training_info=args.training_info,
            demo_dir=args.demo_dir,
            license=args.license,
        )
    except HubError as err:
        _fail(str(err))


# -- sprm convert -------------------------------------------------------------------------------------------------


def add_convert_parser(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert released PRM checkpoints to and from SPRM checkpoints")
    families = p.add_subparsers(dest="family", required=True)
    dtype_help = "dtype of the converted backbone: auto (the checkpoint's), float32, bfloat16 or float16"
    for name, help_text in (
        ("metastone", "MetaStone-S1 / XBai-o4 folder (Qwen2 safetensors + score_module.pt) -> SPRM"),
        ("reasonflux", "ReasonFlux-PRM-1.5B style folder (causal LM + reward_head.pt) -> SPRM"),
        ("token-classification", "TRL token-classification PRM or Qwen2.5-Math-PRM layout -> SPRM"),
        ("to-metastone", "SPRM checkpoint -> MetaStone-S1 layout (backbone safetensors + score_module.pt)"),
    ):
        f = families.add_parser(name, help=help_text, description=help_text)
        f.add_argument("src", metavar="SRC_DIR", help="the source checkpoint folder")
        f.add_argument("dst", metavar="DST_DIR", help="where to write (must be empty or not exist)")
        if name == "to-metastone":
            f.add_argument("--head-dtype", help="dtype of score_module.pt (default: the dtype it was converted from)")
        else:
            dtypes = ["auto", "float32", "bfloat16", "float16"]
            f.add_argument("--dtype", default="auto", choices=dtypes, help=dtype_help)
        if name == "token-classification":
            f.add_argument("--separator", help='step separator (default: "<extra_0>" for a Qwen2.5-Math-PRM head, '
                           'else TRL\'s "\\n")')
            f.add_argument("--prompt", choices=["chat", "plain"], help="chat template or question + separator "
                           "(default: chat for a Qwen2.5-Math-PRM head, plain for TRL)")
            f.add_argument("--system-prompt", help="system turn of the chat prompt ('' for none; default: the "
                           "Qwen2.5-Math-PRM card's)")
            f.add_argument("--backbone-type", help="transformers model type of the backbone (e.g. qwen2) when "
                           "config.json names a custom one")
        f.set_defaults(run=run_convert)


def run_convert(args) -> None:
    from . import conversion

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


# -----------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprm", description="Self-supervised process reward models (SPRMs).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_score_parser(subparsers)
    add_push_parser(subparsers)
    add_convert_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
