"""The demo (modeling_sprm/apps/demo.py, `sprm demo`): pure helpers, the scoring calls, the API through gradio_client
against the app served on 127.0.0.1, the `sprm demo` command, and the page in headless Chromium (Playwright)."""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import CHROMIUM, ROOT, cannot_run, make_tiny_backbone

from modeling_sprm.apps import cli
from modeling_sprm.aggregation import first_error_step
from modeling_sprm.apps.demo import (
    DemoLimits,
    DemoScorer,
    build_demo,
    check_candidates,
    check_text,
    gsm8k_solution,
    hub_model_url,
    launch,
    load_examples,
    score_color,
    split_paragraphs,
    steps_html,
)

QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many apples are left?"
SOLUTION = "Tom has 3 * 4 = 12 apples.\n\nHe eats 2, so 12 - 2 = 10 apples are left.\n\nThe answer is 10."
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(model, tokenizer, name, limits=DemoLimits()):
    """The demo app on 127.0.0.1 in this process: ``(demo, url)``."""
    demo = build_demo(model, tokenizer, name, limits)
    _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo, url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, smollm2_tokenizer):
    """A tiny random SPRM saved as a full checkpoint with SmolLM2's tokenizer (so the CLI can load it by path)."""
    from modeling_sprm import SPRMForStepScoring

    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    torch.manual_seed(1)
    model = SPRMForStepScoring.from_backbone(backbone, backbone_name_or_path="tiny-random-llama")
    folder = tmp_path_factory.mktemp("tiny-sprm")
    model.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_loaded(tiny_folder):
    from modeling_sprm.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(tiny_folder)


@pytest.fixture(scope="module")
def tiny_app(tiny_loaded):
    with served(*tiny_loaded, limits=DemoLimits(max_new_tokens=24)) as app:
        yield app


@pytest.fixture(scope="module")
def tiny_client(tiny_app):
    from gradio_client import Client

    return Client(tiny_app[1], verbose=False)


# -- pure helpers ---------------------------------------------------------------------------------------------------


def test_check_text_names_the_input_and_the_limit():
    assert check_text("Solution", "ok", 5) == "ok"
    with pytest.raises(ValueError, match=r"Solution is too long: 6 characters; this demo takes at most 5"):
        check_text("Solution", "x" * 6, 5)
    with pytest.raises(ValueError, match="Question is empty"):
        check_text("Question", "  \n", 5)
    with pytest.raises(ValueError, match="Question must be text"):
        check_text("Question", None, 5)


def test_check_candidates_refuses_modes_over_the_limit():
    assert check_candidates("low", DemoLimits()) == 2
    assert check_candidates("medium", DemoLimits()) == 8
    with pytest.raises(ValueError, match=r"'high' samples 32 candidates; this demo allows at most 8"):
        check_candidates("high", DemoLimits())
    assert check_candidates("high", DemoLimits(max_candidates=32)) == 32
    with pytest.raises(ValueError, match="mode must be one of"):
        check_candidates("huge", DemoLimits())


def test_split_paragraphs():
    assert split_paragraphs("a.\n\nb\n \nc\n\n\n") == ["a.", "b", "c"]
    assert split_paragraphs("one line\nsame step") == ["one line\nsame step"]


def test_score_color_scale():
    assert score_color(0.0) == "#d73027"
    assert score_color(0.5) == "#fee08b"
    assert score_color(1.0) == "#1a9850"
    # halfway between the 0 and 0.25 stops: (215+252)/2 = 233.5 -> 234, (48+141)/2 = 94.5 -> 94, (39+89)/2 = 64
    assert score_color(0.125) == "#ea5e40"
    assert score_color(None) == "#9ca3af"
    assert score_color(7.0) == score_color(1.0)


def test_steps_html_escapes_text_and_flags_the_first_error():
    steps = [{"text": "<script>alert(1)</script> 2 < 3.", "score": 0.9}, {"text": "x", "score": 0.2},
             {"text": "y", "score": None}]  # fmt: skip
    page = steps_html(steps, first_error_step([s["score"] for s in steps], 0.5), 0.5)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; 2 &lt; 3." in page
    assert page.count("first predicted error") == 1
    assert 'sprm-first-error" data-index="1"' in page
    assert 'data-score="0.900000"' in page and "not scored" in page


def test_gsm8k_solution_format():
    answer = "She has 16 - 3 = <<16-3=13>>13 eggs\nShe makes 13 * 2 = $<<13*2=26>>26.\n#### 26"
    assert gsm8k_solution(answer) == "She has 16 - 3 = 13 eggs.\n\nShe makes 13 * 2 = $26.\n\nThe answer is 26."


def test_examples_ship_with_their_licenses():
    examples = load_examples()
    assert len(examples["score"]) == 10 and len(examples["score_labels"]) == 10
    assert sum(mode == "paragraphs" for _, _, mode in examples["score"]) == 6  # ProcessBench: steps as given
    assert any("first wrong: step 2" in label for label in examples["score_labels"])
    assert all("<think>" in trace and "</think>" in trace for _, trace in examples["think"])
    folder = ROOT / "modeling_sprm" / "examples"
    assert "MIT License" in (folder / "LICENSE-gsm8k").read_text()
    assert "apache-2.0" in (folder / "LICENSE_NOTE-processbench.md").read_text()


def test_hub_model_url(tmp_path):
    assert hub_model_url("someone/sprm-head") == "https://huggingface.co/someone/sprm-head"
    assert hub_model_url(None) is None
    assert hub_model_url(str(tmp_path)) is None
    assert hub_model_url("not a/hub id") is None


# -- the scoring calls ---------------------------------------------------------------------------------------------


def test_scorer_controls(tiny_loaded):
    scorer = DemoScorer(*tiny_loaded)
    base = scorer.score(QUESTION, SOLUTION, "model", 0.5, "geometric_mean")
    step_scores = [s["score"] for s in base["steps"]]
    assert len(step_scores) == 3
    assert base == scorer.pipe({"question": QUESTION, "solution": SOLUTION}, threshold=0.5)
    assert scorer.score(QUESTION, SOLUTION, "model", 0.5, "min")["score"] == pytest.approx(min(step_scores))
    assert scorer.score(QUESTION, SOLUTION, "model", 1.0, "min")["first_error_step"] == 0
    assert scorer.score(QUESTION, SOLUTION, "model", 0.0, "min")["first_error_step"] is None
    paragraphs = scorer.score(QUESTION, "a = 1\n\nb = 2\n\nso 3", "paragraphs", 0.5, "mean")
    assert [s["text"] for s in paragraphs["steps"]] == ["a = 1.", "b = 2.", "so 3"]  # joined with ".\n\n"
    with pytest.raises(ValueError, match="aggregation must be one of"):
        scorer.score(QUESTION, SOLUTION, "model", 0.5, "median")


def test_scorer_think_and_response_scored_separately(tiny_loaded):
    scorer = DemoScorer(*tiny_loaded)
    trace = "<think>\n2 + 2 = 4.\n\nTimes 3 is 12.\n\n</think>\n\nIt is 12.\n\nThe answer is 12."
    result = scorer.score_parts(QUESTION, trace, 0.5, "geometric_mean")
    parts = [s["part"] for s in result["steps"]]
    assert parts == ["think", "think", "response", "response"]
    assert [s["text"] for s in result["steps"]][1:3] == ["Times 3 is 12.", "It is 12."]
    for part in ("think", "response"):
        values = [s["score"] for s in result["steps"] if s["part"] == part]
        assert result["part_scores"][part] == pytest.approx((values[0] * values[1]) ** 0.5)
    assert result["has_tags"]
    # The same steps, scored in one pass: the think view reads the same positions as the pipeline would.
    plain = scorer.score_parts(QUESTION, "It is 12.\n\nThe answer is 12.", 0.5, "mean")
    assert not plain["has_tags"] and {s["part"] for s in plain["steps"]} == {"response"}
    assert scorer.config.score_span == "think"  # the model's own config is untouched


# -- the API through gradio_client ---------------------------------------------------------------------------------


def test_score_api_returns_the_cli_json(tiny_client, tiny_folder, capsys):
    api = tiny_client.predict(QUESTION, SOLUTION, api_name="/score")
    cli.main(["score", "--model", tiny_folder, "--question", QUESTION, "--solution", SOLUTION, "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert api == printed
    assert set(api) == {"steps", "score", "first_error_step", "model", "truncated", "no_steps", "unscored"}
    assert [s["text"] for s in api["steps"]] == [
        "Tom has 3 * 4 = 12 apples.", "He eats 2, so 12 - 2 = 10 apples are left.", "The answer is 10."
    ]


def test_score_api_refuses_oversized_input_with_a_message(tiny_client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"Solution is too long: 8,001 characters; this demo takes at most 8,000"):
        tiny_client.predict(QUESTION, "x" * 8_001, api_name="/score")
    with pytest.raises(AppError, match="Question is empty"):
        tiny_client.predict("   ", SOLUTION, api_name="/score")
    assert tiny_client.predict(QUESTION, SOLUTION, api_name="/score")["no_steps"] is False  # still serving


def test_interface_contract(tiny_app, tiny_client):
    demo, _ = tiny_app
    labels = {(c["type"], c["props"].get("label") or c["props"].get("value")) for c in demo.config["components"]}
    contract = [("textbox", "Question"), ("textbox", "Solution"), ("button", "Score"), ("number", "Solution score")]
    assert all(expected in labels for expected in contract)
    endpoint = tiny_client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/score"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["question", "solution"]


def test_generate_api_ranks_candidates_and_refuses_too_many(tiny_client):
    from gradio_client.exceptions import AppError

    result = tiny_client.predict(QUESTION, "low", api_name="/generate")
    assert set(result) == BEST_OF_N_KEYS and all(set(c) == CANDIDATE_KEYS for c in result["candidates"])
    assert len(result["candidates"]) == 2 and sorted(result["ranking"]) == [0, 1]
    assert result["best"] == result["ranking"][0]
    scores = [result["candidates"][i]["score"] for i in result["ranking"]]
    assert scores == sorted(scores, reverse=True)
    assert all(c["num_tokens"] <= 24 for c in result["candidates"])  # the demo's token limit
    with pytest.raises(AppError, match=r"Mode 'high' samples 32 candidates; this demo allows at most 8"):
        tiny_client.predict(QUESTION, "high", api_name="/generate")


def test_space_readme_client_snippet_runs(tiny_app):
    block = re.findall(r"```python\n(.*?)```", (ROOT / "demo" / "README.md").read_text(encoding="utf-8"), re.S)[0]
    assert 'Client("OWNER/SPACE-NAME")' in block
    namespace = {}
    exec(compile(block.replace("OWNER/SPACE-NAME", tiny_app[1]), "demo/README.md", "exec"), namespace)
    assert set(namespace["result"]) == {"steps", "score", "first_error_step", "model", "truncated", "no_steps",
                                        "unscored"}


def test_queue_limits_and_no_file_access(tiny_app):
    demo, url = tiny_app
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == "model"]
    assert len(model_events) >= 3 and all(fn.concurrency_limit == "default" for fn in model_events)
    assert (demo._queue.default_concurrency_limit, demo._queue.max_size) == (1, 32)  # one model call at a time
    assert demo.allowed_paths == []
    for path in [str(ROOT / "README.md"), "/etc/passwd", str(Path.home() / ".cache")]:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert err.value.code in (403, 404)
    with pytest.raises(ValueError, match="serves no files"):
        launch(demo, allowed_paths=[str(ROOT)])


# -- `sprm demo` ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def served_by(command: list[str], port: int, env: dict):
    """Run ``command`` (a server on 127.0.0.1:``port``) until it answers; yield a gradio Client for it."""
    from gradio_client import Client

    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"{command} did not start within 120 s"
                time.sleep(0.5)
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sprm_demo_command_serves_the_app(tiny_folder):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "modeling_sprm", "demo", "--model", tiny_folder, "--port", str(port)]
    with served_by(command, port, env) as client:
        result = client.predict(QUESTION, SOLUTION, api_name="/score")
        assert result["model"] == tiny_folder and len(result["steps"]) == 3


BEST_OF_N_KEYS = {"question", "candidates", "best", "ranking", "majority_answer", "sprm_answer", "weighted_answer",
                  "num_without_answer"}
CANDIDATE_KEYS = {"text", "steps", "score", "answer", "truncated", "no_steps", "no_delimiter", "first_error_step",
                  "num_tokens", "unscored"}


def test_the_space_app_runs_with_a_tiny_model(tiny_folder):
    """demo/app.py as a Space starts it: settings from the environment (SPRM_MODEL, GRADIO_SERVER_NAME/PORT)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPRM_MODEL": tiny_folder, "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port)}
    env.pop("SPACE_ID", None)  # not on a Space: no backbone wheel install
    with served_by([sys.executable, str(ROOT / "demo" / "app.py")], port, env) as client:
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert [p["parameter_name"] for p in api["/score"]["parameters"]] == ["question", "solution"]
        assert [p["parameter_name"] for p in api["/generate"]["parameters"]] == ["question", "mode"]
        scored = client.predict(QUESTION, SOLUTION, api_name="/score")
        assert scored["model"] == tiny_folder and len(scored["steps"]) == 3
        # /generate's output is checked on the in-process app (test_generate_api_...): sampling 2 x 320 tokens
        # here would only repeat it, slowly.


def test_sprm_demo_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--port", "0"])
    assert "--port must be in 1..65535" in capsys.readouterr().err


# -- the page in headless Chromium, with the real default model -----------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        cannot_run(
            f"CHROMIUM IS NOT INSTALLED ({CHROMIUM} is missing; set SPRM_CHROMIUM for another path): THE DEMO'S "
            "BROWSER TESTS DID NOT RUN. Install it with `./setup.sh test` (as root) or `apt-get install chromium`."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def default_app():
    from modeling_sprm.loading import load_model_and_tokenizer

    model, tokenizer, name = load_model_and_tokenizer(None)
    limits = DemoLimits(max_new_tokens=48)  # short candidates: sampling on 2 busy CPU cores is slow
    with served(model, tokenizer, name, limits) as (demo, url):
        yield url, DemoScorer(model, tokenizer, name, limits)


@pytest.fixture
def page(browser, default_app):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(120_000)  # generous: CI machines are small and may be busy
    page.goto(default_app[0])
    yield page
    page.close()


@pytest.mark.slow
def test_browser_scores_a_solution(page, default_app):
    _, scorer = default_app
    expected = scorer.score_api(QUESTION, SOLUTION)
    tab = page.locator("#score-tab")
    tab.get_by_label("Question", exact=True).fill(QUESTION)
    tab.get_by_label("Solution", exact=True).fill(SOLUTION)
    tab.get_by_role("button", name="Score", exact=True).click()
    page.wait_for_selector("#score-steps .sprm-step", timeout=120_000)

    steps = page.locator("#score-steps .sprm-step")
    texts = [t.strip() for t in steps.locator(".sprm-step-text").all_inner_texts()]
    scores = [float(s) for s in [steps.nth(i).get_attribute("data-score") for i in range(steps.count())]]
    assert texts == [s["text"] for s in expected["steps"]]
    assert scores == pytest.approx([s["score"] for s in expected["steps"]], abs=1e-6)
    shown = float(tab.get_by_label("Solution score", exact=True).input_value())
    assert shown == pytest.approx(expected["score"], abs=1e-4)
    flagged = page.locator("#score-steps .sprm-first-error")
    if expected["first_error_step"] is None:
        assert flagged.count() == 0
    else:
        assert flagged.get_attribute("data-index") == str(expected["first_error_step"])
    assert page.locator("#score-plot img").count() == 1  # the step plot is drawn
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-score.png"), full_page=True)

    # A ProcessBench example with an error: a click fills it in, and its steps are scored one per paragraph.
    page.get_by_role("button", name="ProcessBench gsm8k-147 · human label: first wrong: step 2").click()
    tab.get_by_role("button", name="Score", exact=True).click()
    page.wait_for_function("document.querySelectorAll('#score-steps .sprm-step').length === 4", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "demo-score-processbench.png"), full_page=True)


@pytest.mark.slow
def test_browser_shows_limits_and_the_think_view(page):
    tab = page.locator("#score-tab")
    tab.get_by_label("Question", exact=True).fill(QUESTION)
    tab.get_by_label("Solution", exact=True).fill("One more step. " * 600)  # 9,000 characters
    tab.get_by_role("button", name="Score", exact=True).click()
    error = page.locator("#score-summary .sprm-error")
    error.wait_for(timeout=120_000)
    assert "Solution is too long: 9,000 characters; this demo takes at most 8,000" in error.inner_text()
    assert page.locator("#score-steps .sprm-step").count() == 0
    assert page.locator(".toast-body").filter(has_text="Solution is too long").count() == 1  # and a pop-up
    page.screenshot(path=str(ARTIFACTS / "demo-too-long.png"), full_page=True)


    page.get_by_role("tab", name="Think / response").click()
    page.get_by_role("button", name="Robe bolts (an error in the thinking)").click()
    page.locator("#think-tab").get_by_role("button", name="Score both spans").click()
    page.wait_for_selector("#response-steps .sprm-step", timeout=120_000)
    assert page.locator("#think-steps .sprm-step").count() == 3
    assert page.locator("#response-steps .sprm-step").count() == 2
    assert page.locator("#think-tab").get_by_label("Think score", exact=True).input_value() != ""
    page.screenshot(path=str(ARTIFACTS / "demo-think.png"), full_page=True)


@pytest.mark.slow
def test_browser_generates_and_picks(page):
    page.get_by_role("tab", name="Generate and pick").click()
    tab = page.locator("#generate-tab")
    tab.get_by_label("Question", exact=True).fill(QUESTION)
    tab.get_by_label("high").check()
    tab.get_by_role("button", name="Generate and pick").click()
    error = page.locator("#generate-pick .sprm-error")
    error.wait_for()
    assert "Mode 'high' samples 32 candidates; this demo allows at most 8" in error.inner_text()

    tab.get_by_label("low").check()
    tab.get_by_role("button", name="Generate and pick").click()
    page.locator("#generate-tab .progress-text, #generate-tab .progress-level").first.wait_for()  # visible progress
    rows = page.locator("#generate-candidates tr[data-candidate]")
    rows.first.wait_for()
    assert rows.count() == 2 and page.locator("#generate-candidates tr.sprm-best").count() == 1
    scores = [float(rows.nth(i).get_attribute("data-score")) for i in range(2)]
    assert scores == sorted(scores, reverse=True)  # ranked best first
    summary = page.locator("#generate-pick").inner_text()
    assert "SPRM pick:" in summary and "majority vote:" in summary
    page.screenshot(path=str(ARTIFACTS / "demo-generate.png"), full_page=True)
