"""Batched SPRM-guided tree search (modeling_sprm.search): beam search and DVTS, with a tiny random SPRM."""

import pytest
import torch

from modeling_sprm.generation import (
    SamplingConfig,
    copy_rollout,
    generate_rollouts,
    prompt_rollout,
    score_rollouts,
    step_search,
)
from modeling_sprm.search import _continuation, _join, _split_budget, beam_search, dvts, tree_search
from modeling_sprm.steps import StepRules

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["What is 2 + 2?", "Sam has 3 apples and buys 4 more. How many apples does Sam have?"]
SHORT = dict(max_steps=3, max_step_tokens=6, max_new_tokens=16)
# Seeds: with sampling, a random model can end a continuation inside a multi-byte character, which hits a bug of
# generation.IncrementalDetokenizer.flush (one offset too many; reported); the seeds below avoid it.


def texts(result: dict) -> list[str]:
    return [c["text"] for c in result["candidates"]]


def test_one_question_one_subtree_is_step_search_when_decoding_is_greedy(tiny_sprm):
    # greedy decoding makes every continuation of a beam the same, so the ranking rule cannot differ either; the
    # first round differs only in cost: tree_search expands beam_width (2) copies of the question, step_search one
    model, tokenizer = tiny_sprm
    (ours,) = tree_search(
        model, tokenizer, QUESTIONS[:1], beam_width=2, num_continuations=2, temperature=0, return_tree=True, **SHORT
    )
    theirs = step_search(model, tokenizer, QUESTIONS[0], beam_width=2, num_continuations=2, temperature=0, **SHORT)
    assert texts(ours) == texts(theirs) and ours["rounds"] == theirs["rounds"]
    for a, b in zip(ours["candidates"], theirs["candidates"]):
        assert [s["score"] for s in a["steps"]] == pytest.approx([s["score"] for s in b["steps"]], abs=1e-4)
    (first_round,) = [n for n in ours["tree"] if n["round"] == 1]  # 4 identical continuations, merged
    assert ours["generated_tokens"] == theirs["generated_tokens"] + 2 * first_round["new_tokens"]


def test_a_joined_continuation_scores_as_a_continued_rollout(tiny_sprm):
    # the way generation.step_search continues a beam (copy_rollout: every feature captured again) and the way
    # tree_search does (a fresh rollout of the text so far, joined to the beam) feed the same input ids, so they
    # sample the same tokens; their step scores must agree too
    model, tokenizer = tiny_sprm
    model.config.step_delimiters = ["e"]  # frequent in random tokens: many steps, some read across the join
    rules = StepRules.from_config(model.config)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=48)
    torch.manual_seed(4)
    (beam,) = generate_rollouts(model, tokenizer, [prompt_rollout(model, tokenizer, QUESTIONS[1])], sampling,
                                max_new_tokens=12)
    torch.manual_seed(5)
    (continued,) = generate_rollouts(model, tokenizer, [copy_rollout(beam)], sampling, max_new_tokens=12)
    torch.manual_seed(5)
    (fresh,) = generate_rollouts(model, tokenizer, [_continuation(beam)], sampling, max_new_tokens=12)
    joined = _join(beam, fresh)
    assert joined.token_ids == continued.token_ids and joined.text == continued.text
    assert joined.offsets == continued.offsets
    traces = [joined.trace(rules), continued.trace(rules)]
    assert traces[0].positions == traces[1].positions and len(traces[0].steps) >= 4
    (ours, theirs), _ = score_rollouts(model, [joined, continued], traces)
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_questions_searched_together_are_searched_as_alone(tiny_sprm):
    model, tokenizer = tiny_sprm
    together = tree_search(
        model, tokenizer, QUESTIONS, num_subtrees=2, beam_width=1, num_continuations=2, temperature=0, **SHORT
    )
    alone = [
        tree_search(model, tokenizer, [q], num_subtrees=2, beam_width=1, num_continuations=2, temperature=0, **SHORT)[0]
        for q in QUESTIONS
    ]
    assert [texts(r) for r in together] == [texts(r) for r in alone]
    assert [r["generated_tokens"] for r in together] == [r["generated_tokens"] for r in alone]


def test_each_round_keeps_the_best_scored_continuations_of_each_subtree(tiny_sprm):
    model, tokenizer = tiny_sprm
    torch.manual_seed(1)
    results = tree_search(
        model,
        tokenizer,
        QUESTIONS,
        num_subtrees=2,
        beam_width=2,
        num_continuations=3,
        return_tree=True,
        temperature=1.0,
        top_p=1.0,
        **SHORT,
    )
    for result in results:
        tree = result["tree"]
        assert tree and sum(n["new_tokens"] for n in tree) <= result["generated_tokens"]
        finished_before = {0: 0, 1: 0}
        for round_index in sorted({n["round"] for n in tree}):
            for subtree in (0, 1):
                nodes = [n for n in tree if n["round"] == round_index and n["subtree"] == subtree]
                if not nodes:
                    continue
                assert len(nodes) <= 3 * 2  # at most beam_width x num_continuations continuations
                kept = [n for n in nodes if n["kept"]]
                assert len(kept) == min(len(nodes), 2 - finished_before[subtree])
                if len(kept) < len(nodes):
                    assert min(n["score"] for n in kept) >= max(n["score"] for n in nodes if not n["kept"])
                finished_before[subtree] += sum(n["finished"] for n in kept)
        for candidate in result["candidates"]:
            assert candidate["subtree"] in (0, 1) and candidate["num_tokens"] <= SHORT["max_new_tokens"]
        per_subtree = [sum(c["subtree"] == s for c in result["candidates"]) for s in (0, 1)]
        assert all(count <= 2 for count in per_subtree)
        best = result["candidates"][result["best"]]
        assert best["score"] == max(c["score"] for c in result["candidates"])


def test_beam_search_and_dvts_split_the_budget_as_search_and_learn(tiny_sprm):
    assert _split_budget(16, 4) == (4, 4) and _split_budget(4, 4) == (1, 4) and _split_budget(2, 4) == (1, 2)
    with pytest.raises(ValueError, match="must be a multiple of num_continuations"):
        _split_budget(6, 4)
    model, tokenizer = tiny_sprm
    torch.manual_seed(1)
    (dvts_result,) = dvts(model, tokenizer, QUESTIONS[:1], 8, 4, return_tree=True, **SHORT)
    (beam_result,) = beam_search(model, tokenizer, QUESTIONS[:1], 8, 4, return_tree=True, **SHORT)
    assert {n["subtree"] for n in dvts_result["tree"]} == {0, 1}  # 8 / 4 subtrees of one beam
    assert {n["subtree"] for n in beam_result["tree"]} == {0}  # one subtree of 8 / 4 beams
    assert len(dvts_result["candidates"]) <= 2 and len(beam_result["candidates"]) <= 2


def test_bad_arguments_are_clear_errors(tiny_sprm):
    model, tokenizer = tiny_sprm
    with pytest.raises(TypeError, match="questions must be a list of strings"):
        tree_search(model, tokenizer, "What is 2 + 2?")
    with pytest.raises(ValueError, match="beam_width must be a positive integer"):
        tree_search(model, tokenizer, QUESTIONS, beam_width=0)
    with pytest.raises(ValueError, match="at most"):
        tree_search(model, tokenizer, QUESTIONS, num_subtrees=64, beam_width=8, num_continuations=4)
