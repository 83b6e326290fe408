"""Hub artifacts: cards rendered from the result JSON, `sprm push` and its dry run, against a real HTTP server
(tests/hub_server.py), and loading the pushed repo back in fresh processes with and without the package."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, ROOT, make_tiny_backbone
from hub_server import HubServer
from huggingface_hub import EvalResult, ModelCard, SpaceCard

from modeling_sprm.apps import hub
from modeling_sprm.apps.hub import HubError

TOKEN, USER = "hf_test_alice", "alice"
EVAL_FIXTURE = FIXTURES / "hub" / "eval_results.json"
TRAINING_FIXTURE = FIXTURES / "hub" / "training.json"
INPUTS = [
    {"question": "What is 2 + 3 * 4?", "solution": "3 * 4 = 12.\n\n2 + 12 = 14.\n\nThe answer is 14."},
    {"question": "Is 7 prime?", "steps": ["7 has no divisor between 2 and 6.", "So 7 is prime."]},
]
CODE_FILES = [
    "configuration_sprm.py", "modeling_sprm.py", "steps.py", "aggregation.py", "backbones.py", "pipeline_sprm.py"
]


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub"), {TOKEN: USER}) as server:
        yield server


@pytest.fixture
def online(monkeypatch):
    """The tests run with HF_HUB_OFFLINE=1; calls to the local test server need it off (this test only)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


def _save_tiny(folder: Path, tokenizer, trained: bool) -> Path:
    from modeling_sprm import SPRMForStepScoring

    backbone = make_tiny_backbone(len(tokenizer), tokenizer.pad_token_id, seed=0)
    torch.manual_seed(1)
    model = SPRMForStepScoring.from_backbone(backbone, backbone_name_or_path="tiny-random-llama")
    if trained:  # what a trainer records; the weights stay random, which is all these tests need
        model.config.head_training = {"loss": "spr", "steps": 0}
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A tiny SPRM folder marked as trained, with the experiment's result files next to it (the fixtures)."""
    folder = _save_tiny(tmp_path_factory.mktemp("trained"), smollm2_tokenizer, trained=True)
    shutil.copy(EVAL_FIXTURE, folder / hub.EVAL_RESULTS_FILE)
    shutil.copy(TRAINING_FIXTURE, folder / hub.TRAINING_FILE)
    return folder


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A placeholder for demo/ (built by the demo issue), only in a temporary folder."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "app.py").write_text("import gradio as gr\n")
    (folder / "requirements.txt").write_text("gradio\n")
    (folder / "README.md").write_text("---\ntitle: Step scorer demo\nemoji: 🧮\n---\n\n# Demo\n\nScores steps.\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    return folder


def local_scores(folder: Path) -> list[dict]:
    from transformers import AutoModel, AutoTokenizer, pipeline

    model, tokenizer = AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
    return [scorer(record) for record in INPUTS]


# ----------------------------------------------------------------------------------------------------------------
# Cards


def _tiny_config():
    from transformers import LlamaConfig

    from modeling_sprm import SPRMConfig

    text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=100)
    return SPRMConfig(text_config=text, backbone_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct",
                      head_training={"loss": "spr"})


def test_card_shows_the_result_json_and_round_trips(tmp_path):
    results = hub.load_eval_results(EVAL_FIXTURE)
    training = hub.load_training_info(TRAINING_FIXTURE)
    card = hub.render_model_card(_tiny_config(), "alice/sprm", results, training, embedded_backbone=True,
                                 space_id="alice/sprm-demo")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")

    assert loaded.data.eval_results == results
    raw = json.loads(EVAL_FIXTURE.read_text())
    for item in raw:  # every number of the JSON, exactly as written there, in the card's tables
        assert f"| {item['metric_name']} | {json.dumps(item['metric_value'])} |" in loaded.text
    assert "### ProcessBench (gsm8k): First-error step detection" in loaded.text
    assert "`sprm train --fixture`" in loaded.text and "2026-01-01" in loaded.text
    assert "outcome labels only" in loaded.text
    assert "dequantized to float32" in loaded.text and loaded.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 'trust_remote_code=True' in loaded.text and 'pipeline("step-scoring", model="alice/sprm")' in loaded.text
    assert "pipeline_class" not in loaded.text  # by name: the package registers the task
    assert loaded.data.pipeline_tag == "text-classification"
    assert loaded.data.datasets == ["Qwen/ProcessBench", "openai/gsm8k"]  # from the results' dataset ids
    assert "2507.01951" in loaded.text and loaded.data.license == "apache-2.0"
    assert "spaces/alice/sprm-demo" in loaded.text
    # the head size is computed from the config: 2 * 64 * 64 + 4 * 64 + 1
    assert "8,449 parameters" in loaded.text


def test_card_without_results_or_embedded_backbone():
    config = _tiny_config()
    config.backbone_name_or_path = "/some/local/folder"
    config.head_training = {"supervision": "step labels (see the source model)"}
    card = hub.render_model_card(config, "alice/other")
    assert card.data.eval_results is None and "model-index" not in str(card)
    assert "No evaluation results were supplied" in card.text
    assert "dequantized" not in card.text and card.data.base_model is None
    assert "Supervision: step labels" in card.text and "outcome labels only" not in card.text


VALID_RESULT = {"task_type": "t", "task_name": "n", "dataset_type": "d", "dataset_name": "d", "metric_type": "m",
                "metric_name": "m", "metric_value": 0.5}


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not readable JSON"),
        ({}, "non-empty JSON list"),
        ([{"task_type": "t"}], "missing fields"),
        ([{**VALID_RESULT, "extra": 1}], r"unknown fields \['extra'\]"),
        ([{**VALID_RESULT, "metric_value": "0.5"}], "metric_value must be a finite number"),
        ([{**VALID_RESULT, "metric_value": float("nan")}], "metric_value must be a finite number"),
        ([{**VALID_RESULT, "task_type": ""}], "task_type must be a non-empty string"),
        ([{**VALID_RESULT, "source_name": "s"}], "`source_url` must also be provided"),
        ([VALID_RESULT, {**VALID_RESULT, "task_name": "other", "metric_type": "m2"}], "differ in task_name"),
    ],
)
def test_bad_eval_results_are_refused(tmp_path, content, message):
    path = tmp_path / "eval_results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(HubError, match=message):
        hub.load_eval_results(path)


def test_space_card(tmp_path, demo_dir):
    card = hub.render_space_card(demo_dir, "alice/sprm")
    card.save(tmp_path / "README.md")
    loaded = SpaceCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    assert data["sdk"] == "gradio" and data["app_file"] == "app.py" and data["models"] == ["alice/sprm"]
    assert data["title"] == "Step scorer demo" and data["emoji"] == "🧮" and data["license"] == "apache-2.0"
    assert data["sdk_version"]
    assert "# Demo" in loaded.text and "SPRM_MODEL" in loaded.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(HubError, match="app file app.py is missing"):
        hub.render_space_card(tmp_path / "empty", "alice/sprm")


def test_the_real_demo_folder_builds_a_space(tmp_path):
    demo = ROOT / "demo"
    folder = hub.build_space_folder(demo, hub.render_space_card(demo, "alice/sprm"), tmp_path / "space")
    assert {"README.md", "app.py", "requirements.txt"} <= {p.name for p in folder.iterdir()}
    data = SpaceCard.load(folder / "README.md").data
    assert data.sdk == "gradio" and (folder / data.app_file).is_file() and data.models[0] == "alice/sprm"


# ----------------------------------------------------------------------------------------------------------------
# sprm push --dry-run


def test_dry_run_writes_the_exact_repo_folders(tmp_path, trained_model, demo_dir, capsys):
    from modeling_sprm.apps.cli import main

    out = tmp_path / "dry"
    main(["push", "--repo-id", "alice/sprm", "--space-id", "alice/sprm-demo", "--model", str(trained_model),
          "--demo-dir", str(demo_dir), "--dry-run", str(out)])
    printed = capsys.readouterr().out
    model_dir, space_dir = out / "model", out / "space"

    config = json.loads((model_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}
    assert config["custom_pipelines"]["step-scoring"]["impl"] == "pipeline_sprm.StepScoringPipeline"
    assert config["head_only"] is False
    for name in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", *CODE_FILES]:
        assert (model_dir / name).is_file(), name
        assert name in printed
    assert ModelCard.load(model_dir / "README.md").data.eval_results == hub.load_eval_results(EVAL_FIXTURE)
    wheel = next(space_dir.glob("modeling_sprm-*.whl"))  # the package, built from this checkout
    assert sorted(p.name for p in space_dir.iterdir()) == sorted(["README.md", "app.py", "requirements.txt", wheel.name])
    requirements = (space_dir / "requirements.txt").read_text().splitlines()
    assert "gradio" in requirements and any(line.startswith("transformers") for line in requirements)
    assert not any(line.startswith("modeling-sprm") for line in requirements)
    assert SpaceCard.load(space_dir / "README.md").data.sdk == "gradio"
    assert "nothing was uploaded" in printed and "hf upload alice/sprm" in printed
    # the folder is a complete checkpoint: it loads and scores like the model it came from
    assert local_scores(model_dir) == local_scores(trained_model)


def test_push_refuses_an_untrained_head(tmp_path, smollm2_tokenizer, hub_server, online):
    folder = _save_tiny(tmp_path / "untrained", smollm2_tokenizer, trained=False)
    before = len(hub_server.requests)
    with pytest.raises(HubError, match="untrained"):
        hub.push("alice/untrained", model=folder, token=TOKEN, endpoint=hub_server.url)
    with pytest.raises(HubError, match="untrained"):
        hub.push("alice/untrained", model=folder, dry_run=tmp_path / "dry")
    assert len(hub_server.requests) == before  # refused before any request


def test_push_without_a_token_or_with_a_bad_one(trained_model, hub_server, online):
    with pytest.raises(HubError, match="no Hugging Face token"):
        hub.push("alice/no-token", model=trained_model, endpoint=hub_server.url)
    with pytest.raises(HubError, match=r"rejected the token \(HTTP 401\)"):
        hub.push("alice/no-token", model=trained_model, token="hf_wrong", endpoint=hub_server.url)


def test_push_to_a_taken_repo(trained_model, hub_server, online):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_server.url, token=TOKEN)
    api.create_repo("alice/taken")
    with pytest.raises(HubError, match="alice/taken already exists .* --exist-ok"):
        hub.push("alice/taken", model=trained_model, token=TOKEN, endpoint=hub_server.url, log=lambda _: None)
    hub.push("alice/taken", model=trained_model, token=TOKEN, endpoint=hub_server.url, exist_ok=True,
             log=lambda _: None)
    assert "model.safetensors" in api.list_repo_files("alice/taken")


def test_cli_push_reports_a_taken_repo(trained_model, hub_server, online, monkeypatch, capsys):
    """`sprm push` as a user runs it: token and endpoint from the environment, a clear error, exit status 2."""
    from huggingface_hub import HfApi, constants

    from modeling_sprm.apps.cli import main

    HfApi(endpoint=hub_server.url, token=TOKEN).create_repo("alice/cli-taken")
    monkeypatch.setattr(constants, "ENDPOINT", hub_server.url)  # what HF_ENDPOINT sets when huggingface_hub loads
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--repo-id", "alice/cli-taken", "--model", str(trained_model)])
    assert exit_info.value.code == 2
    assert "sprm: error: the model repo alice/cli-taken already exists" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# End to end: push, then load from the server in fresh processes


FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    repo_id, mode = sys.argv[1], sys.argv[2]
    if mode == "without-package":
        sys.modules["modeling_sprm"] = None  # `import modeling_sprm` now fails: only the repo's own code can run
        from transformers import AutoModel, pipeline
        model = AutoModel.from_pretrained(repo_id, trust_remote_code=True)
        scorer = pipeline(model=repo_id, trust_remote_code=True)
    else:  # the model card's "with the package" snippet: the package's classes, no remote code
        import modeling_sprm
        from transformers import AutoModel, pipeline
        model = AutoModel.from_pretrained(repo_id)
        scorer = pipeline("step-scoring", model=repo_id)  # a Hub id, by name, no remote code
    inputs = json.loads(sys.stdin.read())
    print(json.dumps({"model_class": type(model).__module__ + "." + type(model).__name__,
                      "pipeline_class": type(scorer).__module__ + "." + type(scorer).__name__,
                      "results": [scorer(record) for record in inputs]}))
    """
)


def load_in_fresh_process(server: HubServer, repo_id: str, mode: str, tmp_path: Path) -> dict:
    """Load and run the pushed repo from the server in a new Python process (``mode``: "without-package" or
    "with-package"), as a user would; HF_ENDPOINT points huggingface_hub at the test server."""
    env = dict(os.environ, HF_ENDPOINT=server.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / f"hf-{mode}"),
               HF_TOKEN=TOKEN)
    env.pop("PYTHONPATH", None)
    if mode == "with-package":
        env["PYTHONPATH"] = str(ROOT)  # this checkout's package
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, repo_id, mode], input=json.dumps(INPUTS),
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_push_end_to_end(tmp_path, trained_model, hub_server, online):
    demo = ROOT / "demo"  # the real Space folder
    urls = hub.push("alice/sprm-e2e", model=trained_model, space_id="alice/sprm-e2e-demo", demo_dir=demo,
                    private=True, token=TOKEN, endpoint=hub_server.url, log=lambda _: None)
    assert urls == {
        "model": f"{hub_server.url}/alice/sprm-e2e", "space": f"{hub_server.url}/spaces/alice/sprm-e2e-demo"
    }

    store = hub_server.store
    model_meta, space_meta = store.meta("model", "alice/sprm-e2e"), store.meta("space", "alice/sprm-e2e-demo")
    assert model_meta["private"] and space_meta["private"] and space_meta["sdk"] == "gradio"
    assert space_meta["variables"] == {"SPRM_MODEL": "alice/sprm-e2e"}
    model_files = store.files("model", "alice/sprm-e2e", model_meta["commits"][-1])
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json", *CODE_FILES} <= set(model_files)
    card = ModelCard.load(model_files["README.md"])
    assert card.data.eval_results == hub.load_eval_results(EVAL_FIXTURE)
    space_files = store.files("space", "alice/sprm-e2e-demo", space_meta["commits"][-1])
    wheels = [name for name in space_files if name.startswith("modeling_sprm-") and name.endswith(".whl")]
    assert len(wheels) == 1 and set(space_files) == {"README.md", "app.py", "requirements.txt", *wheels}
    assert Path(space_files["app.py"]).read_bytes() == (demo / "app.py").read_bytes()  # uploaded byte for byte
    # the demo's own requirements first, then the wheel's dependencies
    demo_lines = (demo / "requirements.txt").read_text().splitlines()
    assert Path(space_files["requirements.txt"]).read_text().splitlines()[: len(demo_lines)] == demo_lines
    space_card = SpaceCard.load(space_files["README.md"])
    assert space_card.data.app_file == "app.py" and space_card.data.models[0] == "alice/sprm-e2e"
    assert "## Use it from code" in space_card.text  # the real README's body, under the rendered metadata

    expected = local_scores(trained_model)
    without = load_in_fresh_process(hub_server, "alice/sprm-e2e", "without-package", tmp_path)
    assert without["model_class"].startswith("transformers_modules.") and "SPRMForStepScoring" in without["model_class"]
    assert without["pipeline_class"].startswith("transformers_modules.")
    assert without["results"] == expected
    with_package = load_in_fresh_process(hub_server, "alice/sprm-e2e", "with-package", tmp_path)
    assert with_package["model_class"] == "modeling_sprm.modeling_sprm.SPRMForStepScoring"
    assert with_package["pipeline_class"] == "modeling_sprm.pipeline_sprm.StepScoringPipeline"
    assert with_package["results"] == expected


def test_private_repos_are_hidden_without_a_token(hub_server, trained_model, online):
    from huggingface_hub import HfApi

    hub.push("alice/private", model=trained_model, private=True, token=TOKEN, endpoint=hub_server.url,
             log=lambda _: None)
    assert HfApi(endpoint=hub_server.url, token=TOKEN).repo_exists("alice/private")
    assert not HfApi(endpoint=hub_server.url, token=False).repo_exists("alice/private")


def test_eval_result_objects_survive_the_hub(hub_server, online, tmp_path):
    """`model-index` metadata written by the card is what the Hub-side metadata validator accepts."""
    from huggingface_hub import HfApi

    card = hub.render_model_card(_tiny_config(), "alice/card-only", hub.load_eval_results(EVAL_FIXTURE))
    api = HfApi(endpoint=hub_server.url, token=TOKEN)
    api.create_repo("alice/card-only")
    api.upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id="alice/card-only")
    assert ("POST", "/api/validate-yaml") in hub_server.requests
    path = api.hf_hub_download("alice/card-only", "README.md", cache_dir=tmp_path)
    assert ModelCard.load(path).data.eval_results == [EvalResult(**r) for r in json.loads(EVAL_FIXTURE.read_text())]


# ----------------------------------------------------------------------------------------------------------------
# The Hub's card rules (enforced by the test server on upload) and a Space that installs without PyPI


def test_the_shipped_cards_meet_the_hubs_rules():
    from hub_server import card_errors

    demo = ROOT / "demo"
    space = hub.render_space_card(demo, "alice/sprm").data.to_dict()
    assert card_errors(space, "space") == [] and len(space["short_description"]) <= 60
    config = _tiny_config()
    config.backbone_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model = hub.render_model_card(config, "alice/sprm", hub.load_eval_results(ROOT / "modeling_sprm" / "default_head"
                                                                            / "eval_results.json")).data.to_dict()
    assert card_errors(model, "model") == []
    assert model["pipeline_tag"] and model["datasets"] and model["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize(
    "repo_type, field, value, message",
    [
        ("space", "short_description", "x" * 61, "at most 60 characters"),
        ("space", "colorFrom", "teal", "colorFrom"),
        ("model", "pipeline_tag", "step-scoring", "pipeline_tag"),
        ("model", "datasets", "not a repo id!", "datasets"),
    ],
)
def test_a_bad_card_fails_the_upload(tmp_path, trained_model, demo_dir, hub_server, online, repo_type, field, value,
                                     message, monkeypatch):
    from huggingface_hub import ModelCard, SpaceCard

    card_class = SpaceCard if repo_type == "space" else ModelCard
    render = card_class.from_template

    def bad_card(card_data, *args, **kwargs):
        setattr(card_data, field, value)
        return render(card_data, *args, **kwargs)

    monkeypatch.setattr(card_class, "from_template", bad_card)
    rid = f"alice/bad-{repo_type}-{field.lower()}"
    with pytest.raises(HubError, match=f"the Hub refused the {repo_type} card .*{message}"):
        hub.push(rid, model=trained_model, space_id=f"{rid}-space" if repo_type == "space" else None,
                 demo_dir=demo_dir, token=TOKEN,
                 endpoint=hub_server.url, log=lambda _: None)


def test_the_space_installs_the_package_from_its_wheel(tmp_path):
    """What a Space does at start-up (demo/app.py): install the wheel `sprm push` put next to app.py, then import
    the package from it, not from this checkout."""
    wheel = hub.build_wheel(tmp_path / "wheel")
    space = tmp_path / "space"
    space.mkdir()
    shutil.copy(ROOT / "demo" / "app.py", space / "app.py")
    shutil.copy(wheel, space / wheel.name)
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import app; app.install_package_wheel(); "
              "import modeling_sprm; print(modeling_sprm.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SPACE_ID="alice/sprm-demo", SPRM_CACHE=str(tmp_path / "cache"), PIP_NO_INDEX="1")
    run = subprocess.run([sys.executable, "-c", script, str(space)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith(str(tmp_path / "cache" / "site-packages"))


def test_sprm_train_push_to_hub_publishes_the_package_card(tmp_path, smollm2_tokenizer, hub_server):
    """`sprm train --push_to_hub` as a user runs it (a fresh process, HF_ENDPOINT at the test Hub): the repo gets the
    head-only checkpoint and the package's card, with model-index from the experiment's eval_results.json."""
    from conftest import FIXTURES as DATA

    backbone = tmp_path / "backbone"
    make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id).save_pretrained(backbone)
    smollm2_tokenizer.save_pretrained(backbone)
    out = tmp_path / "head"
    out.mkdir()
    shutil.copy(EVAL_FIXTURE, out / hub.EVAL_RESULTS_FILE)  # what an experiment writes next to the head
    env = dict(os.environ, HF_ENDPOINT=hub_server.url, HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN, PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"))
    run = subprocess.run(
        [sys.executable, "-m", "modeling_sprm", "train", "--data", str(DATA / "processbench"), "--format",
         "processbench", "--output", str(out), "--model", str(backbone), "--num_train_epochs", "1",
         "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--save_strategy", "no", "--push_to_hub",
         "--hub_model_id", "alice/trained-head", "--report_to", "none"],
        capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    meta = hub_server.store.meta("model", "alice/trained-head")
    files = hub_server.store.files("model", "alice/trained-head", meta["commits"][-1])
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= set(files)
    assert json.loads(files["config.json"].read_text())["head_only"] is True
    card = ModelCard.load(files["README.md"])
    assert "self-supervised process reward model" in card.text and "**head only**" in card.text
    assert "fine-tuned version" not in card.text  # not the Trainer's generic card
    assert card.data.eval_results == hub.load_eval_results(EVAL_FIXTURE)
    assert card.data.pipeline_tag == "text-classification" and "sprm" in card.data.tags
