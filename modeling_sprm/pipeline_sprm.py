"""``pipeline("step-scoring")``: score solutions step by step with an SPRM.

Inputs (one, or a list, or a dataset / generator streamed through the pipeline):

* ``{"question": str, "solution": str}``: the solution is cut into steps (``SPRMConfig.step_delimiters``);
* ``{"question": str, "steps": [str, ...]}``: the steps as given, joined canonically;
* ``{"text": str}``: an already formatted trace (e.g. a whole chat with ``<think>...</think>``), scored as is.

Output per solution::

    {"steps": [{"text": str, "score": float | None, "part": "think" | "response"}],
     "score": float, "first_error_step": int | None, "truncated": bool, "no_steps": bool,
     "part_scores": {"think": float, "response": float}}   # only with score_span="both"

``score`` is ``None`` for a step cut off by truncation (``truncated`` is then True); ``first_error_step`` is the
index of the first step scoring below ``threshold`` (default ``config.threshold``). Batched with padding
(``batch_size=``). Shipped as remote code next to the model.
"""

from __future__ import annotations

import collections.abc
import os
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .aggregation import aggregate
from .modeling_sprm import pad_traces
from .steps import EncodedTrace, StepRules, build_trace

INPUT_KEYS = ({"question", "solution"}, {"question", "steps"}, {"text"})


def trace_result(trace: EncodedTrace, step_scores: list[float], score: float, threshold: float, config: Any) -> dict:
    """The output record of one scored trace (see the module docstring)."""
    scored = iter(step_scores)
    steps = []
    for step, position in zip(trace.steps, trace.positions):
        value = float(next(scored)) if position is not None else None
        steps.append({"text": step.text.strip(), "score": value, "part": step.part})
    first_error = next((i for i, s in enumerate(steps) if s["score"] is not None and s["score"] < threshold), None)
    result = {
        "steps": steps,
        "score": float(score),
        "first_error_step": first_error,
        "truncated": trace.truncated,
        "no_steps": not trace.steps,
    }
    if config.score_span == "both":
        result["part_scores"] = {}
        for part in ("think", "response"):
            values = [s["score"] for s in steps if s["part"] == part and s["score"] is not None]
            scores = torch.tensor([values or [0.0]])
            mask = torch.tensor([[bool(values)] * max(1, len(values))])
            result["part_scores"][part] = float(
                aggregate(scores, mask, config.aggregation, config.empty_solution_score)[0]
            )
    return result


def score_json(result: dict, model_name: str) -> dict:
    """The public JSON object of one scored solution, as ``sprm score --json`` prints it and the demo's ``/score``
    API returns it: ``{"steps": [{"text", "score"}], "score", "first_error_step", "model", "truncated",
    "no_steps"}``. Built from a pipeline output (``trace_result``); the one place that defines it."""
    return {
        "steps": [{"text": s["text"], "score": s["score"]} for s in result["steps"]],
        "score": result["score"],
        "first_error_step": result["first_error_step"],
        "model": model_name,
        "truncated": result["truncated"],
        "no_steps": result["no_steps"],
    }


def _collate(items: list[dict]) -> dict:
    return {"traces": [trace for item in items for trace in item["traces"]]}


class StepScoringPipeline(Pipeline):
    """Scores each step of a solution with an [`SPRMForStepScoring`] model (task ``"step-scoring"``)."""

    def _sanitize_parameters(self, threshold: float | None = None, max_length: int | None = None, **kwargs):
        if kwargs:
            raise TypeError(f"unexpected arguments for the step-scoring pipeline: {sorted(kwargs)}")
        preprocess = {} if max_length is None else {"max_length": max_length}
        postprocess = {} if threshold is None else {"threshold": threshold}
        return preprocess, {}, postprocess

    @property
    def rules(self) -> StepRules:
        return StepRules.from_config(self.model.config)

    def default_max_length(self) -> int | None:
        config = self.model.config
        return config.max_length or getattr(config.text_config, "max_position_embeddings", None)

    def preprocess(self, inputs: Any, max_length: int | None = None) -> dict:
        if not isinstance(inputs, collections.abc.Mapping):
            raise TypeError(
                f"step-scoring inputs are dicts with keys {{'question', 'solution'}}, {{'question', 'steps'}} or "
                f"{{'text'}}; got {type(inputs).__name__}"
            )
        keys = {k for k, v in inputs.items() if v is not None}
        if not any(keys >= expected for expected in INPUT_KEYS):
            raise ValueError(
                f"step-scoring input has keys {sorted(keys)}; expected {{'question', 'solution'}}, "
                f"{{'question', 'steps'}} or {{'text'}}"
            )
        config = self.model.config
        fields = {k: inputs.get(k) for k in ("question", "solution", "steps", "text")}
        trace = build_trace(
            self.tokenizer,
            self.rules,
            **fields,
            prompt_format=config.prompt_format,
            plain_template=config.plain_prompt_template,
            max_length=max_length or self.default_max_length(),
        )
        return {"traces": [trace]}

    def _forward(self, model_inputs: dict) -> dict:
        traces = model_inputs["traces"]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = {k: v.to(self.device) for k, v in pad_traces(traces, pad_id).items()}
        out = self.model(**batch)
        step_scores = [out.step_scores[i][out.step_mask[i]].tolist() for i in range(len(traces))]
        return {"traces": traces, "step_scores": step_scores, "scores": out.scores.tolist()}

    def postprocess(self, model_outputs: dict, threshold: float | None = None) -> dict:
        threshold = self.model.config.threshold if threshold is None else threshold
        trace, step_scores, score = (model_outputs[k] for k in ("traces", "step_scores", "scores"))
        if isinstance(trace, list):  # unbatched call: lists of one
            trace, step_scores, score = trace[0], step_scores[0], score[0]
        return trace_result(trace, step_scores, score, threshold, self.model.config)

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        # As Pipeline.get_iterator, with a collate function that keeps step positions (padded with -1 by
        # pad_traces) instead of the default one, which would pad them with 0.
        if isinstance(inputs, collections.abc.Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            num_workers = min(num_workers, 1)
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_collate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)
