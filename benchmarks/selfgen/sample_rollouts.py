"""Let the fine-tuned policy sample its own solutions, capture its step features while it samples, and grade them.

    python -m benchmarks.selfgen.sample_rollouts --split test    # 24 held-out problems x 32 samples
    python -m benchmarks.selfgen.sample_rollouts --split train   # 48 problems x 8 samples (SPRM training data)

The policy is the merged LoRA policy of ``--policy-tag`` (made by ``sft_policy.py``); its problem settings and
the SFT / accuracy-check problem sets come from that run's entry in selfgen_policy_search.json, so the problems
sampled here are new (disjoint from those and from each other; the test problems depend on ``--test-problems``
only, the training problems on both sizes, so give the same sizes to both splits). Sampling goes through
``generation.generate_rollouts`` on ``SPRMForStepScoring.from_backbone(policy)``: the feature layer is captured
during generation, so the features at step read positions are those of the sampled tokens themselves (no second
pass). Written per chunk of problems (resumable) under ``--out-dir/<policy-tag>/<split>/``:
``chunk_XXXX.jsonl`` (one graded sample a line), ``chunk_XXXX.safetensors`` (its step features) and
``chunk_XXXX.meta.json`` (its sampling time and command). A chunk is one ``generate()`` call by default; an
interrupted run resumes at the first missing chunk, and a shorter run samples a prefix of a longer one's problems.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from modeling_sprm.generation import SamplingConfig, generate_rollouts, prompt_rollout  # noqa: E402
from modeling_sprm.modeling_sprm import SPRMForStepScoring  # noqa: E402
from benchmarks.selfgen.common import grade_solution, loop_problems, rollout_step_features, save_rollout_chunk  # noqa: E402
from modeling_sprm.steps import StepRules  # noqa: E402

CACHE = Path.home() / ".cache/sprm/selfgen"
SAMPLES = {"train": 8, "test": 32}  # default samples per problem


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SAMPLES), required=True)
    parser.add_argument("--train-problems", type=int, default=48)
    parser.add_argument("--test-problems", type=int, default=24, help="give the same value for both splits")
    parser.add_argument("--samples", type=int, help="samples per problem (default: train 8, test 32)")
    parser.add_argument("--policy-tag", default="ops2-4_max30_s80", help="run of sft_policy.py whose policy samples")
    parser.add_argument("--policies-dir", default=str(CACHE / "policies"))
    parser.add_argument("--search", default=str(ROOT / "benchmarks/results/selfgen_policy_search.json"))
    parser.add_argument("--out-dir", default=str(CACHE / "rollouts"))
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per generate() call")
    parser.add_argument("--chunk-problems", type=int, help="problems per saved chunk (default: one generate() call)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    num_samples = args.samples or SAMPLES[args.split]
    run = next(r for r in json.loads(Path(args.search).read_text())["runs"] if r["tag"] == args.policy_tag)
    problems = loop_problems(run["config"], args.train_problems, args.test_problems)[args.split]
    policy = Path(args.policies_dir).expanduser() / args.policy_tag / "merged"
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = SPRMForStepScoring.from_backbone(str(policy)).eval()
    rules = StepRules.from_config(model.config)
    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    out = Path(args.out_dir).expanduser() / args.policy_tag / args.split
    out.mkdir(parents=True, exist_ok=True)
    per_call = max(1, args.batch_size // num_samples)
    chunk_problems = args.chunk_problems or per_call
    for c, first in enumerate(range(0, len(problems), chunk_problems)):
        name = out / f"chunk_{c:04d}"
        if name.with_suffix(".jsonl").is_file():
            continue
        start, cpu_start = time.time(), time.process_time()
        chunk = list(enumerate(problems))[first : first + chunk_problems]
        torch.manual_seed(args.seed * 100003 + first)
        rows, features = [], []
        for k in range(0, len(chunk), per_call):
            part = chunk[k : k + per_call]
            rollouts = [prompt_rollout(model, tokenizer, p.question) for _, p in part for _ in range(num_samples)]
            rollouts = generate_rollouts(model, tokenizer, rollouts, sampling)
            for r, rollout in enumerate(rollouts):
                index, problem = part[r // num_samples]
                trace = rollout.trace(rules)
                graded = grade_solution(problem, rollout.text, rules)
                if len(graded.steps) != len(trace.steps):
                    raise RuntimeError(f"grader found {len(graded.steps)} steps, scorer {len(trace.steps)}: "
                                       f"{rollout.text!r}")
                features.append(rollout_step_features(rollout, trace, model.config.text_config.hidden_size))
                rows.append({
                    "problem": index, "sample": r % num_samples, "question": problem.question,
                    "reference_answer": str(problem.answer), "num_ops": len(problem.operations),
                    "solution": rollout.text, "steps": graded.steps, "answer": graded.grade.answer,
                    "outcome_label": graded.grade.outcome_label, "step_labels": graded.grade.step_labels,
                    "first_error": graded.grade.first_error, "num_tokens": len(rollout.token_ids),
                    "truncated": rollout.stop_reason == "length",
                })
        seconds = time.time() - start
        meta = {"samples": len(rows), "seconds": round(seconds, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
                "load_average": os.getloadavg(), "command": "python " + " ".join(sys.argv)}
        name.with_suffix(".meta.json").write_text(json.dumps(meta) + "\n")  # before the .jsonl, which marks completion
        save_rollout_chunk(name, rows, features)
        right = sum(r["outcome_label"] for r in rows) / len(rows)
        print(f"{args.split} chunk {c}: {len(rows)} samples, {right:.1%} right, {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
