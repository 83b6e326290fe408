"""Make the policy able: LoRA fine-tune SmolLM2-135M-Instruct on generated arithmetic problems with their reference
solutions (in the SPRM's chat + ".\\n\\n" step format), then sample on held-out problems and measure how often it
is right. Each run is one configuration of the difficulty / SFT search; its result is added (by tag) to
benchmarks/results/selfgen_policy_search.json.

    python -m benchmarks.selfgen.sft_policy --tag final

``--steps 0`` measures the backbone as it is (no fine-tuning). Artefacts go to ``--out-dir/<tag>/``: the LoRA
adapter, the merged policy (``merged/``, a plain causal LM folder) and the graded samples (``samples.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from modeling_sprm.backbones import embedded_backbone_path
from benchmarks.selfgen.common import collate_sft, grade_solution, sample_solutions, sft_example, split_problems
from modeling_sprm.steps import StepRules

ROOT = Path(__file__).resolve().parents[2]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="name of this configuration (its entry in the search JSON)")
    parser.add_argument("--note", default="", help="why this configuration was tried")
    parser.add_argument("--min-ops", type=int, default=2)
    parser.add_argument("--max-ops", type=int, default=4)
    parser.add_argument("--max-number", type=int, default=30)
    parser.add_argument("--problem-seed", type=int, default=0, help="seed of the problem stream (SFT and eval sets)")
    parser.add_argument("--sft-problems", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=80, help="optimizer steps (0 = no fine-tuning)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument(
        "--lora-targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", help="comma-separated"
    )
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--eval-problems", type=int, default=48)
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per eval problem")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--gen-batch-size", type=int, default=64, help="sequences per generate() call")
    parser.add_argument("--out-dir", default=str(Path.home() / ".cache/sprm/selfgen/policies"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/selfgen_policy_search.json"))
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads; 1 is much faster than 2 on a shared, overloaded machine (measured: 16 s vs 111 s)",
    )
    parser.add_argument("--no-save-merged", action="store_true", help="skip writing the merged policy (538 MB)")
    return parser.parse_args()


def train_lora(model, tokenizer, problems, rules, args) -> tuple[object, dict]:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        model,
        LoraConfig(
            r=args.lora_rank,
            lora_alpha=2 * args.lora_rank,
            lora_dropout=0.0,
            target_modules=args.lora_targets.split(","),
            task_type="CAUSAL_LM",
        ),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    examples = [sft_example(tokenizer, p.question, p.reference_steps(), rules) for p in problems]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)),
    )
    rng = random.Random(args.train_seed)
    torch.manual_seed(args.train_seed)
    order: list[int] = []
    losses = []
    model.train()
    start = time.time()
    for step in range(args.steps):
        if len(order) < args.batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = collate_sft([examples[i] for i in order[: args.batch_size]], tokenizer.pad_token_id)
        del order[: args.batch_size]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  {time.time() - start:.0f} s", flush=True)
    model.eval()
    info = {
        "trainable_params": trainable,
        "sft_seconds": round(time.time() - start, 1),
        "loss_first10": round(sum(losses[:10]) / len(losses[:10]), 4),
        "loss_last10": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "epochs": round(args.steps * args.batch_size / len(examples), 2),
    }
    return model, info


def summarize(problems, graded) -> dict:
    """Accuracy and the shape of the samples: how many are right, how many problems mix right and wrong."""
    flat = [g for row in graded for g in row]
    by_ops = defaultdict(list)
    for problem, row in zip(problems, graded):
        by_ops[len(problem.operations)].extend(g.correct for g in row)
    correct = [g.correct for g in flat]
    process_correct = [g.grade.first_error == -1 and g.correct for g in flat]
    return {
        "samples": len(flat),
        "accuracy": round(sum(correct) / len(flat), 4),
        "process_correct": round(sum(process_correct) / len(flat), 4),
        "right_answer_wrong_step": round(sum(g.correct and g.grade.first_error != -1 for g in flat) / len(flat), 4),
        "problems_with_mixed_samples": round(
            sum(0 < sum(g.correct for g in row) < len(row) for row in graded) / len(graded), 4
        ),
        "problems_with_any_correct": round(sum(any(g.correct for g in row) for row in graded) / len(graded), 4),
        "no_answer": round(sum(g.grade.answer is None for g in flat) / len(flat), 4),
        "mean_steps": round(sum(len(g.steps) for g in flat) / len(flat), 2),
        "accuracy_by_ops": {str(k): round(sum(v) / len(v), 4) for k, v in sorted(by_ops.items())},
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rules = StepRules()
    path = embedded_backbone_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    problems = split_problems(
        {"sft": args.sft_problems, "eval": args.eval_problems}, args.min_ops, args.max_ops, args.max_number,
        args.problem_seed,
    )
    out = Path(args.out_dir).expanduser() / args.tag
    out.mkdir(parents=True, exist_ok=True)
    entry: dict = {"tag": args.tag, "note": args.note, "config": {k: v for k, v in vars(args).items()
                                                                  if k not in ("tag", "note", "out_dir", "results")}}
    if args.steps > 0:
        model, entry["sft"] = train_lora(model, tokenizer, problems["sft"], rules, args)
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
        if not args.no_save_merged:
            model.save_pretrained(out / "merged")
            tokenizer.save_pretrained(out / "merged")
    model.eval()
    start = time.time()
    texts = sample_solutions(
        model, tokenizer, [p.question for p in problems["eval"]], args.eval_samples,
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
        batch_size=args.gen_batch_size, seed=args.train_seed,
    )
    seconds = time.time() - start
    graded = [[grade_solution(p, t, rules) for t in row] for p, row in zip(problems["eval"], texts)]
    entry["eval"] = summarize(problems["eval"], graded)
    entry["eval"]["sampling_seconds"] = round(seconds, 1)
    with open(out / "samples.jsonl", "w") as f:
        for p, row in zip(problems["eval"], graded):
            for g in row:
                f.write(json.dumps({"question": p.question, "reference": p.reference_steps(), "solution": g.solution,
                                    "steps": g.steps, "step_labels": g.grade.step_labels,
                                    "answer": g.grade.answer, "correct": g.correct}) + "\n")
    entry["machine"] = f"{platform.node()} ({platform.processor() or platform.machine()}), torch threads " \
                       f"{torch.get_num_threads()}"
    entry["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry["command"] = "python " + " ".join(sys.argv)
    print(json.dumps(entry, indent=2))
    for p, g in list(zip(problems["eval"], [row[0] for row in graded]))[:4]:
        print("---", p.question, "\n", repr(g.solution), g.grade.step_labels, g.correct)

    results = Path(args.results)
    history = json.loads(results.read_text()) if results.is_file() else {"runs": []}
    history["runs"] = [r for r in history["runs"] if r["tag"] != args.tag] + [entry]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(history, indent=2) + "\n")


if __name__ == "__main__":
    main()
