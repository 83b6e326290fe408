"""Typed results: attribute and dict access, and the JSON of today's dicts unchanged."""

import json
import pickle
import warnings

import pytest

from modeling_sprm.outputs import BestOfNResult, Candidate, ScoredSolution, StepScore, StepSearchResult, score_json
from modeling_sprm.steps import EncodedTrace, Step


def scored(score_span="think"):
    steps = [Step("a.\n\n", 0, 4, 1, "think", True), Step("b.\n\n", 4, 8, 5, "think", True),
             Step("c", 8, 9, 9, "response", False)]  # fmt: skip
    trace = EncodedTrace("a.\n\nb.\n\nc", [1, 2, 3, 4], steps, [0, 2, None], True, 9)
    return ScoredSolution.from_trace(trace, [0.9, 0.4], 0.6, threshold=0.5, aggregation="min", empty_score=0.0,
                                     score_span=score_span)


def test_attribute_and_dict_access_agree():
    result = scored()
    assert result.score == result["score"] == 0.6 and result.first_error_step == result["first_error_step"] == 1
    assert result.steps[0].text == result["steps"][0]["text"] == "a."
    assert result.steps[2]["score"] is None and result.truncated is True and result.no_steps is False
    result["score"] = 0.7  # a field: attribute and item stay equal
    assert result.score == 0.7 and result["score"] == 0.7
    result["has_tags"] = True  # an extra item
    assert result["has_tags"] is True and isinstance(result, dict)


def test_json_is_todays_dict():
    result = scored()
    expected = {
        "steps": [{"text": "a.", "score": 0.9, "part": "think"}, {"text": "b.", "score": 0.4, "part": "think"},
                  {"text": "c", "score": None, "part": "response"}],
        "score": 0.6, "first_error_step": 1, "truncated": True, "no_steps": False,
        "unscored": [{"text": "c", "start": 8, "end": 9, "reason": "truncated"}],  # the one key added since
    }  # fmt: skip
    assert json.loads(json.dumps(result)) == expected and result.to_dict() == expected
    assert list(result) == list(expected)  # the same key order
    assert type(result.to_dict()["steps"][0]) is dict
    both = scored("both")
    assert both.part_scores == {"think": pytest.approx(0.4), "response": 0.0}  # "response" has no scored step
    assert list(both)[-2:] == ["part_scores", "unscored"]
    assert pickle.loads(pickle.dumps(result)) == result


def test_public_json():
    result = scored()
    public = score_json(result, "m")
    assert public == {"steps": [{"text": "a.", "score": 0.9}, {"text": "b.", "score": 0.4}, {"text": "c", "score": None}],
                      "score": 0.6, "first_error_step": 1, "model": "m", "truncated": True, "no_steps": False,
                      "unscored": [{"text": "c", "start": 8, "end": 9, "reason": "truncated"}]}
    assert score_json(result.to_dict(), "m") == public  # a plain dict works too


def test_candidate_and_search_result_keys():
    candidate = Candidate(text="t", steps=[StepScore("t", 0.5, "response")], score=0.5, first_error_step=None,
                          truncated=False, no_steps=False, part_scores=None, no_delimiter=True, answer="5", num_tokens=3)
    assert list(candidate) == ["text", "steps", "score", "first_error_step", "truncated", "no_steps", "no_delimiter",
                               "answer", "num_tokens", "unscored"]
    result = StepSearchResult(question="q", candidates=[candidate], best=0, ranking=[0], majority_answer="5",
                              sprm_answer="5", weighted_answer="5", num_without_answer=0, generated_tokens=3, rounds=1)
    assert isinstance(result, BestOfNResult) and list(result)[-2:] == ["generated_tokens", "rounds"]
    assert result["candidates"][0]["answer"] == result.candidates[0].answer == "5"


def test_old_module_paths_warn_and_work():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import importlib
        import sys

        for old, new in (("modeling_sprm.losses", "modeling_sprm.training.losses"),
                         ("modeling_sprm.demo", "modeling_sprm.apps.demo")):  # fmt: skip
            sys.modules.pop(old, None)
            assert importlib.import_module(old) is importlib.import_module(new)
    assert sum(issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message) for w in caught) == 2
