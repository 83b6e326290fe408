"""Deprecated: split into `modeling_sprm.training` (`arguments`, `trainer`, `script`) and `modeling_sprm.data`
(`as_record`); the old names are re-exported here."""

import warnings

from .data import as_record  # noqa: F401
from .training.arguments import LABEL_KINDS, SPRMTrainingArguments  # noqa: F401
from .training.script import load_for_training, split_records, train_head  # noqa: F401
from .training.trainer import (  # noqa: F401
    SCORE_PLOT_NAME,
    TRAINERS,
    TRAINING_LOG_NAME,
    SPRMDataCollator,
    SPRMTrainer,
    StepSupervisedTrainer,
    check_labels,
    feature_rows,
    is_feature_dataset,
    lm_loss,
)

warnings.warn(
    "modeling_sprm.trainer moved to modeling_sprm.training (SPRMTrainingArguments: training.arguments; the trainers "
    "and SPRMDataCollator: training.trainer; train_head: training.script)",
    DeprecationWarning,
    stacklevel=2,
)
