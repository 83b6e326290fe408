"""The self-generated loop's policy side: supervised fine-tuning examples in the SPRM's own format, plain batched
sampling, and grading sampled solutions on checkable arithmetic problems (``arithmetic.py``).

The policy is trained to write solutions exactly as the SPRM reads them: the chat prompt of ``steps.format_prompt``
followed by the reference steps joined with ``steps.join_steps`` (``".\\n\\n"`` between steps) and the end-of-turn
token. A sampled solution is then cut into steps with ``steps.segment`` (the SPRM's own rules), its final answer
extracted with ``answers.extract_answer``, and every step graded against the problem's reference chain.

For the loop itself: ``loop_problems`` gives problem sets disjoint from the policy's SFT data, and sampled,
graded solutions are stored in chunks with the step features the policy computed while sampling
(``rollout_step_features``, ``save_rollout_chunk``, ``load_rollouts``) so that SPRM heads train and score from them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from modeling_sprm.answers import extract_answer
from benchmarks.selfgen.arithmetic import Grade, Problem, grade_steps, make_problems
from modeling_sprm.steps import StepRules, format_prompt, join_steps, segment

IGNORE_INDEX = -100


def policy_prompt(tokenizer: Any, question: str) -> str:
    """The text the policy continues: the backbone's chat template with the question as the user turn."""
    return format_prompt(tokenizer, question, "chat")[0]


def sft_example(tokenizer: Any, question: str, steps: Sequence[str], rules: StepRules) -> dict[str, list[int]]:
    """One supervised example: ``input_ids`` of prompt + joined steps + end-of-turn token, and ``labels`` that are
    ``IGNORE_INDEX`` on the prompt so the loss covers the solution and its end only.

    The prompt and the solution are tokenized separately and concatenated: the chat template ends with a newline,
    so no token can straddle the boundary, and the solution tokens are those the policy will emit itself.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; the policy needs one to learn where a solution ends")
    solution, _ = join_steps(list(steps), rules)
    prompt_ids = tokenizer(policy_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    solution_ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {
        "input_ids": list(prompt_ids) + list(solution_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + list(solution_ids),
    }


def collate_sft(examples: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask``, ``labels`` (``IGNORE_INDEX`` on padding), ``[B, T]``."""
    width = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def split_problems(
    sizes: dict[str, int], min_ops: int, max_ops: int, max_number: int, seed: int
) -> dict[str, list[Problem]]:
    """Disjoint sets of problems (no question text shared between two sets), one per name in ``sizes``, drawn
    from one seeded stream in the order given; duplicates of earlier questions are skipped."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[Problem]] = {}
    for name, size in sizes.items():
        problems: list[Problem] = []
        while len(problems) < size:
            (problem,) = make_problems(1, min_ops, max_ops, max_number, seed=rng.getrandbits(64))
            if problem.question not in seen:
                seen.add(problem.question)
                problems.append(problem)
        out[name] = problems
    return out


def loop_problems(config: dict, num_train: int, num_test: int) -> dict[str, list[Problem]]:
    """The problem sets of the loop for a policy fine-tuned with ``config`` (a run of
    ``benchmarks/selfgen/sft_policy.py``: its difficulty, ``problem_seed``, ``sft_problems``, ``eval_problems``):
    the SFT and accuracy-check sets exactly as that run drew them, then ``test`` and ``train``, new and disjoint.
    The test set depends on ``num_test`` only (drawn before ``train``)."""
    sizes = {"sft": config["sft_problems"], "eval": config["eval_problems"], "test": num_test, "train": num_train}
    return split_problems(sizes, config["min_ops"], config["max_ops"], config["max_number"], config["problem_seed"])


def rollout_step_features(rollout: Any, trace: Any, hidden_size: int) -> torch.Tensor:
    """``[num_steps, hidden_size]``: the features a ``generation.Rollout`` captured while sampling, at the read
    positions of its ``trace`` (``rollout.trace(rules)``), as ``generation.score_rollouts`` reads them."""
    prompt_len = len(rollout.prompt_ids)
    rows = []
    for j, position in enumerate(trace.positions):
        feature = None if position is None else rollout.features.get(position - prompt_len)
        if feature is None:
            raise ValueError(f"step {j} of {rollout.text!r}: no feature captured at read position {position}")
        rows.append(feature.float())
    return torch.stack(rows) if rows else torch.zeros((0, hidden_size))


def save_rollout_chunk(path: str | Path, rows: Sequence[dict], features: Sequence[torch.Tensor]) -> None:
    """Write graded samples (``path``.jsonl, one JSON row each) and their step features ``[num_steps, C]``
    (``path``.safetensors, keyed by row number). The JSON file is written last: its presence marks the chunk
    complete, so an interrupted run can resume chunk by chunk."""
    from safetensors.torch import save_file

    if len(rows) != len(features):
        raise ValueError(f"{len(rows)} rows for {len(features)} feature tensors")
    path = Path(path)
    save_file({str(i): f.contiguous() for i, f in enumerate(features)}, str(path.with_suffix(".safetensors")))
    path.with_suffix(".jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def load_rollouts(folder: str | Path) -> list[dict]:
    """All complete chunks of ``folder`` (``save_rollout_chunk``) in name order: each row with its
    ``step_features`` tensor ``[num_steps, C]``."""
    from safetensors.torch import load_file

    rows = []
    for jsonl in sorted(Path(folder).glob("*.jsonl")):
        features = load_file(str(jsonl.with_suffix(".safetensors")))
        for i, line in enumerate(jsonl.read_text().splitlines()):
            row = json.loads(line)
            row["step_features"] = features[str(i)]
            if row["step_features"].shape[0] != len(row["steps"]):
                raise ValueError(f"{jsonl} row {i}: {row['step_features'].shape[0]} feature rows, {len(row['steps'])} steps")
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no rollout chunks (*.jsonl + *.safetensors) in {folder}")
    return rows


@dataclass
class GradedSolution:
    """A sampled solution cut into SPRM steps and graded: true step labels and the outcome label."""

    solution: str
    steps: list[str]
    grade: Grade

    @property
    def correct(self) -> bool:
        return self.grade.outcome_label == 1.0


def grade_solution(problem: Problem, solution: str, rules: StepRules) -> GradedSolution:
    """Cut ``solution`` into steps with the SPRM's rules, extract its final answer, grade every step."""
    steps = [step.text[: step.anchor - step.start].strip() for step in segment(solution, rules)]
    steps = [s for s in steps if s]
    return GradedSolution(solution, steps, grade_steps(problem, steps, extract_answer(solution)))


@torch.inference_mode()
def sample_solutions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    num_samples: int,
    *,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 96,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> list[list[str]]:
    """``num_samples`` sampled solutions per question (``[len(questions)][num_samples]`` strings, special tokens
    removed), generated in batches of about ``batch_size`` sequences with left padding."""
    from tqdm.auto import tqdm

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    prompts = [policy_prompt(tokenizer, q) for q in questions]
    per_batch = max(1, batch_size // num_samples)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    torch.manual_seed(seed)
    out: list[list[str]] = []
    try:
        for start in tqdm(range(0, len(prompts), per_batch), desc="sampling", disable=not progress):
            chunk = prompts[start : start + per_batch]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            generated = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=num_samples,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts = tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend(texts[i * num_samples : (i + 1) * num_samples] for i in range(len(chunk)))
    finally:
        tokenizer.padding_side = side
    return out
