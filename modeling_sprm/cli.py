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
    p.add_argument(
        "--threshold", type=float, help="a step below this is a predicted error (default: the model's, usually 0.5)"
    )
    _add_quantization_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run_score)


def run_score(args) -> None:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
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
    threshold = model.config.threshold if args.threshold is None else args.threshold
    try:
        result = scorer(record, threshold=threshold)
    except (TypeError, ValueError) as err:
        _fail(str(err))
    if result["truncated"]:
        print("warning: the input is longer than the model's context; steps after the cut are not scored", file=sys.stderr)
    if args.json:
        from .pipeline_sprm import score_json

        print(json.dumps(score_json(result, name), ensure_ascii=False))
        return
    print(format_score_table(result, name, threshold))


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


# -- sprm eval ----------------------------------------------------------------------------------------------------

EVAL_HELP = """Evaluate a step scorer on a step-labelled data set: ProcessBench F1 (error_acc, correct_acc and their
harmonic mean), step AUROC and outcome AUROC, per group (split or task) and averaged over groups.

The threshold (a step scoring below it is a predicted error) is --threshold, else the model's config.threshold.
Tuning it on the test data is not allowed: it inflates the F1. To tune it, pass a separate (training) data set
with --threshold-from and --threshold-format; the threshold that maximises the F1 there is used on --data."""


def add_eval_parser(subparsers) -> None:
    from .data import LOADERS

    p = subparsers.add_parser(
        "eval", help="ProcessBench-style evaluation on a step-labelled data set", description=EVAL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="SPRM folder or Hub id (default: the embedded SmolLM2 default)")
    p.add_argument("--data", required=True, help="data folder or file (e.g. ../shared/data/processbench)")
    p.add_argument("--format", required=True, choices=sorted(LOADERS), help="data format (see modeling_sprm.data)")
    threshold = p.add_mutually_exclusive_group()
    threshold.add_argument("--threshold", type=float, help="a step below this is a predicted error (default: the "
                           "model's config.threshold)")
    threshold.add_argument("--threshold-from", metavar="PATH", help="choose the threshold on this separate "
                           "(training) data set instead")
    p.add_argument("--threshold-format", choices=sorted(LOADERS), help="format of --threshold-from "
                   "(default: --format)")
    p.add_argument("--limit", type=int, help="evaluate at most this many records per group, drawn at random")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit draw (0)")
    p.add_argument("--batch-size", type=int, default=8, help="solutions per forward pass (8)")
    p.add_argument("--max-length", type=int, help="longest input in tokens (default: the model's)")
    _add_quantization_argument(p)
    p.add_argument("--device", help="where to run the model (default: cuda when available, else cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=run_eval)


def _load_eval_records(path: str, format: str, limit: int | None, seed: int, what: str) -> list[dict]:
    from .data import DataFormatError, load_records
    from .evaluation import sample_per_group

    try:
        records = load_records(path, format)
    except (DataFormatError, FileNotFoundError) as err:
        _fail(f"cannot load {what} {path} as {format}: {err}")
    if not records:
        _fail(f"{what} {path} holds no records")
    return records if limit is None else sample_per_group(records, limit, seed)


def run_eval(args) -> None:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        _fail(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.threshold_format and not args.threshold_from:
        _fail("--threshold-format needs --threshold-from")
    if args.limit is not None and args.limit < 1:
        _fail(f"--limit must be >= 1, got {args.limit}")
    if args.threshold_from:
        test, tune = Path(args.data).resolve(), Path(args.threshold_from).resolve()
        if test == tune or test in tune.parents or tune in test.parents:
            _fail(f"--threshold-from {args.threshold_from} overlaps --data {args.data}: tuning the threshold on the "
                  "test data is not allowed; give a separate (training) data set")
    records = _load_eval_records(args.data, args.format, args.limit, args.seed, "--data")

    import torch

    from .evaluation import choose_threshold_for_model, evaluate_model
    from .loading import load_model_and_tokenizer, untrained_head_warning

    model, tokenizer, name = load_model_and_tokenizer(args.model, quantization=args.quantization)
    if (warning := untrained_head_warning(model, name)) is not None:
        print(warning, file=sys.stderr)
    if args.quantization is None:
        model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threshold, source = args.threshold, "--threshold"
    if args.threshold_from:
        tune_format = args.threshold_format or args.format
        tune_records = _load_eval_records(args.threshold_from, tune_format, args.limit, args.seed, "--threshold-from")
        shared = {r["question"] for r in tune_records} & {r["question"] for r in records}
        if shared:
            print(f"warning: {len(shared)} questions of --threshold-from also appear in --data", file=sys.stderr)
        try:
            threshold = choose_threshold_for_model(model, tokenizer, tune_records, args.batch_size, args.max_length)
        except ValueError as err:
            _fail(f"cannot choose a threshold on --threshold-from {args.threshold_from}: {err}")
        source = f"chosen on {args.threshold_from} ({tune_format})"
    elif threshold is None:
        threshold, source = model.config.threshold, "config.threshold"
    report = evaluate_model(model, tokenizer, records, threshold, args.batch_size, args.max_length)
    report.update(threshold_source=source, model=name, data=args.data, format=args.format)
    if args.json:
        print(json.dumps(report))
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
    lines.append(f"threshold: {report['threshold']:g} ({report['threshold_source']})   model: {report['model']}")
    if report["truncated"]:
        lines.append(f"{report['truncated']} inputs were longer than the model's context: their steps after the cut "
                     "were not scored")
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


# -- sprm demo ----------------------------------------------------------------------------------------------------


def add_demo_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="start the web demo (Gradio) and serve it until Ctrl+C")
    p.add_argument("--model", help="SPRM folder or Hub id (default: the embedded SmolLM2 default)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1; 0.0.0.0 serves the network)")
    p.add_argument("--max-candidates", type=int, help="largest Best-of-N a request may ask for (default 8)")
    _add_quantization_argument(p)
    p.set_defaults(run=run_demo)


def run_demo(args) -> None:
    if not 0 < args.port < 65536:
        _fail(f"--port must be in 1..65535, got {args.port}")
    if args.max_candidates is not None and args.max_candidates < 1:
        _fail(f"--max-candidates must be at least 1, got {args.max_candidates}")
    from .demo import DemoLimits, build_demo, hub_model_url, launch
    from .loading import load_model_and_tokenizer, untrained_head_warning

    model, tokenizer, name = load_model_and_tokenizer(args.model, quantization=args.quantization)
    if (warning := untrained_head_warning(model, name)) is not None:
        print(warning, file=sys.stderr)
    limits = DemoLimits() if args.max_candidates is None else DemoLimits(max_candidates=args.max_candidates)
    demo = build_demo(model, tokenizer, name, limits, model_card_url=hub_model_url(args.model))
    launch(demo, host=args.host, port=args.port)


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
    add_bon_parser(subparsers)
    add_search_parser(subparsers)
    add_eval_parser(subparsers)
    add_push_parser(subparsers)
    add_convert_parser(subparsers)
    add_demo_parser(subparsers)
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
