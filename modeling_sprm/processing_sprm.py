"""SPRMProcessor: the one way from text to model inputs, for every caller (the pipeline, cached features, generation's
prompts, the demo, the trainers' collator, the benchmarks).

It holds the tokenizer, the step rules (``steps.StepRules``), the prompt format and the default ``max_length`` of a
model (all read from its ``SPRMConfig``), and turns inputs into ``steps.EncodedTrace`` objects and padded batches:

* ``{"question", "solution"}``: the solution is cut into steps;
* ``{"question", "steps"}``: the steps as given (a data record: the one of ``steps`` / ``solution`` that is set);
* ``{"prompt", "completions"}``: a TRL stepwise-supervision row (prompt = question, completions = steps);
* ``{"text"}`` or a plain string: an already formatted trace, scored as is.

A padded batch (`SPRMProcessor.pad`, `pad_traces`) holds ``input_ids`` and ``attention_mask`` (``[batch, tokens]``,
right padding with `SPRMProcessor.pad_token_id`), ``step_positions`` (``[batch, steps]``: the token where each
step's score is read, -1 for padding and for steps cut off by truncation) and ``step_starts`` (the same shape: the
step's first token, -1 where ``step_positions`` is -1; a step's tokens are ``step_starts .. step_positions``).
Per call, ``score_span`` and ``max_length`` override the model's.

Shipped as remote code: imports only torch, transformers and the package's remote-code modules.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from .steps import EncodedTrace, StepRules, build_trace, format_prompt

PROCESSOR_CONFIG_NAME = "sprm_processor_config.json"
INPUT_FIELDS = ("question", "solution", "steps", "text")


class SPRMProcessor:
    """Tokenizer + step rules + prompt format + default ``max_length`` (see the module docstring).

    Args:
        tokenizer: the backbone's tokenizer (a fast tokenizer: offsets are needed).
        rules (`StepRules`): how text is cut into steps and where scores are read.
        prompt_format (`str`): ``"chat"``, ``"plain"`` or ``"auto"`` (chat when the tokenizer has a template).
        plain_prompt_template (`str`): the prompt of ``prompt_format="plain"``.
        max_length (`int`, *optional*): longest input in tokens; longer ones are cut and flagged ``truncated``.
    """

    def __init__(
        self,
        tokenizer: Any,
        rules: StepRules | None = None,
        prompt_format: str = "auto",
        plain_prompt_template: str = "{question}\n\n",
        max_length: int | None = None,
    ):
        if isinstance(tokenizer, SPRMProcessor):
            raise TypeError("tokenizer is already an SPRMProcessor")
        self.tokenizer = tokenizer
        self.rules = rules if rules is not None else StepRules()
        self.prompt_format = prompt_format
        self.plain_prompt_template = plain_prompt_template
        self.max_length = max_length

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, tokenizer: Any) -> "SPRMProcessor":
        """The processor of a model with this `SPRMConfig`; ``max_length`` defaults to the backbone's context."""
        return cls(
            tokenizer,
            StepRules.from_config(config),
            config.prompt_format,
            config.plain_prompt_template,
            config.max_length or getattr(config.text_config, "max_position_embeddings", None),
        )

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any) -> "SPRMProcessor":
        """The processor of ``model`` (``tokenizer`` may already be a processor: it is returned as it is)."""
        if isinstance(tokenizer, SPRMProcessor):
            return tokenizer
        return cls.from_config(model.config, tokenizer)

    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "rules": dataclasses.asdict(self.rules),
            "prompt_format": self.prompt_format,
            "plain_prompt_template": self.plain_prompt_template,
            "max_length": self.max_length,
        }

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Save the tokenizer and ``sprm_processor_config.json`` in ``save_directory`` (next to a checkpoint)."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory, **kwargs)
        (save_directory / PROCESSOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | os.PathLike, **kwargs) -> "SPRMProcessor":
        """Load a saved processor; a checkpoint without ``sprm_processor_config.json`` gets the processor of its
        `SPRMConfig` (``config.json``). ``kwargs`` (``revision``, ``cache_dir``, ...) go to the Hub downloads."""
        from transformers import AutoTokenizer
        from transformers.utils import cached_file

        tokenizer = AutoTokenizer.from_pretrained(pretrained_name_or_path, **kwargs)
        path = cached_file(
            str(pretrained_name_or_path), PROCESSOR_CONFIG_NAME, _raise_exceptions_for_missing_entries=False, **kwargs
        )
        if path is None:
            from .configuration_sprm import SPRMConfig

            return cls.from_config(SPRMConfig.from_pretrained(pretrained_name_or_path, **kwargs), tokenizer)
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        rules = StepRules(**{**saved["rules"], "delimiters": tuple(saved["rules"]["delimiters"])})
        return cls(tokenizer, rules, saved["prompt_format"], saved["plain_prompt_template"], saved["max_length"])

    # -- text -> tokens -----------------------------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int:
        """The id inputs are padded with: the tokenizer's pad token, else its end-of-sequence token, else 0 (the
        value does not matter for the scores: padded positions are masked)."""
        for value in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if value is not None:
                return int(value)
        return 0

    def format_prompt(self, question: str) -> tuple[str, bool]:
        """The text before a solution and whether it is a chat (`steps.format_prompt` with this model's format)."""
        return format_prompt(self.tokenizer, question, self.prompt_format, self.plain_prompt_template)

    def encode_prompt(self, question: str) -> tuple[list[int], str, list[tuple[int, int]]]:
        """``(token ids, text, character offsets)`` of the prompt for ``question``, tokenized as scoring does (what
        generation continues)."""
        if not isinstance(question, str):
            raise TypeError(f"question must be a string, got {type(question).__name__}")
        if not question.strip():
            raise ValueError("question is empty or whitespace only")
        prompt, is_chat = self.format_prompt(question)
        enc = self.tokenizer(prompt, add_special_tokens=not is_chat, return_offsets_mapping=True)
        return list(enc["input_ids"]), prompt, [tuple(o) for o in enc["offset_mapping"]]

    def encode(
        self,
        inputs: Any = None,
        *,
        score_span: str | None = None,
        max_length: int | None = None,
        **fields: Any,
    ) -> EncodedTrace:
        """One input (see the module docstring; or its fields as keywords: ``question=``, ``solution=``,
        ``steps=``, ``text=``) -> an `EncodedTrace`. ``score_span`` / ``max_length`` override the model's."""
        values = input_fields(inputs) if inputs is not None else {}
        unknown = set(fields) - set(INPUT_FIELDS)
        if unknown:
            raise TypeError(f"unknown input fields {sorted(unknown)}; expected some of {INPUT_FIELDS}")
        values.update({k: v for k, v in fields.items() if v is not None})
        rules = self.rules if score_span is None else dataclasses.replace(self.rules, score_span=score_span)
        return build_trace(
            self.tokenizer,
            rules,
            **values,
            prompt_format=self.prompt_format,
            plain_template=self.plain_prompt_template,
            max_length=max_length or self.max_length,
        )

    def pad(self, traces: Sequence[EncodedTrace]) -> dict[str, torch.Tensor]:
        """Encoded traces -> one padded batch (see the module docstring)."""
        return pad_traces(traces, self.pad_token_id)

    def __call__(
        self, inputs: Any, *, score_span: str | None = None, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """One input or a list of inputs -> a padded batch for ``model(**batch)``."""
        many = isinstance(inputs, list)
        traces = [self.encode(x, score_span=score_span, max_length=max_length) for x in (inputs if many else [inputs])]
        return self.pad(traces)


def input_fields(inputs: Any) -> dict[str, Any]:
    """The ``question`` / ``solution`` / ``steps`` / ``text`` of one input (fields that are None are absent)."""
    if isinstance(inputs, str):
        return {"text": inputs}
    if not isinstance(inputs, collections.abc.Mapping):
        raise TypeError(f"an input is a dict (or a formatted text), got {type(inputs).__name__}")
    if "prompt" in inputs and "completions" in inputs and "question" not in inputs:  # a TRL stepwise row
        if not isinstance(inputs["prompt"], str):
            raise ValueError("only TRL's standard (string) prompts are supported, not conversational ones")
        return {"question": inputs["prompt"], "steps": inputs["completions"]}
    return {k: inputs[k] for k in INPUT_FIELDS if inputs.get(k) is not None}


def pad_traces(traces: Sequence[EncodedTrace], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad encoded traces into ``input_ids``, ``attention_mask`` (``[batch, max_tokens]``), ``step_positions``
    and ``step_starts`` (``[batch, max_steps]``, -1 for padding and for steps cut off by truncation)."""
    if not traces:
        raise ValueError("no traces to pad")
    max_tokens = max(len(t.input_ids) for t in traces)
    max_steps = max(1, max(len(t.steps) for t in traces))
    input_ids = torch.full((len(traces), max_tokens), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((len(traces), max_tokens), dtype=torch.long)
    step_positions = torch.full((len(traces), max_steps), -1, dtype=torch.long)
    step_starts = torch.full((len(traces), max_steps), -1, dtype=torch.long)
    for i, trace in enumerate(traces):
        input_ids[i, : len(trace.input_ids)] = torch.tensor(trace.input_ids, dtype=torch.long)
        attention_mask[i, : len(trace.input_ids)] = 1
        starts = trace.starts or [None] * len(trace.positions)
        for j, (position, start) in enumerate(zip(trace.positions, starts)):
            if position is not None:
                step_positions[i, j] = position
                step_starts[i, j] = position if start is None else start
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "step_positions": step_positions,
        "step_starts": step_starts,
    }


# The token budget of one batched forward when none is given (`sprm eval`, feature extraction), per device type:
# measured with benchmarks/scoring_speed.py (benchmarks/results/scoring_speed.json, and scoring_speed_cuda.json).
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 4096, "cuda": 32768}


def default_max_batch_tokens(device: torch.device | str) -> int:
    """`DEFAULT_MAX_BATCH_TOKENS` of ``device``'s type (the GPU value for accelerators not listed)."""
    kind = torch.device(device).type
    return DEFAULT_MAX_BATCH_TOKENS.get(kind, DEFAULT_MAX_BATCH_TOKENS["cuda"])


def plan_batches(
    lengths: Sequence[int], max_batch_tokens: int | None = None, batch_size: int | None = None
) -> list[list[int]]:
    """Group inputs of these token ``lengths`` into batches of similar length, longest first (so a budget too large
    for the device fails at once, not at the end). A batch holds at most ``batch_size`` inputs and, with
    ``max_batch_tokens``, at most that many tokens once padded (inputs x its longest; an input longer than the
    budget is a batch of its own). Neither given: one batch. Returns lists of indices into ``lengths``, each index
    once."""
    for name, value in (("max_batch_tokens", max_batch_tokens), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        batch = batches[-1] if batches else None
        if (
            batch is None
            or (batch_size is not None and len(batch) >= batch_size)
            or (max_batch_tokens is not None and (len(batch) + 1) * lengths[batch[0]] > max_batch_tokens)
        ):
            batches.append([i])
        else:
            batch.append(i)
    return batches


def pad_step_features(
    features: Sequence[torch.Tensor],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-solution step features (``[num_steps_i, hidden]`` each) -> ``(step_features [batch, max_steps, hidden],
    step_mask [batch, max_steps])``, zero-padded; what ``model(step_features=..., step_mask=...)`` takes."""
    if not features:
        raise ValueError("no step features to pad")
    hidden = max(f.shape[-1] if f.dim() == 2 else 0 for f in features)
    width = max(1, max(f.shape[0] for f in features))
    dtype = dtype or next((f.dtype for f in features if f.numel()), torch.float32)
    out = torch.zeros(len(features), width, hidden, dtype=dtype, device=device)
    mask = torch.zeros(len(features), width, dtype=torch.bool, device=device)
    for i, f in enumerate(features):
        if f.shape[0]:
            out[i, : f.shape[0]] = f.to(device=out.device, dtype=dtype)
            mask[i, : f.shape[0]] = True
    return out, mask


__all__ = [
    "DEFAULT_MAX_BATCH_TOKENS",
    "SPRMProcessor",
    "default_max_batch_tokens",
    "pad_step_features",
    "pad_traces",
    "plan_batches",
]
