"""Self-supervised process reward models (SPRMs) for Hugging Face transformers.

``import modeling_sprm`` registers the ``sprm`` model type with ``AutoConfig`` / ``AutoModel`` /
``AutoModelForCausalLM`` and the ``"step-scoring"`` pipeline task. The public names below are imported on first use.

One exception: when the ``sprm`` command starts (``sprm ...`` or ``python -m modeling_sprm ...``), registering is
left to the command (`loading.load_model` does it before loading a model), so that ``sprm --help`` does not import
torch and transformers (seconds) just to print its flags.
"""

import importlib
import sys
from pathlib import Path

__version__ = "0.1.0"

_PUBLIC = {  # name -> module that defines it
    "EMBEDDED_BACKBONE_ID": "backbones",
    "resolve_backbone": "backbones",
    "SPRMConfig": "configuration_sprm",
    "SamplingConfig": "generation",
    "best_of_n": "generation",
    "step_search": "generation",
    "SPRMForStepScoring": "modeling_sprm",
    "SPRMHead": "modeling_sprm",
    "SPRMOutput": "modeling_sprm",
    "BestOfNResult": "outputs",
    "EvaluationReport": "outputs",
    "ScoredSolution": "outputs",
    "StepSearchResult": "outputs",
    "StepScoringPipeline": "pipeline_sprm",
    "SPRMProcessor": "processing_sprm",
    "register": "registration",
    "StepRules": "steps",
    "build_trace": "steps",
    "join_steps": "steps",
    "segment": "steps",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def _started_by_the_cli() -> bool:
    """True while the ``sprm`` console script or ``python -m modeling_sprm`` imports this package."""
    argv = getattr(sys, "orig_argv", None) or []
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1] in ("modeling_sprm", "modeling_sprm.apps.cli"):
        return True
    return bool(sys.argv) and Path(sys.argv[0]).name in ("sprm", "sprm.exe", "sprm-script.py")


if not _started_by_the_cli():
    from .registration import register as _register

    _register()
