"""SPRM-guided step search against Best-of-N at an equal budget of generated tokens (SmolLM2-135M on CPU).

For each GSM8K question, ``step_search`` (beam width B, K continuations per beam and step) runs first and its
generated tokens, discarded continuations included, are the budget T. Best-of-N then samples candidates in batches
until it has generated at least T tokens, and picks with the same SPRM. Both report the SPRM pick's answer, the
majority vote and the SPRM-weighted vote, checked against the reference answer. Steps are lines (``"\\n"``):
SmolLM2 writes one step per line and almost never MetaStone-S1's ``".\\n\\n"``.

With the untrained default head and a 135M policy the accuracies are noise: this measures the mechanics and the
cost of the two strategies at equal budget; pass ``--model`` with a trained SPRM for a real comparison.

    python -m benchmarks.step_search [--gsm8k PATH] [--questions 3] [--model DIR]

Writes ``benchmarks/results/step_search.json``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks._common import gsm8k_path, Timer, finished, load_gsm8k, machine, write_result
from modeling_sprm.answers import answers_match
from modeling_sprm.generation import SamplingConfig, best_of_n, step_search, summarize
from modeling_sprm.loading import load_model_and_tokenizer


def best_of_n_with_budget(model, tokenizer, question: str, budget: int, batch: int, sampling: SamplingConfig,
                          seed: int) -> dict:
    """Best-of-N with as many candidates as it takes to generate ``budget`` tokens (in batches of ``batch``)."""
    candidates, tokens, k = [], 0, 0
    while tokens < budget:
        result = best_of_n(model, tokenizer, question, num_candidates=batch, sampling=sampling, seed=seed + k)
        candidates += result["candidates"]
        tokens += sum(c["num_tokens"] for c in result["candidates"])
        k += 1
    out = summarize(question, candidates)
    out["generated_tokens"] = tokens
    return out


def outcome(result: dict, reference: str) -> dict:
    return {
        "generated_tokens": result["generated_tokens"],
        "candidates": len(result["candidates"]),
        "sprm_correct": answers_match(result["sprm_answer"], reference),
        "majority_correct": answers_match(result["majority_answer"], reference),
        "weighted_correct": answers_match(result["weighted_answer"], reference),
        "sprm_answer": result["sprm_answer"],
        "best_score": result["candidates"][result["best"]]["score"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", help="GSM8K test.jsonl (default: $SPRM_GSM8K)")
    parser.add_argument("--model", help="an SPRM folder (default: the embedded default)")
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--beam-width", type=int, default=2)
    parser.add_argument("--num-continuations", type=int, default=4)
    parser.add_argument("--max-step-tokens", type=int, default=48)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--bon-batch", type=int, default=4, help="Best-of-N samples this many candidates at a time")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine, 2 threads run several times slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    model, tokenizer, name = load_model_and_tokenizer(args.model)
    model.config.step_delimiters = ["\n"]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    args.gsm8k = gsm8k_path(args.gsm8k)
    rows = load_gsm8k(args.gsm8k, args.questions)
    search_time, bon_time, per_question = Timer(), Timer(), []
    for q, row in enumerate(rows):
        with search_time:
            search = step_search(
                model, tokenizer, row["question"], beam_width=args.beam_width,
                num_continuations=args.num_continuations, max_steps=args.max_steps,
                max_step_tokens=args.max_step_tokens, sampling=sampling, seed=100 + q,
            )
        with bon_time:
            bon = best_of_n_with_budget(model, tokenizer, row["question"], search["generated_tokens"],
                                        args.bon_batch, sampling, seed=200 + 10 * q)
        per_question.append({
            "reference": row["answer"],
            "search": {**outcome(search, row["answer"]), "rounds": search["rounds"], "seconds": search_time.times[-1],
                       "cpu_seconds": search_time.cpu_times[-1]},
            "best_of_n": {**outcome(bon, row["answer"]), "seconds": bon_time.times[-1],
                          "cpu_seconds": bon_time.cpu_times[-1]},
        })
        print(per_question[-1], flush=True)

    def accuracy(method: str, key: str) -> float:
        return sum(p[method][key] for p in per_question) / len(per_question)

    summary = {
        method: {
            "sprm_accuracy": accuracy(method, "sprm_correct"),
            "majority_accuracy": accuracy(method, "majority_correct"),
            "weighted_accuracy": accuracy(method, "weighted_correct"),
            "generated_tokens": sum(p[method]["generated_tokens"] for p in per_question),
            "seconds": (search_time if method == "search" else bon_time).total,
            "cpu_seconds": (search_time if method == "search" else bon_time).cpu_total,
        }
        for method in ("search", "best_of_n")
    }
    write_result("step_search", finished({
        "machine": info,
        "model": name,
        "head_trained": model.config.head_is_trained,
        "setup": {**{k: v for k, v in vars(args).items() if k not in ("gsm8k", "model")},
                  "step_delimiters": ["\n"], "sampling": "temperature 0.6, top_p 0.95"},
        "summary": summary,
        "per_question": per_question,
    }))


if __name__ == "__main__":
    main()
