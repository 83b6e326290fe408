"""Make ``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM`` and ``pipeline("step-scoring")`` know SPRMs.

Runs on ``import modeling_sprm``. Saved checkpoints carry the same mapping as ``auto_map`` / ``custom_pipelines``
in their config, so they also load without this package (``trust_remote_code=True``).
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_sprm import SPRMConfig
from .modeling_sprm import SPRMForStepScoring
from .pipeline_sprm import StepScoringPipeline

TASK = "step-scoring"


def register() -> None:
    AutoConfig.register(SPRMConfig.model_type, SPRMConfig, exist_ok=True)
    AutoModel.register(SPRMConfig, SPRMForStepScoring, exist_ok=True)
    AutoModelForCausalLM.register(SPRMConfig, SPRMForStepScoring, exist_ok=True)
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=StepScoringPipeline, pt_model=AutoModel, type="text")
