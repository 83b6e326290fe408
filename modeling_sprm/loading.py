"""Loading a scorer by name: the embedded default, a local folder, or a Hub id, with an optional quantized
backbone, on a device (cuda when available). Used by the CLI, the demo, the training script and the benchmarks
(not shipped as remote code). ``load_model(ModelArguments)`` is the one helper the commands use."""

from __future__ import annotations

import logging
import sys

import torch
from transformers import AutoTokenizer

from .arguments import QUANTIZATIONS, ModelArguments
from .backbones import EMBEDDED_BACKBONE_ID, resolve_backbone
from .modeling_sprm import SPRMForStepScoring
from .registration import DEFAULT_HEAD_DIR, register

DEFAULT_MODEL_NAME = "sprm-default (SmolLM2-135M-Instruct + SPRM head)"


def default_device() -> str:
    """cuda when available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """``"float32"`` -> ``torch.float32``; ``"auto"``, None and dtypes pass through."""
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return value


def quantization_config(quantization: str | None, compute_dtype: torch.dtype = torch.float32):
    """`BitsAndBytesConfig` for "4bit" (= "nf4"), "fp4" or "8bit"; None for full precision. Only the backbone's
    linear layers are quantized: the SPRM head stays in float32 (`_keep_in_fp32_modules`). `compute_dtype` is the
    4-bit matmul dtype (float32 on CPU; float16 or bfloat16 on a GPU)."""
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig

    if quantization in ("4bit", "nf4", "fp4"):
        quant_type = "fp4" if quantization == "fp4" else "nf4"
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_compute_dtype=compute_dtype)
    if quantization == "8bit":
        # bitsandbytes logs a warning on every 8-bit matmul with float32 inputs (cast to float16 on purpose)
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization must be one of {QUANTIZATIONS} or None, got {quantization!r}")


def load_tokenizer(model: SPRMForStepScoring, name_or_path: str | None = None):
    """The checkpoint's own tokenizer when it ships one, else its backbone's."""
    if name_or_path is not None:
        try:
            return AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError):
            pass
    reference = model.config.backbone_name_or_path
    if not reference:
        raise ValueError(f"no tokenizer found for {name_or_path} and no backbone reference to fall back on")
    return AutoTokenizer.from_pretrained(resolve_backbone(reference))


def load_model_and_tokenizer(
    name_or_path: str | None = None,
    quantization: str | None = None,
    dtype: str | torch.dtype | None = None,
    device_map: str | dict | None = None,
    device: str | None = None,
) -> tuple[SPRMForStepScoring, object, str]:
    """Load ``(model, tokenizer, display_name)``. Without a name: the shipped default head on the embedded
    SmolLM2 backbone, or, where no head ships, a fresh (untrained, seeded) head on it. ``quantization`` is one of
    `QUANTIZATIONS` (4-bit compute in ``dtype``, float32 by default); ``device_map`` places the backbone; else the
    model goes to ``device`` (default: cuda when available, else cpu). The defaults are `ModelArguments`'."""
    dtype = torch_dtype(dtype)
    kwargs = {}
    if quantization is not None:
        compute = dtype if isinstance(dtype, torch.dtype) else torch.float32
        kwargs["quantization_config"] = quantization_config(quantization, compute)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if name_or_path is None:
        if (DEFAULT_HEAD_DIR / "config.json").is_file():
            model = SPRMForStepScoring.from_pretrained(DEFAULT_HEAD_DIR, **kwargs)
            tokenizer, name = load_tokenizer(model, str(DEFAULT_HEAD_DIR)), DEFAULT_MODEL_NAME
        else:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = SPRMForStepScoring.from_backbone(EMBEDDED_BACKBONE_ID, **kwargs)
            tokenizer, name = load_tokenizer(model), DEFAULT_MODEL_NAME
    else:
        model = SPRMForStepScoring.from_pretrained(name_or_path, **kwargs)
        tokenizer, name = load_tokenizer(model, name_or_path), name_or_path
    if quantization is None and device_map is None:
        model.to(device or default_device())
    return model, tokenizer, name


def load_model(args: ModelArguments, warn: bool = True) -> tuple[SPRMForStepScoring, object, str]:
    """`load_model_and_tokenizer` from `ModelArguments` (what every command calls); registers the ``sprm`` model
    type and the ``"step-scoring"`` task, and prints `untrained_head_warning` to stderr when the head is
    untrained."""
    register()
    model, tokenizer, name = load_model_and_tokenizer(
        args.model, args.quantization, args.dtype, args.device_map, args.device
    )
    if warn and (warning := untrained_head_warning(model, name)) is not None:
        print(warning, file=sys.stderr)
    return model, tokenizer, name


def untrained_head_warning(model: SPRMForStepScoring, name: str) -> str | None:
    if model.config.head_is_trained:
        return None
    return (
        f"warning: the SPRM head of {name} is untrained (randomly initialised): its scores carry no signal. "
        "Train one with `sprm train` or pass --model."
    )
