"""`SPRMTrainingArguments`: `transformers.TrainingArguments` plus what training an SPRM head needs. Every field is
documented and becomes a flag of ``sprm train`` (through `HfArgumentParser`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..steps import SCORE_SPANS

LABEL_KINDS = ("outcome", "step")


@dataclass
class SPRMTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus what an SPRM head needs. Every field becomes a command-line flag of `sprm train`
    (through `HfArgumentParser`). Defaults differ from `TrainingArguments` where head-only training wants it:
    `learning_rate` 1e-3, `logging_steps` 10, `remove_unused_columns` False."""

    loss: str | None = field(
        default=None,
        metadata={
            "help": "Training objective, a name in modeling_sprm.training.losses.LOSSES: 'spr' (MetaStone-S1's self-supervised "
            "loss, outcome labels), 'outcome_bce' (every step gets the outcome label), 'asymmetric_spr' (the filter "
            "on steps of wrong solutions only), 'mil' (the aggregated step score trained against the outcome), "
            "'first_error' (self-training on the head's own first-error guess), 'step_bce' (step labels). "
            "Default: 'spr' for SPRMTrainer, 'step_bce' for StepSupervisedTrainer."
        },
    )
    score_span: str | None = field(
        default=None,
        metadata={
            "help": "Which span of <think>...</think> traces the head is trained on (steps.py): 'think' (the thinking "
            "steps only, MetaStone-S1), 'response' (the steps after </think>), 'both' (every step). The trained "
            "head's config records it, and scoring with it reads the same span. 'think' needs a think span in every "
            "record (a record without one is an error); under 'response' and 'both' a text without think tags is all "
            "response. Default: the model's config.score_span ('think' for a fresh head, which scores a text "
            "without tags whole).",
            "choices": list(SCORE_SPANS),
        },
    )
    trajectory_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "Add this times the trajectory term to the loss (outcome labels only): the BCE of each trace's "
            "aggregated score (config.aggregation over all its scored steps, the solution score the model reports) "
            "against its outcome, as ReasonFlux-PRM adds a trajectory-level reward to the step-level one "
            "(losses.trajectory_loss). 0 = off."
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
    ema_teacher_decay: float | None = field(
        default=None,
        metadata={
            "help": "Pseudo-labels of the self-training losses (spr, asymmetric_spr, first_error) from an "
            "exponential moving average of the head (the teacher: no gradient, no dropout), updated after every "
            "optimizer step as teacher = decay * teacher + (1 - decay) * head, e.g. 0.99. Default: the head itself."
        },
    )
    unfreeze_backbone: bool = field(
        default=False, metadata={"help": "Train the backbone too (default: only the head, on a frozen backbone)."}
    )
    lora_r: int | None = field(
        default=None,
        metadata={
            "help": "Train LoRA adapters of this rank (peft) on the frozen backbone together with the head; saved as "
            "a head-only checkpoint plus adapter_config.json and adapter_model.safetensors. Features are not cached."
        },
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "With --lora_r: the LoRA scale alpha (default 2 * r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "With --lora_r: dropout on the LoRA path."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "With --lora_r: comma-separated names of the backbone's linear layers to adapt (e.g. "
                  "q_proj,v_proj), or all-linear (every linear layer but the LM head)."},
    )
    feature_grad_scale: float | None = field(
        default=None,
        metadata={
            "help": "With --unfreeze_backbone or --lora_r: scale the gradient from the head into the backbone without "
            "changing the forward value (MetaStone-S1 uses 1e-4)."
        },
    )
    lm_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "With --unfreeze_backbone or --lora_r: add this times the language-model loss on the solutions "
            "of correct records (joint 'reflective' training of policy and scorer)."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Longest input in tokens; steps past it are not scored. Default: the model's max_length."},
    )
    cache_features: bool = field(
        default=True,
        metadata={
            "help": "With a frozen backbone (no --unfreeze_backbone, no --lora_r) and no LM loss: run the backbone "
            "once over each data set and train the head from the cached step features."
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
        metadata={"help": "Initial AdamW learning rate (1e-3 suits a head alone; use ~1e-5 with --unfreeze_backbone, "
                  "~1e-4 with --lora_r)."},
    )
    logging_steps: float = field(
        default=10, metadata={"help": "Log the loss and the training-batch score curves every this many steps."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the SPRM collator reads record fields the model does not take."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={"aliases": ["--output"], "help": "Folder for the checkpoint, its training log and score plot."},
    )


__all__ = ["LABEL_KINDS", "SPRMTrainingArguments"]
