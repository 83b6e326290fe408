"""Self-supervised process reward models (SPRMs) for Hugging Face transformers.

``import modeling_sprm`` registers the ``sprm`` model type with ``AutoConfig`` / ``AutoModel`` /
``AutoModelForCausalLM`` and the ``"step-scoring"`` pipeline task.
"""

from .backbones import EMBEDDED_BACKBONE_ID, resolve_backbone
from .configuration_sprm import SPRMConfig
from .generation import SamplingConfig, best_of_n, step_search
from .modeling_sprm import SPRMForStepScoring, SPRMHead, SPRMOutput
from .pipeline_sprm import StepScoringPipeline
from .registration import register
from .steps import StepRules, build_trace, join_steps, segment

register()

__version__ = "0.1.0"

__all__ = [
    "EMBEDDED_BACKBONE_ID",
    "SPRMConfig",
    "SPRMForStepScoring",
    "SPRMHead",
    "SPRMOutput",
    "SamplingConfig",
    "StepRules",
    "StepScoringPipeline",
    "best_of_n",
    "build_trace",
    "join_steps",
    "resolve_backbone",
    "segment",
    "step_search",
]
