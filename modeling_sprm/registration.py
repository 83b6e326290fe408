"""Make ``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM`` and ``pipeline("step-scoring")`` know SPRMs.

Runs on ``import modeling_sprm``. Then, with no ``trust_remote_code``:

* ``pipeline("step-scoring", model=<folder or Hub id>)`` runs the installed package's pipeline on any SPRM
  checkpoint (the installed `SPRMConfig` drops the checkpoint's ``custom_pipelines`` entry, which points at its
  own copy of the same code);
* ``pipeline("step-scoring")`` loads the default model: the shipped default head (``modeling_sprm/default_head``)
  on the embedded SmolLM2-135M-Instruct backbone.

Saved checkpoints carry the same mapping as ``auto_map`` / ``custom_pipelines`` in their config, so users without
this package load them with ``trust_remote_code=True``.
"""

from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_sprm import SPRMConfig
from .modeling_sprm import SPRMForStepScoring
from .pipeline_sprm import StepScoringPipeline

TASK = "step-scoring"
DEFAULT_HEAD_DIR = Path(__file__).parent / "default_head"  # the shipped default head (package data)


def default_model() -> dict | None:
    """The task's default for ``pipeline("step-scoring")``: ``{"model": (folder, revision)}``, or None where no
    trained default head ships."""
    return {"model": (str(DEFAULT_HEAD_DIR), None)} if (DEFAULT_HEAD_DIR / "config.json").is_file() else None


def register() -> None:
    AutoConfig.register(SPRMConfig.model_type, SPRMConfig, exist_ok=True)
    AutoModel.register(SPRMConfig, SPRMForStepScoring, exist_ok=True)
    AutoModelForCausalLM.register(SPRMConfig, SPRMForStepScoring, exist_ok=True)
    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is not StepScoringPipeline:  # no "overwriting" log
        PIPELINE_REGISTRY.register_pipeline(
            TASK, pipeline_class=StepScoringPipeline, pt_model=AutoModel, default=default_model(), type="text"
        )
