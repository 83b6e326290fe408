"""Run by tests/test_train_ddp.py, as one process or under ``torchrun --nproc_per_node=2``: train a tiny SPRM
head with the global batch given on the command line and save it (rank 0), plus a JSON summary.

    python tests/ddp_train_script.py BACKBONE_DIR OUT_DIR GLOBAL_BATCH [LOSS [LOSS_OPTIONS_JSON]]

LOSS defaults to spr (with class balancing, whose counts are summed over the processes too).
"""

import json
import os
import sys

import torch
from transformers import AutoTokenizer
from transformers import logging as hf_logging

from modeling_sprm import SPRMForStepScoring
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments


def records(n: int = 16) -> list[dict]:
    out = []
    for i in range(n):
        k = 1 + i % 4
        right = i % 3 != 0
        out.append(
            {
                "id": str(i),
                "question": f"Problem {i}: add the numbers.",
                "steps": [f"Step {j}: {i} + {j} = {i + j + (0 if right or j < k - 1 else 1)}" for j in range(k)],
                "solution": None,
                "outcome_label": 1.0 if right else 0.0,
                "step_labels": None,
                "rollout_truncated": False,
            }
        )
    return out


def main() -> None:
    backbone_dir, out_dir, global_batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    loss = sys.argv[4] if len(sys.argv) > 4 else "spr"
    loss_options = sys.argv[5] if len(sys.argv) > 5 else None
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    # No head dropout, so that the processes' own random streams do not matter.
    model = SPRMForStepScoring.from_backbone(backbone_dir, head_dropout=0.0)
    args = SPRMTrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=global_batch // world_size,
        num_train_epochs=4,
        learning_rate=1e-2,
        loss=loss,
        loss_options=loss_options,
        class_balance=loss == "spr",  # its counts are summed over the processes too
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=7,
        feature_cache_dir=os.path.join(out_dir, "features"),
    )
    trainer = SPRMTrainer(model, args, train_dataset=records(), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(out_dir)
    if trainer.is_world_process_zero():
        summary = {
            "world_size": trainer.accelerator.num_processes,
            "global_step": trainer.state.global_step,
            "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
            "train_batch_size": model.config.head_training["train_batch_size"],
        }
        with open(os.path.join(out_dir, "summary.json"), "w") as f:
            json.dump(summary, f)


if __name__ == "__main__":
    main()
