"""Training an SPRM head, TRL style: a data collator and two `Trainer` subclasses (their arguments are
`modeling_sprm.training.arguments.SPRMTrainingArguments`; ``sprm train`` is `modeling_sprm.training.script`).

* `SPRMTrainer` learns from **outcome labels only** (was the final answer right?), with MetaStone-S1's
  self-supervised SPR loss (`modeling_sprm.training.losses.spr_loss`) or the `outcome_bce` baseline.
* `StepSupervisedTrainer` learns from step labels (`step_bce`); it takes TRL's stepwise-supervision rows
  ``{"prompt", "completions", "labels"}`` as they are (float labels kept).

Rows can be records (`modeling_sprm.data`), TRL stepwise rows (`data.as_record`), or rows of cached step features
(`modeling_sprm.training.features.extract_step_features`). By default the backbone is frozen and the trainer runs it **once**
over each data set, then trains the head from the cached features (`cache_features=True`): no tokenizer or backbone
work per epoch. With `unfreeze_backbone=True`, or `lora_r=R` (peft LoRA adapters of rank R on the frozen backbone,
trained with the head), optionally with `feature_grad_scale` and `lm_loss_weight`, batches go through the backbone
every step.

With `ema_teacher_decay=d` the pseudo-labels of the self-training losses (``spr``, ``asymmetric_spr``,
``first_error``: their ``teacher_logits``) come from a teacher: a copy of the head (no gradient, evaluated without
dropout on the same step features) updated after every optimizer step as ``teacher = d * teacher + (1 - d) * head``
(parameters; buffers such as the standardisation statistics are copied), starting from the head as training starts.

Both trainers record how the head was trained in `model.config.head_training` and save **head-only** checkpoints
(the backbone is referenced, as an adapter; with LoRA the adapter files are saved next to the head) that
`SPRMForStepScoring.from_pretrained` and `sprm score --model DIR` load, next to a JSON training log and a plot of the
mean score of correct vs incorrect solutions.

Saving is crash-safe: a Trainer checkpoint is written into ``OUTPUT/.staging/checkpoint-N``, gets its manifest
(`loading.write_manifest`: every file with its size and sha256), and only then is renamed to
``OUTPUT/checkpoint-N``; a run killed while saving leaves no ``checkpoint-N`` behind (the next run clears the
staging folder). The final model (`save_model`) gets its manifest last too. A checkpoint also holds what resuming
needs besides the head: the LoRA adapter and the EMA teacher (``ema_teacher.safetensors``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..cards import TRAINING_FILE
from ..data import as_record
from ..loading import MANIFEST_NAME, STAGING_DIR, TRAINER_STATE_NAME, write_manifest
from ..modeling_sprm import ADAPTER_WEIGHTS_NAME, HEAD_PREFIX, SPRMForStepScoring, has_adapter, load_adapter_weights
from ..processing_sprm import SPRMProcessor, input_fields, pad_step_features
from ..steps import StepRules, join_steps, scored_regions, token_index
from .arguments import SPRMTrainingArguments
from .features import extract_step_features, step_features_for_traces
from .losses import get_loss, trajectory_loss
from .monitoring import RunningScoreMetrics, compute_score_metrics, plot_score_curves, write_training_log
from .monitoring import CollapseAlarm, collapse_verdict, record_collapse_verdict

TRAINING_LOG_NAME = "training_log.json"
SCORE_PLOT_NAME = "score_curves.png"
TEACHER_NAME = "ema_teacher.safetensors"  # in Trainer checkpoints, for --resume


# -- rows -> feature rows ----------------------------------------------------------------------------------------


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


def check_think_spans(rows: list[dict], rules: StepRules, name: str) -> None:
    """``--score_span think`` trains on each trace's thinking. On a text without a think span steps.py falls back
    to scoring the whole text (MetaStone-S1's rule), which would train a "think" head on responses: refuse it, naming
    the first row without one."""
    for i, row in enumerate(rows):
        fields = input_fields(row)
        text = fields.get("text") or fields.get("solution") or join_steps(fields["steps"], rules)[0]
        if not any(part == "think" for _, _, part in scored_regions(text, 0, len(text), rules)):
            raise ValueError(
                f"--score_span think: {name} row {i} (id {row.get('id')!r}) has no {rules.think_start_tag}..."
                f"{rules.think_end_tag} span with text; give thinking traces, or use --score_span response or both "
                "(a text without think tags is all response)"
            )


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
    * Records (or TRL stepwise rows): each goes through `SPRMProcessor` (the same path as scoring):
      ``input_ids``, ``attention_mask`` ``[B, T]``, ``step_positions`` and ``step_starts`` ``[B, S]`` (-1 = padding
      or cut off). With ``lm_labels=True`` also ``lm_labels`` ``[B, T]``: the solution tokens of correct records (outcome
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

    @property
    def processor(self) -> SPRMProcessor:
        if self.tokenizer is None:
            raise ValueError("records need a tokenizer: pass processing_class= to the trainer")
        return SPRMProcessor.from_model(self.model, self.tokenizer)

    def _features(self, rows: list[dict]) -> tuple[dict, list[int], list[int]]:
        feats = [row["step_features"] for row in rows]
        step_features, step_mask = pad_step_features(feats, dtype=torch.float32)
        num_scored = [f.shape[0] for f in feats]
        total = [int(row.get("num_steps", n)) for row, n in zip(rows, num_scored)]
        return {"step_features": step_features, "step_mask": step_mask}, num_scored, total

    def _encode(self, rows: list[dict]) -> tuple[dict, list[int], list[int]]:
        processor = self.processor
        traces = [processor.encode(row, max_length=self.max_length) for row in rows]
        batch = processor.pad(traces)
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
            enc = self.processor.tokenizer(trace.text, add_special_tokens=False, return_offsets_mapping=True)
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
        if args.trajectory_loss_weight and self.label_kind != "outcome":
            raise ValueError("--trajectory_loss_weight trains each trace's aggregated score against its outcome: it "
                             f"goes with outcome labels, not with {type(self).__name__}")
        if args.score_span is not None:  # every encoding below (features, collator, saved config) reads the span
            model.config.score_span = args.score_span
            if isinstance(processing_class, SPRMProcessor):
                processing_class = copy.copy(processing_class)
                processing_class.rules = dataclasses.replace(processing_class.rules, score_span=args.score_span)
        if args.ema_teacher_decay is not None and "teacher_logits" not in inspect.signature(get_loss(self.loss_name)).parameters:
            raise ValueError(f"--ema_teacher_decay gives the pseudo-labels of a self-training loss (spr, asymmetric_spr, "
                             f"first_error); the {self.loss_name!r} loss has none")
        self.data_description = data_description or {}
        self.trains_backbone = args.unfreeze_backbone or args.lora_r is not None

        model.backbone.requires_grad_(args.unfreeze_backbone)
        if args.lora_r is not None:
            add_lora(model, args)
        model.score_head.requires_grad_(True)
        if args.seed_untrained_head and not model.config.head_is_trained:
            with torch.random.fork_rng():
                torch.manual_seed(args.seed)
                for module in model.score_head.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.reset_parameters()
        self.use_cached_features = args.cache_features and not self.trains_backbone and args.lm_loss_weight == 0
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
        self.running_metrics = RunningScoreMetrics(args.spr_threshold)  # training-batch metrics between two logs
        self.add_callback(CollapseAlarm(self.loss_name, self.label_kind, model.score_head.standardize))
        self.teacher = None
        if args.ema_teacher_decay is not None:
            self.teacher = copy.deepcopy(model.score_head).requires_grad_(False).eval()
            self.add_callback(_EMATeacherUpdate(self))

    def training_feature_sample(self, max_records: int = 512) -> torch.Tensor:
        """Step features ``[N, c]`` of the training data (every step of cached rows; otherwise one frozen
        backbone pass over at most ``max_records`` records): what a standardising head takes its statistics from."""
        rows = self.train_dataset
        if "step_features" not in rows[0]:
            processor = SPRMProcessor.from_model(self.model, self.processing_class)
            traces = [processor.encode(r, max_length=self.args.max_length) for r in rows[:max_records]]
            return torch.cat(step_features_for_traces(self.model, traces, processor, self.args.feature_batch_size))
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
        if not args.unfreeze_backbone and args.lora_r is None:
            if args.lm_loss_weight:
                raise ValueError("--lm_loss_weight trains the backbone for its LM loss: it needs --unfreeze_backbone "
                                 "or --lora_r")
            if args.feature_grad_scale is not None:
                raise ValueError("--feature_grad_scale scales the gradient into the backbone: it needs "
                                 "--unfreeze_backbone or --lora_r")
        if args.lm_loss_weight < 0:
            raise ValueError(f"--lm_loss_weight must be >= 0, got {args.lm_loss_weight}")
        if args.lora_r is None:
            if args.lora_alpha is not None or args.lora_dropout != 0.0 or args.lora_target_modules != "all-linear":
                raise ValueError("--lora_alpha, --lora_dropout and --lora_target_modules need --lora_r")
        else:
            if args.lora_r < 1:
                raise ValueError(f"--lora_r must be a positive rank, got {args.lora_r}")
            if args.unfreeze_backbone:
                raise ValueError("--lora_r trains adapters on a frozen backbone, --unfreeze_backbone the whole backbone: "
                                 "choose one")
            if args.lora_alpha is not None and not args.lora_alpha > 0:
                raise ValueError(f"--lora_alpha must be > 0, got {args.lora_alpha}")
            if not 0.0 <= args.lora_dropout < 1.0:
                raise ValueError(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}")
        if args.ema_teacher_decay is not None and not 0.0 <= args.ema_teacher_decay < 1.0:
            raise ValueError(f"--ema_teacher_decay must be in [0, 1), got {args.ema_teacher_decay}")
        if not args.trajectory_loss_weight >= 0:
            raise ValueError(f"--trajectory_loss_weight must be >= 0, got {args.trajectory_loss_weight}")

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
        if self.args.score_span == "think" and "step_features" not in rows[0]:
            check_think_spans(rows, SPRMProcessor.from_model(self.model, self.processing_class).rules, name)
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
        if not self.trains_backbone:
            unwrapped.backbone.eval()  # a frozen backbone gives the same features as the cached ones (no dropout)
        lm_labels = inputs.get("lm_labels")
        model_inputs = {
            k: inputs[k]
            for k in ("input_ids", "attention_mask", "step_positions", "step_starts", "step_features", "step_mask")
            if k in inputs
        }
        outputs = model(
            **model_inputs,
            feature_grad_scale=self.args.feature_grad_scale,
            return_lm_logits=lm_labels is not None,
            return_step_features=self.teacher is not None,
        )
        extra = {}
        if self._loss_takes_use_filter:
            extra["use_filter"] = self.state.global_step >= self.args.spr_warmup_steps
        if self.teacher is not None:
            extra["teacher_logits"] = self.teacher_logits(outputs.step_features, outputs.step_mask)
        solution_mask = ~inputs["rollout_truncated"] if self.args.exclude_truncated else None
        global_sum = self._global_sum if self.accelerator.num_processes > 1 else None
        loss = self.loss_fn(
            step_logits=outputs.step_logits,
            step_mask=outputs.step_mask,
            **self.training_labels(inputs),
            solution_mask=solution_mask,
            global_sum=global_sum,
            **extra,
        )
        if self.args.trajectory_loss_weight:
            loss = loss + self.args.trajectory_loss_weight * trajectory_loss(
                outputs.step_logits, outputs.step_mask, inputs["outcome_labels"], solution_mask=solution_mask,
                aggregation=unwrapped.config.aggregation, eps=self.args.loss_eps, global_sum=global_sum,
            )
        if lm_labels is not None and self.args.lm_loss_weight > 0:
            loss = loss + self.args.lm_loss_weight * lm_loss(outputs.logits, lm_labels)
        if model.training:
            self.running_metrics.update(outputs, inputs["outcome_labels"])
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def teacher_logits(self, step_features: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """The EMA teacher's step logits ``[B, S]`` on the student's step features (0 where masked, as
        `SPRMForStepScoring.score_step_features`)."""
        weight = self.teacher[0].weight
        mask = step_mask.bool().to(weight.device)
        logits = torch.zeros(mask.shape, dtype=torch.float32, device=weight.device)
        features = step_features.detach().to(device=weight.device, dtype=weight.dtype)
        return logits.masked_scatter(mask, self.teacher(features[mask]).float())

    @torch.no_grad()
    def update_teacher(self) -> None:
        """``teacher = decay * teacher + (1 - decay) * head`` for the parameters; buffers copied."""
        head = self.accelerator.unwrap_model(self.model).score_head
        decay = self.args.ema_teacher_decay
        for teacher, student in zip(self.teacher.parameters(), head.parameters()):
            teacher.mul_(decay).add_(student.detach().to(teacher.dtype), alpha=1 - decay)
        for teacher, student in zip(self.teacher.buffers(), head.buffers()):
            teacher.copy_(student)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log (all processes take part): add the training-batch metrics
            global_sum = self._global_sum if self.accelerator.num_processes > 1 else None
            logs.update(self.running_metrics.compute(global_sum, prefix="train_"))
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
            "backbone": "trained" if args.unfreeze_backbone else "lora" if args.lora_r is not None else "frozen",
            "lora": None if args.lora_r is None else {"r": args.lora_r, "alpha": args.lora_alpha or 2 * args.lora_r,
                                                       "dropout": args.lora_dropout,
                                                       "target_modules": args.lora_target_modules},
            "ema_teacher_decay": args.ema_teacher_decay,
            "trajectory_loss_weight": args.trajectory_loss_weight,
            "feature_grad_scale": args.feature_grad_scale,
            "lm_loss_weight": args.lm_loss_weight,
            "data": self.data_description,
            "train_examples": len(self.train_dataset) if self.train_dataset is not None else None,
            "global_steps": self.state.global_step,
            "epochs": self.state.epoch,
            "learning_rate": args.learning_rate,
            "train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "seed": args.seed,
            "collapse": collapse_verdict(self.state.log_history),  # monitoring's collapse rule
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

    def create_model_card(self, license: str | None = None, model_name: str | None = None, **kwargs) -> None:
        """Write the package's model card (`modeling_sprm.cards.render_model_card`) to ``README.md`` in the output
        folder, instead of the Trainer's generic one: `Trainer.push_to_hub` (``sprm train --push_to_hub``) uploads it
        with the checkpoint. Its ``model-index`` comes from ``eval_results.json`` in the output folder when the
        experiment wrote one there (none is invented); ``datasets`` from the training data when it is a Hub id.
        The Trainer's other card arguments (``tags``, ``tasks``, ...) do not apply to it."""
        if not self.is_world_process_zero():
            return
        from ..backbones import EMBEDDED_BACKBONE_ID, smollm2_wheel_dir
        from ..cards import EVAL_RESULTS_FILE, TRAINING_FILE, load_eval_results, load_training_info, render_model_card

        output_dir = Path(self.args.output_dir)
        results = load_eval_results(output_dir / EVAL_RESULTS_FILE) if (output_dir / EVAL_RESULTS_FILE).is_file() else []
        training = load_training_info(output_dir / TRAINING_FILE) if (output_dir / TRAINING_FILE).is_file() else {}
        model = self.accelerator.unwrap_model(self.model)
        repo_id = self.args.hub_model_id or getattr(self, "hub_model_id", None) or model_name or output_dir.name
        embedded = model.config.backbone_name_or_path == EMBEDDED_BACKBONE_ID and smollm2_wheel_dir() is not None
        card = render_model_card(model.config, repo_id, results, training, embedded_backbone=embedded,
                                 license=license or "apache-2.0", head_only=not self.args.unfreeze_backbone)
        card.save(output_dir / "README.md")

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """`Trainer.save_model`; a final save (not a checkpoint's) ends with the collapse verdict in ``training.json``
        (`monitoring.collapse_verdict`) and the folder's manifest."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.should_save:
            (Path(output_dir) / MANIFEST_NAME).unlink(missing_ok=True)  # an earlier save's, no longer true
        super().save_model(output_dir, _internal_call)
        if not _internal_call and self.args.should_save:
            record_collapse_verdict(Path(output_dir) / TRAINING_FILE, collapse_verdict(self.state.log_history))
            write_manifest(output_dir)

    def train(self, *args, **kwargs):
        if self.args.should_save:  # a checkpoint a killed run did not finish
            shutil.rmtree(Path(self.args.output_dir) / STAGING_DIR, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return super().train(*args, **kwargs)

    def _get_output_dir(self, trial) -> str:
        staging = getattr(self, "_staging_dir", None)
        return staging if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """`Trainer._save_checkpoint` into the staging folder (every process writes its part there), then, on the
        main process, the manifest and the rename into place (see the module docstring)."""
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = run_dir / STAGING_DIR / name, run_dir / name
        self._staging_dir = str(staged.parent)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            if self.state.best_model_checkpoint == str(staged):  # the Trainer recorded where it wrote
                self.state.best_model_checkpoint = str(final)
                self.state.save_to_json(str(staged / TRAINER_STATE_NAME))
            if self.teacher is not None:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.teacher.state_dict().items()},
                          str(staged / TEACHER_NAME))
            write_manifest(staged)
            if final.exists():  # a checkpoint of the same step from before a resume
                shutil.rmtree(final)
            os.replace(staged, final)
            staged.parent.rmdir()
            limit, best = self.args.save_total_limit, self.state.best_model_checkpoint
            rotate_checkpoints(str(run_dir), limit, best, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_training_state(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        super()._load_best_model()
        self._load_training_state(self.state.best_model_checkpoint)

    def _load_training_state(self, folder: str) -> None:
        """What a checkpoint holds besides the head (the Trainer loads that): the LoRA adapter, the EMA teacher."""
        backbone = self.accelerator.unwrap_model(self.model).backbone
        if self.args.lora_r is not None:
            load_adapter_weights(backbone, load_file(os.path.join(folder, ADAPTER_WEIGHTS_NAME)), folder)
        if self.teacher is not None:
            path = os.path.join(folder, TEACHER_NAME)
            if not os.path.isfile(path):
                raise ValueError(f"{folder} has no {TEACHER_NAME}: it comes from a run without --ema_teacher_decay")
            self.teacher.load_state_dict(load_file(path, device=str(self.teacher[0].weight.device)))

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # Resuming from a head-only checkpoint: the backbone keys are missing on purpose, the head's must not be.
        missing_head = [k for k in load_result.missing_keys if k.startswith(HEAD_PREFIX)]
        if missing_head:
            raise ValueError(f"the checkpoint lacks head weights {missing_head}")
        if self.args.unfreeze_backbone or load_result.unexpected_keys:
            super()._issue_warnings_after_load(load_result)


class _EMATeacherUpdate(TrainerCallback):
    """Updates the trainer's EMA teacher after every optimizer step."""

    def __init__(self, trainer: SPRMTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.update_teacher()


def add_lora(model: SPRMForStepScoring, args: SPRMTrainingArguments) -> None:
    """LoRA adapters (peft, injected into the backbone's own modules) with only their weights trainable. A backbone
    that already has an adapter (an adapter checkpoint trained further) keeps it and trains it."""
    from peft import LoraConfig, inject_adapter_in_model

    if not has_adapter(model.backbone):
        targets = args.lora_target_modules
        config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha or 2 * args.lora_r,
            lora_dropout=args.lora_dropout,
            target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()],
            base_model_name_or_path=model.config.backbone_name_or_path,
        )
        try:
            inject_adapter_in_model(config, model.backbone)
        except ValueError as err:
            raise ValueError(f"--lora_target_modules {targets}: {err}") from None
    elif model.backbone.peft_config["default"].r != args.lora_r:
        raise ValueError(f"the model's backbone already has a LoRA adapter of rank {model.backbone.peft_config['default'].r}; "
                         f"--lora_r {args.lora_r} does not match it")
    for name, parameter in model.backbone.named_parameters():
        parameter.requires_grad_("lora_" in name)


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


__all__ = ["SPRMDataCollator", "SPRMTrainer", "StepSupervisedTrainer", "TRAINERS", "add_lora", "lm_loss"]
