"""Training SPRM heads, TRL style: `arguments` (SPRMTrainingArguments), `trainer` (the trainers and their collator),
`losses` (the objectives), `features` (cached backbone features), `monitoring` (metrics, training log, plot) and
`script` (``sprm train``)."""

from .arguments import SPRMTrainingArguments
from .features import extract_step_features
from .losses import LOSSES, get_loss
from .script import TrainScriptArguments, load_for_training, train_head
from .trainer import SPRMDataCollator, SPRMTrainer, StepSupervisedTrainer

__all__ = [
    "LOSSES",
    "SPRMDataCollator",
    "SPRMTrainer",
    "SPRMTrainingArguments",
    "StepSupervisedTrainer",
    "TrainScriptArguments",
    "extract_step_features",
    "get_loss",
    "load_for_training",
    "train_head",
]
