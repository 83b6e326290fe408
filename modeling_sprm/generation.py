"""Generate and score with one backbone: Best-of-N and SPRM-guided step search, where the step scores come from the
policy's own forward passes during generation.

The SPRM head reads the feature layers (``hidden_states[feature_layer]``, or ``feature_layers`` concatenated) at
one token per step, or averaged over the step's tokens (``step_pooling="mean"``). Those layers are computed anyway
while the policy samples, so forward hooks (``SPRMForStepScoring.capture_features``) hand each decoding step's
features to a :class:`StepFeatureCollector`, which keeps only the ones at possible step read positions (every one
for a mean readout). When a candidate is done, ``steps.segment`` + ``steps.read_positions`` (the one path from
text to read positions) pick the features, ``captured_step_features`` pools them as a scoring forward does, and
only the head runs: no second forward over the sequence, unlike MetaStone-S1's released scorer, which reloads the
model and re-encodes every sample.

Character offsets of generated tokens come from decoding the generated ids incrementally
(:class:`IncrementalDetokenizer`), never from re-tokenizing the text: re-tokenizing decoded text can give other
tokens than the ones sampled (a model may sample a split its tokenizer never writes; and characters merge across
the prompt boundary: SmolLM2's tokenizer joins the prompt's final ``"\\n"`` with a solution that starts with
spaces), and then a re-encoded score is the score of another token sequence. Where re-tokenizing gives back the
sampled tokens, captured and re-encoded scores agree to float precision (tests: 1e-4 on step scores, measured
below 2e-6 in float32).

Shipped as remote code (used by ``pipeline_sprm``): imports only torch, transformers and the package's remote-code
modules.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .aggregation import aggregate_scores
from .answers import get_extractor, majority_vote, weighted_vote
from .outputs import BestOfNResult, Candidate, ScoredSolution, StepSearchResult
from .processing_sprm import SPRMProcessor, pad_step_features
from .steps import EncodedTrace, StepRules, read_positions, segment

MODES = {"low": 2, "medium": 8, "high": 32}  # MetaStone-S1's Best-of-N modes
MAX_NUM_CANDIDATES = 1024
ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total); stages "generate" and "score"


@dataclass
class SamplingConfig:
    """How candidates are sampled. The defaults are MetaStone-S1's (vLLM: temperature 0.6, top_p 0.95, no top-k)."""

    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature; 0 means greedy decoding."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling: keep the smallest token set with this mass."})
    top_k: int = field(default=0, metadata={"help": "Keep only the k most likely tokens; 0 turns top-k off."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Repetition penalty (MetaStone-S1 used 1.05)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Most tokens generated per candidate."})
    batch_size: int | None = field(
        default=None, metadata={"help": "Sequences per generate() call (default: all candidates at once)."}
    )
    seed: int | None = field(default=None, metadata={"help": "Seed torch's generator before sampling."})

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def from_kwargs(cls, sampling: "SamplingConfig | None" = None, **overrides) -> "SamplingConfig":
        """``sampling`` (or the defaults) with the non-None ``overrides`` applied."""
        values = asdict(sampling) if sampling is not None else {}
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown sampling arguments {sorted(unknown)}; expected some of {sorted(names)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False, "repetition_penalty": self.repetition_penalty}
        return {
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
        }


def resolve_num_candidates(mode: str | None = None, num_candidates: int | None = None) -> int:
    """N from ``mode`` ("low" 2, "medium" 8, "high" 32) or ``num_candidates``; "low" when neither is given."""
    if mode is not None and num_candidates is not None:
        raise ValueError(f"give either mode ({mode!r}) or num_candidates ({num_candidates}), not both")
    if num_candidates is None:
        mode = "low" if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES, key=MODES.get)}, got {mode!r}")
        return MODES[mode]
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int):
        raise TypeError(f"num_candidates must be an integer, got {type(num_candidates).__name__}")
    if not 1 <= num_candidates <= MAX_NUM_CANDIDATES:
        raise ValueError(f"num_candidates must be between 1 and {MAX_NUM_CANDIDATES}, got {num_candidates}")
    return num_candidates


# ----------------------------------------------------------------------------------------------------------------
# Generated token ids -> text and character offsets


class IncrementalDetokenizer:
    """Decodes generated token ids one at a time into text and the character span of each token, from the ids
    themselves (no re-tokenization). The last few context ids are decoded along (as vLLM and TGI do), so that
    tokenizers whose decoding depends on the previous token (SentencePiece spaces) give the text as it reads after
    the prompt. A token that ends inside a multi-byte character is held until the character is complete; the held
    tokens and the one that completes the character all get the character's span (as a tokenizer's offset
    mapping gives every byte piece of a character the character's span)."""

    def __init__(self, tokenizer: Any, context_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.ids = list(context_ids)
        self.prefix_offset = max(len(self.ids) - 5, 0)
        self.read_offset = len(self.ids)
        self.text = ""
        self.offsets: list[tuple[int, int]] = []  # per generated token, in `text` coordinates
        self.held = 0  # generated tokens whose text is not out yet

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def add(self, token_id: int, final: bool = False) -> None:
        self.ids.append(int(token_id))
        self.held += 1
        self._emit(final)

    def flush(self) -> None:
        """Emit held tokens even if they end inside a character (at the end of a generation). Every held token
        has a placeholder span here (`_emit` expects the newest token without one: it has just been added), so the
        newest placeholder goes first."""
        if self.held:
            self.offsets.pop()
            self._emit(final=True)

    def _emit(self, final: bool) -> None:
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and (final or not new_text.endswith("\ufffd")):
            start = len(self.text)
            self.text += new_text[len(prefix_text) :]
            span = (start, len(self.text))
            self.offsets[len(self.offsets) - self.held + 1 :] = []
            self.offsets.extend([span] * self.held)
            self.prefix_offset, self.read_offset, self.held = self.read_offset, len(self.ids), 0
        else:  # nothing complete yet: a placeholder span, replaced when the character completes
            self.offsets.append((len(self.text), len(self.text)))
            if final:
                self.held = 0

    @property
    def settled(self) -> int:
        """How many generated tokens have their final span."""
        return len(self.offsets) - self.held


# ----------------------------------------------------------------------------------------------------------------
# Which positions can be step read positions (to keep only their features while generating)


class AnchorFilter:
    """Decides, with as little text after a character as needed, whether the character can be the anchor of a step
    (``steps.Step.anchor``): the first character of a delimiter, or the anchor of a trailing step, which sits just
    after the last content character (or on a delimiter prefix such as the "." of ".\\n\\n") before whitespace
    and the end of the text or a think-end tag. It answers True, False, or None (not decidable yet). It is a
    superset test: the segmentation rules (code fences, numbers, think spans) only remove anchors."""

    def __init__(self, rules: StepRules):
        self.delimiters = rules.delimiters
        cores = {d.rstrip() for d in rules.delimiters}
        prefixes = {core[:k] for core in cores for k in range(1, len(core) + 1)}
        self.prefixes = sorted(prefixes, key=len, reverse=True) + [""]
        self.tag = rules.think_end_tag
        self.space = re.compile(r"\s*")

    def __call__(self, text: str, c: int) -> bool | None:
        undecided = False
        for d in self.delimiters:
            if text.startswith(d, c):
                return True
            if len(text) - c < len(d) and d.startswith(text[c:]):
                undecided = True
        for prefix in self.prefixes:
            if not text.startswith(prefix, c):
                continue
            after = self.space.match(text, c + len(prefix)).end()
            if text.startswith(self.tag, after):
                return True
            if len(text) - after < len(self.tag) and self.tag.startswith(text[after:]):
                undecided = True  # only whitespace (or a tag prefix) so far: may be a trailing anchor
        return None if undecided else False


# ----------------------------------------------------------------------------------------------------------------
# One generated sequence with its captured step features


@dataclass
class Rollout:
    """A generated continuation of a prompt. ``token_ids`` exclude the end-of-sequence token; ``offsets[i]`` is the
    span of ``token_ids[i]`` in ``text``. ``features`` maps a position, counted from the first generated token
    (-1 is the last prompt token), to the feature-layer vector there (`capture_features`: the layers read,
    concatenated); only possible read positions are kept, or every position for a mean readout."""

    prompt_ids: list[int]
    prompt_text: str
    prompt_offsets: list[tuple[int, int]]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    offsets: list[tuple[int, int]] = field(default_factory=list)
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    stop_reason: str | None = None  # "eos", "length" (max_new_tokens) or "step" (a step delimiter, in step search)

    def full_offsets(self) -> list[tuple[int, int]]:
        shift = len(self.prompt_text)
        return self.prompt_offsets + [(s + shift, e + shift) for s, e in self.offsets]

    def trace(self, rules: StepRules) -> EncodedTrace:
        """Steps of the generated text and their read positions, from the generated token ids (``steps.segment``
        and ``steps.read_positions``, as every score)."""
        full_text = self.prompt_text + self.text
        steps = segment(full_text, rules, start=len(self.prompt_text))
        ids = self.prompt_ids + self.token_ids
        offsets = self.full_offsets()
        positions = read_positions(offsets, [s.anchor for s in steps], rules.score_offset) if ids else []
        starts = read_positions(offsets, [s.start for s in steps], 0) if ids else []
        return EncodedTrace(
            full_text, ids, steps, list(positions), False, len(ids), len(self.prompt_text), list(starts)
        )


class _Row:
    """Collector state of one sequence of a generate() call."""

    def __init__(
        self, rollout: Rollout, tokenizer: Any, anchor_filter: AnchorFilter, score_offset: int, keep_all: bool = False
    ):
        self.rollout = rollout
        self.detok = IncrementalDetokenizer(tokenizer, rollout.prompt_ids)
        for token_id in rollout.token_ids:  # a continued rollout (step search): rebuild its text and offsets
            self.detok.add(token_id)
        self.prior = len(rollout.token_ids)  # tokens generated before this generate() call
        self.filter = anchor_filter
        self.score_offset = score_offset
        # A mean readout (step_pooling="mean") reads every token of a step: then every feature is kept.
        self.keep_all = keep_all
        self.lowest = -1 if keep_all else min(score_offset, 0)  # lowest position whose feature may be read
        self.pending: dict[int, torch.Tensor] = {}
        self.kept: dict[int, torch.Tensor] = {}
        self.done = False
        self.steps_at_start = 0  # delimited steps before this generate() call (for stop_at_step)

    @property
    def num_tokens(self) -> int:
        return len(self.detok.offsets)

    def offer(self, position: int, feature: torch.Tensor) -> None:
        """A feature for a position (counted from the first generated token); kept if it can be a read position."""
        if position < self.lowest or position > self.num_tokens - 1 or position in self.kept:
            return
        if self.keep_all:
            self.kept[position] = feature.clone()
            return
        self.pending[position] = feature

    def decide(self) -> None:
        """Keep or drop the pending features whose anchor token and enough text after it are known."""
        settled, offsets, text = self.detok.settled, self.detok.offsets, self.detok.text
        for position in list(self.pending):
            q = position - self.score_offset  # the token whose characters would be the anchor
            if position > self.num_tokens - 2 or q >= settled:
                continue  # the last position stays: a trailing anchor past the text reads it (read_positions)
            keep = False
            if q >= 0:
                start = offsets[q - 1][1] if q > 0 else 0
                statuses = [self.filter(text, c) for c in range(start, offsets[q][1])]
                if None in statuses and True not in statuses:
                    continue
                keep = True in statuses
            feature = self.pending.pop(position)
            if keep:
                self.kept[position] = feature.clone()

    def finish(self) -> Rollout:
        self.detok.flush()
        r = self.rollout
        r.token_ids = self.detok.ids[len(r.prompt_ids) :]
        r.text, r.offsets = self.detok.text, list(self.detok.offsets)
        r.features = {**self.kept, **{p: f.clone() for p, f in self.pending.items()}}
        return r


class StepFeatureCollector(StoppingCriteria):
    """Follows a ``generate()`` call token by token: decodes each new token, takes the feature-layer outputs
    captured by ``SPRMForStepScoring.capture_features`` and keeps those at possible read positions. As a stopping
    criterion it ends a sequence at its end-of-sequence token and, with ``stop_at_step``, after its next step
    delimiter."""

    def __init__(
        self,
        rows: list[_Row],
        captured: list[torch.Tensor],
        context_lengths: list[int],
        eos_token_ids: set[int],
        rules: StepRules,
        stop_at_step: bool = False,
        progress: Callable[[int], None] | None = None,
    ):
        self.rows = rows
        self.captured = captured
        self.padded_length = max(context_lengths)
        self.pad = [self.padded_length - n for n in context_lengths]  # left padding of each row
        self.eos = eos_token_ids
        self.rules = rules
        self.stop_at_step = stop_at_step
        self.progress = progress
        self.columns = 0  # columns of the padded sequence whose features have been taken
        self.steps_taken = 0
        self.max_delimiter = max(len(d) for d in rules.delimiters)

    def take_features(self) -> None:
        while self.captured:
            block = self.captured.pop(0)  # [batch, new_columns, hidden]
            for b, row in enumerate(self.rows):
                first = self.columns - self.pad[b] - len(row.rollout.prompt_ids)  # position of this block's column 0
                lo = max(0, row.lowest - first)
                for j in range(lo, block.shape[1]):
                    row.offer(first + j, block[b, j])
            self.columns += block.shape[1]
        for row in self.rows:
            row.decide()

    def _completed_step(self, row: _Row, new_chars: int) -> bool:
        text = row.detok.text
        tail = text[max(0, len(text) - new_chars - self.max_delimiter + 1) :]
        if not any(d in tail for d in self.rules.delimiters):
            return False
        full = row.rollout.prompt_text + text
        steps = segment(full, self.rules, start=len(row.rollout.prompt_text))
        return sum(s.has_delimiter for s in steps) > row.steps_at_start

    def __call__(self, input_ids: torch.LongTensor, scores: Any = None, **kwargs) -> torch.BoolTensor:
        self.take_features()
        new_tokens = input_ids[:, -1].tolist()
        for row, token_id in zip(self.rows, new_tokens):
            if row.done:
                continue
            if token_id in self.eos:
                row.done, row.rollout.stop_reason = True, "eos"
                continue
            before = len(row.detok.text)
            row.detok.add(token_id)
            if self.stop_at_step and self._completed_step(row, len(row.detok.text) - before):
                row.done, row.rollout.stop_reason = True, "step"
        self.steps_taken += 1
        if self.progress is not None:
            self.progress(self.steps_taken)
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = set()
    for source in (model.backbone.generation_config.eos_token_id, tokenizer.eos_token_id):
        if source is not None:
            ids.update([source] if isinstance(source, int) else source)
    if not ids:
        raise ValueError("the tokenizer and the backbone's generation config define no end-of-sequence token")
    return ids


@torch.inference_mode()
def generate_rollouts(
    model: Any,
    tokenizer: Any,
    rollouts: list[Rollout],
    sampling: SamplingConfig,
    max_new_tokens: int | None = None,
    stop_at_step: bool = False,
    progress: Callable[[int], None] | None = None,
) -> list[Rollout]:
    """Continue each rollout (a prompt, possibly with tokens already generated) in one ``generate()`` call,
    capturing the feature layer as it goes; returns the same objects, extended, with their features."""
    processor = SPRMProcessor.from_model(model, tokenizer)
    tokenizer, rules = processor.tokenizer, processor.rules
    anchor_filter = AnchorFilter(rules)
    keep_all = model.config.step_pooling == "mean"
    rows = [_Row(r, tokenizer, anchor_filter, rules.score_offset, keep_all) for r in rollouts]
    contexts = [r.prompt_ids + r.token_ids for r in rollouts]
    lengths = [len(c) for c in contexts]
    pad_id = processor.pad_token_id
    width = max(lengths)
    device = model.get_input_embeddings().weight.device
    input_ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for i, ids in enumerate(contexts):  # left padding: every row ends at the last column
        input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, width - len(ids) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    eos = eos_token_ids(model, tokenizer)
    max_new_tokens = max_new_tokens or sampling.max_new_tokens
    context = getattr(model.config.text_config, "max_position_embeddings", None)
    if context is not None:
        if width >= context:
            raise ValueError(f"the prompt has {width} tokens; the backbone's context is {context} tokens")
        max_new_tokens = min(max_new_tokens, context - width)
    if stop_at_step:
        for row in rows:
            prompt_text = row.rollout.prompt_text
            row.steps_at_start = sum(s.has_delimiter for s in segment(prompt_text + row.detok.text, rules, len(prompt_text)))
    with model.capture_features() as captured:
        collector = StepFeatureCollector(rows, captured, lengths, eos, rules, stop_at_step, progress)
        out = model.backbone.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            stopping_criteria=StoppingCriteriaList([collector]),
            eos_token_id=sorted(eos),
            pad_token_id=pad_id,
            return_dict_in_generate=True,
            **sampling.generate_kwargs(),
        )
        collector.take_features()
        for row in rows:
            if not row.done:
                row.rollout.stop_reason = "length"
        # The last sampled token of a sequence that ran to the last column was never fed to the model: one more
        # decoding step (with the cache) gives its features, which a trailing step may read.
        generated = out.sequences.shape[1] - width
        if any(row.num_tokens - row.prior == generated and row.rollout.stop_reason != "eos" for row in rows):
            mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), generated))], dim=-1)
            model.backbone(
                input_ids=out.sequences[:, -1:],
                attention_mask=mask,
                position_ids=mask.sum(dim=-1, keepdim=True) - 1,
                cache=out.cache,
                use_cache=True,
                logits_to_keep=1,
            )
            collector.take_features()
    return [row.finish() for row in rows]


# ----------------------------------------------------------------------------------------------------------------
# Scoring rollouts from their captured features


def prompt_rollout(model: Any, tokenizer: Any, question: str) -> Rollout:
    """An empty rollout for ``question``, formatted as for scoring (`SPRMProcessor.encode_prompt`: the backbone's
    chat template for instruct models)."""
    return Rollout(*SPRMProcessor.from_model(model, tokenizer).encode_prompt(question))


def copy_rollout(rollout: Rollout) -> Rollout:
    return Rollout(rollout.prompt_ids, rollout.prompt_text, rollout.prompt_offsets, list(rollout.token_ids))


def captured_step_features(model: Any, rollout: Rollout, trace: EncodedTrace) -> torch.Tensor:
    """``[num_read_steps, feature_size]``: what the head reads of each read step of ``trace``
    (``rollout.trace(rules)``), from the features captured while sampling, pooled by
    `SPRMForStepScoring.step_features_from_hidden` as a scoring forward pools them."""
    read = [(p if s is None else s, p) for s, p in zip(trace.starts, trace.positions) if p is not None]
    if not read:
        return torch.zeros((0, model.config.feature_size))
    mean = model.config.step_pooling == "mean"
    # the tokens the readout needs: every token from the first step start on (mean), or the read tokens
    lo = min(s for s, _ in read) if mean else 0
    window = range(lo, max(p for _, p in read) + 1) if mean else [p for _, p in read]
    prompt_len = len(rollout.prompt_ids)
    rows = []
    for position in window:
        feature = rollout.features.get(position - prompt_len)
        if feature is None:
            raise RuntimeError(
                f"no captured feature at position {position} of a {len(trace.input_ids)}-token sequence "
                "(a bug in the step feature capture)"
            )
        rows.append(feature)
    if mean:
        positions, starts = torch.tensor([[p - lo for _, p in read]]), torch.tensor([[s - lo for s, _ in read]])
    else:
        positions = starts = torch.arange(len(read)).unsqueeze(0)
    return model.step_features_from_hidden(torch.stack(rows).unsqueeze(0), positions, starts)[0]


@torch.inference_mode()
def score_rollouts(
    model: Any, rollouts: Sequence[Rollout], traces: Sequence[EncodedTrace]
) -> tuple[list[list[float]], list[float]]:
    """Run the head on the captured features of each trace's steps (`captured_step_features`):
    ``(step_scores, scores)``."""
    head_param = model.score_head[0].weight
    per_trace = [captured_step_features(model, rollout, trace) for rollout, trace in zip(rollouts, traces)]
    features, mask = pad_step_features(per_trace, dtype=head_param.dtype, device=head_param.device)
    _, step_scores, scores = model.score_step_features(features, mask)
    return [step_scores[i][mask[i]].tolist() for i in range(len(traces))], scores.tolist()


def candidate_record(
    rollout: Rollout,
    trace: EncodedTrace,
    step_scores: list[float],
    score: float,
    threshold: float,
    config: Any,
    extractor: Callable[[str], str | None],
) -> Candidate:
    """One candidate as returned by `best_of_n` and `step_search` (`outputs.Candidate`): the scored trace, the
    text, the extracted answer and the flags ``truncated`` (stopped by ``max_new_tokens`` before the
    end-of-sequence token) and ``no_delimiter`` (no step delimiter: the whole text is one step)."""
    scored = ScoredSolution.from_trace(
        trace,
        step_scores,
        score,
        threshold=threshold,
        aggregation=config.aggregation,
        empty_score=config.empty_solution_score,
        score_span=config.score_span,
    )
    return Candidate(
        text=rollout.text,
        **{**scored, "truncated": rollout.stop_reason == "length", "part_scores": scored.part_scores},
        no_delimiter=bool(trace.steps) and not any(s.has_delimiter for s in trace.steps),
        answer=extractor(rollout.text),
        num_tokens=len(rollout.token_ids),
    )


def summarize(question: str, candidates: list[dict], result_class: type = BestOfNResult, **extra) -> BestOfNResult:
    """Rank scored candidates and vote: the SPRM pick (highest score, earliest on ties), the majority answer and the
    SPRM-weighted answer (candidates without an answer do not vote; ``num_without_answer`` counts them)."""
    ranking = sorted(range(len(candidates)), key=lambda i: (-candidates[i]["score"], i))
    answers = [c["answer"] for c in candidates]
    best = ranking[0] if ranking else None
    return result_class(
        question=question,
        candidates=candidates,
        best=best,
        ranking=ranking,
        majority_answer=majority_vote(answers),
        sprm_answer=candidates[best]["answer"] if best is not None else None,
        weighted_answer=weighted_vote(answers, [c["score"] for c in candidates]),
        num_without_answer=sum(a is None for a in answers),
        **extra,
    )


def _progress_reporter(progress_callback: ProgressCallback | None, offset: int, total: int):
    if progress_callback is None:
        return None
    return lambda done: progress_callback("generate", offset + done, total)


def best_of_n(
    model: Any,
    tokenizer: Any,
    question: str,
    *,
    mode: str | None = None,
    num_candidates: int | None = None,
    sampling: SamplingConfig | None = None,
    answer_extractor: str | Callable[[str], str | None] = "auto",
    threshold: float | None = None,
    progress_callback: ProgressCallback | None = None,
    **sampling_overrides,
) -> BestOfNResult:
    """Sample N candidates for ``question``, score every step of each from the features captured while sampling,
    and pick. Returns an `outputs.BestOfNResult` (a dataclass that is also this dict)::

        {"question": str,
         "candidates": [{"text", "steps": [{"text", "score", "part"}], "score", "answer", "truncated", "no_steps",
                         "no_delimiter", "first_error_step", "num_tokens"}, ...],   # in sampling order
         "best": int, "ranking": [int, ...],   # candidate indices by SPRM score, best first
         "majority_answer": str | None, "sprm_answer": str | None, "weighted_answer": str | None,
         "num_without_answer": int}

    Args:
        mode / num_candidates: "low" (N=2), "medium" (8), "high" (32) as MetaStone-S1, or any N up to
            `MAX_NUM_CANDIDATES`; "low" when neither is given.
        sampling / sampling_overrides: a `SamplingConfig`, or its fields as keywords (`temperature=`, `top_p=`,
            `max_new_tokens=`, `batch_size=`, `seed=`, ...).
        answer_extractor: "auto" (``\\boxed{}`` else GSM8K style), "gsm8k", "boxed", or a callable text -> answer.
        threshold: a step scoring below it is a predicted error (default `config.threshold`).
        progress_callback: called as ``(stage, done, total)``: ``("generate", decoding steps done, total)`` while
            sampling and ``("score", n, n)`` when scored.
    """
    n = resolve_num_candidates(mode, num_candidates)
    sampling = SamplingConfig.from_kwargs(sampling, **sampling_overrides)
    extractor = get_extractor(answer_extractor)
    threshold = model.config.threshold if threshold is None else threshold
    processor = SPRMProcessor.from_model(model, tokenizer)
    rules = processor.rules
    start = prompt_rollout(model, processor, question)
    batch = sampling.batch_size or n
    chunks = [range(i, min(i + batch, n)) for i in range(0, n, batch)]
    total = len(chunks) * sampling.max_new_tokens
    rollouts: list[Rollout] = []
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    for k, chunk in enumerate(chunks):
        progress = _progress_reporter(progress_callback, k * sampling.max_new_tokens, total)
        rollouts += generate_rollouts(model, processor, [copy_rollout(start) for _ in chunk], sampling, progress=progress)
    traces = [r.trace(rules) for r in rollouts]
    step_scores, scores = score_rollouts(model, rollouts, traces)
    candidates = [
        candidate_record(r, t, s, sc, threshold, model.config, extractor)
        for r, t, s, sc in zip(rollouts, traces, step_scores, scores)
    ]
    if progress_callback is not None:
        progress_callback("score", n, n)
    return summarize(question, candidates)


# ----------------------------------------------------------------------------------------------------------------
# SPRM-guided step search


def partial_score(aggregate_fn: Callable, step_scores: list[float], has_delimiter: list[bool]) -> float:
    """Score of an unfinished trajectory: its delimited steps (an open trailing step is not judged yet), or the
    trailing step alone when there is no delimiter so far. ``aggregate_fn``: a list of step scores -> a score."""
    closed = [s for s, d in zip(step_scores, has_delimiter) if d]
    return aggregate_fn(closed or step_scores)


def step_search(
    model: Any,
    tokenizer: Any,
    question: str,
    *,
    beam_width: int = 2,
    num_continuations: int = 4,
    max_steps: int = 32,
    max_step_tokens: int = 128,
    sampling: SamplingConfig | None = None,
    answer_extractor: str | Callable[[str], str | None] = "auto",
    threshold: float | None = None,
    progress_callback: ProgressCallback | None = None,
    **sampling_overrides,
) -> StepSearchResult:
    """SPRM-guided step-level beam search. Each round, every kept beam samples ``num_continuations``
    continuations up to its next step delimiter (or ``max_step_tokens``, or the end of the sequence); the
    continuations are scored from the features captured while sampling (aggregate of their closed steps), and
    the best ``beam_width`` unfinished ones go on. A continuation that ends (end-of-sequence, or
    ``sampling.max_new_tokens`` tokens in all) is finished; the search stops when ``beam_width`` are finished or
    after ``max_steps`` rounds (the open beams are then finished as truncated).

    Returns an `outputs.StepSearchResult`: the `best_of_n` result with the finished beams as ``candidates`` (in
    finishing order), plus ``generated_tokens`` (all sampled tokens, discarded continuations included: the
    search's budget) and ``rounds``.
    """
    for name, value in (("beam_width", beam_width), ("num_continuations", num_continuations),
                        ("max_steps", max_steps), ("max_step_tokens", max_step_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if beam_width * num_continuations > MAX_NUM_CANDIDATES:
        raise ValueError(f"beam_width * num_continuations must be at most {MAX_NUM_CANDIDATES}")
    sampling = SamplingConfig.from_kwargs(sampling, **sampling_overrides)
    extractor = get_extractor(answer_extractor)
    threshold = model.config.threshold if threshold is None else threshold
    config = model.config
    processor = SPRMProcessor.from_model(model, tokenizer)
    rules = processor.rules

    def aggregate_fn(values: list[float]) -> float:
        return aggregate_scores(values, config.aggregation, config.empty_solution_score)

    beams = [prompt_rollout(model, processor, question)]
    finished: list[tuple[Rollout, EncodedTrace, list[float], float]] = []
    generated_tokens, rounds = 0, 0
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    while beams and len(finished) < beam_width and rounds < max_steps:
        rounds += 1
        children = [copy_rollout(b) for b in beams for _ in range(num_continuations)]
        before = [len(c.token_ids) for c in children]
        room = min(sampling.max_new_tokens - max(before), max_step_tokens)
        progress = _progress_reporter(progress_callback, (rounds - 1) * max_step_tokens, max_steps * max_step_tokens)
        children = generate_rollouts(
            model, processor, children, sampling, max_new_tokens=room, stop_at_step=True, progress=progress
        )
        generated_tokens += sum(len(c.token_ids) - n for c, n in zip(children, before))
        unique = {}
        for child in children:
            unique.setdefault(tuple(child.token_ids) + (child.stop_reason == "eos",), child)
        children = list(unique.values())
        traces = [c.trace(rules) for c in children]
        step_scores, scores = score_rollouts(model, children, traces)
        open_beams = []
        for child, trace, steps, score in zip(children, traces, step_scores, scores):
            out_of_room = len(child.token_ids) >= sampling.max_new_tokens
            if child.stop_reason == "eos" or out_of_room:
                child.stop_reason = "eos" if child.stop_reason == "eos" else "length"
                finished.append((child, trace, steps, score))
            else:
                delimited = [s.has_delimiter for s, p in zip(trace.steps, trace.positions) if p is not None]
                open_beams.append((partial_score(aggregate_fn, steps, delimited), child))
        open_beams.sort(key=lambda item: -item[0])
        beams = [child for _, child in open_beams[: max(0, beam_width - len(finished))]]
    for beam in beams:  # out of rounds: finish the open beams as they are
        beam.stop_reason = "length"
    if beams:
        traces = [b.trace(rules) for b in beams]
        step_scores, scores = score_rollouts(model, beams, traces)
        finished += list(zip(beams, traces, step_scores, scores))
    candidates = [
        candidate_record(r, t, s, sc, threshold, config, extractor) for r, t, s, sc in finished
    ]
    if progress_callback is not None:
        progress_callback("score", len(candidates), len(candidates))
    return summarize(question, candidates, StepSearchResult, generated_tokens=generated_tokens, rounds=rounds)


__all__ = [
    "MODES",
    "MAX_NUM_CANDIDATES",
    "AnchorFilter",
    "IncrementalDetokenizer",
    "Rollout",
    "SamplingConfig",
    "StepFeatureCollector",
    "best_of_n",
    "captured_step_features",
    "generate_rollouts",
    "resolve_num_candidates",
    "score_rollouts",
    "step_search",
    "summarize",
]
