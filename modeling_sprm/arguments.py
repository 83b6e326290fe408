"""`ModelArguments`: which scorer to load and how, shared by every ``sprm`` command (through `HfArgumentParser`) and
by `loading.load_model_and_tokenizer` (the same defaults).

Imports only the standard library, so that ``sprm --help`` and ``sprm score --help`` start without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

QUANTIZATIONS = ("4bit", "nf4", "fp4", "8bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ModelArguments:
    """Which SPRM to load and where to run it."""

    model: str | None = field(
        default=None,
        metadata={"help": "SPRM folder or Hub id (default: the embedded SmolLM2 default with its shipped head)."},
    )
    quantization: Literal["4bit", "nf4", "fp4", "8bit"] | None = field(
        default=None,
        metadata={
            "help": "Load the backbone quantized with bitsandbytes (4bit = nf4); the SPRM head stays in float32."
        },
    )
    device: str | None = field(
        default=None,
        metadata={
            "help": "Where to run the model, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu). "
            "Ignored with --quantization or --device_map, which place the model themselves."
        },
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = field(
        default=None,
        metadata={"help": "dtype of the backbone (default: float32; auto = the checkpoint's). The head stays float32."},
    )
    device_map: str | None = field(
        default=None,
        metadata={"help": "Place the backbone with accelerate, e.g. auto (spreads it over the available devices)."},
    )


__all__ = ["DTYPES", "QUANTIZATIONS", "ModelArguments"]
