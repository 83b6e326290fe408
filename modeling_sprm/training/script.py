"""``sprm train``: data in, head-only checkpoint out (TRL style: the script is separate from the trainers). Its
arguments are `TrainScriptArguments` (the data), `ModelArguments` (the model) and `SPRMTrainingArguments`."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import AutoTokenizer, PretrainedConfig
from transformers.trainer_utils import IntervalStrategy

from ..arguments import ModelArguments
from ..backbones import EMBEDDED_BACKBONE_ID, resolve_backbone
from ..data import LOADERS, load_records
from ..cards import EVAL_RESULTS_FILE
from ..configuration_sprm import STEP_POOLINGS
from ..loading import (
    STAGING_DIR,
    ModelLoadError,
    check_model_folder,
    checkpoint_problems,
    checkpoints,
    load_tokenizer,
    newest_complete_checkpoint,
    torch_dtype,
)
from ..modeling_sprm import SPRMForStepScoring
from .arguments import LABEL_KINDS, SPRMTrainingArguments
from .trainer import SCORE_PLOT_NAME, TRAINERS, TRAINING_LOG_NAME, SPRMTrainer


def load_for_training(
    model_name_or_path: str | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | dict | None = None,
    **head_options,
) -> tuple[SPRMForStepScoring, Any]:
    """``(model, tokenizer)`` to train: an SPRM checkpoint (training continues from its head), or a causal LM (a
    fresh head is attached, with the `SPRMConfig` fields in ``head_options``, e.g. ``step_pooling``); None = the
    embedded SmolLM2-135M-Instruct backbone. The Trainer places the model, unless ``device_map`` spreads the
    backbone over devices (accelerate; the Trainer then leaves it where it is)."""
    reference = model_name_or_path or EMBEDDED_BACKBONE_ID
    location = resolve_backbone(reference)
    try:
        config, _ = PretrainedConfig.get_config_dict(str(location))
    except OSError as err:
        raise ModelLoadError(f"cannot load the model {reference}: {' '.join(str(err).split())}") from None
    kwargs = {} if dtype is None else {"dtype": torch_dtype(dtype)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    if config.get("model_type") == "sprm":
        if Path(location).is_dir():
            check_model_folder(location)
        model = SPRMForStepScoring.from_pretrained(location, **kwargs)
        for key, value in head_options.items():  # the head's weights fix what it reads
            if getattr(model.config, key) != value:
                raise ValueError(f"--{key} {value}: the head of {reference} reads {key}="
                                 f"{getattr(model.config, key)!r}; train a fresh head on its backbone to change it")
        return model, load_tokenizer(model, str(location))
    model = SPRMForStepScoring.from_backbone(reference, **kwargs, **head_options)
    return model, AutoTokenizer.from_pretrained(location)


def split_records(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded random ``(train, held_out)`` split with ``round(fraction * n)`` held-out records (at least 1), drawn
    by ``datasets``' ``train_test_split`` over the record indices (the records keep their order and Python values)."""
    import datasets

    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    n_out = max(1, round(fraction * len(records)))
    if n_out >= len(records):
        raise ValueError(f"cannot hold out {n_out} of {len(records)} records")
    parts = datasets.Dataset.from_dict({"i": list(range(len(records)))}).train_test_split(test_size=n_out, seed=seed)
    held = set(parts["test"]["i"])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def train_head(
    args: SPRMTrainingArguments,
    data: str,
    format: str,
    labels: str = "outcome",
    model_name_or_path: str | None = None,
    dtype: str | None = None,
    device_map: str | None = None,
    eval_data: str | None = None,
    eval_fraction: float = 0.0,
    limit: int | None = None,
    split: str | None = None,
    eval_split: str | None = None,
    resume_from_checkpoint: str | bool | None = None,
    log: Callable[[str], None] = print,
    head_options: dict | None = None,
) -> SPRMTrainer:
    """Load ``data`` (`data.load_records(data, format)`), train with the trainer for ``labels`` ("outcome" or
    "step"), and save a head-only checkpoint with its training log and score plot in ``args.output_dir``.
    ``head_options``: `SPRMConfig` readout fields of a fresh head (`load_for_training`)."""
    if args.process_index != 0:  # under torchrun / accelerate launch, one process speaks

        def log(message: str) -> None:
            pass

    if labels not in TRAINERS:
        raise ValueError(f"labels must be one of {LABEL_KINDS}, got {labels!r}")
    records = load_records(data, format, split=split)[:limit]
    if not records:
        raise ValueError(f"{data} holds no records ({format} format); expected at least one to train on")
    log(f"Loaded {len(records)} records from {data} ({format}).")
    eval_records = None
    if eval_data is not None:
        eval_records = load_records(eval_data, format, split=eval_split)[:limit]
        log(f"Loaded {len(eval_records)} evaluation records from {eval_data}.")
    elif eval_fraction:
        records, eval_records = split_records(records, eval_fraction, args.seed)
        log(f"Held out {len(eval_records)} of the records for evaluation (seed {args.seed}).")
    model, tokenizer = load_for_training(model_name_or_path, dtype, device_map, **(head_options or {}))
    name = model.config.backbone_name_or_path
    what = ("the SPRM head on a trained" if args.unfreeze_backbone else
            f"the SPRM head and LoRA adapters (rank {args.lora_r}) on a frozen" if args.lora_r else
            "the SPRM head on a frozen")
    trajectory = f" + {args.trajectory_loss_weight:g} x the trajectory term" if args.trajectory_loss_weight else ""
    log(f"Training {what} {name} backbone with the {args.loss or TRAINERS[labels].default_loss!r} "
        f"loss{trajectory} ({labels} labels), scoring the {args.score_span or model.config.score_span!r} span.")
    trainer = TRAINERS[labels](
        model,
        args,
        train_dataset=records,
        eval_dataset=eval_records,
        processing_class=tokenizer,
        data_description={"path": str(data), "format": format, "split": split, "records": len(records),
                          "limit": limit},
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if eval_records is not None:
        metrics = trainer.evaluate()
        shown = {k: round(v, 4) for k, v in metrics.items() if any(w in k for w in ("score", "auroc", "accuracy", "loss"))}
        log(f"Held-out metrics: {shown}")
    trainer.save_model(args.output_dir)
    kind = "full (backbone trained)" if args.unfreeze_backbone else "head + LoRA adapter" if args.lora_r else "head-only"
    log(f"Saved the {kind} SPRM checkpoint, {TRAINING_LOG_NAME} and {SCORE_PLOT_NAME} to {args.output_dir}")
    log(f"Score with it: sprm score --model {args.output_dir} --question ... --solution ...")
    return trainer


@dataclass
class TrainScriptArguments:
    """What ``sprm train`` trains on, and what a fresh head reads (the model is `ModelArguments`, the training
    `SPRMTrainingArguments`)."""

    data: str = field(metadata={"help": "The training data: a file, folder or Hub id (see --format)."})
    format: str = field(metadata={"help": "The data format (modeling_sprm.data).", "choices": sorted(LOADERS)})
    labels: str = field(
        default="outcome",
        metadata={
            "help": "Learn from outcome labels (SPRMTrainer) or step labels (StepSupervisedTrainer).",
            "choices": LABEL_KINDS,
        },
    )
    split: str | None = field(
        default=None,
        metadata={"help": "The part of --data to train on: a split of a Hub id or saved DatasetDict (required when "
                  "it has several), a file {split}.jsonl of a folder, a benchmark split or task; comma-separated for "
                  "several."},
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "Held-out data in the same format, for the score curves and metrics."}
    )
    eval_split: str | None = field(default=None, metadata={"help": "--split of --eval-data."})
    eval_fraction: float = field(
        default=0.0, metadata={"help": "Without --eval-data, hold out this fraction of --data (seeded by --seed)."}
    )
    limit: int | None = field(default=None, metadata={"help": "Use only the first N records (quick runs)."})
    step_pooling: str | None = field(
        default=None,
        metadata={
            "help": "What a fresh head reads of each step: 'delimiter' (the read token's hidden state, MetaStone-S1; "
            "the default) or 'mean' (the mean of the step's token states). SPRMConfig.step_pooling.",
            "choices": STEP_POOLINGS,
        },
    )
    feature_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "hidden_states indices a fresh head reads, concatenated, e.g. 8 15 22 29 (default: the "
            "model's feature_layer, -2). SPRMConfig.feature_layers."
        },
    )
    resume: str | None = field(
        default=None,
        metadata={
            "help": "Resume from a Trainer checkpoint folder, or, without a value, from the newest complete one in "
            "--output (a checkpoint is complete when every file its manifest lists is there, unchanged). "
            "--resume_from_checkpoint CHECKPOINT does the same.",
            "nargs": "?",
            "const": "last",
            "metavar": "CHECKPOINT",
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an --output folder that holds an earlier run: its checkpoint-* folders are "
            "deleted first (without --resume or --overwrite, a non-empty --output is refused)."
        },
    )

    def head_options(self) -> dict:
        """The readout fields given on the command line (`load_for_training`'s ``head_options``)."""
        given = {"step_pooling": self.step_pooling, "feature_layers": self.feature_layers}
        return {k: v for k, v in given.items() if v is not None}


def training_device(device: str | None, training_args: SPRMTrainingArguments) -> SPRMTrainingArguments:
    """``--device`` for training: the Trainer places the model itself (the GPU when there is one, under torchrun the
    process's own), so ``cpu`` is its ``use_cpu`` and ``cuda`` its default; another GPU is chosen with
    ``CUDA_VISIBLE_DEVICES``."""
    if device is None or device == "cuda" and torch.cuda.is_available():
        return training_args
    if device == "cpu":
        return dataclasses.replace(training_args, use_cpu=True)
    if device == "cuda":
        raise ValueError("--device cuda: no GPU is available here")
    raise ValueError(f"--device {device}: sprm train runs on cpu or cuda (the Trainer's GPU); choose another GPU "
                     "with CUDA_VISIBLE_DEVICES, or spread the backbone with --device_map")


def main(script_args: TrainScriptArguments, model_args: ModelArguments, training_args: SPRMTrainingArguments):
    """``sprm train``: `train_head` with the parsed arguments (held-out data turns on evaluation every epoch)."""
    if model_args.quantization is not None:
        raise ValueError("--quantization does not go with sprm train: transformers' Trainer does not train a model "
                         "whose weights are quantized")
    training_args = training_device(model_args.device, training_args)
    if not training_args.output_dir:
        raise ValueError("--output (the checkpoint folder) is required")
    held_out = script_args.eval_data is not None or script_args.eval_fraction > 0
    if held_out and training_args.eval_strategy == IntervalStrategy.NO:  # score curves after every epoch
        training_args = dataclasses.replace(training_args, eval_strategy=IntervalStrategy.EPOCH)
    out = Path(training_args.output_dir)
    speaks = training_args.process_index == 0
    resume = resume_checkpoint(script_args, training_args, log=print if speaks else lambda message: None)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file; expected a folder for the checkpoint")
    # An experiment's eval_results.json may wait next to the head for --push_to_hub's card: not an earlier run.
    if resume is None and out.is_dir() and any(p.name != EVAL_RESULTS_FILE for p in out.iterdir()):
        if not script_args.overwrite:
            raise ValueError(
                f"--output {out} already holds files (an earlier run?): pass --resume to continue from its newest "
                "complete checkpoint, --overwrite to delete its checkpoints and start afresh, or another --output"
            )
        if speaks:
            for folder in [*checkpoints(out), out / STAGING_DIR]:
                shutil.rmtree(folder, ignore_errors=True)
    created = not out.exists()
    try:
        return train_head(
            training_args,
            data=script_args.data,
            format=script_args.format,
            labels=script_args.labels,
            model_name_or_path=model_args.model,
            dtype=model_args.dtype,
            device_map=model_args.device_map,
            eval_data=script_args.eval_data,
            eval_fraction=script_args.eval_fraction,
            limit=script_args.limit,
            split=script_args.split,
            eval_split=script_args.eval_split,
            resume_from_checkpoint=resume,
            head_options=script_args.head_options(),
        )
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):  # a failed start leaves no empty folder
            out.rmdir()
        raise


def resume_checkpoint(
    script_args: TrainScriptArguments, training_args: SPRMTrainingArguments, log: Callable[[str], None] = print
) -> str | None:
    """The checkpoint ``--resume`` (or ``--resume_from_checkpoint``) names, checked complete (its manifest's sizes
    and sha256), or for ``--resume`` alone the newest complete one in ``--output``; None when not resuming. Says
    which through ``log``, and which newer checkpoints it skipped and why."""
    given = {v for v in (script_args.resume, training_args.resume_from_checkpoint) if v is not None}
    if len(given) > 1:
        raise ValueError(f"--resume and --resume_from_checkpoint name different checkpoints: {sorted(given)}")
    if not given:
        return None
    if script_args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: resume the run, or start afresh")
    resume = given.pop()
    if resume == "last":
        out = training_args.output_dir
        found, skipped = newest_complete_checkpoint(out, hashes=True)
        reasons = "; ".join(f"skipped {path} ({why})" for path, why in skipped)
        if found is None:
            raise ValueError(f"--resume: no complete checkpoint in {out}" + (f" ({reasons})" if reasons else ""))
        log(f"Resuming from {found}, the newest complete checkpoint in {out}" + (f"; {reasons}" if reasons else ""))
        return str(found)
    if not Path(resume).is_dir():
        raise ValueError(f"--resume {resume}: no such checkpoint folder")
    problems = checkpoint_problems(resume, hashes=True)
    if problems:
        raise ValueError(f"--resume {resume} is not a complete checkpoint: {'; '.join(problems)}")
    log(f"Resuming from {resume}")
    return resume


__all__ = ["TrainScriptArguments", "load_for_training", "main", "resume_checkpoint", "split_records", "train_head"]
