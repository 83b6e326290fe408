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


def _add_quantization_argument(p) -> None:
    p.add_argument(
        "--quantization",
        choices=["4bit", "nf4", "fp4", "8bit"],
        help="load the backbone quantized with bitsandbytes (4bit = nf4); the SPRM head stays in float32",
    )


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
    _add_quantization_argument(p)
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


# -- sprm bon / sprm search: generate and score ---------------------------------------------------------------------


def _add_generation_arguments(p) -> None:
    p.add_argument("--question", required=True, help="the question to answer")
    p.add_argument("--model", help="SPRM folder or Hub id (default: the embedded SmolLM2 default)")
    _add_quantization_argument(p)
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (0.6, as MetaStone-S1)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (0.95, as MetaStone-S1)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling; 0 turns it off (default)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="repetition penalty (1.0: none)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="most tokens generated per candidate (512)")
    p.add_argument("--seed", type=int, help="seed the sampler, for reproducible candidates")
    p.add_argument(
        "--answer-extractor", default="auto", choices=["auto", "gsm8k", "boxed"],
        help="how final answers are read: \\boxed{} else GSM8K style (auto), GSM8K style, or \\boxed{} only",
    )
    p.add_argument("--threshold", type=float, help="a step below this is a predicted error (default: the model's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def add_bon_parser(subparsers) -> None:
    p = subparsers.add_parser("bon", help="Best-of-N: sample N candidates, score every step, pick the best")
    count = p.add_mutually_exclusive_group()
    count.add_argument("--mode", help="low, medium or high: N = 2, 8 or 32 candidates (MetaStone-S1); default low")
    count.add_argument("--num-candidates", type=int, help="sample this many candidates instead of a mode")
    p.add_argument("--batch-size", type=int, help="candidates per generate() call (default: all at once)")
    _add_generation_arguments(p)
    p.set_defaults(run=run_bon)


def add_search_parser(subparsers) -> None:
    p = subparsers.add_parser("search", help="SPRM-guided step-level beam search")
    p.add_argument("--beam-width", type=int, default=2, help="beams kept after each step (2)")
    p.add_argument("--num-continuations", type=int, default=4, help="continuations sampled per beam and step (4)")
    p.add_argument("--max-steps", type=int, default=32, help="most search rounds (32)")
    p.add_argument("--max-step-tokens", type=int, default=128, help="most tokens of one step (128)")
    _add_generation_arguments(p)
    p.set_defaults(run=run_search)


def _sampling_arguments(args) -> dict:
    return {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
    }


def _load_for_generation(args):
    from .loading import load_model_and_tokenizer, untrained_head_warning

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        _fail(f"--threshold must be in [0, 1], got {args.threshold}")
    model, tokenizer, name = load_model_and_tokenizer(args.model, quantization=args.quantization)
    if (warning := untrained_head_warning(model, name)) is not None:
        print(warning, file=sys.stderr)
    return model, tokenizer, name


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


def _run_generation(args, function, **kwargs) -> None:
    model, tokenizer, name = _load_for_generation(args)
    progress = _ProgressBar("generate")
    try:
        result = function(
            model, tokenizer, args.question, answer_extractor=args.answer_extractor, threshold=args.threshold,
            progress_callback=progress, **kwargs, **_sampling_arguments(args),
        )
    except (TypeError, ValueError) as err:
        _fail(str(err))
    finally:
        progress.close()
    if args.json:
        keep = ("text", "score", "answer", "truncated", "no_steps", "no_delimiter", "first_error_step")
        out = {k: v for k, v in result.items() if k not in ("candidates", "question")}
        out["candidates"] = [
            {**{k: c[k] for k in keep}, "steps": [{"text": s["text"], "score": s["score"]} for s in c["steps"]]}
            for c in result["candidates"]
        ]
        out["model"] = name
        print(json.dumps(out, ensure_ascii=False))
        return
    threshold = model.config.threshold if args.threshold is None else args.threshold
    print(format_generation_table(result, name, threshold))


def run_bon(args) -> None:
    from .generation import best_of_n

    _run_generation(args, best_of_n, mode=args.mode, num_candidates=args.num_candidates, batch_size=args.batch_size)


def run_search(args) -> None:
    from .generation import step_search

    _run_generation(
        args, step_search, beam_width=args.beam_width, num_continuations=args.num_continuations,
        max_steps=args.max_steps, max_step_tokens=args.max_step_tokens,
    )


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


# -----------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprm", description="Self-supervised process reward models (SPRMs).")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_score_parser(subparsers)
    add_bon_parser(subparsers)
    add_search_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
