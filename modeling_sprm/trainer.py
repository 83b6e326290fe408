"""Training an SPRM head, TRL style: a config dataclass, a data collator and two `Trainer` subclasses.

* `SPRMTrainer` learns from **outcome labels only** (was the final answer right?), with MetaStone-S1's
  self-supervised SPR loss (`modeling_sprm.losses.spr_loss`) or the `outcome_bce` baseline.
* `StepSupervisedTrainer` learns from step labels (`step_bce`); it takes TRL's stepwise-supervision rows
  ``{"prompt", "completions", "labels"}`` as they are (float labels kept).

Rows can be records (`modeling_sprm.data`), TRL stepwise rows, or rows of cached step features
(`modeling_sprm.features.extract_step_features`). By default the backbone is frozen and the trainer runs it **once**
over each data set, then trains the head from the cached features (`cache_features=True`): no tokenizer or backbone
work per epoch. With `unfreeze_backbone=True` (optionally `feature_grad_scale`, `lm_loss_weight`), batches go
through the backbone every step.

Both trainers record how the head was trained in `model.config.head_training` and save **head-only** checkpoints
(the backbone is referenced, as an adapter) that `SPRMForStepScoring.from_pretrained` and `sprm score --model DIR`
load, next to a JSON training log and a plot of the mean score of correct vs incorrect solutions.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, PretrainedConfig, Trainer, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME

from .backbones import EMBEDDED_BACKBONE_ID, resolve_backbone
from .features import encode_record, extract_step_features, step_features_for_traces
from .losses import get_loss
from .modeling_sprm import HEAD_PREFIX, SPRMForStepScoring, pad_traces
from .monitoring import compute_score_metrics, plot_score_curves, write_training_log
from .steps import token_index

TRAINING_LOG_NAME = "training_log.json"
SCORE_PLOT_NAME = "score_curves.png"
LABEL_KINDS = ("outcome", "step")
# Record fields a hand-written record may leave out (modeling_sprm.data writes them all).
RECORD_DEFAULTS = {"steps": None, "solution": None, "outcome_label": None, "step_labels": None, "rollout_truncated": False}


@dataclass
class SPRMTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus what an SPRM head needs. Every field becomes a command-line flag of `sprm train`
    (through `HfArgumentParser`). Defaults differ from `TrainingArguments` where head-only training wants it:
    `learning_rate` 1e-3, `logging_steps` 10, `remove_unused_columns` False."""

    loss: str | None = field(
        default=None,
        metadata={
            "help": "Training objective, a name in modeling_sprm.losses.LOSSES: 'spr' (MetaStone-S1's self-supervised "
            "loss, outcome labels), 'outcome_bce' (every step gets the outcome label), 'asymmetric_spr' (the filter "
            "on steps of wrong solutions only), 'mil' (the aggregated step score trained against the outcome), "
            "'first_error' (self-training on the head's own first-error guess), 'step_bce' (step labels). "
            "Default: 'spr' for SPRMTrainer, 'step_bce' for StepSupervisedTrainer."
        },
    )
    loss_options: str | None = field(
        default=None,
        metadata={"help": "Extra keyword options for the loss function as a JSON object, e.g. '{\"eps\": 1e-6}'."},
    )
    spr_threshold: float = field(
        default=0.5,
        metadata={"help": "SPR filter: a step's pseudo-label is 'right' when sigmoid(logit) > this (MetaStone-S1: 0.5)."},
    )
    spr_warmup_steps: int = field(
        default=0,
        metadata={"help": "Optimizer steps at the start during which the SPR filter is off (every step counts)."},
    )
    class_balance: bool = field(
        default=False,
        metadata={"help": "Reweight positive/negative steps as MetaStone-S1's training code does (not in the paper)."},
    )
    positive_factor: float = field(
        default=1.5, metadata={"help": "Extra weight of positive steps under --class_balance (MetaStone-S1: 1.5)."}
    )
    loss_eps: float = field(default=1e-5, metadata={"help": "Added to the sum of step weights in the loss."})
    exclude_truncated: bool = field(
        default=False,
        metadata={"help": "Leave out solutions whose record says rollout_truncated (generation was cut off)."},
    )
    unfreeze_backbone: bool = field(
        default=False, metadata={"help": "Train the backbone too (default: only the head, on a frozen backbone)."}
    )
    feature_grad_scale: float | None = field(
        default=None,
        metadata={
            "help": "With --unfreeze_backbone: scale the gradient from the head into the backbone without changing "
            "the forward value (MetaStone-S1 uses 1e-4)."
        },
    )
    lm_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "With --unfreeze_backbone: add this times the language-model loss on the solutions of correct "
            "records (joint 'reflective' training of policy and scorer)."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Longest input in tokens; steps past it are not scored. Default: the model's max_length."},
    )
    cache_features: bool = field(
        default=True,
        metadata={
            "help": "With a frozen backbone and no LM loss: run the backbone once over each data set and train the "
            "head from the cached step features."
        },
    )
    feature_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Folder where cached step features are kept across runs (default: in memory only)."},
    )
    feature_batch_size: int = field(default=8, metadata={"help": "Batch size of the backbone pass that caches features."})
    seed_untrained_head: bool = field(
        default=True,
        metadata={
            "help": "Re-initialise a head that was never trained from --seed, so that a run is reproducible from its "
            "arguments alone."
        },
    )
    learning_rate: float = field(
        default=1e-3,
        metadata={"help": "Initial AdamW learning rate (1e-3 suits a head alone; use ~1e-5 with --unfreeze_backbone)."},
    )
    logging_steps: float = field(
        default=10, metadata={"help": "Log the loss and the training-batch score curves every this many steps."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the SPRM collator reads record fields the model does not take."}
    )


# -- rows -> records / feature rows ---------------------------------------------------------------------------------


def as_record(row: dict, where: str) -> dict:
    """A record (`modeling_sprm.data`) from a record row or a TRL stepwise-supervision row
    ``{"prompt": str, "completions": [str], "labels": [bool | float]}``; as `data.load_trl` does, the outcome label
    of a TRL row is its ``outcome_label`` field if present, else its lowest step label (1 only if every step is
    right), and float labels stay floats."""
    if "question" in row:
        return {**RECORD_DEFAULTS, "id": where, **row}
    if "prompt" in row and "completions" in row:
        if not isinstance(row["prompt"], str):
            raise ValueError(f"{where}: only TRL's standard (string) prompts are supported, not conversational ones")
        labels = [float(v) for v in row["labels"]]
        if len(labels) != len(row["completions"]):
            raise ValueError(f"{where}: 'labels' must have one label per completion ({len(row['completions'])})")
        outcome = row.get("outcome_label")
        return {
            "id": str(row.get("id", where)),
            "question": row["prompt"],
            "steps": list(row["completions"]),
            "solution": None,
            "outcome_label": (min(labels) if labels else None) if outcome is None else float(outcome),
            "step_labels": labels,
            "rollout_truncated": bool(row.get("rollout_truncated", False)),
        }
    raise ValueError(
        f"{where}: a row needs 'question' and 'steps' or 'solution' (a modeling_sprm.data record), or 'prompt' and "
        f"'completions' (TRL stepwise supervision); it has {sorted(row)}"
    )


def check_labels(rows: list[dict], label_kind: str, name: str) -> None:
    """Make sure every row has the labels the trainer learns from; the error names the first row that does not."""
    for i, row in enumerate(rows):
        where = f"{name} row {i} (id {row.get('id')!r})"
        if label_kind == "outcome" and row.get("outcome_label") is None:
            raise ValueError(f"{where} has no outcome label; outcome training needs one per solution")
        if label_kind == "step":
            labels = row.get("step_labels")
            if labels is None or all(v is None or math.isnan(v) for v in labels):
                raise ValueError(f"{where} has no step labels; step-supervised training needs them")


def feature_rows(dataset) -> list[dict]:
    """The rows of a cached-feature data set (`extract_step_features`) in memory, with the features as tensors:
    decoding Arrow rows every epoch would cost more than training the head."""
    columns = [c for c in ("id", "outcome_label", "step_labels", "rollout_truncated", "num_steps") if c in dataset.column_names]
    small = dataset.select_columns(columns).to_dict()
    features = dataset.with_format("numpy", columns=["step_features"])[:]["step_features"]
    rows = []
    for i, array in enumerate(features):
        row = {c: small[c][i] for c in columns}
        row["step_features"] = torch.tensor(array if array.ndim == 2 else array.reshape(0, 0))  # a copy: Arrow is read-only
        rows.append(row)
    return rows


def is_feature_dataset(dataset) -> bool:
    return "step_features" in (getattr(dataset, "column_names", None) or [])


# -- the collator ---------------------------------------------------------------------------------------------------


def _padded_step_labels(rows: Sequence[dict], scored: Sequence[int], totals: Sequence[int], width: int) -> torch.Tensor:
    """``[B, width]`` step labels, NaN where unknown or padded. ``totals``: the steps the model found in each row
    (its labels must match them); ``scored``: those inside the context window, the labels kept."""
    out = torch.full((len(rows), width), float("nan"))
    for i, (row, n, total) in enumerate(zip(rows, scored, totals)):
        labels = row.get("step_labels")
        if labels is None:
            continue
        if len(labels) != total:
            raise ValueError(
                f"record {row.get('id')!r}: the model found {total} steps but the record has {len(labels)} step labels "
                "(a step text containing a step delimiter or a think tag splits differently)"
            )
        values = [float("nan") if v is None else float(v) for v in labels[: min(n, width)]]
        out[i, : len(values)] = torch.tensor(values)
    return out


@dataclass
class SPRMDataCollator:
    """Rows -> one model batch.

    * Cached-feature rows (``step_features`` ``[n, C]``): ``step_features`` ``[B, S, C]`` and ``step_mask`` ``[B, S]``.
    * Records (or TRL stepwise rows): each goes through `features.encode_record` (the same path as scoring) and
      `pad_traces`: ``input_ids``, ``attention_mask`` ``[B, T]``, ``step_positions`` ``[B, S]`` (-1 = padding or cut
      off). With ``lm_labels=True`` also ``lm_labels`` ``[B, T]``: the solution tokens of correct records (outcome
      >= 0.5), -100 elsewhere.

    Always: ``outcome_labels`` ``[B]`` and ``step_labels`` ``[B, S]`` (float, NaN = unknown), ``rollout_truncated``
    ``[B]`` (bool).
    """

    model: SPRMForStepScoring
    tokenizer: Any = None
    max_length: int | None = None
    lm_labels: bool = False

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("empty batch")
        if "step_features" in rows[0]:
            batch, num_steps, total_steps = self._features(rows)
        else:
            rows = [as_record(row, f"batch row {i}") for i, row in enumerate(rows)]
            batch, num_steps, total_steps = self._encode(rows)
        width = batch["step_mask"].shape[1] if "step_mask" in batch else batch["step_positions"].shape[1]
        batch["step_labels"] = _padded_step_labels(rows, num_steps, total_steps, width)
        batch["outcome_labels"] = torch.tensor(
            [float("nan") if row.get("outcome_label") is None else float(row["outcome_label"]) for row in rows]
        )
        batch["rollout_truncated"] = torch.tensor([bool(row.get("rollout_truncated", False)) for row in rows])
        return batch

    def _features(self, rows: list[dict]) -> tuple[dict, list[int], list[int]]:
        feats = [row["step_features"] for row in rows]
        hidden = max(f.shape[-1] for f in feats)
        width = max(1, max(f.shape[0] for f in feats))
        step_features = torch.zeros(len(rows), width, hidden)
        step_mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, f in enumerate(feats):
            step_features[i, : f.shape[0]] = f
            step_mask[i, : f.shape[0]] = True
        num_scored = [f.shape[0] for f in feats]
        total = [int(row.get("num_steps", n)) for row, n in zip(rows, num_scored)]
        return {"step_features": step_features, "step_mask": step_mask}, num_scored, total

    def _encode(self, rows: list[dict]) -> tuple[dict, list[int], list[int]]:
        if self.tokenizer is None:
            raise ValueError("records need a tokenizer: pass processing_class= to the trainer")
        traces = [encode_record(row, self.tokenizer, self.model, self.max_length) for row in rows]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = pad_traces(traces, pad_id)
        if self.lm_labels:
            batch["lm_labels"] = self._lm_labels(rows, traces, batch)
        num_steps = [len(t.steps) for t in traces]
        return batch, num_steps, num_steps

    def _lm_labels(self, rows, traces, batch) -> torch.Tensor:
        labels = torch.full_like(batch["input_ids"], -100)
        for i, (row, trace) in enumerate(zip(rows, traces)):
            if row.get("outcome_label") is None or row["outcome_label"] < 0.5:
                continue
            # Where the solution starts in tokens: the trace's text tokenized again with offsets; any special
            # tokens the trace has in front (a plain prompt's BOS) shift the index.
            enc = self.tokenizer(trace.text, add_special_tokens=False, return_offsets_mapping=True)
            start = token_index(enc["offset_mapping"], trace.solution_start) + trace.num_tokens - len(enc["input_ids"])
            end = len(trace.input_ids)
            labels[i, start:end] = batch["input_ids"][i, start:end]
        return labels


# -- the trainers ---------------------------------------------------------------------------------------------------


class SPRMTrainer(Trainer):
    """Trains an SPRM head from **outcome labels only** (see the module docstring). Takes the usual `Trainer`
    arguments, with `args` an `SPRMTrainingArguments` and `processing_class` the tokenizer;
    `data_description` (a dict: data path, format, ...) is recorded in the checkpoint's `head_training`."""

    label_kind = "outcome"
    default_loss = "spr"

    def __init__(
        self,
        model: SPRMForStepScoring,
        args: SPRMTrainingArguments | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        data_collator: Callable | None = None,
        compute_metrics: Callable | None = compute_score_metrics,
        data_description: dict | None = None,
        **kwargs,
    ):
        args = SPRMTrainingArguments(output_dir="sprm-head") if args is None else args
        if not isinstance(args, SPRMTrainingArguments):
            raise TypeError(f"args must be SPRMTrainingArguments, got {type(args).__name__}")
        if not isinstance(model, SPRMForStepScoring):
            raise TypeError(f"model must be an SPRMForStepScoring, got {type(model).__name__}")
        self.loss_name = args.loss or self.default_loss
        self.loss_fn, self.loss_options = self._build_loss(args)
        self._check_training_options(args)
        self.data_description = data_description or {}

        model.backbone.requires_grad_(args.unfreeze_backbone)
        model.score_head.requires_grad_(True)
        if args.seed_untrained_head and not model.config.head_is_trained:
            with torch.random.fork_rng():
                torch.manual_seed(args.seed)
                for module in model.score_head.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.reset_parameters()
        self.use_cached_features = args.cache_features and not args.unfreeze_backbone and args.lm_loss_weight == 0
        if data_collator is None:
            data_collator = SPRMDataCollator(model, processing_class, args.max_length, lm_labels=args.lm_loss_weight > 0)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,  # replaced by their prepared forms below
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator,
            compute_metrics=compute_metrics,
            **kwargs,
        )
        self.loss_is_scaled_for_ga = False  # a per-batch weighted mean: the Trainer divides by accumulation steps
        self.train_dataset = self.prepare_dataset(train_dataset, "train_dataset")
        self.eval_dataset = self.prepare_dataset(eval_dataset, "eval_dataset")
        if model.score_head.standardize and not model.config.head_is_trained and self.train_dataset is not None:
            model.score_head.set_feature_statistics(self.training_feature_sample())
        self._sums = torch.zeros(7, dtype=torch.float64)  # see _track_scores

    def training_feature_sample(self, max_records: int = 512) -> torch.Tensor:
        """Step features ``[N, c]`` of the training data (every step of cached rows; otherwise one frozen
        backbone pass over at most ``max_records`` records): what a standardising head takes its statistics from."""
        rows = self.train_dataset
        if "step_features" not in rows[0]:
            pad_id = getattr(self.processing_class, "pad_token_id", None) or 0
            traces = [encode_record(r, self.processing_class, self.model, self.args.max_length) for r in rows[:max_records]]
            return torch.cat(step_features_for_traces(self.model, traces, pad_id, self.args.feature_batch_size))
        return torch.cat([r["step_features"] for r in rows])

    # -- configuration --------------------------------------------------------------------------------------------
    def _build_loss(self, args: SPRMTrainingArguments) -> tuple[Callable, dict]:
        fn = get_loss(self.loss_name)
        accepted = inspect.signature(fn).parameters
        wanted = {
            "threshold": (args.spr_threshold, 0.5, "spr_threshold"),
            "class_balance": (args.class_balance, False, "class_balance"),
            "positive_factor": (args.positive_factor, 1.5, "positive_factor"),
            "eps": (args.loss_eps, 1e-5, "loss_eps"),
        }
        options = {}
        for key, (value, default, flag) in wanted.items():
            if key in accepted:
                options[key] = value
            elif value != default:
                raise ValueError(f"--{flag} has no effect with the {self.loss_name!r} loss")
        if args.loss_options:
            try:
                extra = json.loads(args.loss_options)
            except json.JSONDecodeError as err:
                raise ValueError(f"loss_options must be a JSON object, got {args.loss_options!r}: {err}") from None
            if not isinstance(extra, dict):
                raise ValueError(f"loss_options must be a JSON object, got {args.loss_options!r}")
            unknown = sorted(set(extra) - set(accepted))
            if unknown:
                raise ValueError(f"the {self.loss_name!r} loss has no options {unknown}")
            options.update(extra)
        if args.spr_warmup_steps and "use_filter" not in accepted:
            raise ValueError(f"--spr_warmup_steps needs a loss with a filter; {self.loss_name!r} has none")
        self._loss_takes_use_filter = "use_filter" in accepted
        bound = functools.partial(fn, **options)
        # Fail now, not after the backbone pass, when the loss needs labels this trainer never gives it.
        probe = {"outcome_labels": torch.ones(1)} if self.label_kind == "outcome" else {"step_labels": torch.ones(1, 1)}
        try:
            bound(step_logits=torch.zeros(1, 1), step_mask=torch.ones(1, 1, dtype=torch.bool), **probe)
        except ValueError as err:
            other = "StepSupervisedTrainer" if self.label_kind == "outcome" else "SPRMTrainer"
            raise ValueError(f"{type(self).__name__} trains on {self.label_kind} labels: {err} (use {other}?)") from None
        return bound, options

    @staticmethod
    def _check_training_options(args: SPRMTrainingArguments) -> None:
        if not args.unfreeze_backbone:
            if args.lm_loss_weight:
                raise ValueError("--lm_loss_weight trains the backbone's LM head: it needs --unfreeze_backbone")
            if args.feature_grad_scale is not None:
                raise ValueError("--feature_grad_scale scales the gradient into the backbone: it needs --unfreeze_backbone")
        if args.lm_loss_weight < 0:
            raise ValueError(f"--lm_loss_weight must be >= 0, got {args.lm_loss_weight}")

    # -- data -----------------------------------------------------------------------------------------------------
    def prepare_dataset(self, dataset, name: str):
        """Validate a data set and put it in the form training reads: rows of cached features in memory (the
        backbone runs once, on the training device, the main process first), or records for the collator to
        tokenize when the backbone is trained. Feature rows (`extract_step_features`) are used as they are."""
        if dataset is None:
            return None
        if isinstance(dataset, dict):
            return {k: self.prepare_dataset(v, f"{name}[{k!r}]") for k, v in dataset.items()}
        if is_feature_dataset(dataset):
            rows = feature_rows(dataset)
        else:
            rows = dataset.to_list() if hasattr(dataset, "to_list") else list(dataset)
            if rows and "step_features" not in rows[0]:  # not already prepared
                rows = [as_record(row, f"{name} row {i}") for i, row in enumerate(rows)]
        if not rows:
            raise ValueError(f"{name} is empty")
        check_labels(rows, self.label_kind, name)
        if self.use_cached_features and "step_features" not in rows[0]:
            # With a cache folder the other processes wait and then load what the main process wrote.
            shared = self.args.feature_cache_dir is not None
            with self.args.main_process_first(desc=name) if shared else contextlib.nullcontext():
                features = extract_step_features(
                    self.model,
                    self.processing_class,
                    rows,
                    batch_size=self.args.feature_batch_size,
                    max_length=self.args.max_length,
                    cache_dir=self.args.feature_cache_dir,
                )
            rows = feature_rows(features)
        return rows

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """`Trainer.evaluate`; a data set given here is prepared as the constructor's are."""
        eval_dataset = self.prepare_dataset(eval_dataset, "eval_dataset") if eval_dataset is not None else None
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    # -- loss -----------------------------------------------------------------------------------------------------
    def _global_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach().clone()
        torch.distributed.all_reduce(tensor)
        return tensor

    def training_labels(self, inputs: dict) -> dict[str, torch.Tensor]:
        """The labels the loss may see: outcome labels only, for this trainer."""
        return {"outcome_labels": inputs["outcome_labels"]}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        unwrapped = self.accelerator.unwrap_model(model)
        if not self.args.unfreeze_backbone:
            unwrapped.backbone.eval()  # a frozen backbone gives the same features as the cached ones (no dropout)
        lm_labels = inputs.get("lm_labels")
        model_inputs = {
            k: inputs[k] for k in ("input_ids", "attention_mask", "step_positions", "step_features", "step_mask") if k in inputs
        }
        outputs = model(
            **model_inputs,
            feature_grad_scale=self.args.feature_grad_scale,
            return_lm_logits=lm_labels is not None,
        )
        extra = {}
        if self._loss_takes_use_filter:
            extra["use_filter"] = self.state.global_step >= self.args.spr_warmup_steps
        loss = self.loss_fn(
            step_logits=outputs.step_logits,
            step_mask=outputs.step_mask,
            **self.training_labels(inputs),
            solution_mask=~inputs["rollout_truncated"] if self.args.exclude_truncated else None,
            global_sum=self._global_sum if self.accelerator.num_processes > 1 else None,
            **extra,
        )
        if lm_labels is not None and self.args.lm_loss_weight > 0:
            loss = loss + self.args.lm_loss_weight * lm_loss(outputs.logits, lm_labels)
        if model.training:
            self._track_scores(outputs, inputs["outcome_labels"])
        return (loss, outputs) if return_outputs else loss

    # -- monitoring -----------------------------------------------------------------------------------------------
    def _track_scores(self, outputs, outcomes: torch.Tensor) -> None:
        """Accumulate, over the training batches since the last log: the mean solution score of correct and of
        incorrect solutions (the "aha" curves), the share of steps the head calls right (near 0 or 1: collapsed),
        and the share of steps whose pseudo-label agrees with their solution's outcome (what the SPR filter
        keeps, for hard labels)."""
        scores, outcomes = outputs.scores.detach().double(), outcomes.detach().double().to(outputs.scores.device)
        mask = outputs.step_mask.detach()
        pseudo = outputs.step_scores.detach()[mask] > self.args.spr_threshold
        step_outcomes = outcomes.unsqueeze(-1).expand_as(mask)[mask]
        correct, incorrect = outcomes >= 0.5, outcomes < 0.5  # NaN (unknown) is neither
        agrees = (pseudo & (step_outcomes >= 0.5)) | (~pseudo & (step_outcomes < 0.5))
        values = [scores[correct].sum(), correct.sum(), scores[incorrect].sum(), incorrect.sum()]
        values += [pseudo.sum(), agrees.sum(), mask.sum()]
        # Kept on the training device: read (one sync) only when logging.
        self._sums = self._sums.to(scores.device) + torch.stack([v.double() for v in values])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log (all processes take part): add what _track_scores gathered
            sums = self._sums
            if self.accelerator.num_processes > 1:
                sums = self._global_sum(sums)
            correct_sum, correct_n, incorrect_sum, incorrect_n, positive, agree, steps = sums.tolist()
            if correct_n:
                logs["train_score_correct_mean"] = correct_sum / correct_n
            if incorrect_n:
                logs["train_score_incorrect_mean"] = incorrect_sum / incorrect_n
            if correct_n and incorrect_n:
                logs["train_score_gap"] = correct_sum / correct_n - incorrect_sum / incorrect_n
            if steps:
                logs["train_step_positive_fraction"] = positive / steps
                logs["train_filter_agreement"] = agree / steps
            self._sums.zero_()
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss, ``(scores, step_scores, step_mask)`` and ``(outcome_labels, step_labels)`` of one batch, for
        `monitoring.compute_score_metrics` (step labels are evaluation-only for outcome training)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        loss = loss.detach()
        if prediction_loss_only:
            return loss, None, None
        predictions = (outputs.scores, outputs.step_scores, outputs.step_mask.float())
        return loss, predictions, (inputs["outcome_labels"], inputs["step_labels"])

    # -- saving ---------------------------------------------------------------------------------------------------
    def head_training_record(self) -> dict:
        """What `config.head_training` records about this run."""
        args = self.args
        return {
            "trainer": type(self).__name__,
            "labels": self.label_kind,
            "loss": self.loss_name,
            "loss_options": self.loss_options,
            "spr_warmup_steps": args.spr_warmup_steps,
            "exclude_truncated": args.exclude_truncated,
            "backbone": "trained" if args.unfreeze_backbone else "frozen",
            "feature_grad_scale": args.feature_grad_scale,
            "lm_loss_weight": args.lm_loss_weight,
            "data": self.data_description,
            "train_examples": len(self.train_dataset) if self.train_dataset is not None else None,
            "global_steps": self.state.global_step,
            "epochs": self.state.epoch,
            "learning_rate": args.learning_rate,
            "train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "seed": args.seed,
        }

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Head-only checkpoint (full when the backbone was trained), tokenizer, training arguments, JSON log and
        the score-curve plot."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        model.config.head_training = self.head_training_record()
        model.save_pretrained(output_dir, head_only=not self.args.unfreeze_backbone)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        write_training_log(
            Path(output_dir) / TRAINING_LOG_NAME, self.state.log_history, head_training=model.config.head_training
        )
        plot_score_curves(
            self.state.log_history, Path(output_dir) / SCORE_PLOT_NAME, title=f"{self.loss_name} ({self.label_kind} labels)"
        )

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # Resuming from a head-only checkpoint: the backbone keys are missing on purpose, the head's must not be.
        missing_head = [k for k in load_result.missing_keys if k.startswith(HEAD_PREFIX)]
        if missing_head:
            raise ValueError(f"the checkpoint lacks head weights {missing_head}")
        if self.args.unfreeze_backbone or load_result.unexpected_keys:
            super()._issue_warnings_after_load(load_result)


class StepSupervisedTrainer(SPRMTrainer):
    """Trains an SPRM head from step labels (`step_bce` by default): the supervised upper bound the
    self-supervised `SPRMTrainer` is compared with. Accepts TRL's stepwise-supervision rows unchanged."""

    label_kind = "step"
    default_loss = "step_bce"

    def training_labels(self, inputs: dict) -> dict[str, torch.Tensor]:
        return {"step_labels": inputs["step_labels"]}


def lm_loss(logits: torch.Tensor, lm_labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the tokens where ``lm_labels != -100``; 0 (not NaN) when there are none."""
    shifted = lm_labels[:, 1:].to(logits.device)
    total = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), shifted.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return total / (shifted != -100).sum().clamp(min=1)


TRAINERS = {"outcome": SPRMTrainer, "step": StepSupervisedTrainer}


# -- one call: data in, head-only checkpoint out (what `sprm train` runs) -------------------------------------------


def load_for_training(model_name_or_path: str | None = None) -> tuple[SPRMForStepScoring, Any]:
    """``(model, tokenizer)`` to train: an SPRM checkpoint (training continues from its head), or a causal LM (a
    fresh head is attached); None = the embedded SmolLM2-135M-Instruct backbone."""
    from .loading import load_tokenizer

    reference = model_name_or_path or EMBEDDED_BACKBONE_ID
    location = resolve_backbone(reference)
    config, _ = PretrainedConfig.get_config_dict(str(location))
    if config.get("model_type") == "sprm":
        model = SPRMForStepScoring.from_pretrained(location)
        return model, load_tokenizer(model, str(location))
    model = SPRMForStepScoring.from_backbone(reference)
    return model, AutoTokenizer.from_pretrained(location)


def split_records(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded random ``(train, held_out)`` split with ``round(fraction * n)`` held-out records (at least 1)."""
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_out = max(1, round(fraction * len(records)))
    if n_out >= len(records):
        raise ValueError(f"cannot hold out {n_out} of {len(records)} records")
    held = set(order[:n_out])
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def train_head(
    args: SPRMTrainingArguments,
    data: str,
    format: str,
    labels: str = "outcome",
    model_name_or_path: str | None = None,
    eval_data: str | None = None,
    eval_fraction: float = 0.0,
    limit: int | None = None,
    resume_from_checkpoint: str | bool | None = None,
    log: Callable[[str], None] = print,
) -> SPRMTrainer:
    """Load ``data`` (`data.load_records(data, format)`), train with the trainer for ``labels`` ("outcome" or
    "step"), and save a head-only checkpoint with its training log and score plot in ``args.output_dir``."""
    from .data import load_records

    if args.process_index != 0:  # under torchrun / accelerate launch, one process speaks

        def log(message: str) -> None:
            pass

    if labels not in TRAINERS:
        raise ValueError(f"labels must be one of {LABEL_KINDS}, got {labels!r}")
    records = load_records(data, format)[:limit]
    log(f"Loaded {len(records)} records from {data} ({format}).")
    eval_records = None
    if eval_data is not None:
        eval_records = load_records(eval_data, format)[:limit]
        log(f"Loaded {len(eval_records)} evaluation records from {eval_data}.")
    elif eval_fraction:
        records, eval_records = split_records(records, eval_fraction, args.seed)
        log(f"Held out {len(eval_records)} of the records for evaluation (seed {args.seed}).")
    model, tokenizer = load_for_training(model_name_or_path)
    name = model.config.backbone_name_or_path
    where = "a frozen" if not args.unfreeze_backbone else "a trained"
    log(f"Training the SPRM head on {where} {name} backbone with the {args.loss or TRAINERS[labels].default_loss!r} "
        f"loss ({labels} labels).")
    trainer = TRAINERS[labels](
        model,
        args,
        train_dataset=records,
        eval_dataset=eval_records,
        processing_class=tokenizer,
        data_description={"path": str(data), "format": format, "records": len(records), "limit": limit},
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if eval_records is not None:
        metrics = trainer.evaluate()
        shown = {k: round(v, 4) for k, v in metrics.items() if any(w in k for w in ("score", "auroc", "accuracy", "loss"))}
        log(f"Held-out metrics: {shown}")
    trainer.save_model(args.output_dir)
    kind = "full (backbone trained)" if args.unfreeze_backbone else "head-only"
    log(f"Saved the {kind} SPRM checkpoint, {TRAINING_LOG_NAME} and {SCORE_PLOT_NAME} to {args.output_dir}")
    log(f"Score with it: sprm score --model {args.output_dir} --question ... --solution ...")
    return trainer


__all__ = [
    "SPRMDataCollator",
    "SPRMTrainer",
    "SPRMTrainingArguments",
    "StepSupervisedTrainer",
    "load_for_training",
    "train_head",
]
