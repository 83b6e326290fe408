"""Loading a scorer by name: the embedded default, a local folder, or a Hub id, with an optional quantized
backbone, on a device (cuda when available). Used by the CLI, the demo, the training script and the benchmarks
(not shipped as remote code). ``load_model(ModelArguments)`` is the one helper the commands use.

A local folder is checked before it is loaded (`check_model_folder`), and any failure to load becomes a
`ModelLoadError`: one line naming the folder and what was expected. The rules:

* **Manifest.** ``sprm train`` ends every folder it saves (each checkpoint, and the final model) with
  ``sprm_manifest.json`` (`write_manifest`): the name, size and sha256 of each file at the folder's top level,
  written last. Where a folder has one, every listed file must be there with its size (and, with
  ``hashes=True``, its sha256: `--resume` and `sprm push` check them). Folders without one (older ones,
  conversions, Hub downloads) get the checks below only.
* ``config.json`` must be a JSON object and ``model.safetensors`` (or every shard of
  ``model.safetensors.index.json``) a complete safetensors file.
* A ``checkpoint-N`` folder without a manifest must hold ``trainer_state.json`` (the Trainer writes it last).
* The output folder of an ``sprm train`` run that has not finished (checkpoints, no model yet) is named as such,
  with its newest complete checkpoint.
* Weights must be finite (`SPRMForStepScoring.from_pretrained` refuses others).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
import os
import re
import sys

import torch
from transformers import AutoTokenizer

from .arguments import QUANTIZATIONS, ModelArguments
from .backbones import EMBEDDED_BACKBONE_ID, resolve_backbone
from .modeling_sprm import SPRMForStepScoring
from .registration import DEFAULT_HEAD_DIR, register

DEFAULT_MODEL_NAME = "sprm-default (SmolLM2-135M-Instruct + SPRM head)"
MANIFEST_NAME = "sprm_manifest.json"
STAGING_DIR = ".staging"  # where `sprm train` writes a checkpoint before renaming it into place
TRAINER_STATE_NAME = "trainer_state.json"  # the Trainer writes it last into a checkpoint
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded (missing, incomplete, damaged, non-finite). The message is one line
    naming the folder and what was expected; the CLI prints it as ``sprm: error: ...`` (exit status 2)."""


# -- what a saved folder holds ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()  # hashlib.file_digest needs Python 3.11; the package supports 3.10
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | os.PathLike) -> Path:
    """Record what ``folder`` holds: ``sprm_manifest.json`` = ``{"format": 1, "files": {name: {"size",
    "sha256"}}}`` for every file at its top level (sub-folders, such as a run's checkpoints, are not part of it).
    Call it after everything else is written: the manifest (written atomically) marks the folder complete."""
    folder = Path(folder)
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST_NAME
    }
    path = folder / MANIFEST_NAME
    temporary = path.with_name(f".{MANIFEST_NAME}.tmp")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump({"format": 1, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    return path


def manifest_problems(folder: str | os.PathLike, hashes: bool = False) -> list[str] | None:
    """What differs from ``folder``'s manifest (``[]``: nothing), or None when it has none."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{MANIFEST_NAME} is unreadable ({type(err).__name__}: {err})"]
    missing = [name for name in files if not (folder / name).is_file()]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    for name, entry in files.items():
        if name in missing:
            continue
        size = (folder / name).stat().st_size
        if size != entry["size"]:
            problems.append(f"{name} has {size} bytes, the manifest says {entry['size']}")
        elif hashes and _sha256(folder / name) != entry["sha256"]:
            problems.append(f"{name} differs from its sha256 in the manifest")
    return problems


def checkpoint_problems(folder: str | os.PathLike, hashes: bool = False) -> list[str]:
    """Why a Trainer checkpoint folder cannot be resumed from (``[]``: it is complete): its manifest's
    problems, or for a folder without one (an older sprm), a missing ``trainer_state.json``."""
    problems = manifest_problems(folder, hashes)
    if problems is None:
        has_state = (Path(folder) / TRAINER_STATE_NAME).is_file()
        problems = [] if has_state else [f"no {MANIFEST_NAME} and no {TRAINER_STATE_NAME} (its save did not finish)"]
    return problems


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders of a training output folder, newest (highest N) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)


def newest_complete_checkpoint(
    output_dir: str | os.PathLike, hashes: bool = False
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """``(the newest complete checkpoint or None, [(newer incomplete checkpoint, why), ...])``."""
    skipped = []
    for folder in checkpoints(output_dir):
        problems = checkpoint_problems(folder, hashes)
        if not problems:
            return folder, skipped
        skipped.append((folder, "; ".join(problems)))
    return None, skipped


def _check_safetensors(path: Path) -> None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(
            f"{path} is truncated or damaged ({err}); expected a complete safetensors file (save it again, or "
            "use another checkpoint)"
        ) from None


def check_model_folder(path: str | os.PathLike, hashes: bool = False) -> None:
    """Raise a `ModelLoadError` naming what is missing or damaged in the model folder ``path`` (see the module
    docstring); ``hashes``: also compare the sha256 of each file its manifest lists."""
    folder = Path(path)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "not found"
        raise ModelLoadError(f"{folder} is {what}; expected an SPRM model folder (config.json, model.safetensors)")
    is_checkpoint = _CHECKPOINT.fullmatch(folder.name)
    problems = checkpoint_problems(folder, hashes) if is_checkpoint else manifest_problems(folder, hashes)
    if problems:
        raise ModelLoadError(f"{folder} is incomplete or damaged: {'; '.join(problems)}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        if checkpoints(folder) or (folder / STAGING_DIR).exists():
            newest, _ = newest_complete_checkpoint(folder)
            where = f"its newest complete checkpoint is {newest}" if newest else "none of its checkpoints is complete"
            raise ModelLoadError(
                f"{folder} is the output folder of an sprm train run that has not finished (no config.json or "
                f"model.safetensors yet); {where}: resume the run with --resume, or pass a checkpoint"
            )
        raise ModelLoadError(f"{folder} is not an SPRM model folder: no config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{config_path} is not valid JSON ({err}); expected the model's configuration") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_path} holds a JSON {type(config).__name__}; expected an object")
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        _check_safetensors(folder / "model.safetensors")
    elif index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, AttributeError) as err:
            raise ModelLoadError(f"{index} is not a valid safetensors index ({err})") from None
        for shard in shards:
            if not (folder / shard).is_file():
                raise ModelLoadError(f"{folder} is incomplete: missing {shard}, listed in {index.name}")
            _check_safetensors(folder / shard)
    else:
        raise ModelLoadError(f"{folder} has no model.safetensors (nor an index of shards); expected the weights")


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
    model goes to ``device`` (default: cuda when available, else cpu). The defaults are `ModelArguments`'.
    A folder that cannot be loaded raises a `ModelLoadError` (see the module docstring)."""
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
            model, tokenizer = _load_folder(DEFAULT_HEAD_DIR, kwargs)
        else:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = SPRMForStepScoring.from_backbone(EMBEDDED_BACKBONE_ID, **kwargs)
            tokenizer = load_tokenizer(model)
        name = DEFAULT_MODEL_NAME
    else:
        model, tokenizer = _load_folder(name_or_path, kwargs)
        name = name_or_path
    if quantization is None and device_map is None:
        model.to(device or default_device())
    return model, tokenizer, name


def _load_folder(name_or_path: str | os.PathLike, kwargs: dict) -> tuple[SPRMForStepScoring, object]:
    """A checked local folder, or a Hub id; every failure is a one-line `ModelLoadError` naming it."""
    from safetensors import SafetensorError

    if Path(name_or_path).exists() or not _HUB_ID.fullmatch(str(name_or_path)):
        check_model_folder(name_or_path)
    try:
        model = SPRMForStepScoring.from_pretrained(name_or_path, **kwargs)
        return model, load_tokenizer(model, str(name_or_path))
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:  # transformers' and ours
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ModelLoadError(f"cannot load the model {name_or_path}: {reason}") from err


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
