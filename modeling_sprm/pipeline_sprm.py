"""``pipeline("step-scoring")``: score solutions step by step with an SPRM, or generate candidates and score them.

Inputs (one, or a list, or a dataset / generator streamed through the pipeline):

* ``{"question": str, "solution": str}``: the solution is cut into steps (``SPRMConfig.step_delimiters``);
* ``{"question": str, "steps": [str, ...]}``: the steps as given, joined canonically;
* ``{"question": str, "solutions": [str, ...]}``: several solutions; the output is a list, one record each;
* ``{"text": str}``: an already formatted trace (e.g. a whole chat with ``<think>...</think>``), scored as is;
* a TRL stepwise-supervision row ``{"prompt": str, "completions": [str, ...]}`` (``labels`` ignored) and a
  ``modeling_sprm.data`` record (its None fields absent): every row the trainers take (`scoring_fields`);
* ``{"question": str}`` alone: **generate and score** (Best-of-N, ``generation.best_of_n``): ``mode="low"`` /
  ``"medium"`` / ``"high"`` (N = 2 / 8 / 32, MetaStone-S1; "low" by default) or ``num_candidates=N``, with the
  sampling options ``temperature`` (0.6), ``top_p`` (0.95), ``top_k``, ``repetition_penalty``,
  ``max_new_tokens`` (512), ``generation_batch_size``, ``seed``, and ``answer_extractor`` ("auto", "gsm8k",
  "boxed" or a callable), ``progress_callback``. Step scores come from the features captured while sampling.
  Only a dict holding ``question`` alone generates: a solution field that is None is an error, not generation.

Output per scored solution: an ``outputs.ScoredSolution`` (a dataclass that is also a dict)::

    {"steps": [{"text": str, "score": float | None, "part": "think" | "response"}],
     "score": float, "first_error_step": int | None, "truncated": bool, "no_steps": bool,
     "part_scores": {"think": float, "response": float},   # only with score_span="both"
     "unscored": [{"text": str, "start": int, "end": int, "reason": str}]}

A step's ``score`` is ``None`` when truncation cut it off (``truncated`` is then True); ``unscored`` lists the text no
step score covers (outside the scored span, cut off, not in a step) with its character range in the solution (or
``text``), never dropped silently; a non-finite score is a ValueError. ``first_error_step`` is the
index of the first step scoring strictly below ``threshold`` (default ``config.threshold``). Per call,
``score_span`` ("think", "response", "both") and ``max_length`` override how inputs are encoded, and
``aggregation`` ("geometric_mean", "min", ...) how the solution score is made from the step scores. Batched with
padding: ``batch_size=`` inputs per forward, or ``max_batch_tokens=`` (inputs of similar length filled up to that
many padded tokens per forward; ``batch_size`` then caps the count). Output of generate-and-score: ``generation.best_of_n``'s ``outputs.BestOfNResult``
(candidates in sampling order with their steps, scores and answers; ``best``, ``ranking``, ``majority_answer``,
``sprm_answer``, ``weighted_answer``, ``num_without_answer``). Shipped as remote code next to the model.
"""

from __future__ import annotations

import collections.abc
import os
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .aggregation import AGGREGATIONS, aggregate_scores
from .generation import SamplingConfig, best_of_n
from .outputs import ScoredSolution, score_json  # noqa: F401  (score_json: re-exported, it was defined here)
from .processing_sprm import SPRMProcessor, plan_batches
from .steps import EncodedTrace

SOLUTION_KEYS = ("solution", "steps", "solutions", "text")
INPUT_FORMS = (
    "{'question', 'solution'}, {'question', 'steps'}, {'question', 'solutions'}, {'text'}, a TRL stepwise row "
    "{'prompt', 'completions'}, or {'question'} alone to generate and score"
)
SCORE_SPANS = ("think", "response", "both")
GENERATION_PARAMS = ("mode", "num_candidates", "answer_extractor", "progress_callback")
SAMPLING_PARAMS = {  # pipeline argument -> SamplingConfig field
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "repetition_penalty",
    "max_new_tokens": "max_new_tokens",
    "generation_batch_size": "batch_size",
    "seed": "seed",
}
TOKEN_BUDGET_WINDOW = 1024  # inputs read ahead and sorted by length when batching by a token budget


def scoring_fields(inputs: Any) -> dict | None:
    """What one pipeline input asks for: None for a question alone (generate and score), else the fields to score
    (``question`` with ``solution`` / ``steps`` / ``solutions``, or ``text``). Accepts every row the trainers take:
    a `modeling_sprm.data` record (fields that are None are absent; other record fields are ignored) and a TRL
    stepwise-supervision row ``{"prompt", "completions"[, "labels"]}``. Raises `TypeError` / `ValueError` naming
    the problem: a solution field that is None never turns scoring into generation."""
    if not isinstance(inputs, collections.abc.Mapping):
        raise TypeError(f"step-scoring inputs are dicts with keys {INPUT_FORMS}; got {type(inputs).__name__}")
    if "question" not in inputs and "prompt" in inputs and "completions" in inputs:  # a TRL stepwise row
        prompt, completions = inputs["prompt"], inputs["completions"]
        if not isinstance(prompt, str):
            raise TypeError(f"a TRL row's prompt must be a string (standard, not conversational), got "
                            f"{type(prompt).__name__}")
        if not isinstance(completions, (list, tuple)):
            raise TypeError(f"a TRL row's completions must be a list of step strings, got {type(completions).__name__}")
        return {"question": prompt, "steps": list(completions)}
    if set(inputs) == {"question"}:
        if not isinstance(inputs["question"], str):
            raise TypeError(f"question must be a string, got {type(inputs['question']).__name__}")
        return None
    given = {k: inputs[k] for k in SOLUTION_KEYS if inputs.get(k) is not None}
    if not given:
        if none := [k for k in SOLUTION_KEYS if k in inputs]:
            raise ValueError(f"step-scoring input: {none[0]!r} is None; give the {none[0]} to score (only a dict "
                             "with 'question' alone generates solutions)")
        raise ValueError(f"step-scoring input has keys {sorted(map(str, inputs))}; expected {INPUT_FORMS}")
    if len(given) > 1:
        raise ValueError(f"step-scoring input gives {sorted(given)}; give exactly one of {list(SOLUTION_KEYS)}")
    question = inputs.get("question")
    if question is None and "text" not in given:
        raise ValueError(f"step-scoring input has keys {sorted(map(str, inputs))} but no question; expected "
                         f"{INPUT_FORMS}")
    solutions = given.get("solutions")
    if solutions is not None and (isinstance(solutions, str) or not isinstance(solutions, collections.abc.Sequence)
                                  or not solutions):
        raise ValueError("`solutions` must be a non-empty list of solution strings")
    return {**given, **({} if question is None else {"question": question})}


def _approximate_length(inputs: Any) -> int:
    """Characters of an input's text fields: a cheap stand-in for its token count, to sort inputs by length."""
    if not isinstance(inputs, collections.abc.Mapping):
        return 0
    return sum(len(v) if isinstance(v, str) else sum(len(s) for s in v if isinstance(s, str))
               for v in inputs.values() if isinstance(v, (str, list, tuple)))


def _no_collate(item: dict) -> dict:
    return item


def _collate(items: list[dict]) -> dict:
    return {"items": items}


class StepScoringPipeline(Pipeline):
    """Scores each step of a solution with an [`SPRMForStepScoring`] model, or generates candidates with the same
    model and scores them (task ``"step-scoring"``; see the module docstring)."""

    # The tokenizer is optional for pipeline(): a head-only checkpoint (the shipped default) has none; __init__
    # then takes its backbone's. No image / audio / video components.
    _load_tokenizer = None
    _load_processor = _load_image_processor = _load_video_processor = _load_feature_extractor = False

    def __init__(self, model, tokenizer=None, **kwargs):
        if tokenizer is None:
            from transformers import AutoTokenizer

            from .backbones import resolve_backbone

            reference = getattr(model.config, "backbone_name_or_path", None)
            if not reference:
                raise ValueError("the step-scoring pipeline needs a tokenizer: pass tokenizer=, or save one with the "
                                 "checkpoint")
            tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(reference))
        super().__init__(model, tokenizer=tokenizer, **kwargs)

    def __call__(self, inputs: Any, *args, max_batch_tokens: int | None = None, **kwargs):
        # With max_batch_tokens, a list or a stream is scored in batches filled up to a token budget (see
        # _score_by_token_budget); the results keep the input order.
        if max_batch_tokens is not None and not isinstance(inputs, collections.abc.Mapping):
            plan_batches([], max_batch_tokens)  # checks the value
            batch_size = kwargs.pop("batch_size", None) or self._batch_size
            num_workers = kwargs.pop("num_workers", None) or self._num_workers or 0
            preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
            params = (
                {**self._preprocess_params, **preprocess_params},
                {**self._forward_params, **forward_params},
                {**self._postprocess_params, **postprocess_params},
            )
            results = self._score_by_token_budget(inputs, max_batch_tokens, batch_size, num_workers, *params)
            return list(results) if isinstance(inputs, list) else results
        # A list scored in batches is sorted by length first (and the results put back in input order), so that
        # each padded batch holds inputs of similar length: less padding computed.
        batch_size = kwargs.get("batch_size") or self._batch_size or 1
        if isinstance(inputs, list) and 1 < batch_size < len(inputs):
            order = sorted(range(len(inputs)), key=lambda i: _approximate_length(inputs[i]))
            outputs = super().__call__([inputs[i] for i in order], *args, **kwargs)
            restored = [None] * len(inputs)
            for position, i in enumerate(order):
                restored[i] = outputs[position]
            return restored
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(
        self,
        threshold: float | None = None,
        max_length: int | None = None,
        score_span: str | None = None,
        aggregation: str | None = None,
        **kwargs,
    ):
        forward = {k: kwargs.pop(k) for k in GENERATION_PARAMS if k in kwargs}
        sampling = {SAMPLING_PARAMS[k]: kwargs.pop(k) for k in list(kwargs) if k in SAMPLING_PARAMS}
        if kwargs:
            raise TypeError(f"unexpected arguments for the step-scoring pipeline: {sorted(kwargs)}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if score_span is not None and score_span not in SCORE_SPANS:
            raise ValueError(f"score_span must be one of {SCORE_SPANS}, got {score_span!r}")
        if aggregation is not None and aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {sorted(AGGREGATIONS)}, got {aggregation!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive number of tokens, got {max_length!r}")
        if sampling:
            forward["sampling"] = SamplingConfig.from_kwargs(**sampling)
        preprocess = {k: v for k, v in {"max_length": max_length, "score_span": score_span}.items() if v is not None}
        postprocess = {"threshold": threshold, "aggregation": aggregation, "score_span": score_span}
        postprocess = {k: v for k, v in postprocess.items() if v is not None}
        if threshold is not None:
            forward["threshold"] = threshold
        return preprocess, forward, postprocess

    @property
    def sprm_processor(self) -> SPRMProcessor:
        """The encoding entry point of this model and tokenizer."""
        if getattr(self, "_sprm_processor", None) is None or self._sprm_processor.tokenizer is not self.tokenizer:
            self._sprm_processor = SPRMProcessor.from_model(self.model, self.tokenizer)
        return self._sprm_processor

    def preprocess(self, inputs: Any, max_length: int | None = None, score_span: str | None = None) -> dict:
        fields = scoring_fields(inputs)
        if fields is None:
            return {"question": inputs["question"]}  # generate and score
        encode = self.sprm_processor.encode
        if "solutions" in fields:
            traces = [
                encode(question=fields["question"], solution=s, max_length=max_length, score_span=score_span)
                for s in fields["solutions"]
            ]
            return {"traces": traces, "multi": True}
        return {"traces": [encode(**fields, max_length=max_length, score_span=score_span)], "multi": False}

    def _forward(self, model_inputs: dict, **generation_params) -> dict:
        # A batch from get_iterator is {"items": [...]}; an unbatched call passes one preprocessed item.
        items = model_inputs["items"] if "items" in model_inputs else [model_inputs]
        traces = [trace for item in items for trace in item.get("traces", [])]
        return {"items": self._attach_scores(items, *self._score(traces), generation_params)}

    def _attach_scores(self, items: list[dict], step_scores: list, scores: list, generation_params: dict) -> list:
        """The model outputs of preprocessed items, given the scores of all their traces in order (generation
        items are generated and scored here)."""
        outputs, k = [], 0
        for item in items:
            if "question" in item:
                outputs.append({"generated": self._generate(item["question"], **generation_params)})
                continue
            n = len(item["traces"])
            outputs.append({**item, "step_scores": step_scores[k : k + n], "scores": scores[k : k + n]})
            k += n
        return outputs

    def _score(self, traces: list[EncodedTrace]) -> tuple[list[list[float]], list[float]]:
        if not traces:
            return [], []
        batch = {k: v.to(self.device) for k, v in self.sprm_processor.pad(traces).items()}
        with torch.inference_mode():  # quantized backbones need it (bitsandbytes 4-bit after generate())
            out = self.model(**batch)
        # one device -> host copy per batch, then plain Python lists
        step_scores, step_mask, scores = (t.cpu() for t in (out.step_scores, out.step_mask, out.scores))
        return [row[mask].tolist() for row, mask in zip(step_scores, step_mask)], scores.tolist()

    def _score_by_token_budget(
        self,
        inputs,
        max_batch_tokens: int,
        batch_size: int | None,
        num_workers: int,
        preprocess_params,
        forward_params,
        postprocess_params,
    ):
        """Score ``inputs`` (a list, dataset or generator) in windows of `TOKEN_BUDGET_WINDOW` inputs: every trace of
        a window is batched with traces of similar length up to ``max_batch_tokens`` padded tokens
        (`processing_sprm.plan_batches`), and the window's results are yielded in input order. With
        ``num_workers``, inputs are encoded in that many worker processes, ahead of the forwards (a GPU waits less)."""
        if isinstance(inputs, collections.abc.Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            num_workers = min(num_workers, 1)  # as Pipeline.get_iterator: each worker would read the whole stream
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        if num_workers:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            dataset = DataLoader(dataset, num_workers=num_workers, batch_size=None, collate_fn=_no_collate)
        window: list = []
        for item in dataset:
            window.append(item)
            if len(window) == TOKEN_BUDGET_WINDOW:
                yield from self._score_window(window, max_batch_tokens, batch_size, forward_params, postprocess_params)
                window = []
        yield from self._score_window(window, max_batch_tokens, batch_size, forward_params, postprocess_params)

    def _score_window(self, items, max_batch_tokens, batch_size, forward_params, postprocess_params):
        traces = [trace for item in items for trace in item.get("traces", [])]
        step_scores: list = [None] * len(traces)
        scores: list = [None] * len(traces)
        for batch in plan_batches([len(t.input_ids) for t in traces], max_batch_tokens, batch_size):
            for i, s, score in zip(batch, *self._score([traces[i] for i in batch])):
                step_scores[i], scores[i] = s, score
        for output in self._attach_scores(items, step_scores, scores, forward_params):
            yield self.postprocess({"items": output}, **postprocess_params)

    def _generate(self, question: str, threshold: float | None = None, **params) -> dict:
        return best_of_n(self.model, self.tokenizer, question, threshold=threshold, **params)

    def postprocess(
        self,
        model_outputs: dict,
        threshold: float | None = None,
        aggregation: str | None = None,
        score_span: str | None = None,
    ) -> ScoredSolution | list[ScoredSolution]:
        item = model_outputs["items"]
        if isinstance(item, list):  # unbatched call: a list of one
            item = item[0]
        if "generated" in item:
            return item["generated"]
        config = self.model.config
        results = []
        for trace, step_scores, score in zip(item["traces"], item["step_scores"], item["scores"]):
            if aggregation is not None and aggregation != config.aggregation:
                score = aggregate_scores(step_scores, aggregation, config.empty_solution_score)
            results.append(
                ScoredSolution.from_trace(
                    trace,
                    step_scores,
                    score,
                    threshold=config.threshold if threshold is None else threshold,
                    aggregation=aggregation or config.aggregation,
                    empty_score=config.empty_solution_score,
                    score_span=score_span or config.score_span,
                    rules=self.sprm_processor.rules,
                )
            )
        return results if item["multi"] else results[0]

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
