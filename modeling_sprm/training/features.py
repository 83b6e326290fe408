"""Cached backbone features: run the frozen backbone once over a data set and keep only the features at step
read positions, so head-only training epochs (and many experiments) skip the backbone entirely.

``extract_step_features(model, tokenizer, records)`` returns a ``datasets.Dataset`` with the record fields plus:

* ``step_features``: ``[num_scored_steps, feature_size]`` float32, what the head reads of each step (the feature
  layers at its read position, or averaged over its tokens: ``step_pooling``);
* ``num_steps``: steps in the trace; ``num_scored_steps``: those inside the context window (a prefix);
* ``trace_truncated``: the input was longer than ``max_length``.

The same ``SPRMProcessor`` -> ``SPRMForStepScoring.forward`` path as scoring produces the features, so training on
cached features equals training through the frozen backbone (tested).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import torch

from ..backbones import weights_fingerprint
from ..modeling_sprm import SPRMForStepScoring
from ..processing_sprm import SPRMProcessor, default_max_batch_tokens, plan_batches
from ..steps import EncodedTrace


@torch.inference_mode()
def step_features_for_traces(
    model: SPRMForStepScoring,
    traces: Sequence[EncodedTrace],
    processor: SPRMProcessor,
    batch_size: int | None = 8,
    max_batch_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Features ``[num_scored_steps, feature_size]`` (float32, CPU) of each trace, in input order. Traces are batched by
    length so that little padding is computed: at most ``batch_size`` per forward (None: no limit) and at most
    ``max_batch_tokens`` padded tokens (`processing_sprm.plan_batches`; default: the device's
    `processing_sprm.DEFAULT_MAX_BATCH_TOKENS`)."""
    out: list[torch.Tensor | None] = [None] * len(traces)
    device = model.get_input_embeddings().weight.device
    max_batch_tokens = max_batch_tokens or default_max_batch_tokens(device)
    for chunk in plan_batches([len(t.input_ids) for t in traces], max_batch_tokens, batch_size):
        batch = {k: v.to(device) for k, v in processor.pad([traces[i] for i in chunk]).items()}
        result = model(**batch, return_step_features=True)
        for row, i in enumerate(chunk):
            out[i] = result.step_features[row][result.step_mask[row]].float().cpu()
    return out


def cache_key(model: SPRMForStepScoring, records: Sequence[dict], max_length: int | None) -> str:
    """What the cached features depend on: backbone weights, feature layers and pooling, step rules, prompt
    format, the context length and the records themselves."""
    config = model.config
    processor = SPRMProcessor.from_config(config, tokenizer=None)
    payload = {
        "backbone": weights_fingerprint(model.backbone),
        "feature_layer": config.feature_layer,
        # only when set, so that the keys of default readouts stay those of earlier caches
        **({"feature_layers": config.feature_layers} if config.feature_layers is not None else {}),
        **({"step_pooling": config.step_pooling} if config.step_pooling != "delimiter" else {}),
        "rules": processor.rules.__dict__,
        "prompt_format": [processor.prompt_format, processor.plain_prompt_template],
        "max_length": max_length,
        "records": hashlib.sha256(json.dumps(list(records), sort_keys=True, default=str).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def extract_step_features(
    model: SPRMForStepScoring,
    tokenizer,
    records: Sequence[dict],
    *,
    batch_size: int | None = 8,
    max_length: int | None = None,
    cache_dir: str | Path | None = None,
    chunk_size: int | None = None,
    max_batch_tokens: int | None = None,
):
    """Run the frozen backbone once over ``records`` (a list of record dicts or a ``datasets.Dataset``) and
    return a ``datasets.Dataset`` with the step features (see the module docstring). Each forward holds at most
    ``batch_size`` records (None: no limit) and at most ``max_batch_tokens`` padded tokens (default: the device's
    `processing_sprm.DEFAULT_MAX_BATCH_TOKENS`). With ``cache_dir``, the
    result is saved under a key of everything it depends on and loaded from there next time; with ``chunk_size``
    too, each chunk of that many records is cached as soon as it is done, so an interrupted run resumes."""
    import datasets

    if isinstance(records, datasets.Dataset):
        records = records.to_list()
    records = list(records)
    if not records:
        raise ValueError("no records to extract features from")
    if chunk_size is not None and len(records) > chunk_size:
        parts = [
            extract_step_features(
                model, tokenizer, records[i : i + chunk_size], batch_size=batch_size, max_length=max_length,
                cache_dir=cache_dir, max_batch_tokens=max_batch_tokens,
            )
            for i in range(0, len(records), chunk_size)
        ]
        return datasets.concatenate_datasets(parts)
    processor = SPRMProcessor.from_model(model, tokenizer)
    max_length = max_length or processor.max_length
    key = cache_key(model, records, max_length)
    target = Path(cache_dir) / f"step-features-{key}" if cache_dir is not None else None
    if target is not None and (target / "dataset_info.json").is_file():
        return datasets.load_from_disk(str(target))

    hidden = model.config.feature_size
    was_training = model.training
    model.eval()

    def add_features(batch: dict) -> dict:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        traces = [processor.encode(row, max_length=max_length) for row in rows]
        feats = step_features_for_traces(model, traces, processor, batch_size, max_batch_tokens)
        return {
            "step_features": [f.numpy() for f in feats],
            "num_steps": [len(t.steps) for t in traces],
            "num_scored_steps": [len(t.scored_positions) for t in traces],
            "trace_truncated": [t.truncated for t in traces],
        }

    # from_list takes its columns from the first row: give every row every field (None where missing).
    fields = list(dict.fromkeys(k for record in records for k in record))
    dataset = datasets.Dataset.from_list([{k: record.get(k) for k in fields} for record in records])
    features = dataset.features.copy()
    features["step_features"] = datasets.Array2D(shape=(None, hidden), dtype="float32")
    features["num_steps"] = datasets.Value("int32")
    features["num_scored_steps"] = datasets.Value("int32")
    features["trace_truncated"] = datasets.Value("bool")
    dataset = dataset.map(
        add_features,
        batched=True,
        batch_size=256,  # records per call: the traces of one call are sorted by length together
        features=features,
        new_fingerprint=key,
        desc="Extracting step features",
    )
    model.train(was_training)
    if target is not None:
        dataset.save_to_disk(str(target))
    return dataset
