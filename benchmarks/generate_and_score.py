"""Generate and score with SmolLM2-135M-Instruct on CPU, each comparison measured side by side in one run:

* ``timing``: Best-of-N scored from the features captured while sampling (``best_of_n``) against generating only,
  and against generating and then re-encoding every candidate (batched, and one text at a time as MetaStone-S1's
  released scorer does). The same seeds give the same tokens in every arm (checked).
* ``batched``: the step-scoring pipeline on 64 GSM8K reference solutions with padding (batch_size 16 and 64)
  against one solution per call.
* ``quantization``: backbone memory of 8-bit, 4-bit nf4 and 4-bit fp4 against float32, and agreement of their
  scores with float32 (Spearman over steps and over solutions; Best-of-N picks over groups of sampled candidates).

The head is the embedded default's: untrained and seeded unless a trained default head ships, so scores are
meaningless as judgements; speed, memory and agreement are what is measured.

    python -m benchmarks.generate_and_score [--gsm8k PATH] [--sections timing batched quantization]

Each section updates ``benchmarks/results/generate_and_score.json``.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
from scipy.stats import spearmanr
from transformers import pipeline

from benchmarks._common import gsm8k_path, RESULTS, Timer, finished, load_gsm8k, machine, write_result
from modeling_sprm.generation import SamplingConfig, best_of_n, eos_token_ids, prompt_rollout
from modeling_sprm.loading import load_model_and_tokenizer

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def generate_only(model, tokenizer, question: str, n: int, sampling: SamplingConfig, seed: int) -> list[str]:
    """Plain ``generate()`` with the same prompt and arguments as ``best_of_n``, decoded up to the EOS token."""
    start = prompt_rollout(model, tokenizer, question)
    ids = torch.tensor([start.prompt_ids] * n)
    eos = eos_token_ids(model, tokenizer)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.backbone.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=sampling.max_new_tokens,
            eos_token_id=sorted(eos), pad_token_id=tokenizer.pad_token_id, **sampling.generate_kwargs(),
        )
    texts = []
    for row in out[:, ids.shape[1] :].tolist():
        end = next((i for i, t in enumerate(row) if t in eos), len(row))
        texts.append(tokenizer.decode(row[:end]))
    return texts


def section_timing(model, tokenizer, rows, args) -> dict:
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    gen, gen_score, reencode_batched, reencode_single = Timer(), Timer(), Timer(), Timer()
    same, total, tokens, per_question = 0, 0, 0, []
    for q, row in enumerate(rows[: args.questions]):
        seed = 1000 + q

        def run_generate_only():
            with gen:
                return generate_only(model, tokenizer, row["question"], args.num_candidates, sampling, seed)

        def run_best_of_n():
            with gen_score:
                return best_of_n(model, tokenizer, row["question"], num_candidates=args.num_candidates,
                                 sampling=sampling, seed=seed)

        if q % 2 == 0:  # alternate which arm runs first
            texts, result = run_generate_only(), run_best_of_n()
        else:
            result, texts = run_best_of_n(), run_generate_only()
        candidates = [c["text"] for c in result["candidates"]]
        same += sum(a == b for a, b in zip(texts, candidates))
        total += len(texts)
        tokens += sum(c["num_tokens"] for c in result["candidates"])
        inputs = [{"question": row["question"], "solution": t} for t in texts if t.strip()]
        with reencode_batched:
            scorer(inputs, batch_size=len(inputs))
        with reencode_single:
            for x in inputs:
                scorer(x)
        per_question.append(gen_score.times[-1] / gen.times[-1])
        print(f"question {q}: generate {gen.times[-1]:.1f}s, generate+score {gen_score.times[-1]:.1f}s, "
              f"re-encode batched {reencode_batched.times[-1]:.2f}s, one at a time {reencode_single.times[-1]:.2f}s",
              flush=True)
    return {
        "setup": {"questions": args.questions, "num_candidates": args.num_candidates,
                  "max_new_tokens": args.max_new_tokens, "sampling": "temperature 0.6, top_p 0.95 (defaults)"},
        "generated_tokens": tokens,
        "same_tokens_in_both_arms": f"{same}/{total}",
        "seconds": {"generate_only": gen.total, "generate_and_score": gen_score.total,
                    "reencode_batched": reencode_batched.total, "reencode_one_at_a_time": reencode_single.total},
        "cpu_seconds": {"generate_only": gen.cpu_total, "generate_and_score": gen_score.cpu_total,
                        "reencode_batched": reencode_batched.cpu_total,
                        "reencode_one_at_a_time": reencode_single.cpu_total},
        "ratio_generate_and_score_to_generate_only": gen_score.total / gen.total,
        "ratio_per_question": per_question,
        "cpu_ratio_generate_and_score_to_generate_only": gen_score.cpu_total / gen.cpu_total,
        "ratio_generate_then_reencode_batched_to_generate_only": (gen.total + reencode_batched.total) / gen.total,
        "ratio_generate_then_reencode_one_at_a_time_to_generate_only":
            (gen.total + reencode_single.total) / gen.total,
        "cpu_ratio_generate_then_reencode_one_at_a_time_to_generate_only":
            (gen.cpu_total + reencode_single.cpu_total) / gen.cpu_total,
        "goal": "generate_and_score / generate_only <= 1.05",
    }


def section_batched(model, tokenizer, rows, args) -> dict:
    inputs = [{"question": r["question"], "steps": r["steps"]} for r in rows[: args.solutions]]
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    scorer(inputs[:2], batch_size=2)  # warm-up
    timers = {"batch_size_16": Timer(), "one_at_a_time": Timer(), "batch_size_64": Timer()}
    outputs = {}
    for _ in range(args.repeats):
        with timers["batch_size_16"]:
            outputs["batch_size_16"] = scorer(inputs, batch_size=16)
        with timers["one_at_a_time"]:
            outputs["one_at_a_time"] = [scorer(x) for x in inputs]
        with timers["batch_size_64"]:
            outputs["batch_size_64"] = scorer(inputs, batch_size=64)
    single = [s["score"] for r in outputs["one_at_a_time"] for s in r["steps"]]
    agreement = {
        name: max(abs(a - b) for a, b in zip(single, [s["score"] for r in out for s in r["steps"]]))
        for name, out in outputs.items() if name != "one_at_a_time"
    }
    return {
        "setup": {"solutions": len(inputs), "steps": len(single), "repeats": args.repeats,
                  "tokens_per_solution": _token_counts(tokenizer, model, inputs)},
        "median_seconds": {name: t.median for name, t in timers.items()},
        "median_cpu_seconds": {name: t.cpu_median for name, t in timers.items()},
        "speedup_batch_16_vs_one_at_a_time": timers["one_at_a_time"].median / timers["batch_size_16"].median,
        "speedup_batch_64_vs_one_at_a_time": timers["one_at_a_time"].median / timers["batch_size_64"].median,
        "cpu_speedup_batch_16_vs_one_at_a_time":
            timers["one_at_a_time"].cpu_median / timers["batch_size_16"].cpu_median,
        "max_abs_step_score_difference_vs_one_at_a_time": agreement,
        "goal": "batched >= 4x one at a time",
    }


def _token_counts(tokenizer, model, inputs) -> dict:
    from modeling_sprm.processing_sprm import SPRMProcessor

    processor = SPRMProcessor.from_model(model, tokenizer)
    counts = [processor.encode(x).num_tokens for x in inputs]
    return {"min": min(counts), "mean": sum(counts) / len(counts), "max": max(counts)}


def section_quantization(rows, args) -> dict:
    solutions = [{"question": r["question"], "steps": r["steps"]} for r in rows[: args.solutions]]
    bon_rows = rows[args.questions : args.questions + args.bon_groups]
    model, tokenizer, _ = load_model_and_tokenizer(None)
    groups = []  # Best-of-N candidates sampled (and scored from capture) by the float32 model
    for g, row in enumerate(bon_rows):
        result = best_of_n(model, tokenizer, row["question"], num_candidates=args.num_candidates,
                           max_new_tokens=args.max_new_tokens, seed=2000 + g)
        texts = [c["text"] if c["text"].strip() else "(empty)" for c in result["candidates"]]
        groups.append({"question": row["question"], "solutions": texts, "captured_best": result["best"]})
        print(f"sampled group {g}", flush=True)
    head = ("the shipped default head (trained)" if model.config.head_is_trained else
            "seeded untrained default head (scores carry no signal; agreement is what counts)")
    del model
    out = {"setup": {"solutions": len(solutions), "bon_groups": len(groups), "num_candidates": args.num_candidates,
                     "head": head}}
    reference = None
    for name in ("fp32", "8bit", "nf4", "fp4"):
        model, tokenizer, _ = load_model_and_tokenizer(None, quantization=None if name == "fp32" else name)
        head_trained = model.config.head_is_trained
        memory = model.backbone.get_memory_footprint()
        scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
        timer = Timer()
        with timer:
            scored = scorer(solutions, batch_size=16)
        step_scores = [s["score"] for r in scored for s in r["steps"]]
        solution_scores = [r["score"] for r in scored]
        picks = []
        for group in groups:
            results = scorer({"question": group["question"], "solutions": group["solutions"]})
            picks.append(max(range(len(results)), key=lambda i: (results[i]["score"], -i)))
        entry = {"backbone_memory_bytes": memory, "score_seconds": timer.total, "score_cpu_seconds": timer.cpu_total,
                 "head_trained": head_trained,
                 "head_dtype": str(model.score_head[0].weight.dtype), "bon_picks": picks}
        if reference is None:
            reference = {"memory": memory, "steps": step_scores, "solutions": solution_scores, "picks": picks}
            entry["captured_vs_reencoded_pick_agreement"] = sum(
                p == g["captured_best"] for p, g in zip(picks, groups)) / max(1, len(groups))
        else:
            entry.update({
                "memory_ratio_to_fp32": memory / reference["memory"],
                "spearman_steps": spearmanr(reference["steps"], step_scores).statistic,
                "spearman_solutions": spearmanr(reference["solutions"], solution_scores).statistic,
                "max_abs_step_score_difference": max(abs(a - b) for a, b in zip(reference["steps"], step_scores)),
                "bon_pick_agreement": sum(a == b for a, b in zip(reference["picks"], picks)) / max(1, len(picks)),
            })
        out[name] = entry
        print(name, {k: v for k, v in entry.items() if k != "bon_picks"}, flush=True)
        del model, scorer
    out["goal"] = "4-bit backbone memory <= 0.35x fp32; Spearman with fp32 >= 0.98"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", help="GSM8K test.jsonl (default: $SPRM_GSM8K)")
    parser.add_argument("--sections", nargs="+", default=["timing", "batched", "quantization"],
                        choices=["timing", "batched", "quantization"])
    parser.add_argument("--questions", type=int, default=3, help="questions for the timing section")
    parser.add_argument("--num-candidates", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--solutions", type=int, default=64, help="GSM8K reference solutions to score")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of each arm of the batched section")
    parser.add_argument("--bon-groups", type=int, default=6, help="sampled groups for the Best-of-N pick agreement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine, 2 threads run several times slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.gsm8k = gsm8k_path(args.gsm8k)
    rows = load_gsm8k(args.gsm8k, max(args.solutions, args.questions + args.bon_groups))
    path = RESULTS / "generate_and_score.json"
    common = {"model": "SmolLM2-135M-Instruct (embedded, Q4_1 weights dequantized to fp32) + default SPRM head",
              "data": f"GSM8K test, first rows of {args.gsm8k}"}

    def save(**sections) -> None:
        # Re-read the file before each write: sections measured by separate runs keep each other's results.
        result = json.loads(path.read_text()) if path.is_file() else {}
        write_result("generate_and_score", {**result, **common, **sections})

    if "timing" in args.sections or "batched" in args.sections:
        model, tokenizer, _ = load_model_and_tokenizer(None)
        common["head_trained"] = model.config.head_is_trained
        if "timing" in args.sections:
            save(timing=finished({"machine": machine(), **section_timing(model, tokenizer, rows, args)}))
        if "batched" in args.sections:
            save(batched=finished({"machine": machine(), **section_batched(model, tokenizer, rows, args)}))
        del model
    if "quantization" in args.sections:
        save(quantization=finished({"machine": machine(), **section_quantization(rows, args)}))


if __name__ == "__main__":
    main()
