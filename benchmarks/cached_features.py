"""Epoch time of head-only training from cached step features vs through the frozen backbone, side by side.

    python -m benchmarks.cached_features --data-root ../shared/data --records 64 --threads 1

Both runs train the same SPRM head (SmolLM2-135M-Instruct backbone, frozen) with `SPRMTrainer` on the same
ProcessBench records, batch size and seed. The uncached run tokenizes every batch and runs the backbone every
step; the cached run pays one backbone pass over the data (`extract_step_features`, reported as its own number:
the extra cost of the first epoch) and then trains the head alone. Writes benchmarks/results/cached_features.json.
Goal (issue 3): at least 20x faster per epoch after the first.
"""

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers import logging as hf_logging

from modeling_sprm.data import load_processbench
from modeling_sprm.training.features import extract_step_features
from modeling_sprm.training import SPRMTrainer, SPRMTrainingArguments, load_for_training

RESULT = Path(__file__).parent / "results" / "cached_features.json"


class EpochTimer(TrainerCallback):
    """Wall time of each training epoch."""

    def __init__(self):
        self.times, self._start = [], None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def epoch_times(model, tokenizer, train_dataset, epochs: int, cache: bool, args: argparse.Namespace) -> list[float]:
    timer = EpochTimer()
    training_args = SPRMTrainingArguments(
        output_dir="/tmp/sprm-cached-features-benchmark",
        num_train_epochs=epochs,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        cache_features=cache,
        use_cpu=not torch.cuda.is_available(),
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        seed=0,
    )
    trainer = SPRMTrainer(model, training_args, train_dataset=train_dataset, processing_class=tokenizer, callbacks=[timer])
    trainer.train()
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding processbench/")
    parser.add_argument("--split", default="gsm8k", help="ProcessBench split to take the records from")
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--cached-epochs", type=int, default=3)
    parser.add_argument("--uncached-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    records = load_processbench(str(Path(args.data_root) / "processbench"), splits=[args.split])[: args.records]
    load_before = os.getloadavg()

    model, tokenizer = load_for_training(None)  # the embedded SmolLM2-135M-Instruct, a fresh head
    start = time.perf_counter()
    features = extract_step_features(model, tokenizer, records, batch_size=args.batch_size, max_length=args.max_length)
    extraction_s = time.perf_counter() - start
    cached = epoch_times(model, tokenizer, features, args.cached_epochs, True, args)
    uncached = epoch_times(model, tokenizer, records, args.uncached_epochs, False, args)

    cached_epoch = sum(cached) / len(cached)
    uncached_epoch = sum(uncached) / len(uncached)
    speedup = uncached_epoch / cached_epoch
    result = {
        "what": "head-only SPRM training, SmolLM2-135M-Instruct frozen backbone: seconds per epoch from cached step "
        "features vs through the backbone (tokenize + forward every batch), measured side by side in one run",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__,
        },
        "data": {"processbench_split": args.split, "records": len(records),
                 "steps": int(sum(features["num_scored_steps"])), "max_length": args.max_length},
        "batch_size": args.batch_size,
        "feature_extraction_s": round(extraction_s, 2),
        "cached_epoch_s": [round(t, 3) for t in cached],
        "uncached_epoch_s": [round(t, 2) for t in uncached],
        "seconds_per_epoch": {"cached": round(cached_epoch, 3), "uncached": round(uncached_epoch, 2)},
        "speedup_per_epoch": round(speedup, 1),
        "first_epoch_cached_s": round(extraction_s + cached[0], 2),
        "goal_speedup": 20,
        "goal_met": speedup >= 20,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds_per_epoch", "speedup_per_epoch", "feature_extraction_s")}))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
