"""Converters between released process reward model (PRM) checkpoints and SPRM checkpoints.

Every family below becomes an ordinary [`SPRMForStepScoring`] (a causal-LM backbone plus an `SPRMHead`) whose
config reproduces the family's own scoring rules, so one ``pipeline("step-scoring")`` scores and compares them.
The head mapping is exact (see each loader); ``conversion/README.md`` documents where the step semantics can differ.

* ``metastone`` (MetaStone-S1, XBai-o4): Qwen2 safetensors + ``score_module.pt``; the head is copied (same
  layout); ``hidden_states[-2]`` read at the token before each ``".\\n\\n"``; geometric mean.
* ``reasonflux`` (ReasonFlux-PRM-1.5B): causal LM + ``reward_head.pt`` (``Linear(h, 1)``); ``hidden_states[-1]``
  read at the last token of each step prefix; the solution score is the last one (the whole trajectory).
* ``token-classification`` (TRL PRMTrainer models; Qwen2.5-Math-PRM and ReasonFlux-PRM-7B): ``score.weight [2, h]``
  or the ``score.0`` / ``score.2`` MLP; ``hidden_states[-1]`` read at each step separator; P(label 1).

Two exact re-parameterisations make every head an `SPRMHead` (``Linear(c, m*c) -> ReLU -> Dropout -> Linear(m*c,
1)``), so no new model code is needed:

* a two-class softmax is a sigmoid of the logit difference: ``softmax(z)[1] = sigmoid(z1 - z0)``, so the last
  ``Linear(k, 2)`` becomes ``Linear(k, 1)`` with weight ``W[1] - W[0]`` and bias ``b[1] - b[0]``;
* a single ``Linear(c, 1)`` is ``[w, -w] . ReLU([x; -x]) + b`` (``ReLU(x) - ReLU(-x) = x``): an `SPRMHead` with
  multiplier 2, first layer ``[I; -I]``, no bias, and dropout 0.

Source weights are read with safetensors or ``torch.load(weights_only=True)``; anything else is refused.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..modeling_sprm import SPRMForStepScoring, has_adapter

METASTONE_HEAD_FILE = "score_module.pt"
METASTONE_HEAD_KEYS = ("0.weight", "0.bias", "3.weight", "3.bias")
REASONFLUX_HEAD_FILE = "reward_head.pt"
QWEN_PRM_SEPARATOR = "<extra_0>"
QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
TRL_DEFAULT_SEPARATOR = "\n"  # TRL PRMConfig.step_separator

# MetaStone-S1's scorer (test/score_model_queue.py), written out as SPRMConfig fields.
METASTONE_SEMANTICS: dict[str, Any] = {
    "feature_layer": -2,
    "feature_layers": None,  # one layer
    "step_pooling": "delimiter",  # the state of one token per step
    "head_hidden_multiplier": 2,
    "head_dropout": 0.5,
    "step_delimiters": [".\n\n"],
    "score_offset": -1,
    "skip_empty_steps": True,  # first delimiter of a run; none right after <think>
    "protect_code_and_numbers": False,  # MetaStone matches the delimiter token everywhere
    "score_trailing_step": False,  # text after the last delimiter is not scored
    "score_span": "think",
    "think_start_tag": "<think>",
    "think_end_tag": "</think>",
    "aggregation": "geometric_mean",
    "empty_solution_score": 0.0,
}
# Fields MetaStone's scorer hard-codes: an SPRM that differs here cannot be exported to its layout.
_METASTONE_FIXED = (
    "feature_layer", "feature_layers", "step_pooling", "head_hidden_multiplier", "step_delimiters", "score_offset"
)


class ConversionError(ValueError):
    """A source checkpoint that cannot be converted (missing files, wrong shapes, unsupported layout)."""


# ----------------------------------------------------------------------------------------------------------------
# Reading source weights


def load_state_dict_file(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A plain ``torch.save(module.state_dict())`` file, loaded with ``weights_only=True``: a dict of tensors."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(
            f"{path} is not a plain state dict: torch.load(weights_only=True) refused it ({first_line}). "
            f"Save the {what} with torch.save(module.state_dict(), path)."
        ) from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ConversionError(f"{path} holds a {type(obj).__name__}, not a state dict (a dict of name -> tensor)")
    return dict(obj)


def _check_keys(state: dict, expected: tuple[str, ...], path: Path) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConversionError(
            f"{path} has keys {sorted(state)}; expected exactly {list(expected)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {unexpected})" if unexpected else "")
        )


def _check_shape(tensor: torch.Tensor, shape: tuple[int, ...], name: str, path: Path) -> None:
    if tuple(tensor.shape) != shape:
        raise ConversionError(f"{path}: {name} has shape {list(tensor.shape)}, expected {list(shape)}")
    if not tensor.is_floating_point():
        raise ConversionError(f"{path}: {name} has dtype {tensor.dtype}, expected a floating point tensor")


def _checkpoint_tensors(src: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of a transformers checkpoint folder whose names start with ``prefix`` (safetensors, sharded or
    not, or ``pytorch_model.bin`` loaded with ``weights_only=True``)."""
    from safetensors import safe_open

    index = src / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (src / "model.safetensors").is_file():
        files = ["model.safetensors"]
    elif (src / "pytorch_model.bin").is_file():
        state = load_state_dict_file(src / "pytorch_model.bin", "checkpoint")
        return {k: v for k, v in state.items() if k.startswith(prefix)}
    else:
        raise ConversionError(f"no weights in {src} (expected model.safetensors, a shard index or pytorch_model.bin)")
    found = {}
    for name in files:
        with safe_open(str(src / name), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.startswith(prefix):
                    found[key] = f.get_tensor(key)
    return found


def _require_folder(src: str | Path) -> Path:
    src = Path(src)
    if not (src / "config.json").is_file():
        raise ConversionError(f"{src} is not a checkpoint folder (no config.json)")
    return src


def _single_token(tokenizer, text: str) -> bool:
    return len(tokenizer.encode(text, add_special_tokens=False)) == 1


def _load_backbone(src: Path, dtype, config=None, head_keys: set[str] = frozenset()):
    """The causal LM in ``src``; with ``config``, a token-classification checkpoint read as a causal LM (its
    base-model weights must all load; only the LM head may be missing, and it is tied to the embeddings)."""
    kwargs = {"dtype": dtype, "output_loading_info": True}
    if config is not None:
        kwargs["config"] = config
    backbone, info = AutoModelForCausalLM.from_pretrained(str(src), **kwargs)
    unexpected = sorted(set(info.get("unexpected_keys", [])) - set(head_keys))
    missing = sorted(k for k in info.get("missing_keys", []) if not k.startswith("lm_head."))
    mismatched = info.get("mismatched_keys", [])
    if unexpected or missing or mismatched:
        raise ConversionError(
            f"the backbone weights in {src} do not fit a {type(backbone).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, mismatched {list(mismatched)[:5]}"
        )
    return backbone.eval()


# ----------------------------------------------------------------------------------------------------------------
# Exact head re-parameterisations


def two_class_to_logit(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``Linear(k, 2)`` whose softmax gives P(label 1) -> ``Linear(k, 1)`` whose sigmoid gives the same value.

    Args: weight `[2, k]`, bias `[2]` or None. Returns weight `[1, k]`, bias `[1]` (float32).
    """
    weight = weight.float()
    bias = torch.zeros(2) if bias is None else bias.float()
    return (weight[1] - weight[0]).unsqueeze(0), (bias[1] - bias[0]).reshape(1)


def linear_as_sprm_head(weight: torch.Tensor, bias: torch.Tensor) -> dict[str, torch.Tensor]:
    """``Linear(c, 1)`` as the state of an `SPRMHead(c, multiplier=2)` computing exactly the same function:
    ``[w, -w] . ReLU([I; -I] x) + b = w . (ReLU(x) - ReLU(-x)) + b = w . x + b``.

    Args: weight `[1, c]`, bias `[1]`. Returns the head's state dict (keys ``0.*``, ``3.*``; float32).
    """
    weight, bias = weight.float(), bias.float().reshape(1)
    c = weight.shape[1]
    eye = torch.eye(c)
    return {
        "0.weight": torch.cat([eye, -eye]),
        "0.bias": torch.zeros(2 * c),
        "3.weight": torch.cat([weight, -weight], dim=1),
        "3.bias": bias,
    }


def _attach_head(backbone, head_state: dict[str, torch.Tensor], semantics: dict, head_training: dict, source: Path):
    model = SPRMForStepScoring.from_backbone(backbone, backbone_name_or_path=str(source), **semantics)
    model.score_head.load_state_dict({k: v.float() for k, v in head_state.items()}, strict=True)
    model.config.head_training = head_training
    return model


# ----------------------------------------------------------------------------------------------------------------
# MetaStone-S1 / XBai-o4


def metastone_head(state: dict[str, torch.Tensor], path: Path) -> int:
    """Validate a ``score_module.pt`` state dict and return the backbone hidden size ``c`` it was trained on."""
    _check_keys(state, METASTONE_HEAD_KEYS, path)
    first = state["0.weight"]
    if first.dim() != 2 or first.shape[0] != 2 * first.shape[1]:
        raise ConversionError(f"{path}: 0.weight has shape {list(first.shape)}, expected [2c, c]")
    c = first.shape[1]
    for name, shape in (("0.weight", (2 * c, c)), ("0.bias", (2 * c,)), ("3.weight", (1, 2 * c)), ("3.bias", (1,))):
        _check_shape(state[name], shape, name, path)
    return c


def check_metastone_tokenizer(tokenizer, where: str) -> None:
    """MetaStone's scorer matches single token ids: ``".\\n\\n"``, ``<think>`` and ``</think>`` must each be one
    token, or its masks mean something else (it would match every piece of a split delimiter)."""
    for text in (".\n\n", METASTONE_SEMANTICS["think_start_tag"], METASTONE_SEMANTICS["think_end_tag"]):
        if not _single_token(tokenizer, text):
            pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))
            raise ConversionError(
                f"the tokenizer in {where} splits {text!r} into {pieces}; MetaStone-S1's scoring rules need it to "
                "be a single token (as in the Qwen tokenizers it ships with), so they cannot be reproduced"
            )


def load_metastone(src: str | Path, dtype: str | torch.dtype = "auto") -> tuple[SPRMForStepScoring, Any]:
    """A MetaStone-S1 / XBai-o4 folder (Qwen2 safetensors, tokenizer, ``score_module.pt``) as an SPRM."""
    src = _require_folder(src)
    path = src / METASTONE_HEAD_FILE
    state = load_state_dict_file(path, "MetaStone head (score_module.pt)")
    c = metastone_head(state, path)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    check_metastone_tokenizer(tokenizer, str(src))
    backbone = _load_backbone(src, dtype)
    if backbone.config.hidden_size != c:
        raise ConversionError(
            f"{path} was trained on hidden size {c}, but the backbone in {src} has hidden size "
            f"{backbone.config.hidden_size}"
        )
    head_training = {
        "family": "metastone",
        "source": str(src),
        "source_head_dtype": str(state["0.weight"].dtype).removeprefix("torch."),
        "supervision": "outcome labels only (MetaStone-S1's self-supervised SPR loss)",
        "converted_by": "sprm convert metastone",
    }
    return _attach_head(backbone, state, METASTONE_SEMANTICS, head_training, src), tokenizer


def metastone_mismatches(config) -> tuple[list[str], list[str]]:
    """``(fixed, rules)``: config fields that differ from what MetaStone's scorer hard-codes (the head would be
    read wrongly) and step rules that differ (the scorer would cut steps slightly differently)."""
    fixed, rules = [], []
    for key, expected in METASTONE_SEMANTICS.items():
        value = getattr(config, key)
        if key == "head_dropout" or value == expected:
            continue
        (fixed if key in _METASTONE_FIXED else rules).append(f"{key}={value!r} (MetaStone: {expected!r})")
    return fixed, rules


def export_metastone(src: str | Path, dst: str | Path, head_dtype: str | None = None) -> Path:
    """Write an SPRM checkpoint in MetaStone-S1's layout: the backbone's own safetensors, config and tokenizer,
    and ``score_module.pt`` (keys ``0.*``/``3.*``; in the dtype the head was converted from, else float32)."""
    from ..loading import load_tokenizer

    dst = _check_destination(dst)
    model = SPRMForStepScoring.from_pretrained(str(src))
    fixed, rules = metastone_mismatches(model.config)
    if fixed:
        raise ConversionError(f"{src} cannot be read by MetaStone-S1's scorer: {'; '.join(fixed)}")
    if rules:
        warnings.warn(
            f"MetaStone-S1's scorer will cut steps differently from {src}: {'; '.join(rules)}", stacklevel=2
        )
    tokenizer = load_tokenizer(model, str(src))
    check_metastone_tokenizer(tokenizer, str(src))
    head_dtype = head_dtype or (model.config.head_training or {}).get("source_head_dtype", "float32")
    dtype = getattr(torch, head_dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConversionError(f"head dtype must be a torch floating point dtype name, got {head_dtype!r}")
    merge_adapter(model.backbone)
    model.backbone.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    # A standardising head folds its feature statistics into the first layer: MetaStone's four weights.
    state = {k: v.to("cpu", dtype) for k, v in model.score_head.folded_state_dict().items()}
    torch.save(state, dst / METASTONE_HEAD_FILE)
    return dst


def merge_adapter(backbone: nn.Module) -> None:
    """Fold a LoRA adapter (``sprm train --lora_r``) into the backbone's weights and remove it, so that the
    backbone saves in its own layout (MetaStone-S1's scorer knows no adapters). Nothing to do without one."""
    if not has_adapter(backbone):
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(backbone.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(backbone.get_submodule(parent), child, module.get_base_layer())
    del backbone.peft_config


# ----------------------------------------------------------------------------------------------------------------
# ReasonFlux-PRM-1.5B


REASONFLUX_SEMANTICS: dict[str, Any] = {
    "feature_layer": -1,
    "head_hidden_multiplier": 2,
    "head_dropout": 0.0,
    "step_delimiters": ["\n\n"],
    "score_offset": -1,  # the last token of each step: the trajectory score of the text up to there
    "skip_empty_steps": True,
    "protect_code_and_numbers": False,
    "score_trailing_step": True,
    "score_span": "both",
    "aggregation": "last",  # the score of the whole trajectory, as ReasonFlux-PRM-1.5B reports it
    "prompt_format": "plain",
    "plain_prompt_template": "{question}",  # ReasonFlux tokenizes problem + completion, nothing between
}


def load_reasonflux(src: str | Path, dtype: str | torch.dtype = "auto") -> tuple[SPRMForStepScoring, Any]:
    """A ReasonFlux-PRM-1.5B style folder (causal LM + ``reward_head.pt`` with ``weight [1, h]``, ``bias [1]``:
    sigmoid of ``Linear(h, 1)`` on ``hidden_states[-1]`` at the last token) as an SPRM."""
    src = _require_folder(src)
    path = src / REASONFLUX_HEAD_FILE
    state = load_state_dict_file(path, "ReasonFlux reward head (reward_head.pt)")
    _check_keys(state, ("weight", "bias"), path)
    backbone = _load_backbone(src, dtype)
    h = backbone.config.hidden_size
    _check_shape(state["weight"], (1, h), "weight", path)
    _check_shape(state["bias"], (1,), "bias", path)
    head_training = {
        "family": "reasonflux",
        "source": str(src),
        "supervision": "ReasonFlux-PRM trajectory-level rewards (see the source model)",
        "converted_by": "sprm convert reasonflux",
    }
    head = linear_as_sprm_head(state["weight"], state["bias"])
    model = _attach_head(backbone, head, REASONFLUX_SEMANTICS, head_training, src)
    return model, AutoTokenizer.from_pretrained(str(src))


# ----------------------------------------------------------------------------------------------------------------
# Token-classification PRMs: TRL PRMTrainer models, Qwen2.5-Math-PRM / ReasonFlux-PRM-7B


def chat_prompt_template(tokenizer, system_prompt: str | None) -> str:
    """The tokenizer's chat template for ``[system?, user=question]`` plus the generation prompt, as a
    ``str.format`` template with one ``{question}`` field (other braces escaped)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConversionError("the tokenizer has no chat template; use prompt='plain'")
    marker = "SPRM_QUESTION_MARKER_5f1c"
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": marker})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if text.count(marker) != 1:
        raise ConversionError("the chat template does not place the question verbatim exactly once")
    before, after = (part.replace("{", "{{").replace("}", "}}") for part in text.split(marker))
    return before + "{question}" + after


def _read_two_class_head(src: Path) -> tuple[str, dict[str, torch.Tensor], set[str]]:
    """``(kind, SPRMHead state, source head keys)`` for a TRL linear head (``score.weight [2, h]``) or a
    Qwen2.5-Math-PRM MLP head (``score.0.* [h, h]``, ``score.2.* [2, h]``)."""
    tensors = _checkpoint_tensors(src, "score.")
    if "score.weight" in tensors:
        weight, bias = tensors["score.weight"], tensors.get("score.bias")
        if weight.dim() != 2 or weight.shape[0] != 2 or (bias is not None and tuple(bias.shape) != (2,)):
            raise ConversionError(
                f"{src}: score.weight has shape {list(weight.shape)}; a two-class PRM head is [2, hidden] "
                "(num_labels=2: label 1 = correct step)"
            )
        w, b = two_class_to_logit(weight, bias)
        return "linear", linear_as_sprm_head(w, b), set(tensors)
    if {"score.0.weight", "score.2.weight"} <= set(tensors):
        first, last = tensors["score.0.weight"], tensors["score.2.weight"]
        h = first.shape[-1]
        _check_shape(first, (h, h), "score.0.weight", src)
        _check_shape(last, (2, h), "score.2.weight", src)
        w, b = two_class_to_logit(last, tensors.get("score.2.bias"))
        first_bias = tensors.get("score.0.bias", torch.zeros(h)).float()
        return "mlp", {"0.weight": first.float(), "0.bias": first_bias, "3.weight": w, "3.bias": b}, set(tensors)
    raise ConversionError(
        f"no two-class step head in {src}: expected score.weight [2, hidden] (AutoModelForTokenClassification, "
        f"TRL PRMTrainer) or score.0.weight/score.2.weight (Qwen2.5-Math-PRM); found {sorted(tensors) or 'none'}"
    )


def _backbone_config(src: Path, backbone_type: str | None):
    raw = json.loads((src / "config.json").read_text())
    model_type = backbone_type or raw.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConversionError(
            f"{src}/config.json has model_type {model_type!r}, which transformers does not know; pass the "
            "backbone's architecture (e.g. backbone_type='qwen2')"
        )
    for key in ("auto_map", "architectures", "id2label", "label2id", "num_labels", "problem_type", "model_type",
                "transformers_version", "_name_or_path", "classifier_dropout"):
        raw.pop(key, None)
    config = AutoConfig.for_model(model_type, **raw)
    config.tie_word_embeddings = True  # the source has no LM head: tie it rather than invent one
    return config


def load_token_classification(
    src: str | Path,
    separator: str | None = None,
    prompt: str | None = None,
    system_prompt: str | None = QWEN_PRM_SYSTEM_PROMPT,
    backbone_type: str | None = None,
    dtype: str | torch.dtype = "auto",
) -> tuple[SPRMForStepScoring, Any]:
    """A token-classification PRM as an SPRM: P(label 1) at each step separator token, ``hidden_states[-1]``.

    Args:
        separator: the step separator. Defaults: ``"<extra_0>"`` for a Qwen2.5-Math-PRM MLP head, ``"\\n"`` (TRL's
            ``step_separator``) for a linear head. The score is read at its last token.
        prompt: ``"chat"`` (the tokenizer's chat template with ``system_prompt``, as the Qwen2.5-Math-PRM card) or
            ``"plain"`` (``question + separator``, as TRL's ``tokenize_row``). Default: chat for an MLP head,
            plain for a linear head.
        system_prompt: the system turn of the chat prompt (None or "" for none; ReasonFlux-PRM-7B uses none).
        backbone_type: the transformers model type of the backbone, when ``config.json`` names a custom one.
    """
    src = _require_folder(src)
    kind, head, head_keys = _read_two_class_head(src)
    qwen_style = kind == "mlp"
    separator = separator if separator is not None else (QWEN_PRM_SEPARATOR if qwen_style else TRL_DEFAULT_SEPARATOR)
    prompt = prompt or ("chat" if qwen_style else "plain")
    if not separator:
        raise ConversionError("the step separator must be a non-empty string")
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    n_separator_tokens = len(tokenizer.encode(separator, add_special_tokens=False))
    if separator == QWEN_PRM_SEPARATOR and n_separator_tokens != 1:
        raise ConversionError(
            f"the tokenizer in {src} splits {separator!r} into {n_separator_tokens} tokens; it must be one "
            "(special) token, as in the Qwen2.5-Math-PRM tokenizer"
        )
    if prompt == "chat":
        template = chat_prompt_template(tokenizer, system_prompt)
    elif prompt == "plain":
        template = "{question}" + separator.replace("{", "{{").replace("}", "}}")
    else:
        raise ConversionError(f"prompt must be 'chat' or 'plain', got {prompt!r}")
    backbone = _load_backbone(src, dtype, config=_backbone_config(src, backbone_type), head_keys=head_keys)
    semantics = {
        "feature_layer": -1,
        "head_hidden_multiplier": 1 if qwen_style else 2,
        "head_dropout": 0.0,
        "step_delimiters": [separator],
        "score_offset": n_separator_tokens - 1,
        "skip_empty_steps": False,  # every separator is a step
        "protect_code_and_numbers": False,
        "score_trailing_step": False,
        "score_span": "both",
        "aggregation": "min",
        "prompt_format": "plain",
        "plain_prompt_template": template,
    }
    head_training = {
        "family": "token-classification",
        "head": "Qwen2.5-Math-PRM MLP (score.0, score.2)" if qwen_style else "TRL token classification (score)",
        "source": str(src),
        "supervision": "step labels (see the source model)",
        "converted_by": "sprm convert token-classification",
    }
    return _attach_head(backbone, head, semantics, head_training, src), tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Writing


LOADERS = {
    "metastone": load_metastone,
    "reasonflux": load_reasonflux,
    "token-classification": load_token_classification,
}


def _check_destination(dst: str | Path) -> Path:
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConversionError(f"destination {dst} exists and is not an empty folder")
    return dst


def convert(family: str, src: str | Path, dst: str | Path, **options) -> Path:
    """Convert ``src`` (a checkpoint of ``family``, one of ``LOADERS``) into a full SPRM checkpoint in ``dst``."""
    if family not in LOADERS:
        raise ConversionError(f"unknown family {family!r}; expected one of {sorted(LOADERS)}")
    dst = _check_destination(dst)
    model, tokenizer = LOADERS[family](src, **options)
    model.save_pretrained(dst, head_only=False)
    tokenizer.save_pretrained(dst)
    return dst


__all__ = [
    "ConversionError",
    "LOADERS",
    "METASTONE_SEMANTICS",
    "convert",
    "export_metastone",
    "linear_as_sprm_head",
    "load_metastone",
    "load_reasonflux",
    "load_token_classification",
    "two_class_to_logit",
]
