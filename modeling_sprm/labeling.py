"""Monte-Carlo step labels (Math-Shepherd): the usual way to get step labels without humans, and the baseline an
SPRM trained from outcome labels alone has to beat.

From the prefix that ends after step k of a solution, the policy finishes the solution K times; the step's
**soft label** is the share of finishes whose final answer is right, its **hard label** whether any is (Math-Shepherd's
"soft" and "hard" estimation). The rules:

* Steps are the SPRM's own (``steps.segment`` with the model's ``StepRules``) in the solution, after the prompt
  (``steps.format_prompt``, the backbone's chat template for instruct models).
* The prefix of step k is the prompt plus the solution up to the end of step k, its delimiter included, as token
  ids: the prompt's, then the solution's tokens whose characters lie inside that prefix (a sampled solution keeps the
  tokens the policy sampled; a given one is tokenized on its own, as ``selfgen.sft_example`` builds training text).
* Every step but the last gets K rollouts. The last step's labels are the solution's own outcome: the solution is
  its own finish (Math-Shepherd's completer is not run after the final step either).
* A finish is right when ``grader(text, reference)`` is True, ``text`` being the solution prefix and the
  continuation; by default the final answer is extracted (``answers.extract_answer``) and compared by value
  (``answers.answers_match``). A finish may use the rest of ``sampling.max_new_tokens``: the prefix's solution
  tokens count against it, so a labelled solution never gets longer than a sampled one could be (a given solution
  longer than that still gets one token per finish).
* With ``share_prefixes`` (default) identical prefixes of the same question share one set of K rollouts: they
  estimate the same quantity. The tokens of a shared set are split equally among the solutions sharing it, so a
  solution's ``rollout_tokens`` add up, over all solutions of a question, to the tokens actually generated.

Rows are TRL stepwise-supervision rows (``{"prompt", "completions", "labels"}``, soft float labels, which
``trainer.as_record`` and ``StepSupervisedTrainer`` keep as floats), plus ``hard_labels``, ``outcome_label``,
``reference_answer``, ``solution``, ``num_tokens`` (tokens of the solution itself), ``rollout_tokens`` (tokens
generated for its labels), ``num_rollouts`` (K) and ``question_index`` / ``sample``. When this module samples the
solutions, the step features the policy computed while sampling come along (``step_features``, ``[steps, hidden]``,
read as ``generation.score_rollouts`` reads them): the SPRM head trains from them without a second pass.

``label_to_folder`` runs a whole data set in chunks of questions, one ``chunk-XXXXX.jsonl`` (+ ``.safetensors``
with the features) per chunk, written when the chunk is complete: an interrupted run resumes at the first missing
chunk; under ``torchrun`` / ``accelerate launch`` each process (``RANK`` of ``WORLD_SIZE``) takes every
WORLD_SIZE-th chunk, and chunks are seeded by their index, so the labels do not depend on the number of processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .answers import answers_match, extract_answer
from .generation import (
    SamplingConfig,
    captured_step_features,
    copy_rollout,
    eos_token_ids,
    generate_rollouts,
    prompt_rollout,
)
from .processing_sprm import SPRMProcessor
from .steps import Step, StepRules, segment

Grader = Callable[[str, str], bool]  # (solution text, reference answer) -> right?


def default_grader(text: str, reference: str) -> bool:
    """The final answer of ``text`` (``\\boxed{}`` or GSM8K style) equals ``reference`` by value."""
    return answers_match(extract_answer(text), reference)


def _check_problems(problems: Sequence[dict]) -> None:
    for i, problem in enumerate(problems):
        if (
            not isinstance(problem, dict)
            or not isinstance(problem.get("question"), str)
            or not problem["question"].strip()
        ):
            raise ValueError(f"problem {i}: needs a non-empty 'question' string")
        if problem.get("answer") is None:
            raise ValueError(f"problem {i}: needs a reference 'answer' (Monte-Carlo labels check final answers)")
        solutions = problem.get("solutions")
        if solutions is not None and (isinstance(solutions, str) or not all(isinstance(s, str) for s in solutions)):
            raise ValueError(f"problem {i}: 'solutions' must be a list of strings")


def _decode_continuation(tokenizer: Any, context_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """Text of ``new_ids`` as it reads after ``context_ids`` (a few context tokens decoded along, as
    ``generation.IncrementalDetokenizer`` does, for tokenizers whose decoding depends on the previous token)."""
    context = list(context_ids[-5:])
    before = tokenizer.decode(context, skip_special_tokens=True)
    return tokenizer.decode(context + list(new_ids), skip_special_tokens=True)[len(before) :]


@dataclass
class _Solution:
    """One solution to label: prompt and solution token ids, the solution's character offsets and steps (in solution
    coordinates) and, when sampled here, the step features captured while sampling."""

    question_index: int
    sample: int
    prompt_ids: list[int]
    text: str
    ids: list[int]
    offsets: list[tuple[int, int]]
    steps: list[Step]
    features: torch.Tensor | None = None

    def prefix(self, k: int) -> tuple[str, list[int]]:
        """Solution text and prompt + solution token ids up to the end of step ``k`` (its delimiter included)."""
        cut = self.steps[k].end
        kept = 0
        while kept < len(self.ids) and self.offsets[kept][1] <= cut:
            kept += 1
        return self.text[:cut], self.prompt_ids + self.ids[:kept]


def _given_solution(model, tokenizer, rules, question_index, sample, question, solution) -> _Solution:
    start = prompt_rollout(model, tokenizer, question)
    enc = tokenizer(solution, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    steps = _solution_steps(start.prompt_text, solution, rules)
    return _Solution(question_index, sample, start.prompt_ids, solution, enc["input_ids"], offsets, steps)


def _solution_steps(prompt_text: str, solution: str, rules: StepRules) -> list:
    """The steps of ``solution`` after ``prompt_text`` (as scoring finds them), shifted to solution coordinates."""
    shift = len(prompt_text)
    found = segment(prompt_text + solution, rules, start=shift)
    return [replace(s, start=s.start - shift, end=s.end - shift, anchor=s.anchor - shift) for s in found]


def _sampled_solutions(model, tokenizer, rules, problems, num_samples, sampling, batch_size, first_index):
    """Sample ``num_samples`` solutions per problem with ``generation.generate_rollouts`` (features captured)."""
    out: list[_Solution] = []
    per_call = max(1, batch_size // num_samples)
    for first in range(0, len(problems), per_call):
        part = problems[first : first + per_call]
        starts = [prompt_rollout(model, tokenizer, p["question"]) for p in part]
        copies = [copy_rollout(s) for s in starts for _ in range(num_samples)]
        for r, rollout in enumerate(generate_rollouts(model, tokenizer, copies, sampling)):
            features = captured_step_features(model, rollout, rollout.trace(rules)).float().cpu()
            steps = _solution_steps(rollout.prompt_text, rollout.text, rules)
            out.append(_Solution(first_index + first + r // num_samples, r % num_samples, rollout.prompt_ids,
                                 rollout.text, rollout.token_ids, rollout.offsets, steps, features))
    return out


@torch.inference_mode()
def _finish(
    model,
    tokenizer,
    prefixes: list[list[int]],
    budgets: list[int],
    num_rollouts: int,
    sampling: SamplingConfig,
    batch_size: int,
    progress: bool,
) -> list[list[list[int]]]:
    """``num_rollouts`` sampled continuations (token ids, end-of-sequence excluded, at most ``budgets[i]``
    tokens) of each prefix, in batches of about ``batch_size`` sequences (prefixes sorted by length: less
    padding)."""
    from tqdm.auto import tqdm

    backbone = model.backbone
    device = model.get_input_embeddings().weight.device
    eos = eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
    per_call = max(1, batch_size // num_rollouts)
    out: list[list[list[int]] | None] = [None] * len(prefixes)
    for first in tqdm(range(0, len(order), per_call), desc="rollouts", disable=not progress):
        chunk = order[first : first + per_call]
        width = max(len(prefixes[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):  # left padding
            input_ids[row, width - len(prefixes[i]) :] = torch.tensor(prefixes[i])
            attention_mask[row, width - len(prefixes[i]) :] = 1
        budget = max(budgets[i] for i in chunk)
        context = getattr(model.config.text_config, "max_position_embeddings", None)
        if context is not None:  # as generation.generate_rollouts: never past the backbone's context
            if width >= context:
                raise ValueError(f"a step prefix has {width} tokens; the backbone's context is {context} tokens")
            budget = min(budget, context - width)
        generated = backbone.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=budget,
            num_return_sequences=num_rollouts,
            eos_token_id=sorted(eos),
            pad_token_id=pad,
            **sampling.generate_kwargs(),
        )[:, width:].tolist()
        for row, i in enumerate(chunk):
            finishes = []
            for ids in generated[row * num_rollouts : (row + 1) * num_rollouts]:
                end = next((j for j, t in enumerate(ids) if t in eos), len(ids))
                finishes.append(ids[: min(end, budgets[i])])
            out[i] = finishes
    return out


def monte_carlo_labels(
    model: Any,
    tokenizer: Any,
    problems: Sequence[dict],
    num_rollouts: int,
    *,
    num_samples: int = 1,
    sampling: SamplingConfig | None = None,
    grader: Grader = default_grader,
    share_prefixes: bool = True,
    batch_size: int = 256,
    progress: bool = True,
    first_index: int = 0,
) -> list[dict]:
    """Label every step of every solution of ``problems`` with Monte-Carlo rollouts (rules in the module
    docstring).

    Args:
        model: an `SPRMForStepScoring` whose backbone is the policy (its head is not used; it only defines the
            feature layer and the step rules).
        problems: dicts with ``question`` and the reference ``answer``; optional ``solutions`` (list of strings)
            to label instead of sampling ``num_samples`` new ones.
        num_rollouts: K, finishes per step prefix (>= 1).
        sampling: how solutions and finishes are sampled (`SamplingConfig`; MetaStone-S1's defaults).
        grader: ``(text, reference) -> bool``; the default compares final answers by value.
        share_prefixes: identical prefixes of one question share their K finishes (see the module docstring).
        batch_size: sequences per ``generate()`` call.
        first_index: added to the problem indices written in ``question_index``.

    Returns:
        One row per solution, in problem and sample order (see the module docstring for the fields).
    """
    if isinstance(num_rollouts, bool) or not isinstance(num_rollouts, int) or num_rollouts < 1:
        raise ValueError(f"num_rollouts must be a positive integer, got {num_rollouts!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    _check_problems(problems)
    sampling = sampling or SamplingConfig()
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    processor = SPRMProcessor.from_model(model, tokenizer)
    tokenizer, rules = processor.tokenizer, processor.rules
    given = [p for p in problems if p.get("solutions") is not None]
    if given and len(given) != len(problems):
        raise ValueError("either every problem has 'solutions' or none has (then solutions are sampled)")
    if given:
        solutions = [
            _given_solution(model, tokenizer, rules, first_index + q, s, p["question"], text)
            for q, p in enumerate(problems)
            for s, text in enumerate(p["solutions"])
        ]
    else:
        solutions = _sampled_solutions(
            model, tokenizer, rules, problems, num_samples, sampling, batch_size, first_index
        )

    # Prefixes to finish: every step but the last of each solution, shared within a question when identical.
    keys: dict[tuple, int] = {}
    prefixes, budgets, users = [], [], []  # users[u]: (solution, step) pairs of unique prefix u
    for n, solution in enumerate(solutions):
        for k in range(len(solution.steps) - 1):
            text, ids = solution.prefix(k)
            key = (solution.question_index, tuple(ids)) if share_prefixes else (n, k)
            if key not in keys:
                keys[key] = len(prefixes)
                prefixes.append(ids)
                budgets.append(max(1, sampling.max_new_tokens - (len(ids) - len(solution.prompt_ids))))
                users.append([])
            users[keys[key]].append((n, k, text))
    finishes = (
        _finish(model, tokenizer, prefixes, budgets, num_rollouts, sampling, batch_size, progress) if prefixes else []
    )

    soft = [[None] * len(s.steps) for s in solutions]
    hard = [[None] * len(s.steps) for s in solutions]
    rollout_tokens = [0.0] * len(solutions)
    for u, sharers in enumerate(users):
        n0, _, text = sharers[0]
        reference = str(problems[solutions[n0].question_index - first_index]["answer"])
        right = [grader(text + _decode_continuation(tokenizer, prefixes[u], ids), reference) for ids in finishes[u]]
        tokens = sum(len(ids) for ids in finishes[u])
        for n, k, _ in sharers:
            soft[n][k] = sum(right) / len(right)
            hard[n][k] = float(any(right))
            rollout_tokens[n] += tokens / len(sharers)

    rows = []
    for n, solution in enumerate(solutions):
        problem = problems[solution.question_index - first_index]
        outcome = float(grader(solution.text, str(problem["answer"])))
        if solution.steps:
            soft[n][-1] = hard[n][-1] = outcome
        row = {
            "prompt": problem["question"],
            "completions": [s.text[: s.anchor - s.start].strip() or s.text.strip() for s in solution.steps],
            "labels": soft[n],
            "hard_labels": hard[n],
            "outcome_label": outcome,
            "reference_answer": str(problem["answer"]),
            "solution": solution.text,
            "num_tokens": len(solution.ids),
            "rollout_tokens": rollout_tokens[n],
            "num_rollouts": num_rollouts,
            "question_index": solution.question_index,
            "sample": solution.sample,
        }
        if solution.features is not None:
            row["step_features"] = solution.features
        rows.append(row)
    return rows


# -- whole data sets: chunks on disk, resumable, sharded ------------------------------------------------------------


def _rank_and_world() -> tuple[int, int]:
    """This process's ``(RANK, WORLD_SIZE)`` as torchrun / accelerate launch set them; ``(0, 1)`` otherwise."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world


def save_chunk(path: Path, rows: Sequence[dict]) -> None:
    """``path``.jsonl (rows without features) and, if the rows carry features, ``path``.safetensors (one tensor
    per row, keyed by row number). The JSON file is written last (via a temporary name): it marks the chunk done."""
    from safetensors.torch import save_file

    features = {str(i): r["step_features"].contiguous() for i, r in enumerate(rows) if "step_features" in r}
    if features:
        save_file(features, str(path.with_suffix(".safetensors")))
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "step_features"}) + "\n" for r in rows))
    os.replace(tmp, path.with_suffix(".jsonl"))


def load_labels(folder: str | Path) -> list[dict]:
    """Every complete chunk of ``folder`` (``label_to_folder``), in chunk order, with ``step_features`` where saved."""
    from safetensors.torch import load_file

    rows = []
    for jsonl in sorted(Path(folder).glob("chunk-*.jsonl")):
        part = [json.loads(line) for line in jsonl.read_text().splitlines()]
        tensors = jsonl.with_suffix(".safetensors")
        if tensors.is_file():
            features = load_file(str(tensors))
            for i, row in enumerate(part):
                if str(i) in features:
                    row["step_features"] = features[str(i)]
        rows += part
    if not rows:
        raise FileNotFoundError(f"no labelled chunks (chunk-*.jsonl) in {folder}")
    return rows


def label_to_folder(
    model: Any,
    tokenizer: Any,
    problems: Sequence[dict],
    output_dir: str | Path,
    num_rollouts: int,
    *,
    chunk_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    **kwargs,
) -> list[Path]:
    """`monte_carlo_labels` over ``problems`` in chunks of ``chunk_size`` problems, written to ``output_dir`` as
    ``chunk-XXXXX.jsonl`` (+ ``.safetensors``); chunks already there are skipped (resume), and under several
    processes each takes the chunks ``index % WORLD_SIZE == RANK``. Chunk c is seeded with ``seed`` and c.
    ``kwargs`` go to `monte_carlo_labels`. Returns the chunk files this process wrote."""
    from tqdm.auto import tqdm

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    _check_problems(problems)
    rank, world = _rank_and_world()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    chunks = [c for c in range(0, (len(problems) + chunk_size - 1) // chunk_size) if c % world == rank]
    written = []
    for c in tqdm(chunks, desc=f"labelling (process {rank} of {world})", disable=not progress):
        path = output_dir / f"chunk-{c:05d}"
        if path.with_suffix(".jsonl").is_file():
            continue
        torch.manual_seed(seed * 1_000_003 + c)
        first = c * chunk_size
        rows = monte_carlo_labels(
            model,
            tokenizer,
            problems[first : first + chunk_size],
            num_rollouts,
            first_index=first,
            progress=False,
            **kwargs,
        )
        save_chunk(path, rows)
        written.append(path.with_suffix(".jsonl"))
    return written


__all__ = ["default_grader", "label_to_folder", "load_labels", "monte_carlo_labels", "save_chunk"]
