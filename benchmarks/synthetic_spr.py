"""Can a head trained on outcome labels only find the wrong steps? A synthetic data set where it is known.

    python -m benchmarks.synthetic_spr            # writes benchmarks/results/synthetic_spr.json

Each solution has 2-5 steps ``"Step j: take the <noun> with <n> and <rule>"``; a step is wrong exactly when its rule
word is one of 6 "bad" rules, and a solution is correct when no step is wrong. The rule word sits at the token where
the score is read, so even a tiny random backbone carries it: what is tested is learning from the labels, not the
backbone. An outcome label only says "at least one step of this solution is wrong" (multiple-instance learning).
A confound makes it realistic: "hard" problems fail more often (35% of their steps are wrong vs 10% for "easy"
ones) and their right steps use other rule words than the easy problems' right steps.

Trains every objective on cached features of 600 solutions with 3 seeds (the head's initialisation) and reports
step AUROC, step accuracy at 0.5 and the share of steps the head calls right, on 300 other solutions.
`tests/test_train_synthetic.py` asserts the seed-0 results.
"""

import json
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import AutoTokenizer, PrinterCallback
from transformers import logging as hf_logging

from modeling_sprm import SPRMForStepScoring
from modeling_sprm.backbones import embedded_backbone_path
from modeling_sprm.training.features import extract_step_features
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments, StepSupervisedTrainer

RESULT = Path(__file__).parent / "results" / "synthetic_spr.json"
GOOD_EASY = ["add", "carry", "double", "join", "merge", "split"]
GOOD_HARD = ["shift", "rotate", "scale", "copy", "sort", "swap"]
BAD = ["guess", "skip", "invent", "flip", "drop", "ignore"]
NOUNS = ["list", "pair", "row", "column", "stack", "queue", "table", "grid"]
# name -> (trainer class, SPRMTrainingArguments options)
OBJECTIVES = {
    "step_supervised": (StepSupervisedTrainer, {}),
    "outcome_bce": (SPRMTrainer, {"loss": "outcome_bce"}),
    "spr": (SPRMTrainer, {"loss": "spr"}),
    "spr_class_balance": (SPRMTrainer, {"loss": "spr", "class_balance": True}),
    "spr_warmup_40": (SPRMTrainer, {"loss": "spr", "spr_warmup_steps": 40}),
}
TRAINING = dict(num_train_epochs=20, per_device_train_batch_size=32, learning_rate=1e-2)


def synthetic_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        hard = rng.random() < 0.5
        labels = [0.0 if rng.random() < (0.35 if hard else 0.1) else 1.0 for _ in range(rng.randint(2, 5))]
        steps = [
            f"Step {j + 1}: take the {rng.choice(NOUNS)} with {rng.randint(10, 99)} and "
            f"{rng.choice((GOOD_HARD if hard else GOOD_EASY) if right else BAD)}"
            for j, right in enumerate(labels)
        ]
        records.append(
            {
                "id": f"{seed}-{i}",
                "question": f"Problem {i}: transform the {'big' if hard else 'small'} list.",
                "steps": steps,
                "solution": None,
                "outcome_label": min(labels),
                "step_labels": labels,  # read only by StepSupervisedTrainer and by the evaluation
                "rollout_truncated": False,
            }
        )
    return records


def tiny_model(tokenizer) -> SPRMForStepScoring:
    """A random 2-layer Llama (hidden 64) with an SPRM head: the same as the tests' ``make_tiny_backbone``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    return SPRMForStepScoring.from_backbone(LlamaForCausalLM(config).eval(), backbone_name_or_path="tiny")


def train_and_evaluate(model, train, test, trainer_class, options: dict, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        args = SPRMTrainingArguments(
            output_dir=out, use_cpu=True, save_strategy="no", disable_tqdm=True, logging_steps=50, seed=seed,
            **TRAINING, **options,
        )
        trainer = trainer_class(model, args, train_dataset=train)
        trainer.remove_callback(PrinterCallback)  # the logs are in the trainer's state; keep stdout short
        trainer.train()
        metrics = trainer.evaluate(test)
    last = [e for e in trainer.state.log_history if "train_step_positive_fraction" in e][-1]
    return {
        "step_auroc": round(metrics["eval_step_auroc"], 4),
        "step_accuracy": round(metrics["eval_step_accuracy"], 4),
        "score_correct_mean": round(metrics["eval_score_correct_mean"], 4),
        "score_incorrect_mean": round(metrics["eval_score_incorrect_mean"], 4),
        "final_step_positive_fraction": round(last["train_step_positive_fraction"], 4),
    }


def main() -> None:
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(embedded_backbone_path())
    model = tiny_model(tokenizer)
    train = extract_step_features(model, tokenizer, synthetic_records(600, seed=1), batch_size=32)
    test = extract_step_features(model, tokenizer, synthetic_records(300, seed=2), batch_size=32)
    start = time.time()
    results = {}
    for name, (trainer_class, options) in OBJECTIVES.items():
        results[name] = {f"seed {seed}": train_and_evaluate(model, train, test, trainer_class, options, seed)
                         for seed in (0, 1, 2)}
        print(name, {s: r["step_auroc"] for s, r in results[name].items()}, flush=True)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({
        "what": __doc__.split("\n\n")[0],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"train_solutions": len(train), "test_solutions": len(test),
                 "train_correct_fraction": round(sum(train["outcome_label"]) / len(train), 3)},
        "training": TRAINING,
        "seconds": round(time.time() - start, 1),
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
