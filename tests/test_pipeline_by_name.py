"""pipeline("step-scoring") as the ecosystem calls it: by folder name in a fresh process with the package imported
and no trust_remote_code, with no model at all (the shipped default), through remote code without the package, and
on every row shape the trainers take."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT
from transformers import pipeline

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
SOLUTION = "Tom starts with 3 apples.\n\nHe buys 4 more, so 3 + 4 = 7.\n\nThe answer is 7."
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7.", "The answer is 7."]

BY_NAME = """
import json, sys
mode, name = sys.argv[1], sys.argv[2]
if mode == "package":
    import modeling_sprm  # registers the task; no trust_remote_code below
    from transformers import pipeline
    scorer = pipeline("step-scoring", model=name) if name != "-" else pipeline("step-scoring")
else:
    sys.modules["modeling_sprm"] = None  # the package cannot be imported: only the checkpoint's own code runs
    from transformers import pipeline
    scorer = pipeline(model=name, trust_remote_code=True)
result = scorer({"question": sys.argv[3], "solution": sys.argv[4]})
print(json.dumps({"class": type(scorer).__module__ + "." + type(scorer).__name__, "model": scorer.model.name_or_path,
                  "scores": [s["score"] for s in result["steps"]], "score": result["score"]}))
"""


def run_fresh(mode: str, name: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    if mode == "package":
        env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-c", BY_NAME, mode, name, QUESTION, SOLUTION], capture_output=True,
                         text=True, env=env, cwd=ROOT / "tests", timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def in_process_scores(path: str) -> list[float]:
    from transformers import AutoModel, AutoTokenizer

    scorer = pipeline("step-scoring", model=AutoModel.from_pretrained(path), tokenizer=AutoTokenizer.from_pretrained(path))
    return [s["score"] for s in scorer({"question": QUESTION, "solution": SOLUTION})["steps"]]


def test_a_saved_folder_loads_by_name_with_the_package_and_no_remote_code(saved_tiny):
    result = run_fresh("package", saved_tiny)
    assert result["class"] == "modeling_sprm.pipeline_sprm.StepScoringPipeline"
    assert result["scores"] == pytest.approx(in_process_scores(saved_tiny), abs=1e-6)


def test_the_remote_code_path_still_works_without_the_package(saved_tiny):
    result = run_fresh("remote", saved_tiny)
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith("StepScoringPipeline")
    assert result["scores"] == pytest.approx(in_process_scores(saved_tiny), abs=1e-6)


def test_the_installed_config_drops_only_its_own_pipeline_entry(saved_tiny, tmp_path):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(saved_tiny)
    assert "step-scoring" in json.loads((Path(saved_tiny) / "config.json").read_text())["custom_pipelines"]
    assert not hasattr(config, "custom_pipelines")  # the registered task serves it
    AutoModel.from_pretrained(saved_tiny).save_pretrained(tmp_path / "again")  # and saving writes it again
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["custom_pipelines"]["step-scoring"]["impl"] == "pipeline_sprm.StepScoringPipeline"


@pytest.mark.slow
def test_no_model_loads_the_shipped_default(smollm2_path):
    result = run_fresh("package", "-")
    assert result["model"].endswith("default_head") and len(result["scores"]) == 3
    assert all(0.0 <= s <= 1.0 for s in result["scores"])


# -- every row shape the trainers take -----------------------------------------------------------------------------


@pytest.fixture
def scorer(tiny_sprm):
    model, tokenizer = tiny_sprm
    return pipeline("step-scoring", model=model, tokenizer=tokenizer)


def test_trl_rows_and_data_records_score_like_question_and_steps(scorer):
    from modeling_sprm.data import load_records

    expected = scorer({"question": QUESTION, "steps": STEPS})
    trl = scorer({"prompt": QUESTION, "completions": STEPS, "labels": [True, True, False]})
    assert [s["score"] for s in trl["steps"]] == pytest.approx([s["score"] for s in expected["steps"]], abs=1e-6)
    records = load_records(str(FIXTURES / "outcome" / "rollouts.jsonl"), "outcome")[:3]  # None fields included
    trl_rows = [json.loads(line) for line in (FIXTURES / "trl" / "stepwise.jsonl").read_text().splitlines()[:2]]
    results = scorer(records + trl_rows, batch_size=2)
    assert len(results) == 5 and all(0.0 <= r["score"] <= 1.0 for r in results)


@pytest.mark.parametrize(
    "inputs, error, match",
    [
        ({"question": QUESTION, "solution": None}, ValueError, "'solution' is None"),
        ({"question": QUESTION, "steps": None, "solution": None}, ValueError, "'solution' is None"),
        ({"question": QUESTION, "solutoin": SOLUTION}, ValueError, "expected"),
        ({"question": QUESTION, "solution": SOLUTION, "steps": STEPS}, ValueError, "exactly one of"),
        ({"question": 3}, TypeError, "question must be a string"),
        ({"prompt": [{"role": "user"}], "completions": STEPS}, TypeError, "prompt must be a string"),
        ({"prompt": QUESTION, "completions": "one step"}, TypeError, "completions must be a list"),
        (None, TypeError, "dicts with keys"),
        (["a", "b"], TypeError, "dicts with keys"),
    ],
)
def test_none_and_wrong_types_are_refused_and_never_generate(scorer, monkeypatch, inputs, error, match):
    def no_generation(*args, **kwargs):
        raise AssertionError("scoring input started generation")

    monkeypatch.setattr(scorer, "_generate", no_generation)
    with pytest.raises(error, match=match):
        scorer(inputs)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"threshold": 2}, "threshold must be"), ({"score_span": "all"}, "score_span must be"),
     ({"aggregation": "median"}, "aggregation must be"), ({"max_length": 0}, "max_length must be")],
)
def test_bad_call_parameters_are_refused(scorer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        scorer({"question": QUESTION, "solution": SOLUTION}, **kwargs)
