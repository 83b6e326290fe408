"""Scoring speed against its limit: the backbone's own forward up to the feature layer (issue 20, issue 17 item 2).

Scoring is one backbone forward plus a head of about 0.5% of the FLOPs, so its limit is a bare forward of the
decoder up to the layer the head reads (no later layers, final norm or LM head). On ProcessBench solutions of mixed
length (``--n``, drawn evenly from the four splits), measured side by side in one process, repeats interleaved:

* ``bare/...``: that bare forward (a shallow copy of the backbone's decoder cut at the feature layer, sharing the
  weights) on the token ids the pipeline feeds the model, already padded (right padding, so no attention mask is
  needed for the real tokens) and on the device: the limit;
* ``pipeline/one``: ``pipeline("step-scoring")``, one solution per call;
* ``pipeline/batch=B``: a list with ``batch_size=B``; ``pipeline/tokens=T``: a list with ``max_batch_tokens=T``;
  each next to ``bare/...`` on the same batches (same token ids, same padding);
* ``features/tokens=T``: feature extraction for training (``training.features.extract_step_features``);
* ``cli/processes=P``: ``sprm score --data`` over the same solutions on P processes (torchrun), when that command
  exists in this checkout (else skipped, with a note);
* on CPU, ``pipeline/tokens=T`` with a bfloat16 and a float16 backbone (Spearman of step scores against float32).

Throughput is real (unpadded) tokens per second. On CPU the ratios use CPU seconds (``time.process_time``: the
machine is shared and wall time is noisy) with torch threads fixed (``--threads``); on a GPU they use wall time
with the device synchronised around every timing. ``profile`` says where the pipeline's time goes (stage timings
and the functions with the most own time under cProfile).

    python -m benchmarks.scoring_speed --data DIR                        # CPU -> results/scoring_speed.json
    python -m benchmarks.scoring_speed --device cuda --model PATH --data DIR --out OUT.json

``--data``: a ProcessBench folder (``gsm8k.json``, ``math.json``, ``olympiadbench.json``, ``omnimath.json``).
``--model``: an SPRM folder (full or head-only with its backbone reachable); default the embedded default. A GPU
machine without network needs ``--model`` (a full checkpoint carried with the working tree).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import importlib.util
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks._common import RESULTS, git_state, machine

GOAL_PIPELINE_VS_BARE = 0.95
GOAL_TWO_PROCESSES = 1.8


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def truncated_decoder(model) -> nn.Module:
    """The backbone's decoder cut at the feature layer: its first layers up to ``config.feature_layer``, no final
    norm (unless the features are the last hidden states), no LM head. A shallow copy sharing the weights; only
    decoders with a ``layers`` list that their forward reads up to ``config.num_hidden_layers`` (Llama, Qwen2,
    Mistral, ...) are supported."""
    base = model.backbone.base_model
    n = model.config.text_config.num_hidden_layers
    k = model.config.feature_layer if model.config.feature_layer >= 0 else n + 1 + model.config.feature_layer
    if not isinstance(getattr(base, "layers", None), nn.ModuleList) or not hasattr(base, "norm"):
        raise SystemExit(f"cannot cut the decoder of {type(base).__name__} at its feature layer")
    bare = copy.copy(base)
    bare._modules = dict(base._modules)  # a new module table; the modules themselves are shared
    bare.layers = nn.ModuleList(list(base.layers)[:k])
    if k < n:
        bare.norm = nn.Identity()
    bare.config = copy.deepcopy(base.config)
    bare.config.num_hidden_layers = k
    return bare


def sample_processbench(path: str, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """``n`` records drawn evenly from the splits (`evaluation.sample_per_group`), and their raw upstream rows (for
    the ``sprm score --data`` file)."""
    from modeling_sprm.data import PROCESSBENCH_SPLITS, load_processbench
    from modeling_sprm.evaluation import sample_per_group

    records = load_processbench(path)
    chosen = sample_per_group(records, -(-n // len(PROCESSBENCH_SPLITS)), seed)[:n]
    ids = {r["id"] for r in chosen}
    raw = [row for split in PROCESSBENCH_SPLITS for row in json.loads((Path(path) / f"{split}.json").read_text())
           if row.get("id") in ids]
    return chosen, raw


class Arms:
    """Named timed callables, run ``repeats`` times interleaved (arm order rotates each repeat)."""

    def __init__(self, device: str):
        self.device, self.fns, self.wall, self.cpu, self.info = device, {}, {}, {}, {}

    def add(self, name: str, fn, **info) -> None:
        self.fns[name], self.wall[name], self.cpu[name], self.info[name] = fn, [], [], info

    def run(self, repeats: int, log) -> None:
        names = list(self.fns)
        for r in range(repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                synchronize(self.device)
                wall, cpu = time.perf_counter(), time.process_time()
                self.fns[name]()
                synchronize(self.device)
                self.wall[name].append(time.perf_counter() - wall)
                self.cpu[name].append(time.process_time() - cpu)
                log(f"repeat {r + 1}/{repeats} {name}: {self.wall[name][-1]:.2f} s wall, {self.cpu[name][-1]:.2f} s CPU")


def stage_profile(scorer, inputs: list[dict], budget: int) -> dict:
    """Where the pipeline's time goes, stage by stage (CPU seconds, each stage alone over ``inputs``), and the
    functions with the most own time in a cProfile of ``pipeline/one`` and ``pipeline/tokens``."""
    from modeling_sprm.processing_sprm import plan_batches
    from modeling_sprm.steps import format_prompt

    processor, tokenizer = scorer.sprm_processor, scorer.tokenizer

    def cpu(fn) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    prompts = [format_prompt(tokenizer, x["question"], processor.prompt_format, processor.plain_prompt_template)[0]
               for x in inputs]
    items = [scorer.preprocess(x) for x in inputs]
    traces = [item["traces"][0] for item in items]
    texts = [t.text for t in traces]
    plan = plan_batches([len(t.input_ids) for t in traces], budget)
    batches = [processor.pad([traces[i] for i in b]) for b in plan]
    outputs = []

    def forward():
        outputs.clear()
        for b, batch in zip(plan, batches):
            outputs.extend(scorer._attach_scores([items[i] for i in b], *scorer._score([traces[i] for i in b]), {}))

    stages = {
        "preprocess (SPRMProcessor.encode)": cpu(lambda: [scorer.preprocess(x) for x in inputs]),
        "  chat template": cpu(lambda: [format_prompt(tokenizer, x["question"], processor.prompt_format,
                                                      processor.plain_prompt_template) for x in inputs]),
        "  tokenisation with offsets": cpu(lambda: [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)
                                                    for t in texts]),
        "padding (SPRMProcessor.pad)": cpu(lambda: [processor.pad([traces[i] for i in b]) for b in plan]),
        "model forward + scores to lists (_score)": cpu(forward),
        "postprocess (ScoredSolution)": cpu(lambda: [scorer.postprocess({"items": o}) for o in outputs]),
    }
    stages["  segmentation, joining, positions (the rest of preprocess)"] = (
        stages["preprocess (SPRMProcessor.encode)"] - stages["  chat template"] - stages["  tokenisation with offsets"]
    )
    del prompts

    def top(fn, k: int = 12) -> list[dict]:
        profiler = cProfile.Profile()
        profiler.runcall(fn)
        stats = pstats.Stats(profiler)
        total = sum(v[2] for v in stats.stats.values())
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:k]
        return [{"function": f"{Path(f).name}:{line}({name})", "own_s": round(v[2], 4),
                 "share": round(v[2] / total, 4)} for (f, line, name), v in rows]

    return {
        "solutions": len(inputs),
        "stage_cpu_seconds": {k: round(v, 4) for k, v in stages.items()},
        "cprofile_top_own_time": {
            "pipeline/one": top(lambda: [scorer(x) for x in inputs]),
            f"pipeline/tokens={budget}": top(lambda: scorer(inputs, max_batch_tokens=budget)),
        },
    }


def cli_arms(args, raw_rows: list[dict], tokens: int, log) -> dict:
    """``sprm score --data FILE`` on 1 and 2 processes (torchrun), when this checkout has it: total wall time, and
    the marginal throughput (the run on all solutions minus a run on 2, which removes start-up and loading)."""
    help_text = subprocess.run([sys.executable, "-m", "modeling_sprm", "score", "--help"], capture_output=True,
                               text=True).stdout
    if "--data" not in help_text:
        return {"skipped": "`sprm score --data` is not in this checkout (another issue builds it); rerun after it is "
                           "merged"}
    results, folder = {}, Path(tempfile.mkdtemp(prefix="scoring-speed-"))
    for name, rows in (("all", raw_rows), ("two", raw_rows[:2])):
        (folder / f"{name}.json").write_text(json.dumps(rows))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    for processes in (1, 2):
        entry = {}
        for name in ("two", "all"):
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                       "-m", "modeling_sprm", "score", "--data", str(folder / f"{name}.json"), "--format",
                       "processbench", "--output", str(folder / f"{name}-{processes}.jsonl")]
            command += ["--model", args.model] if args.model else []
            command += ["--device", args.device, "--dtype", args.dtype, "--batch_size", str(args.cli_batch_size)]
            walls, cpus = [], []
            for _ in range(args.repeats):
                output = folder / f"{name}-{processes}.jsonl"  # a fresh run each time, not a resumed one
                output.unlink(missing_ok=True)
                shutil.rmtree(output.with_name(output.name + ".parts"), ignore_errors=True)
                before = os.times()
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                walls.append(time.perf_counter() - start)
                after = os.times()
                cpus.append(after.children_user + after.children_system - before.children_user - before.children_system)
                if done.returncode != 0:
                    return {"failed": " ".join(command), "stderr_tail": done.stderr[-2000:]}
            entry[name] = {"wall_s": walls, "cpu_s": cpus}
            log(f"cli processes={processes} {name}: {statistics.median(walls):.1f} s wall")
        marginal = statistics.median(entry["all"]["wall_s"]) - statistics.median(entry["two"]["wall_s"])
        entry["total_tokens_per_s_wall"] = tokens / statistics.median(entry["all"]["wall_s"])
        entry["marginal_tokens_per_s_wall"] = tokens / marginal if marginal > 0 else None
        results[f"processes={processes}"] = entry
    one, two = (results[f"processes={p}"]["marginal_tokens_per_s_wall"] for p in (1, 2))
    results["speedup_2_vs_1"] = two / one if one and two else None
    results["command"] = " ".join(command)
    results["note"] = ("sprm score --data cuts fixed batches of --batch_size (no token budget); the marginal rate "
                       "removes start-up and model loading")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ProcessBench folder ({split}.json files)")
    parser.add_argument("--model", help="SPRM folder (default: the embedded default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--dtype", help="backbone dtype (default: float32 on CPU, bfloat16 on a GPU)")
    parser.add_argument("--n", type=int, default=64, help="solutions (drawn evenly from the 4 splits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-sizes", help="fixed batch sizes (default: 8 on CPU, 1,16,64 on a GPU)")
    parser.add_argument("--token-budgets",
                        help="max_batch_tokens values, the first one also for feature extraction and half precision "
                             "(default: the device's DEFAULT_MAX_BATCH_TOKENS, then 1024 on CPU, 8192,131072 on a GPU)")
    parser.add_argument("--num-workers", type=int,
                        help="pipeline num_workers of the batched arms: inputs encoded in worker processes ahead of "
                             "the forwards (default: 0 on CPU, 4 on a GPU)")
    parser.add_argument("--cli-batch-size", type=int,
                        help="sprm score --data --batch_size (fixed batches; default: 1 on CPU, 16 on a GPU)")
    parser.add_argument("--skip", help="comma-separated parts to skip: features,cli,precision,profile (default: none "
                                       "on CPU; cli on a GPU, whose 2-process goal is a CPU goal)")
    parser.add_argument("--profile-n", type=int, default=16, help="solutions in the profile")
    parser.add_argument("--out", help="JSON path (default: benchmarks/results/scoring_speed[_cuda].json)")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    args.dtype = args.dtype or ("bfloat16" if cuda else "float32")
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,16,64" if cuda else "8")).split(",")]
    from modeling_sprm.processing_sprm import default_max_batch_tokens

    default_budget = default_max_batch_tokens(args.device)
    budgets = [int(t) for t in (args.token_budgets or f"{default_budget},{'8192,131072' if cuda else '1024'}").split(",")]
    args.cli_batch_size = args.cli_batch_size or (16 if cuda else 1)
    num_workers = args.num_workers if args.num_workers is not None else (4 if cuda else 0)
    skip = set(filter(None, (args.skip if args.skip is not None else ("cli" if cuda else "")).split(",")))
    if importlib.util.find_spec("datasets") is None:  # feature extraction returns a datasets.Dataset
        print("datasets is not installed: the features arm is skipped", file=sys.stderr)
        skip.add("features")
    out_path = Path(args.out) if args.out else RESULTS / f"scoring_speed{'_cuda' if cuda else ''}.json"
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    info, git, started = machine(), git_state(), time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    from scipy.stats import spearmanr
    from transformers import pipeline

    from modeling_sprm.loading import load_model_and_tokenizer
    from modeling_sprm.processing_sprm import plan_batches
    from modeling_sprm.registration import register
    from modeling_sprm.training.features import extract_step_features

    register()
    records, raw_rows = sample_processbench(args.data, args.n, args.seed)
    inputs = [{"question": r["question"], "steps": r["steps"]} for r in records]

    def load(dtype: str):
        model, tokenizer, name = load_model_and_tokenizer(args.model, dtype=dtype, device=args.device)
        return model.eval(), tokenizer, name

    model, tokenizer, model_name = load(args.dtype)
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer, device=model.device)
    traces = [scorer.sprm_processor.encode(x) for x in inputs]
    lengths = [len(t.input_ids) for t in traces]
    tokens = sum(lengths)
    bare = truncated_decoder(model)
    log(f"{len(inputs)} solutions, {tokens} tokens (min {min(lengths)}, median {statistics.median(lengths)}, "
        f"max {max(lengths)}); {model_name} on {args.device} in {args.dtype}")

    def padded(plan: list[list[int]]) -> list[dict]:
        # Right padding and causal attention: no mask is needed for the real tokens' features, and without one
        # attention takes its fast causal kernel; the least work is the limit.
        return [{"input_ids": scorer.sprm_processor.pad([traces[i] for i in b])["input_ids"].to(model.device)}
                for b in plan]

    def bare_forward(batches: list[dict]):
        def run():
            with torch.inference_mode():
                for batch in batches:
                    bare(**batch, use_cache=False)
        return run

    # The bare forward gives the features the pipeline's model reads (a check that both do the same work).
    check = scorer.sprm_processor.pad(traces[:2])
    with torch.inference_mode():
        hidden = bare(input_ids=check["input_ids"].to(model.device), use_cache=False).last_hidden_state
        features = model(**{k: v.to(model.device) for k, v in check.items()}, return_step_features=True)
    mask = features.step_mask
    index = check["step_positions"].clamp(min=0).to(model.device)
    bare_features = torch.stack([hidden[i, index[i]] for i in range(2)])
    feature_check = (bare_features[mask] - features.step_features[mask]).abs().max().item()

    arms = Arms(args.device)
    one_plan = [[i] for i in range(len(traces))]
    arms.add("bare/one", bare_forward(padded(one_plan)), batches=len(one_plan), padded_tokens=tokens)
    arms.add("pipeline/one", lambda: [scorer(x) for x in inputs], batches=len(one_plan), padded_tokens=tokens)
    plans = {f"batch={b}": plan_batches(lengths, batch_size=b) for b in batch_sizes}
    plans.update({f"tokens={t}": plan_batches(lengths, max_batch_tokens=t) for t in budgets})
    for key, plan in plans.items():
        padded_tokens = sum(len(b) * max(lengths[i] for i in b) for b in plan)
        arms.add(f"bare/{key}", bare_forward(padded(plan)), batches=len(plan), padded_tokens=padded_tokens)
        kwargs = {"batch_size": int(key[6:])} if key.startswith("batch=") else {"max_batch_tokens": int(key[7:])}
        kwargs["num_workers"] = num_workers
        arms.add(f"pipeline/{key}", lambda kwargs=kwargs: scorer(inputs, **kwargs), batches=len(plan),
                 padded_tokens=padded_tokens)
    if "features" not in skip:
        t = budgets[0]
        arms.add(f"features/tokens={t}", lambda: extract_step_features(
            model, tokenizer, records, batch_size=None, max_batch_tokens=t), batches=len(plans[f"tokens={t}"]))
    precision = {}
    if not cuda and "precision" not in skip:  # half precision on CPU, on every 8th solution (slow here)
        budget, subset = budgets[0], inputs[::8]
        precision["solutions"] = len(subset)
        precision["tokens"] = sum(lengths[::8])
        reference = [s["score"] for r in scorer(subset, max_batch_tokens=budget) for s in r["steps"]]
        arms.add("precision/float32", lambda: scorer(subset, max_batch_tokens=budget))
        for dtype in ("bfloat16", "float16"):
            half, half_tokenizer, _ = load(dtype)
            half_scorer = pipeline("step-scoring", model=half, tokenizer=half_tokenizer, device=half.device)
            scores = [s["score"] for r in half_scorer(subset, max_batch_tokens=budget) for s in r["steps"]]
            precision[dtype] = {"spearman_step_scores_vs_float32": spearmanr(reference, scores).statistic,
                                "max_abs_step_score_difference": max(abs(a - b) for a, b in zip(reference, scores))}
            arms.add(f"precision/{dtype}", lambda s=half_scorer: s(subset, max_batch_tokens=budget))

    # warm-up: every arm once on a few solutions' worth (first-call costs are not throughput)
    with torch.inference_mode():
        bare(**padded([[0]])[0], use_cache=False)
    scorer(inputs[:2])
    scorer(inputs[:2], max_batch_tokens=budgets[0])
    log("timing " + ", ".join(arms.fns))
    arms.run(args.repeats, log)

    clock = "wall" if cuda else "cpu"
    result_arms = {}
    for name in arms.fns:
        wall, cpu = statistics.median(arms.wall[name]), statistics.median(arms.cpu[name])
        arm_tokens = precision["tokens"] if name.startswith("precision/") else tokens
        result_arms[name] = {
            **arms.info[name],
            "tokens": arm_tokens,
            "wall_s_median": wall,
            "cpu_s_median": cpu,
            "wall_s": arms.wall[name],
            "cpu_s": arms.cpu[name],
            "tokens_per_s_wall": arm_tokens / wall,
            "tokens_per_s_cpu": arm_tokens / cpu,
        }

    def throughput(name: str) -> float:
        return result_arms[name][f"tokens_per_s_{clock}"]

    ratios = {"pipeline/one vs bare/one": throughput("pipeline/one") / throughput("bare/one")}
    for key in plans:
        ratios[f"pipeline/{key} vs bare/{key}"] = throughput(f"pipeline/{key}") / throughput(f"bare/{key}")
        ratios[f"pipeline/{key} vs pipeline/one"] = throughput(f"pipeline/{key}") / throughput("pipeline/one")
        ratios[f"bare/{key} vs bare/one"] = throughput(f"bare/{key}") / throughput("bare/one")
    for name in result_arms:
        if name.startswith("features/"):
            key = name.split("/", 1)[1]
            ratios[f"{name} vs bare/{key}"] = throughput(name) / throughput(f"bare/{key}")
    for dtype in ("bfloat16", "float16"):
        if dtype in precision:  # same solutions, same batching: the time ratio is the speed-up
            speedup = result_arms["precision/float32"][f"{clock}_s_median"] / result_arms[f"precision/{dtype}"][
                f"{clock}_s_median"]
            ratios[f"precision/{dtype} vs precision/float32"] = precision[dtype]["speedup_vs_float32"] = speedup

    goals = [{"goal": f"pipeline/one >= {GOAL_PIPELINE_VS_BARE}x bare/one ({clock} time)",
              "measured": ratios["pipeline/one vs bare/one"]}]
    for key in plans:
        goals.append({"goal": f"pipeline/{key} >= {GOAL_PIPELINE_VS_BARE}x bare/{key} ({clock} time)",
                      "measured": ratios[f"pipeline/{key} vs bare/{key}"]})
    best_batched = max(plans, key=lambda key: throughput(f"pipeline/{key}"))
    goals.append({"goal": f"batched (best: pipeline/{best_batched}) >= {'4x' if cuda else '1x'} pipeline/one",
                  "measured": ratios[f"pipeline/{best_batched} vs pipeline/one"]})
    for goal in goals:
        threshold = float(goal["goal"].split(">= ")[1].split("x")[0])
        goal["met"] = goal["measured"] >= threshold

    cli = cli_arms(args, raw_rows, tokens, log) if "cli" not in skip else {"skipped": "--skip cli"}
    if cli.get("speedup_2_vs_1") is not None:
        goals.append({"goal": f"sprm score --data on 2 processes >= {GOAL_TWO_PROCESSES}x 1 process (wall)",
                      "measured": cli["speedup_2_vs_1"], "met": cli["speedup_2_vs_1"] >= GOAL_TWO_PROCESSES})
    profile = stage_profile(scorer, inputs[: args.profile_n], budgets[0]) if "profile" not in skip else None

    info["load_average_at_end"] = os.getloadavg()
    result = {
        "what": "tokens/s of scoring vs a bare decoder forward up to the feature layer (issue 20; issue 17 item 2)",
        "machine": info,
        "git": git,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "setup": {
            "model": model_name,
            "device": args.device,
            "dtype": args.dtype,
            "feature_layer": model.config.feature_layer,
            "num_hidden_layers": model.config.text_config.num_hidden_layers,
            "layers_run": len(bare.layers),
            "threads": args.threads,
            "pipeline_num_workers_batched": num_workers,
            "repeats": args.repeats,
            "clock_for_ratios": clock,
            "default_max_batch_tokens": default_budget,
            "data": args.data,
            "solutions": len(inputs),
            "per_split": {g: sum(r["group"] == g for r in records) for g in dict.fromkeys(r["group"] for r in records)},
            "tokens": tokens,
            "length_min_median_max": [min(lengths), statistics.median(lengths), max(lengths)],
            "bare_vs_model_feature_max_abs_difference": feature_check,
        },
        "arms": result_arms,
        "ratios": ratios,
        "goals": goals,
        "precision": precision or None,
        "cli": cli,
        "profile": profile,
        "wall_seconds": time.perf_counter() - started,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out_path}")
    for goal in goals:
        log(f"{'met   ' if goal['met'] else 'MISSED'} {goal['goal']}: {goal['measured']:.3f}")


if __name__ == "__main__":
    main()
