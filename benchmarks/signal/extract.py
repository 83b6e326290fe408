"""Extract rich step readouts of ProcessBench and BIG-Bench Mistake with the embedded SmolLM2 backbone.

    nice -n 5 python -m benchmarks.signal.extract --data-root ../shared/data --threads 2 \
        >> ~/.cache/sprm/signal/extract.log 2>&1 &

One backbone forward per solution (``output_hidden_states``), inputs cut at ``--max-length`` tokens. Per read
step, float16: the hidden state at the read position (``readouts.gather_positions``) and the mean of the step's
token states (``readouts.step_means``) at each of ``LAYERS``; float32: the structure features
(``readouts.structure_features`` with character lengths). Steps and read positions come from the package's own
segmentation (``SPRMProcessor.encode`` -> ``steps.build_trace``), step starts from ``steps.token_index``, so the
positions are exactly what the model reads.

Records are sorted by token count and cut into chunks of ``--chunk`` records, each saved as one ``.npz`` under
``{cache-dir}/{dataset}-{key}/`` as soon as it is done (``key`` = hash of everything the features depend on), so
an interrupted run resumes where it stopped. ``manifest.json`` there lists the chunks; ``done.json`` appears when
a data set is complete, with how many solutions and steps the length cap cut per group. Chunk layout: ``CHUNK_FIELDS``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from modeling_sprm import readouts
from modeling_sprm.backbones import weights_fingerprint
from modeling_sprm.data import load_bbm, load_processbench
from modeling_sprm.processing_sprm import SPRMProcessor
from modeling_sprm.steps import StepRules, token_index

# hidden_states indices (0 = embeddings, i = output of decoder layer i, 30 = final norm output for SmolLM2-135M's
# 30 layers; 29 = hidden_states[-2], MetaStone-S1's feature layer).
LAYERS = (4, 8, 12, 15, 18, 22, 25, 27, 29, 30)
DEFAULT_CACHE = Path.home() / ".cache/sprm/signal"

CHUNK_FIELDS = {
    # per solution
    "ids": "solution id", "groups": "split / task", "first_error": "-1 = no error",
    "outcome": "final answer correct (1/0)", "num_steps": "steps in the solution",
    "num_read": "steps read (inside the window)", "truncated": "input longer than max_length",
    "num_tokens": "tokens before truncation",
    # per read step (solution-major)
    "step_solution": "index of the step's solution in this chunk", "step_index": "index within its solution",
    "step_label": "1 correct, 0 first error, nan unknown (after the first error)",
    "step_position": "read token", "step_start": "first token", "step_chars": "characters (text + delimiter)",
    "solution_chars": "characters from the solution start to the step's end",
    "delimiter": "[steps, layers, hidden] float16", "mean": "[steps, layers, hidden] float16",
    "structure": "[steps, 7] float32: readouts.STRUCTURE_FEATURES + CHARACTER_FEATURES",
    "layers": "hidden_states indices of the layer axis",
}


def load_dataset_records(name: str, data_root: Path) -> list[dict]:
    if name == "processbench":
        return load_processbench(str(data_root / "processbench"))
    if name == "bbm":
        return load_bbm(str(data_root / "big_bench_mistake"))
    raise ValueError(f"unknown data set {name!r}: expected processbench or bbm")


def step_start_tokens(tokenizer, trace) -> list[int | None]:
    """First token of each step of an ``EncodedTrace`` (None where its read position was cut), from the same
    tokenisation ``steps.encode`` made (with or without special tokens: whichever reproduces its ids)."""
    for special in (False, True):
        enc = tokenizer(trace.text, add_special_tokens=special, return_offsets_mapping=True)
        if list(enc["input_ids"][: len(trace.input_ids)]) == trace.input_ids:
            offsets = [tuple(o) for o in enc["offset_mapping"]]
            return [None if p is None else min(token_index(offsets, s.start), p)
                    for s, p in zip(trace.steps, trace.positions)]
    raise RuntimeError("could not reproduce the trace's tokenisation to find step starts")


def cache_folder(model, name: str, records: list[dict], args) -> Path:
    config = model.config
    payload = {
        "backbone": weights_fingerprint(model.backbone), "layers": LAYERS, "max_length": args.max_length,
        "rules": StepRules.from_config(config).__dict__,
        "prompt_format": [config.prompt_format, config.plain_prompt_template],
        "records": hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest(),
        "version": 1,
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(args.cache_dir) / f"{name}-{key}"


@torch.inference_mode()
def extract_chunk(model, tokenizer, records: list[dict], traces: list, token_budget: int,
                  layers: tuple[int, ...] = LAYERS) -> dict:
    """Readouts of one chunk of records (already encoded as ``traces``), as the arrays of ``CHUNK_FIELDS``;
    forwards of at most ``token_budget`` padded tokens."""
    base = model.backbone.base_model
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    starts = [step_start_tokens(tokenizer, t) for t in traces]
    per_solution = [None] * len(traces)
    order = sorted(range(len(traces)), key=lambda i: len(traces[i].input_ids))
    batches, current = [], []
    for i in order:  # batches of at most --token-budget padded tokens
        width = max([len(traces[j].input_ids) for j in current + [i]])
        if current and width * (len(current) + 1) > token_budget:
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    for batch in batches:
        width = max(len(traces[i].input_ids) for i in batch)
        num_steps = max(1, max(len(traces[i].steps) for i in batch))
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        positions = torch.full((len(batch), num_steps), -1, dtype=torch.long)
        step_starts = torch.full((len(batch), num_steps), -1, dtype=torch.long)
        step_chars = torch.zeros((len(batch), num_steps))
        solution_chars = torch.zeros((len(batch), num_steps))
        for row, i in enumerate(batch):
            trace = traces[i]
            input_ids[row, : len(trace.input_ids)] = torch.tensor(trace.input_ids)
            attention[row, : len(trace.input_ids)] = 1
            for j, (step, p, s) in enumerate(zip(trace.steps, trace.positions, starts[i])):
                if p is not None:
                    positions[row, j], step_starts[row, j] = p, s
                step_chars[row, j] = step.end - step.start
                solution_chars[row, j] = step.end - trace.solution_start
        device = base.get_input_embeddings().weight.device
        hidden = base(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                      output_hidden_states=True).hidden_states
        at, starts_at = positions.to(device), step_starts.to(device)
        delimiter = torch.stack([readouts.gather_positions(hidden[k], at) for k in layers], dim=2).float().cpu()
        mean = torch.stack([readouts.step_means(hidden[k], starts_at, at) for k in layers], dim=2).float().cpu()
        structure = readouts.structure_features(positions, step_starts, step_chars, solution_chars)
        for row, i in enumerate(batch):
            read = (positions[row] >= 0).nonzero().flatten()
            # real steps come first: a cut step is never followed by a read one
            assert read.numel() == 0 or int(read[-1]) == read.numel() - 1
            per_solution[i] = {
                "delimiter": delimiter[row, read].half().numpy(), "mean": mean[row, read].half().numpy(),
                "structure": structure[row, read].numpy(), "step_position": positions[row, read].numpy(),
                "step_start": step_starts[row, read].numpy(), "step_chars": step_chars[row, read].numpy(),
                "solution_chars": solution_chars[row, read].numpy(),
            }
    out = {
        "ids": np.array([r["id"] for r in records]), "groups": np.array([r["group"] for r in records]),
        "first_error": np.array([r["first_error"] for r in records], dtype=np.int64),
        "outcome": np.array([r["outcome_label"] for r in records], dtype=np.float32),
        "num_steps": np.array([len(t.steps) for t in traces], dtype=np.int64),
        "num_read": np.array([len(t.scored_positions) for t in traces], dtype=np.int64),
        "truncated": np.array([t.truncated for t in traces]),
        "num_tokens": np.array([t.num_tokens for t in traces], dtype=np.int64),
        "layers": np.array(layers),
    }
    labels = []
    for i, (record, item) in enumerate(zip(records, per_solution)):
        n = len(item["step_position"])
        labels += [np.nan if v is None else float(v) for v in record["step_labels"][:n]]
    out["step_label"] = np.array(labels, dtype=np.float32)
    out["step_solution"] = np.concatenate([np.full(len(p["step_position"]), i) for i, p in enumerate(per_solution)])
    out["step_index"] = np.concatenate([np.arange(len(p["step_position"])) for p in per_solution])
    for field in ("delimiter", "mean", "structure", "step_position", "step_start", "step_chars", "solution_chars"):
        out[field] = np.concatenate([p[field] for p in per_solution])
    return out


def run_dataset(model, tokenizer, name: str, args, log) -> None:
    records = load_dataset_records(name, Path(args.data_root))
    folder = cache_folder(model, name, records, args)
    folder.mkdir(parents=True, exist_ok=True)
    processor = SPRMProcessor.from_model(model, tokenizer)
    traces = [processor.encode(r, max_length=args.max_length) for r in records]
    order = sorted(range(len(records)), key=lambda i: (min(traces[i].num_tokens, args.max_length), i))
    chunks = [order[i : i + args.chunk] for i in range(0, len(order), args.chunk)]
    manifest = {"dataset": name, "layers": LAYERS, "max_length": args.max_length, "records": len(records),
                "chunks": [[records[i]["id"] for i in c] for c in chunks], "fields": CHUNK_FIELDS}
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text())["chunks"] != manifest["chunks"]:
        raise SystemExit(f"{manifest_path} lists other chunks: remove {folder} to start again")
    manifest_path.write_text(json.dumps(manifest))
    total_tokens = sum(min(t.num_tokens, args.max_length) for t in traces)
    done_tokens, start = 0, time.time()
    for k, chunk in enumerate(chunks):
        path = folder / f"chunk-{k:04d}.npz"
        tokens = sum(len(traces[i].input_ids) for i in chunk)
        if path.is_file():
            total_tokens -= tokens
            continue
        t0 = time.time()
        arrays = extract_chunk(model, tokenizer, [records[i] for i in chunk], [traces[i] for i in chunk],
                               args.token_budget)
        tmp = folder / f"chunk-{k:04d}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # a chunk file exists only when complete
        done_tokens += tokens
        rate = done_tokens / (time.time() - start)
        log(f"{name} chunk {k + 1}/{len(chunks)}: {len(chunk)} solutions, {tokens} tokens, "
            f"{time.time() - t0:.0f} s; {rate:.0f} tokens/s, about {(total_tokens - done_tokens) / rate / 60:.0f} "
            "min left for this data set")
    cut = {}
    for record, trace in zip(records, traces):
        g = cut.setdefault(record["group"], {"solutions": 0, "solutions_cut": 0, "steps": 0, "steps_cut": 0})
        g["solutions"] += 1
        g["solutions_cut"] += int(trace.truncated)
        g["steps"] += len(trace.steps)
        g["steps_cut"] += len(trace.steps) - len(trace.scored_positions)
    (folder / "done.json").write_text(json.dumps({"max_length": args.max_length, "cut": cut}, indent=1))
    log(f"{name}: complete in {folder}; cut by the {args.max_length}-token cap: {json.dumps(cut)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder with processbench/ and big_bench_mistake/")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--datasets", nargs="+", default=["processbench", "bbm"], choices=["processbench", "bbm"])
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--token-budget", type=int, default=8192, help="padded tokens per forward")
    parser.add_argument("--chunk", type=int, default=100, help="records per cached chunk")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (float32 either way, no TF32: the same features)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    from modeling_sprm.loading import load_model_and_tokenizer

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model, tokenizer, _ = load_model_and_tokenizer(None, device=args.device)
    model.eval()
    for name in args.datasets:
        run_dataset(model, tokenizer, name, args, log)


if __name__ == "__main__":
    main()
