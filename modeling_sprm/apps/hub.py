"""``sprm push``: the exact repo folders of a trained SPRM and of its demo Space, uploaded with ``create_repo`` +
``upload_folder`` (or written out by ``--dry-run``). The cards come from `modeling_sprm.cards`.

The Space installs the package **without PyPI**: ``sprm push --space-id`` builds a wheel of the package it runs from
(`build_wheel`), puts it in the Space, and writes the Space's ``requirements.txt`` to install that file (the
demo's own requirements, minus any ``modeling-sprm`` line, plus ``./<wheel>``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import ModelCard, SpaceCard

from ..cards import (
    EVAL_RESULTS_FILE,
    SPACE_MODEL_VARIABLE,
    TRAINING_FILE,
    HubError,
    load_eval_results,
    load_training_info,
    render_model_card,
    render_space_card,
)

__all__ = [  # the cards' names stay importable from here, where `sprm push` had them before they moved
    "EVAL_RESULTS_FILE", "TRAINING_FILE", "HubError", "build_model_folder", "build_space_folder", "build_wheel",
    "load_eval_results", "load_training_info", "push", "render_model_card", "render_space_card",
]

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


def build_space_folder(demo_dir: Path, card: SpaceCard, out_dir: Path, wheel: Path | None = None) -> Path:
    """The Space repo: every file of ``demo_dir`` (caches and hidden files left out), the rendered card and, with
    ``wheel`` (`build_wheel`), the package wheel plus a ``requirements.txt`` that installs its dependencies (the
    demo's own lines first, a ``modeling-sprm`` pin among them dropped: the wheel replaces it). The demo's
    ``app.py`` installs the wheel itself at start-up: a Space installs ``requirements.txt`` before the repository's
    other files are in place, so the file cannot be named there."""
    if not (demo_dir / "requirements.txt").is_file():
        raise HubError(f"the Space needs {demo_dir / 'requirements.txt'}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(demo_dir.rglob("*")):
        relative = path.relative_to(demo_dir)
        if not path.is_file() or relative.as_posix() == "README.md" or path.suffix in (".pyc", ".whl"):
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out_dir / relative)
    if wheel is not None:
        shutil.copy2(wheel, out_dir / wheel.name)
        own = [line for line in (demo_dir / "requirements.txt").read_text(encoding="utf-8").splitlines()
               if not _requirement_name(line) == "modeling-sprm"]
        lines = [*own, f"# the dependencies of {wheel.name} (app.py installs the wheel itself)",
                 *wheel_requirements(wheel)]
        (out_dir / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    card.save(out_dir / "README.md")
    return out_dir


def _requirement_name(line: str) -> str | None:
    import re

    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
    return match.group(1).lower().replace("_", "-") if match else None


def wheel_requirements(wheel: Path) -> list[str]:
    """The runtime ``Requires-Dist`` lines of a wheel's metadata (extras such as ``[test]`` left out)."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata_text = archive.read(name).decode("utf-8")
    requirements = []
    for line in metadata_text.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            requirements.append(line.split(":", 1)[1].strip())
    return requirements


def source_checkout() -> Path | None:
    """The folder of this package's source checkout (with ``pyproject.toml``), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "modeling_sprm").is_dir() else None


def build_wheel(out_dir: Path) -> Path:
    """Build the package's wheel from its source checkout into ``out_dir`` (pip, offline: no build isolation, no
    dependencies fetched) and return its path."""
    root = source_checkout()
    if root is None:
        raise HubError("sprm push --space-id builds the wheel the Space installs from the package's source checkout "
                       "(pyproject.toml), and this package was installed without one: run it from a checkout")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sprm-wheel-") as tmp:
        # a clean copy: setuptools builds in the source tree and would leave (and later reuse) build/ there
        source = Path(tmp) / "src"
        shutil.copytree(root, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "test-artifacts", ".cache"))
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                   "--disable-pip-version-check", "-w", str(out_dir), str(source)]
        run = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(out_dir.glob("modeling_sprm-*.whl"))
    if run.returncode != 0 or not wheels:
        raise HubError(f"building the package wheel failed: {(run.stderr or run.stdout).strip()[-500:]}")
    return wheels[-1]


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
        wheel = build_wheel(root / "wheel")
        space_folder = build_space_folder(demo, render_space_card(demo, repo_id, license), root / "space", wheel)
        shutil.rmtree(root / "wheel")
        return model_folder, space_folder

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
        try:
            api.upload_folder(repo_id=rid, repo_type=repo_type, folder_path=str(folder),
                              commit_message=f"Upload with sprm push ({repo_type})")
        except ValueError as err:  # the Hub refused the card's metadata (huggingface_hub's validate-yaml check)
            raise HubError(f"the Hub refused the {repo_type} card of {rid}: {err}".replace("\n", " ")) from None
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
