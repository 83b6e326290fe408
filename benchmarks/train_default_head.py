"""Train the SPRM head that ships inside the package (modeling_sprm/default_head/) and measure it on held-out data.

Outcome labels only (no step annotation), frozen embedded SmolLM2-135M-Instruct, cached features:

* training data: ProcessBench gsm8k + math and all five BIG-Bench Mistake tasks (outcome labels only), 80%;
* threshold (the first-error cut-off saved in the config): chosen on the ProcessBench part of the other 20%;
* held out, reported: ProcessBench olympiadbench, never seen in training or threshold choice (omnimath is not used:
  see HELD_OUT_SPLITS).

    python -m benchmarks.train_default_head --objective outcome_bce --cached-only

writes modeling_sprm/default_head/ (head-only checkpoint, eval_results.json, training.json for the model card) and
benchmarks/results/default_head.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.central_experiment import METHODS
from benchmarks.prm_protocols import (
    Budget,
    fit_head,
    fold_metrics,
    head_for,
    load_rows,
    machine_info,
    pick_threshold,
    score_rows,
    split_validation,
)

PACKAGE_HEAD = Path(__file__).parent.parent / "modeling_sprm" / "default_head"
RESULTS = Path(__file__).parent / "results"
TRAIN_SPLITS = ("gsm8k", "math")
HELD_OUT_SPLITS = ("olympiadbench",)  # omnimath is left out: only its items 600-999 have cached features, all with
# right final answers (the ProcessBench files are sorted by final_answer_correct), so it would be a biased test
PROCESSBENCH_URL = "https://huggingface.co/datasets/Qwen/ProcessBench"


def eval_results(per_split: dict) -> list[dict]:
    """`huggingface_hub.EvalResult` fields (the schema of modeling_sprm/apps/hub.py) for the model card."""
    out = []
    for split, result in per_split.items():
        for metric, name in (("f1", "ProcessBench F1"), ("step_auroc", "step AUROC"),
                             ("outcome_auroc", "outcome AUROC")):
            if result.get(metric) is None:
                continue
            value = 100 * result[metric] if metric == "f1" else result[metric]
            out.append({
                "task_type": "text-classification", "task_name": "Step error identification",
                "dataset_type": "Qwen/ProcessBench", "dataset_name": "ProcessBench", "dataset_split": split,
                "metric_type": metric, "metric_name": name, "metric_value": round(value, 4),
                "source_name": "benchmarks/train_default_head.py (held-out split)", "source_url": PROCESSBENCH_URL,
            })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", required=True, choices=[m.name for m in METHODS if m.labels == "outcome"])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache/sprm/features"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output-dir", default=str(PACKAGE_HEAD))
    parser.add_argument("--cached-only", action="store_true", help="use only records whose features are cached")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from modeling_sprm.loading import load_model_and_tokenizer

    started = time.time()
    method = next(m for m in METHODS if m.name == args.objective)
    model, tokenizer, _ = load_model_and_tokenizer(None)
    cache = dict(cache_dir=args.cache_dir, cached_only=args.cached_only)
    processbench = load_rows(model, tokenizer, "processbench", args.data_root, **cache)
    bbm = load_rows(model, tokenizer, "bbm", args.data_root, **cache)
    training = [r for r in processbench if r["group"] in TRAIN_SPLITS] + bbm
    held_out = [r for r in processbench if r["group"] in HELD_OUT_SPLITS]
    fit, validation = split_validation(training, 0.2, args.seed)
    print(f"training on {len(fit)} solutions, threshold from {len(validation)}, held out {len(held_out)}", flush=True)

    budget = Budget(args.epochs, args.learning_rate, args.batch_size)
    model = head_for(model, method)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = fit_head(model, method, fit, args.seed, budget, tmp)
    # The threshold is for ProcessBench-style first-error prediction: choose it on the ProcessBench part of the
    # validation data (BIG-Bench Mistake's exact-first-mistake F1 is near 0 at every threshold and would only dilute).
    math_validation = [r for r in validation if r["group"] in TRAIN_SPLITS]
    threshold = pick_threshold(score_rows(model, math_validation), math_validation)
    model.config.threshold = threshold
    per_split = {}
    for split in HELD_OUT_SPLITS:
        rows = [r for r in held_out if r["group"] == split]
        per_split[split] = fold_metrics(score_rows(model, rows), rows, threshold)
        print(f"  {split}: {json.dumps({k: round(v, 4) for k, v in per_split[split].items() if v is not None})}")
    average = {}
    for k in ("f1", "error_acc", "correct_acc", "step_auroc", "outcome_auroc"):
        values = [per_split[s][k] for s in HELD_OUT_SPLITS if per_split[s][k] is not None]
        average[k] = sum(values) / len(values) if values else None

    trainer.data_description = {
        "processbench_splits": list(TRAIN_SPLITS), "big_bench_mistake_tasks": "all five", "labels": "outcome only",
        "solutions": len(fit),
    }
    output = Path(args.output_dir)
    trainer.save_model(str(output))
    (output / "training_args.bin").unlink(missing_ok=True)  # a pickle; nothing here needs it
    for code in output.glob("*.py"):  # remote-code copies of the package's own modules; `sprm push` writes them
        code.unlink()
    command = f"python -m benchmarks.train_default_head --objective {args.objective} --seed {args.seed}" + (
        " --cached-only" if args.cached_only else "")
    training_record = {
        **machine_info(),
        "command": command,
        "objective": method.name,
        "loss": method.loss,
        "loss_options": method.loss_options,
        "feature_normalization": method.feature_normalization,
        "supervision": "outcome labels only (final answer right or wrong); no step labels",
        "training_data": f"ProcessBench {' + '.join(TRAIN_SPLITS)} and BIG-Bench Mistake (all tasks), "
                         f"{len(fit)} solutions; threshold chosen on {len(math_validation)} more ProcessBench "
                         f"{' + '.join(TRAIN_SPLITS)} solutions",
        "held_out": f"ProcessBench {' and '.join(HELD_OUT_SPLITS)} ({len(held_out)} solutions)",
        "threshold": threshold,
        "budget": vars(budget),
        "runtime_s": round(time.time() - started),
    }
    (output / "training.json").write_text(json.dumps(training_record, indent=1) + "\n")
    (output / "eval_results.json").write_text(json.dumps(eval_results(per_split), indent=1) + "\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "default_head.json").write_text(
        json.dumps({**training_record, "held_out_metrics": per_split, "held_out_average": average}, indent=1) + "\n"
    )
    print(f"saved the head to {output} (threshold {threshold}); held-out average {average}")


if __name__ == "__main__":
    main()
