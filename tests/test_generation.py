"""Generate and score (modeling_sprm.generation): step features captured while sampling, Best-of-N, votes, step
search. Mechanics on a tiny random Llama with SmolLM2's real tokenizer; capture == re-encode also on SmolLM2."""

import pytest
import torch
from transformers import pipeline

from modeling_sprm.answers import majority_vote, weighted_vote
from modeling_sprm.generation import (
    MAX_NUM_CANDIDATES,
    AnchorFilter,
    IncrementalDetokenizer,
    SamplingConfig,
    best_of_n,
    copy_rollout,
    generate_rollouts,
    partial_score,
    prompt_rollout,
    resolve_num_candidates,
    score_rollouts,
    step_search,
    summarize,
)
from modeling_sprm.processing_sprm import pad_traces
from modeling_sprm.steps import StepRules, read_positions

QUESTION = "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?"
TOLERANCE = 1e-4  # on step scores (probabilities), float32 on CPU; measured differences are below 2e-6


def reforward_step_scores(model, trace) -> list[float]:
    """Score the same token ids with one ordinary forward pass (the re-encoding way)."""
    with torch.inference_mode():
        out = model(**pad_traces([trace], 0))  # padding is not read: one sequence
    return out.step_scores[0][out.step_mask[0]].tolist()


# -- pure parts ----------------------------------------------------------------------------------------------------


def test_votes_by_hand():
    answers = ["18", None, "18.0", "20", "20", None]
    assert majority_vote(answers) == "18"  # "18" and "18.0" are one answer (2 votes), tie with "20": first wins
    assert majority_vote(["7", "8", "8"]) == "8"
    assert weighted_vote(answers, [0.1, 0.9, 0.2, 0.3, 0.4, 0.9]) == "20"  # 0.7 against 0.3; None never votes
    assert weighted_vote(["a b", "a  b", "c"], [0.3, 0.3, 0.5]) == "a b"  # whitespace-normalised: 0.6 > 0.5
    assert majority_vote([None, None]) is None and weighted_vote([], []) is None
    with pytest.raises(ValueError, match="2 answers but 1 weights"):
        weighted_vote(["1", "2"], [1.0])


def test_summarize_excludes_answerless_candidates_from_votes():
    scores, answers = [0.2, 0.9, 0.5, 0.4], ["3", None, "4", "4"]
    candidates = [{"score": s, "answer": a} for s, a in zip(scores, answers)]
    result = summarize("q", candidates)
    assert result["ranking"] == [1, 2, 3, 0] and result["best"] == 1
    assert result["sprm_answer"] is None  # the SPRM pick has no answer; it is reported as such
    assert result["majority_answer"] == "4" and result["weighted_answer"] == "4"
    assert result["num_without_answer"] == 1
    tie = summarize("q", [{"score": 0.5, "answer": "1"}, {"score": 0.5, "answer": "2"}])
    assert tie["best"] == 0 and tie["ranking"] == [0, 1] and tie["sprm_answer"] == "1"
    empty = summarize("q", [])
    assert (empty["best"], empty["ranking"], empty["sprm_answer"], empty["majority_answer"]) == (None, [], None, None)


def test_partial_score_uses_closed_steps():
    def mean(values):
        return sum(values) / len(values)

    assert partial_score(mean, [0.2, 0.4, 0.9], [True, True, False]) == pytest.approx(0.3)
    assert partial_score(mean, [0.9], [False]) == pytest.approx(0.9)  # no delimiter yet: the open step alone


def test_number_of_candidates():
    assert [resolve_num_candidates(m) for m in ("low", "medium", "high")] == [2, 8, 32]
    assert resolve_num_candidates() == 2 and resolve_num_candidates(num_candidates=5) == 5
    with pytest.raises(ValueError, match="between 1 and"):
        resolve_num_candidates(num_candidates=0)
    with pytest.raises(ValueError, match="between 1 and"):
        resolve_num_candidates(num_candidates=MAX_NUM_CANDIDATES + 1)
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_num_candidates("extreme")
    with pytest.raises(ValueError, match="not both"):
        resolve_num_candidates("low", 4)
    with pytest.raises(TypeError, match="integer"):
        resolve_num_candidates(num_candidates=2.0)


def test_sampling_config_defaults_and_errors():
    config = SamplingConfig()
    assert (config.temperature, config.top_p, config.top_k) == (0.6, 0.95, 0)  # MetaStone-S1's sampling
    assert SamplingConfig.from_kwargs(config, top_p=None, max_new_tokens=7).max_new_tokens == 7
    assert SamplingConfig(temperature=0).generate_kwargs()["do_sample"] is False
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingConfig(max_new_tokens=0)
    with pytest.raises(TypeError, match="unknown sampling arguments"):
        SamplingConfig.from_kwargs(temprature=1.0)


def test_anchor_filter_by_hand():
    rules = StepRules(delimiters=(".\n\n",))
    f = AnchorFilter(rules)
    text = "a = 5.\n\nb = 6"
    assert f(text, 5) is True  # the "." that starts ".\n\n"
    assert f(text, 0) is False and f(text, 9) is False
    assert f("x = 5.", 5) is None  # may be a delimiter, or the "." anchor of a trailing step: not known yet
    assert f("x = 5.\n", 5) is None
    assert f("x = 5. Then", 5) is False
    assert f("x </think>", 1) is True  # end of the thinking span: a trailing step's anchor
    assert f("x.  </think>", 1) is True
    assert f("x </th", 1) is None and f("x </b>", 1) is False
    assert f("x  ", 1) is None  # only whitespace after it so far


@pytest.mark.parametrize(
    "text",
    [
        "Step 1: 3 * 4 = 12.\n\nStep 2:  2 + 12 = 14.\n\n\n The answer is 14.",
        "数学。答案是 7。\n\n😀 ok.\n\n  x",  # characters split over several byte tokens
        "a\tb  \n\n \n c.\n\n",
    ],
)
def test_detokenizer_offsets_give_the_tokenizers_read_positions(smollm2_tokenizer, text):
    tok = smollm2_tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    enc = tok(prompt + text, add_special_tokens=False, return_offsets_mapping=True)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert enc["input_ids"][: len(prompt_ids)] == prompt_ids
    detok = IncrementalDetokenizer(tok, prompt_ids)
    for token_id in enc["input_ids"][len(prompt_ids) :]:
        detok.add(token_id)
    detok.flush()
    assert detok.text == text
    theirs = [tuple(o) for o in enc["offset_mapping"]]
    ours = theirs[: len(prompt_ids)] + [(s + len(prompt), e + len(prompt)) for s, e in detok.offsets]
    every_char = range(len(prompt), len(prompt) + len(text) + 1)
    for offset in (-1, 0, 1):
        assert read_positions(ours, every_char, offset) == read_positions(theirs, every_char, offset)


@pytest.mark.parametrize("text", ["x 猫", "🙂", "ok.\n\n答"])
def test_detokenizer_gives_one_span_per_token_when_a_generation_ends_inside_a_character(smollm2_tokenizer, text):
    # a generation cut by max_new_tokens between the byte tokens of one character: flush() emits the held tokens
    # (an extra span here made step_search fail with "no captured feature")
    tok = smollm2_tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    cut = ids[:-1]
    assert tok.decode(cut).endswith("\ufffd")  # the last kept token ends inside a character
    detok = IncrementalDetokenizer(tok, tok("Q:", add_special_tokens=False)["input_ids"])
    for token_id in cut:
        detok.add(token_id)
    detok.flush()
    assert len(detok.offsets) == len(cut) and detok.settled == len(cut)
    assert detok.offsets[-1][1] == len(detok.text)
    assert all(s <= e for s, e in detok.offsets) and detok.offsets == sorted(detok.offsets)


# -- capture on a tiny random model --------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiters", [["e"], [".\n\n"]])
def test_captured_scores_equal_a_forward_over_the_same_tokens(tiny_sprm, delimiters):
    model, tokenizer = tiny_sprm
    model.config.step_delimiters = delimiters  # "e" is frequent in random tokens: many steps
    rules = StepRules.from_config(model.config)
    torch.manual_seed(0)
    start = prompt_rollout(model, tokenizer, QUESTION)
    rollouts = generate_rollouts(model, tokenizer, [copy_rollout(start) for _ in range(3)], SamplingConfig(
        temperature=1.0, top_p=1.0, max_new_tokens=24))
    traces = [r.trace(rules) for r in rollouts]
    step_scores, scores = score_rollouts(model, rollouts, traces)
    for rollout, trace, captured in zip(rollouts, traces, step_scores):
        assert rollout.stop_reason == "length"  # so the last token's feature came from the extra decoding step
        assert rollout.text == tokenizer.decode(rollout.token_ids)
        assert len(trace.steps) >= 1
        assert captured == pytest.approx(reforward_step_scores(model, trace), abs=TOLERANCE)
        # only possible read positions are kept: the raw delimiter matches, the last two positions (and the last
        # prompt token)
        assert len(rollout.features) <= sum(rollout.text.count(d) for d in delimiters) + 3
    if delimiters == [".\n\n"]:  # random tokens never write ".\n\n": one step per candidate
        assert all(len(t.steps) == 1 for t in traces)


def test_step_stop_and_continuation_keep_features_consistent(tiny_sprm):
    model, tokenizer = tiny_sprm
    model.config.step_delimiters = ["e"]
    rules = StepRules.from_config(model.config)
    torch.manual_seed(3)
    start = prompt_rollout(model, tokenizer, QUESTION)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=40)
    first = generate_rollouts(model, tokenizer, [copy_rollout(start) for _ in range(3)], sampling, 12, stop_at_step=True)
    assert {r.stop_reason for r in first} <= {"step", "length"}
    stopped = [r for r in first if r.stop_reason == "step"]
    assert stopped, "no rollout reached a step delimiter"
    for r in stopped:
        assert sum(s.has_delimiter for s in r.trace(rules).steps) == 1
    # continue them together (left padding: different lengths) and compare with plain forwards
    second = generate_rollouts(model, tokenizer, [copy_rollout(r) for r in first], sampling, 12, stop_at_step=True)
    for before, after in zip(first, second):
        assert after.token_ids[: len(before.token_ids)] == before.token_ids
    traces = [r.trace(rules) for r in second]
    step_scores, _ = score_rollouts(model, second, traces)
    for trace, captured in zip(traces, step_scores):
        assert captured == pytest.approx(reforward_step_scores(model, trace), abs=TOLERANCE)


def test_best_of_n_contract_and_flags(tiny_sprm):
    model, tokenizer = tiny_sprm
    calls = []
    result = best_of_n(
        model, tokenizer, QUESTION, num_candidates=3, max_new_tokens=10, seed=0,
        answer_extractor=lambda text: None, progress_callback=lambda *a: calls.append(a),
    )
    assert set(result) == {"question", "candidates", "best", "ranking", "majority_answer", "sprm_answer",
                           "weighted_answer", "num_without_answer"}
    assert len(result["candidates"]) == 3 and sorted(result["ranking"]) == [0, 1, 2]
    scores = [c["score"] for c in result["candidates"]]
    assert result["best"] == result["ranking"][0] and scores[result["best"]] == max(scores)
    assert [scores[i] for i in result["ranking"]] == sorted(scores, reverse=True)
    assert result["majority_answer"] is None and result["num_without_answer"] == 3  # nothing to vote on
    for c in result["candidates"]:
        assert {"text", "steps", "score", "answer", "truncated", "no_steps", "no_delimiter"} <= set(c)
        assert c["truncated"] is True and c["num_tokens"] == 10
        # random tokens never write ".\n\n": the whole generation is one step, flagged
        assert c["no_delimiter"] is True and len(c["steps"]) == 1 and c["no_steps"] is False
        assert all(set(s) == {"text", "score", "part"} for s in c["steps"])
    assert calls[-1] == ("score", 3, 3) and calls[0][0] == "generate"
    assert calls[-2] == ("generate", 10, 10)
    again = best_of_n(model, tokenizer, QUESTION, num_candidates=3, max_new_tokens=10, seed=0)
    assert [c["text"] for c in again["candidates"]] == [c["text"] for c in result["candidates"]]  # seeded
    other = best_of_n(model, tokenizer, QUESTION, num_candidates=3, max_new_tokens=10, seed=1)
    assert [c["text"] for c in other["candidates"]] != [c["text"] for c in result["candidates"]]  # by the seed
    calls.clear()
    chunked = best_of_n(model, tokenizer, QUESTION, num_candidates=3, max_new_tokens=10, seed=0, batch_size=2,
                        progress_callback=lambda *a: calls.append(a))
    assert len(chunked["candidates"]) == 3 and calls[-2] == ("generate", 20, 20)  # two generate() calls


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_candidates": 0}, ValueError, "between 1 and"),
        ({"num_candidates": 10**6}, ValueError, "between 1 and"),
        ({"question": "   "}, ValueError, "question is empty"),
        ({"question": None}, TypeError, "question must be a string"),
        ({"mode": "max"}, ValueError, "mode must be one of"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"answer_extractor": "latex"}, ValueError, "unknown answer extractor"),
    ],
)
def test_best_of_n_bad_input(tiny_sprm, kwargs, error, match):
    model, tokenizer = tiny_sprm
    kwargs = {"question": QUESTION, "max_new_tokens": 4, **kwargs}
    with pytest.raises(error, match=match):
        best_of_n(model, tokenizer, kwargs.pop("question"), **kwargs)


def test_step_search_on_a_tiny_model(tiny_sprm):
    model, tokenizer = tiny_sprm
    model.config.step_delimiters = ["e"]
    result = step_search(
        model, tokenizer, QUESTION, beam_width=2, num_continuations=3, max_steps=3, max_step_tokens=8,
        max_new_tokens=30, seed=0,
    )
    assert result["rounds"] == 3
    assert 0 < result["generated_tokens"] <= 3 * 2 * 3 * 8  # rounds x beams x continuations x step tokens
    assert 1 <= len(result["candidates"]) <= 6 and result["best"] == result["ranking"][0]
    for c in result["candidates"]:
        assert 0 < c["num_tokens"] <= 30 and len(c["steps"]) >= 1
        assert all(s["score"] is not None for s in c["steps"])


def test_step_search_with_one_beam_and_one_continuation_is_plain_sampling(tiny_sprm):
    """Sampling step by step, with the context re-fed each round, gives the tokens and the captured scores of one
    uninterrupted generation: continuation and capture across rounds lose nothing."""
    model, tokenizer = tiny_sprm
    model.config.step_delimiters = ["e"]
    common = dict(max_new_tokens=24, seed=5, temperature=1.0, top_p=1.0)
    search = step_search(model, tokenizer, QUESTION, beam_width=1, num_continuations=1, max_steps=30, max_step_tokens=24,
                         **common)
    plain = best_of_n(model, tokenizer, QUESTION, num_candidates=1, **common)
    assert search["rounds"] > 1 and search["generated_tokens"] == 24
    found, expected = search["candidates"][0], plain["candidates"][0]
    assert found["text"] == expected["text"]
    assert [s["text"] for s in found["steps"]] == [s["text"] for s in expected["steps"]]
    assert [s["score"] for s in found["steps"]] == pytest.approx([s["score"] for s in expected["steps"]], abs=TOLERANCE)


def test_step_search_bad_input(tiny_sprm):
    model, tokenizer = tiny_sprm
    with pytest.raises(ValueError, match="beam_width must be a positive integer"):
        step_search(model, tokenizer, QUESTION, beam_width=0)
    with pytest.raises(ValueError, match="at most"):
        step_search(model, tokenizer, QUESTION, beam_width=64, num_continuations=64)
    with pytest.raises(ValueError, match="question is empty"):
        step_search(model, tokenizer, "")


# -- the real backbone ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_sprm(smollm2_path):
    from modeling_sprm.loading import load_model_and_tokenizer

    model, tokenizer, _ = load_model_and_tokenizer(None)
    return model, tokenizer


@pytest.mark.slow
def test_capture_equals_reencoding_on_smollm2(smollm2_sprm):
    """Captured scores equal (1) a forward over the same tokens and (2) the pipeline re-encoding the finished
    text, whenever re-tokenizing that text gives back the sampled tokens (it can differ: see the module doc).
    SmolLM2 writes steps on new lines, so "\n" is the delimiter here, for several steps per answer."""
    model, tokenizer = smollm2_sprm
    model.config.step_delimiters = ["\n"]
    try:
        rules = StepRules.from_config(model.config)
        torch.manual_seed(0)
        start = prompt_rollout(model, tokenizer, QUESTION)
        rollouts = generate_rollouts(model, tokenizer, [copy_rollout(start) for _ in range(3)],
                                     SamplingConfig(max_new_tokens=48))
        traces = [r.trace(rules) for r in rollouts]
        step_scores, _ = score_rollouts(model, rollouts, traces)
        scorer = pipeline("step-scoring", model=model, tokenizer=tokenizer)
        same_tokens = 0
        assert sum(len(t.steps) for t in traces) > len(traces)  # several steps
        for rollout, trace, captured in zip(rollouts, traces, step_scores):
            assert captured == pytest.approx(reforward_step_scores(model, trace), abs=TOLERANCE)
            reencoded = scorer({"question": QUESTION, "solution": rollout.text})
            if tokenizer(trace.text, add_special_tokens=False)["input_ids"] == trace.input_ids:
                assert [s["text"] for s in reencoded["steps"]] == [s.text.strip() for s in trace.steps]
                assert captured == pytest.approx([s["score"] for s in reencoded["steps"]], abs=TOLERANCE)
                same_tokens += 1
        assert same_tokens >= 2  # re-tokenizing SmolLM2's sampled text usually gives back the sampled tokens
    finally:
        model.config.step_delimiters = [".\n\n"]
