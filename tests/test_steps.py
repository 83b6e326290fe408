"""Step segmentation (modeling_sprm/steps.py): text -> steps -> the token positions where step scores are read.

Three layers, each with hand-written expectations:

* ``segment`` / ``join_steps`` on plain strings (no tokenizer). Expected anchors are marked in the text with ``¦``
  (removed before segmenting), so a case reads as the text it describes.
* Read positions with two real tokenizers: SmolLM2's (``".\\n\\n"`` inside text is ``['.', '\\n', '\\n']``) and a
  byte-level BPE trained here with Qwen2's pre-tokenizer, where ``".\\n\\n"`` is one merged token and ``"。"``
  merges with the letters after it. The expected position is found independently from the offset mapping.
* ``build_trace`` (the one entry point) and the step-scoring pipeline with a tiny random SPRM: steps vs the
  equivalent text, truncation, bad input.
"""

from __future__ import annotations

import pytest
import torch

from modeling_sprm.steps import (
    Step,
    StepRules,
    build_trace,
    encode,
    join_steps,
    read_positions,
    scored_regions,
    segment,
    token_index,
)

MARK = "¦"
CJK = "首先计算3加3。然后得到结果。答案是6。"
ARITHMETIC = "We add 5 and 8.\n\nThe sum is 13.\n\nSo the answer is 13."
ARITHMETIC_STEPS = ["We add 5 and 8.", "The sum is 13.", "So the answer is 13."]


def marked(spec: str) -> tuple[str, list[int]]:
    """The text of ``spec`` without its ``¦`` marks, and the character index of each mark in that text."""
    pieces = spec.split(MARK)
    anchors, at = [], 0
    for piece in pieces[:-1]:
        at += len(piece)
        anchors.append(at)
    return "".join(pieces), anchors


def check(spec: str, expected_texts: list[str], parts: list[str] | None = None, start: int = 0, **rules):
    """Segment the text of ``spec`` and compare step texts, anchors (the ``¦`` marks) and parts."""
    text, anchors = marked(spec)
    steps = segment(text, StepRules(**rules), start=start)
    assert [s.text for s in steps] == expected_texts
    assert [s.anchor for s in steps] == anchors
    assert all(text[s.start : s.end] == s.text for s in steps)
    if parts is not None:
        assert [s.part for s in steps] == parts
    return steps


# ----------------------------------------------------------------------------------------------------------------
# segment: delimiters


def test_default_delimiter_anchor_is_the_dot():
    steps = check("Add 2 and 3¦.\n\nThe sum is 5¦.\n\n", ["Add 2 and 3.\n\n", "The sum is 5.\n\n"])
    assert [s.has_delimiter for s in steps] == [True, True]
    assert [s.part for s in steps] == ["response", "response"]


def test_double_newline_delimiter_and_runs():
    steps = check(
        "First line¦\n\nSecond line¦\n\n\n\nThird¦", ["First line\n\n", "Second line\n\n", "Third"], delimiters=["\n\n"]
    )
    assert [s.has_delimiter for s in steps] == [True, True, False]


def test_single_newline_delimiter():
    check("x = 1¦\ny = 2¦\n\nz = 3¦", ["x = 1\n", "y = 2\n", "z = 3"], delimiters=["\n"])


def test_cjk_full_stop_delimiter():
    steps = check("首先计算3加3¦。然后得到结果¦。答案是6¦。", ["首先计算3加3。", "然后得到结果。", "答案是6。"], delimiters=["。"])
    assert all(s.has_delimiter for s in steps)


def test_several_delimiters():
    check(
        "Step one¦.\n\nStep two¦\n\n第三步¦。Last¦",
        ["Step one.\n\n", "Step two\n\n", "第三步。", "Last"],
        delimiters=[".\n\n", "\n\n", "。"],
    )


def test_longest_delimiter_wins_whatever_the_order():
    # ".\n\n" and "\n\n" both match at the end of "a."; the longer one starts earlier and is taken.
    for delimiters in ([".\n\n", "\n\n"], ["\n\n", ".\n\n"]):
        check("a¦.\n\nb¦", ["a.\n\n", "b"], delimiters=delimiters)


def test_only_the_first_delimiter_of_a_run_counts():
    check("Step one¦.\n\n.\n\n.\n\nStep two¦.\n\n", ["Step one.\n\n", "Step two.\n\n"])
    check("Step one¦.\n\n\n\nStep two¦", ["Step one.\n\n", "Step two"], delimiters=[".\n\n", "\n\n"])


def test_keep_empty_steps_when_asked():
    check(
        "Step one¦.\n\n¦.\n\n¦.\n\nStep two¦.\n\n",
        ["Step one.\n\n", ".\n\n", ".\n\n", "Step two.\n\n"],
        skip_empty_steps=False,
    )
    check("¦.\n\nAnswer¦", [".\n\n", "Answer"], skip_empty_steps=False)


def test_leading_delimiter_is_an_empty_step():
    check(".\n\nAnswer¦", ["Answer"])
    check("  \n\n.\n\nAnswer¦", ["Answer"])


def test_no_delimiter_is_one_trailing_step():
    steps = check("The answer is 13¦", ["The answer is 13"])
    assert steps[0].has_delimiter is False


def test_only_delimiters_is_no_step():
    assert segment(".\n\n.\n\n.\n\n", StepRules()) == []
    assert segment("\n\n \n\n", StepRules(delimiters=["\n\n"])) == []
    assert segment("", StepRules()) == []


# ----------------------------------------------------------------------------------------------------------------
# segment: the trailing step


def test_trailing_step_anchor_at_a_partial_delimiter():
    check("The answer is 7¦.", ["The answer is 7."])
    check("The answer is 7¦.\n", ["The answer is 7."])  # "." + "\n" is a prefix of ".\n\n"
    check("a¦.\n\nThe answer is 7¦.  \n ", ["a.\n\n", "The answer is 7."])


def test_trailing_step_without_partial_delimiter():
    check("The answer is 7¦  \n", ["The answer is 7"])
    check("x = 7.¦", ["x = 7."], delimiters=["\n\n"])  # "\n\n" has no non-whitespace prefix to find


def test_trailing_step_anchor_at_the_longest_partial_delimiter():
    # Every prefix length of a delimiter's non-whitespace part is tried, the longest first: ".." of "...".
    check("So it goes¦..", ["So it goes.."], delimiters=["...\n"])
    check("So it goes¦.", ["So it goes."], delimiters=["...\n"])
    check("x¦.", ["x."], delimiters=[".)"])


def test_trailing_step_not_scored_when_disabled():
    check("a¦.\n\nThe answer is 7.", ["a.\n\n"], score_trailing_step=False)
    assert segment("The answer is 7", StepRules(score_trailing_step=False)) == []


def test_whitespace_after_the_last_delimiter_is_no_step():
    check("a¦.\n\n  \n", ["a.\n\n"])


# ----------------------------------------------------------------------------------------------------------------
# segment: code and numbers


def test_delimiters_inside_code_fences_do_not_cut():
    check(
        "Code¦.\n\n```python\nx = 1.\n\ny = 2\n```¦.\n\nDone¦",
        ["Code.\n\n", "```python\nx = 1.\n\ny = 2\n```.\n\n", "Done"],
    )
    check(
        "Code¦.\n\n```python\nx = 1¦.\n\ny = 2\n```¦.\n\nDone¦",
        ["Code.\n\n", "```python\nx = 1.\n\n", "y = 2\n```.\n\n", "Done"],
        protect_code_and_numbers=False,
    )


def test_unclosed_fence_runs_to_the_end():
    check("Code¦.\n\n```python\nx = 1.\n\ny = 2¦", ["Code.\n\n", "```python\nx = 1.\n\ny = 2"])


def test_newline_delimiter_around_a_fence():
    check("a¦\n```\nx\ny\n```¦\nb¦", ["a\n", "```\nx\ny\n```\n", "b"], delimiters=["\n"])


def test_dot_between_digits_is_not_a_step_end():
    check("Pi is about 3.14¦. Then 2.5 + 0.5 = 3¦.", ["Pi is about 3.14.", " Then 2.5 + 0.5 = 3."], delimiters=["."])
    check("Version 1.2.3 is out¦.", ["Version 1.2.3 is out."], delimiters=["."])
    check(
        "Pi is about 3¦.14¦. Then 2¦.5 + 0¦.5 = 3¦.",
        ["Pi is about 3.", "14.", " Then 2.", "5 + 0.", "5 = 3."],
        delimiters=["."],
        protect_code_and_numbers=False,
    )


def test_digits_around_a_delimiter_at_the_edges_of_the_text():
    check("3.5 kg of 7¦.", ["3.5 kg of 7."], delimiters=["."])  # protected at the very first delimiter position
    check(".5 of 7¦", ["5 of 7"], delimiters=["."])  # a leading "." has no digit before it: an (empty) step end
    check("x¦.5 y¦.", ["x.", "5 y."], delimiters=["."])  # a digit after the "." only: not protected


def test_number_before_the_default_delimiter():
    check("x = 4.5¦.\n\nNext¦", ["x = 4.5.\n\n", "Next"])
    check("x = 4¦.\n\n5 apples¦", ["x = 4.\n\n", "5 apples"])  # ".\n\n" has whitespace: never protected


# ----------------------------------------------------------------------------------------------------------------
# segment: unicode


def test_unicode_emoji_and_cjk():
    check(
        "Café costs 3€¦.\n\nI ☕ it 🙂 and 👩\u200d💻 codes¦.\n\nCafe\u0301 答案是６。¦",
        ["Café costs 3€.\n\n", "I ☕ it 🙂 and 👩\u200d💻 codes.\n\n", "Cafe\u0301 答案是６。"],
    )


# ----------------------------------------------------------------------------------------------------------------
# segment: think spans


def test_no_delimiter_right_after_think():
    spec = "<think>\n\nFirst¦\n\nSecond¦\n\n</think>\n\nThe answer"
    check(spec, ["First\n\n", "Second\n\n"], parts=["think", "think"], delimiters=["\n\n"])
    check(
        "<think>¦\n\nFirst¦\n\nSecond¦\n\n</think>\n\nThe answer",
        ["\n\n", "First\n\n", "Second\n\n"],
        delimiters=["\n\n"],
        skip_empty_steps=False,
    )


def test_one_pair_of_think_tags():
    check("Q?<think>a¦.\n\nb¦</think>r.\n\ns", ["a.\n\n", "b"], parts=["think", "think"])
    check("Q?<think>a.\n\nb</think>r¦.\n\ns¦", ["r.\n\n", "s"], parts=["response", "response"], score_span="response")
    check(
        "Q?<think>a¦.\n\nb¦</think>r¦.\n\ns¦",
        ["a.\n\n", "b", "r.\n\n", "s"],
        parts=["think", "think", "response", "response"],
        score_span="both",
    )


def test_no_think_tags_is_all_response_in_every_mode():
    for span in ("think", "response", "both"):
        check("a¦.\n\nb¦", ["a.\n\n", "b"], parts=["response", "response"], score_span=span)


def test_only_a_closing_tag_thinks_from_the_start():
    # Chat templates that put <think> in the prompt: the solution only has </think>.
    check("a¦.\n\nb¦</think>r.\n\ns", ["a.\n\n", "b"], parts=["think", "think"])
    check("a.\n\nb</think>r¦.\n\ns¦", ["r.\n\n", "s"], score_span="response")


def test_only_an_opening_tag_thinks_to_the_end():
    check("Q.\n\n<think>a¦.\n\nb¦", ["a.\n\n", "b"], parts=["think", "think"])
    assert segment("Q.\n\n<think>a.\n\nb", StepRules(score_span="response")) == []


def test_two_opening_tags_think_from_the_region_start():
    check("<think>a¦.\n\n<think>b¦", ["<think>a.\n\n", "<think>b"], parts=["think", "think"])
    assert segment("<think>a.\n\n<think>b", StepRules(score_span="response")) == []


def test_two_closing_tags_think_to_the_region_end():
    check("a¦.\n\n</think>b¦.\n\n</think>c¦", ["a.\n\n", "</think>b.\n\n", "</think>c"])
    assert segment("a.\n\n</think>b.\n\n</think>c", StepRules(score_span="response")) == []


def test_custom_think_tags():
    check(
        "<reason>a¦.\n\nb¦</reason>answer",
        ["a.\n\n", "b"],
        parts=["think", "think"],
        think_start_tag="<reason>",
        think_end_tag="</reason>",
    )


# ----------------------------------------------------------------------------------------------------------------
# segment: regions, rules, bad input


def test_segment_a_region_only():
    prompt = "Q: 1 + 1.\n\n"
    steps = check(prompt + "It is 2¦.\n\nDone¦", ["It is 2.\n\n", "Done"], start=len(prompt))
    assert steps[0].start == len(prompt)
    text = "a.\n\nb.\n\nc.\n\n"
    assert [s.text for s in segment(text, StepRules(), start=4, end=8)] == ["b.\n\n"]


@pytest.mark.parametrize("bad", [None, b"a.\n\nb", 3, ["a", "b"]])
def test_segment_rejects_non_strings(bad):
    with pytest.raises(TypeError, match="text must be a string"):
        segment(bad, StepRules())


def test_rules_validation_and_config():
    from modeling_sprm import SPRMConfig

    assert StepRules(delimiters="。").delimiters == ("。",)
    for delimiters in ((), ("",), (".\n\n", None)):
        with pytest.raises(ValueError, match="step delimiters"):
            StepRules(delimiters=delimiters)
    with pytest.raises(ValueError, match="score_span"):
        StepRules(score_span="all")
    config = SPRMConfig(
        step_delimiters=["。", "\n\n"],
        score_offset=0,
        skip_empty_steps=False,
        protect_code_and_numbers=False,
        score_trailing_step=False,
        score_span="both",
        think_start_tag="<r>",
        think_end_tag="</r>",
    )
    assert StepRules.from_config(config) == StepRules(("。", "\n\n"), 0, False, False, False, "both", "<r>", "</r>")
    assert StepRules.from_config(SPRMConfig()) == StepRules()


# ----------------------------------------------------------------------------------------------------------------
# join_steps


@pytest.mark.parametrize(
    "steps, delimiters, joined",
    [
        (ARITHMETIC_STEPS, [".\n\n"], ARITHMETIC),
        (["First", "Second"], [".\n\n"], "First.\n\nSecond"),
        (["  padded step \n", "\tnext\t"], [".\n\n"], "padded step.\n\nnext"),
        (["x = 3.5", "y = 4.5."], [".\n\n"], "x = 3.5.\n\ny = 4.5."),
        (["Wait..", "ok"], [".\n\n"], "Wait..\n\nok"),
        (["Café ☕", "🙂 done", "答案是６。"], [".\n\n"], "Café ☕.\n\n🙂 done.\n\n答案是６。"),
        (["首先计算3加3。", "然后得到结果。", "答案是6。"], ["。"], CJK),
        (["首先计算3加3", "然后得到结果", "答案是6"], ["。"], "首先计算3加3。然后得到结果。答案是6"),
        (["首先计算3加3。", "答案是6。"], [".\n\n"], "首先计算3加3。.\n\n答案是6。"),
        (["首先计算3加3。", "答案是6。"], [".\n\n", "。"], "首先计算3加3。答案是6。"),
        (["abc.", "d"], ["\n\n", ".\n\n"], "abc.\n\nd"),
        (["a", "b", "c"], ["\n"], "a\nb\nc"),
        (["a", "b"], ["."], "a.b"),
        (
            ["Run:\n```python\nx = 1.\n\ny = 2\n```", "Done."],
            [".\n\n"],
            "Run:\n```python\nx = 1.\n\ny = 2\n```.\n\nDone.",
        ),
    ],
)
@pytest.mark.parametrize("skip_empty_steps", [True, False])
def test_join_then_segment_round_trip(steps, delimiters, joined, skip_empty_steps):
    rules = StepRules(delimiters=delimiters, skip_empty_steps=skip_empty_steps)
    text, spans = join_steps(steps, rules)
    assert text == joined
    found = segment(text, rules)
    assert [(s.start, s.end, s.anchor) for s in found] == spans
    for step, (start, end, anchor) in zip(steps, spans):
        assert text[start:end].startswith(step.strip())
        assert start < anchor <= end


def test_join_anchor_is_where_segment_finds_the_delimiter():
    # The anchor is the "." of ".\n\n" even when "\n\n" is listed first (it was the "\n" before the fix).
    text, spans = join_steps(["abc.", "d"], StepRules(delimiters=["\n\n", ".\n\n"]))
    assert spans[0] == (0, 6, 3) and text[3] == "."
    # A step already ending with another delimiter gets nothing appended (it got ".\n\n" before the fix, so the
    # joined text had its step end at the "。" but the join said the ".").
    text, spans = join_steps(["答案是7。", "下一步"], StepRules(delimiters=[".\n\n", "。"]))
    assert (text, spans) == ("答案是7。下一步", [(0, 5, 4), (5, 8, 8)])


def test_join_documented_exceptions_keep_the_given_boundaries(smollm2_tokenizer):
    """A step containing a delimiter, or a whitespace-free delimiter joining two digits: segmenting the joined
    text differs, and build_trace(steps=...) keeps the boundaries it was given."""
    cases = [
        (["a.\n\nb", "c"], StepRules()),  # a delimiter inside a step: the text has 3 steps
        (["x = 3", "5 kg"], StepRules(delimiters=["."])),  # joined "x = 3.5 kg": one step
    ]
    for steps, rules in cases:
        text, _ = join_steps(steps, rules)
        assert len(segment(text, rules)) != len(steps)
        trace = build_trace(smollm2_tokenizer, rules, question="Q?", steps=steps, prompt_format="plain")
        assert len(trace.steps) == len(trace.positions) == len(steps)


@pytest.mark.parametrize(
    "steps, error, message",
    [
        ([], ValueError, "empty list"),
        (["a", ""], ValueError, r"steps\[1\] is empty"),
        (["a", "  \n\t"], ValueError, r"steps\[1\] is empty"),
        (["a", None], TypeError, r"steps\[1\] must be a string"),
        (["a", 3.5], TypeError, r"steps\[1\] must be a string"),
        ("a.\n\nb", TypeError, "steps must be a list of strings"),
        (7, TypeError, "steps must be a list of strings"),
        ((s for s in ["a", "b"]), TypeError, "steps must be a list of strings"),
    ],
)
def test_join_bad_input(steps, error, message):
    with pytest.raises(error, match=message):
        join_steps(steps, StepRules())


def test_join_accepts_a_tuple():
    assert join_steps(("a", "b"), StepRules()) == join_steps(["a", "b"], StepRules())


# ----------------------------------------------------------------------------------------------------------------
# Characters -> tokens, on hand-made offset mappings


def test_token_index_and_read_positions_by_hand():
    # [BOS] "ab" "c" (gap: a trimmed space at 3) "de" [EOS]
    offsets = [(0, 0), (0, 2), (2, 3), (4, 6), (0, 0)]
    assert [token_index(offsets, c) for c in range(7)] == [1, 1, 2, 3, 3, 3, 4]
    assert token_index([(0, 0), (0, 0)], 5) == 0  # no token holds text: one past the last that does is 0
    # an anchor past the text reads the last token holding text, never the EOS
    assert read_positions(offsets, [2, 4, 6, 100], -1) == [1, 2, 3, 3]
    assert read_positions(offsets, [2, 4], 0) == [2, 3]
    assert read_positions(offsets, [0], -1) == [0]  # clamped to the sequence
    assert read_positions([(0, 1), (1, 2)], [1, 5], 1) == [1, 1]  # ...at both ends: never past the last token
    # A zero-width token after a gap holds no text: a character in the gap maps to the next token holding text.
    assert token_index([(0, 2), (4, 4), (4, 6)], 2) == 2


# ----------------------------------------------------------------------------------------------------------------
# Two real tokenizers

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _train_byte_level_bpe():
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on text full of ".\\n\\n" and "。" (about 0.1 s)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    corpus = []
    for i in range(40):
        corpus.append(f"We add {i} and {i + 3}.\n\nThe sum is {2 * i + 3}.\n\nSo the answer is {2 * i + 3}.\n\n")
        corpus.append(f"首先计算{i}加{i}。然后得到结果。答案是{2 * i}。\n\n")
        corpus.append("Check the code:\n\n```python\nx = 3.5\n```\n\nDone.\n\n")
        corpus.append(f"So $x = {i}$.\n\nThen $y = {i + 1}$.\n\n")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


def _wrap(tokenizer):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def trained_tokenizer():
    return _wrap(_train_byte_level_bpe())


@pytest.fixture(scope="module")
def eos_tokenizer():
    """The trained tokenizer with a post-processor that adds a special token before and after the text."""
    from tokenizers import processors

    tokenizer = _train_byte_level_bpe()
    eos = tokenizer.token_to_id("<|endoftext|>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A <|endoftext|>", special_tokens=[("<|endoftext|>", eos)]
    )
    return _wrap(tokenizer)


@pytest.fixture(params=["smollm2", "trained"])
def tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")


def _offsets(tokenizer, trace, add_special_tokens: bool):
    enc = tokenizer(trace.text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    assert list(enc["input_ids"]) == trace.input_ids
    return [tuple(o) for o in enc["offset_mapping"]]


def _holding_token(offsets, char: int) -> int | None:
    """The first token whose characters include ``char`` (found directly, not with steps.token_index)."""
    return next((i for i, (a, b) in enumerate(offsets) if a <= char < b), None)


def test_the_two_tokenizers_split_delimiters_differently(smollm2_tokenizer, trained_tokenizer):
    text = "We add 5 and 8.\n\nThe sum"
    assert ".\n\n" not in [smollm2_tokenizer.decode([t]) for t in smollm2_tokenizer(text)["input_ids"]]
    assert ".\n\n" in [trained_tokenizer.decode([t]) for t in trained_tokenizer(text)["input_ids"]]
    pieces = [trained_tokenizer.decode([t]) for t in trained_tokenizer(CJK)["input_ids"]]
    assert any(p.startswith("。") and len(p) > 1 for p in pieces)  # "。" merged with the letters after it


@pytest.mark.parametrize(
    "delimiters, solution, last_chars",
    [
        ([".\n\n"], ARITHMETIC, ["8", "3", "3"]),
        (["。"], CJK, ["3", "果", "6"]),
        (
            [".\n\n"],
            "Compute 3.5 * 2 = 7.0.\n\n```python\nprint(3.5 * 2)\n\nx = 1.\n\n```\n\nSo it is 7.",
            ["0", "7"],
        ),
        ([".\n\n"], "Café costs 3€.\n\nI ☕ it 🙂.\n\nDone", ["€", "🙂", "e"]),
        ([".\n\n", "。"], "Step one.\n\n第二步。Last step", ["e", "步", "p"]),
    ],
)
def test_read_position_is_the_token_before_the_delimiter(tokenizer, delimiters, solution, last_chars):
    rules = StepRules(delimiters=delimiters)
    trace = build_trace(tokenizer, rules, question="What is 5 + 8?", solution=solution, prompt_format="plain")
    offsets = _offsets(tokenizer, trace, add_special_tokens=True)
    assert len(trace.steps) == len(trace.positions) == len(last_chars)
    assert not trace.truncated
    for step, position, last_char in zip(trace.steps, trace.positions, last_chars):
        holding = _holding_token(offsets, step.anchor)
        if holding is None:  # a trailing step with nothing after it: the last token of the text
            assert step.anchor == len(trace.text) and position == len(offsets) - 1
        else:
            assert trace.text[offsets[holding][0]] == trace.text[step.anchor]
            assert position == holding - 1
        start, end = offsets[position]
        # inside the solution, ending in the step at or before its delimiter (the token may start in the step
        # before when a delimiter merged with the letters after it: "。然后得到结果")
        assert trace.solution_start <= start and step.start < end <= step.anchor
        assert trace.text[start:end].endswith(last_char)


def test_merged_delimiter_tokens(trained_tokenizer, smollm2_tokenizer):
    """The token holding the delimiter's first character is ".\\n\\n" whole (trained) or "." (SmolLM2), and "。"
    shares a token with the next step's letters (trained); the read position is the token before in each case."""
    for tok, delimiter_token in ((trained_tokenizer, ".\n\n"), (smollm2_tokenizer, ".")):
        trace = build_trace(tok, StepRules(), question="Q?", solution=ARITHMETIC, prompt_format="plain")
        for position in trace.positions[:2]:
            assert tok.decode([trace.input_ids[position + 1]]) == delimiter_token
            assert tok.decode([trace.input_ids[position]]) in ("8", "3")
    cjk_rules = StepRules(delimiters=["。"])
    trace = build_trace(trained_tokenizer, cjk_rules, question="Q?", solution=CJK, prompt_format="plain")
    after = [trained_tokenizer.decode([trace.input_ids[p + 1]]) for p in trace.positions[:2]]
    assert after == ["。然后得到结果", "。答案是"]


def test_delimiter_sharing_a_token_with_the_end_of_a_step(trained_tokenizer):
    """The rule as documented: when the delimiter's first character shares a token with the step's last
    characters ("$.\\n\\n" is one token here), the read position is the token before that shared token, so the
    closing "$" is not in it; a trailing "$." split as "$", "." reads the "$"."""
    solution = "So $x = 5$.\n\nThen $y = 6$."
    trace = build_trace(trained_tokenizer, StepRules(), question="Q?", solution=solution, prompt_format="plain")
    assert [trained_tokenizer.decode([trace.input_ids[p + 1]]) for p in trace.positions] == ["$.\n\n", "."]
    assert [trained_tokenizer.decode([trace.input_ids[p]]) for p in trace.positions] == ["5", "$"]


def test_special_tokens_around_the_text_are_never_read(eos_tokenizer):
    trace = build_trace(
        eos_tokenizer, StepRules(), question="Q?", solution="We add 5 and 8.\n\nThe sum is 13", prompt_format="plain"
    )
    eos = eos_tokenizer.eos_token_id
    assert trace.input_ids[0] == eos and trace.input_ids[-1] == eos
    # Before the fix the trailing step read the appended EOS token.
    assert [eos_tokenizer.decode([trace.input_ids[p]]) for p in trace.positions] == ["8", "3"]


def test_score_offset_zero_reads_the_delimiter_token(trained_tokenizer):
    trace = build_trace(
        trained_tokenizer, StepRules(score_offset=0), question="Q?", solution=ARITHMETIC, prompt_format="plain"
    )
    assert [trained_tokenizer.decode([trace.input_ids[p]]) for p in trace.positions[:2]] == [".\n\n", ".\n\n"]


# ----------------------------------------------------------------------------------------------------------------
# build_trace


STEP_LISTS = [
    (ARITHMETIC_STEPS, [".\n\n"]),
    (["首先计算3加3。", "然后得到结果。", "答案是6。"], ["。"]),
    (["Café ☕ costs 3.5€", "🙂 x = 4.5.", "```python\nprint(1.\n\n2)\n```", "Done"], [".\n\n"]),
    (["abc.", "答案是7。", "d"], ["\n\n", ".\n\n", "。"]),
]


@pytest.mark.parametrize("steps, delimiters", STEP_LISTS)
@pytest.mark.parametrize("prompt_format", ["auto", "plain"])
def test_steps_and_equivalent_solution_give_the_same_trace(tokenizer, steps, delimiters, prompt_format):
    rules = StepRules(delimiters=delimiters)
    from_steps = build_trace(tokenizer, rules, question="What is 5 + 8?", steps=steps, prompt_format=prompt_format)
    solution = join_steps(steps, rules)[0]
    from_text = build_trace(tokenizer, rules, question="What is 5 + 8?", solution=solution, prompt_format=prompt_format)
    assert from_steps.text == from_text.text and from_steps.text.endswith(solution)
    assert from_steps.input_ids == from_text.input_ids
    assert from_steps.positions == from_text.positions and len(from_steps.positions) == len(steps)
    assert from_steps.steps == from_text.steps
    assert from_steps.solution_start == from_text.solution_start == len(from_steps.text) - len(solution)


def test_chat_prompt_with_smollm2(smollm2_tokenizer):
    trace = build_trace(smollm2_tokenizer, StepRules(), question="What is 5 + 8?", steps=ARITHMETIC_STEPS)
    assert trace.text.endswith("<|im_start|>assistant\n" + ARITHMETIC)
    assert trace.input_ids == smollm2_tokenizer(trace.text, add_special_tokens=False)["input_ids"]
    assert [smollm2_tokenizer.decode([trace.input_ids[p]]) for p in trace.positions] == ["8", "3", "3"]


def test_formatted_text_input(smollm2_tokenizer):
    text = (
        "<|im_start|>user\nWhat is 5 + 8?<|im_end|>\n<|im_start|>assistant\n"
        "<think>We add 5 and 8.\n\nThe sum is 13.\n\n</think>The answer is 13."
    )
    trace = build_trace(smollm2_tokenizer, StepRules(), text=text)
    assert trace.text == text and trace.solution_start == 0
    assert trace.input_ids == smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [s.text for s in trace.steps] == ["We add 5 and 8.\n\n", "The sum is 13.\n\n"]
    assert [smollm2_tokenizer.decode([trace.input_ids[p]]) for p in trace.positions] == ["8", "3"]
    both = build_trace(smollm2_tokenizer, StepRules(score_span="both"), text=text)
    assert [(s.text, s.part) for s in both.steps][-1] == ("The answer is 13.", "response")
    assert both.positions[:2] == trace.positions


def test_truncation_cuts_steps_and_never_moves_a_position(tokenizer):
    solution = ".\n\n".join(f"Step {i}: add {i} to get {i * (i + 1) // 2}" for i in range(30))
    rules = StepRules()
    full = build_trace(tokenizer, rules, question="Sum 0..29?", solution=solution, prompt_format="plain")
    assert not full.truncated and full.num_tokens == len(full.input_ids) and len(full.steps) == 30
    # each step's first token: before its read position, after the previous step's
    assert None not in full.starts and all(s <= p for s, p in zip(full.starts, full.positions))
    assert all(a < b for a, b in zip(full.starts, full.starts[1:]))
    exact = build_trace(
        tokenizer, rules, question="Sum 0..29?", solution=solution, prompt_format="plain", max_length=full.num_tokens
    )
    assert not exact.truncated and exact.positions == full.positions  # exactly max_length tokens: nothing cut
    for max_length in (full.num_tokens - 1, full.num_tokens // 2, 3):
        cut = build_trace(
            tokenizer, rules, question="Sum 0..29?", solution=solution, prompt_format="plain", max_length=max_length
        )
        assert cut.truncated and cut.num_tokens == full.num_tokens
        assert cut.input_ids == full.input_ids[:max_length]
        assert cut.steps == full.steps
        for kept, original in zip(cut.positions, full.positions):
            assert kept == (original if original < max_length else None)
        assert cut.starts == [s if p is not None else None for s, p in zip(full.starts, cut.positions)]
        assert None in cut.positions  # the last step always reads the last token, which is cut
    assert build_trace(
        tokenizer, rules, question="Sum 0..29?", solution=solution, prompt_format="plain", max_length=3
    ).scored_positions == []


def test_no_delimiter_and_only_delimiters(tokenizer):
    one = build_trace(tokenizer, StepRules(), question="Q?", solution="The answer is 13", prompt_format="plain")
    assert [s.text for s in one.steps] == ["The answer is 13"] and one.positions == [len(one.input_ids) - 1]
    for kwargs in ({"question": "Q?", "solution": ".\n\n.\n\n"}, {"text": ".\n\n .\n\n"}):
        none = build_trace(tokenizer, StepRules(), prompt_format="plain", **kwargs)
        assert none.steps == [] and none.positions == [] and not none.truncated and none.input_ids


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"question": "Q?", "solution": ""}, ValueError, "solution is empty or whitespace only"),
        ({"question": "Q?", "solution": "  \n\t"}, ValueError, "solution is empty or whitespace only"),
        ({"question": "Q?", "solution": 42}, TypeError, "solution must be a string, got int"),
        ({"question": "Q?", "solution": ["a", "b"]}, TypeError, "solution must be a string, got list"),
        ({"question": "", "solution": "a"}, ValueError, "question is empty"),
        ({"question": None, "solution": "a"}, ValueError, "missing `question`"),
        ({"question": 3, "solution": "a"}, TypeError, "question must be a string"),
        ({"text": ""}, ValueError, "text is empty"),
        ({"text": b"a.\n\nb"}, TypeError, "text must be a string, got bytes"),
        ({}, ValueError, "missing `question`"),
        ({"question": "Q?"}, ValueError, "exactly one of `solution` or `steps`"),
        ({"question": "Q?", "solution": "a", "steps": ["a"]}, ValueError, "exactly one of `solution` or `steps`"),
        ({"text": "a", "question": "Q?"}, ValueError, "either `text` alone"),
        ({"question": "Q?", "steps": []}, ValueError, "steps is an empty list"),
        ({"question": "Q?", "steps": ["a", ""]}, ValueError, r"steps\[1\] is empty"),
        ({"question": "Q?", "steps": ["a", 2]}, TypeError, r"steps\[1\] must be a string"),
        ({"question": "Q?", "steps": "a.\n\nb"}, TypeError, "steps must be a list of strings"),
        ({"question": "Q?", "solution": "a", "prompt_format": "html"}, ValueError, "prompt_format"),
        ({"question": "Q?", "solution": "a", "max_length": 0}, ValueError, "max_length must be a positive"),
    ],
)
def test_build_trace_bad_input(smollm2_tokenizer, kwargs, error, message):
    with pytest.raises(error, match=message):
        build_trace(smollm2_tokenizer, StepRules(), **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The model: steps vs text, truncation through the pipeline


@pytest.fixture
def scorer(tiny_sprm):
    from transformers import pipeline

    model, tokenizer = tiny_sprm
    return pipeline("step-scoring", model=model, tokenizer=tokenizer)


def _step_scores(result) -> list[float | None]:
    return [s["score"] for s in result["steps"]]


def test_model_steps_and_joined_text_score_the_same(scorer):
    cases = [
        (ARITHMETIC_STEPS, ARITHMETIC),
        (["Café ☕ costs 3.5€", "🙂 x = 4.5.", "答案是6。"], "Café ☕ costs 3.5€.\n\n🙂 x = 4.5.\n\n答案是6。"),
    ]
    for steps, solution in cases:
        from_steps = scorer({"question": "What is 5 + 8?", "steps": steps})
        from_text = scorer({"question": "What is 5 + 8?", "solution": solution})
        assert len(from_steps["steps"]) == len(steps)
        assert [s["text"] for s in from_steps["steps"]] == [s["text"] for s in from_text["steps"]]
        diff = torch.tensor(_step_scores(from_steps)) - torch.tensor(_step_scores(from_text))
        assert diff.abs().max().item() < 1e-6
        assert abs(from_steps["score"] - from_text["score"]) < 1e-6


def test_model_long_solution_is_truncated_with_a_flag(scorer):
    solution = ".\n\n".join(f"Step {i}: add {i} to the total to get {i * (i + 1) // 2}" for i in range(60))
    inputs = {"question": "Sum 0..59?", "solution": solution}
    untruncated = scorer(inputs, max_length=4096)
    assert not untruncated["truncated"] and None not in _step_scores(untruncated)
    # The tiny backbone's context (max_position_embeddings=512) is the default limit.
    assert scorer.model.config.text_config.max_position_embeddings == 512
    for result in (scorer(inputs), scorer(inputs, max_length=60)):
        scores = _step_scores(result)
        assert result["truncated"] and not result["no_steps"] and len(scores) == 60
        kept = [i for i, s in enumerate(scores) if s is not None]
        assert kept == list(range(len(kept))) and 0 < len(kept) < 60  # a prefix of the steps is kept
        for i in kept:  # a kept step reads the same hidden state as without truncation: the same score
            assert abs(scores[i] - _step_scores(untruncated)[i]) < 1e-5
        expected = torch.tensor([scores[i] for i in kept]).log().mean().exp().item()  # geometric mean
        assert abs(result["score"] - expected) < 1e-5


def test_steps_are_dataclasses_with_spans():
    step = segment("a.\n\nb", StepRules())[0]
    assert step == Step("a.\n\n", 0, 4, 1, "response", True)


# ----------------------------------------------------------------------------------------------------------------
# Edges the cases above leave open (found by benchmarks/mutation.py)


def test_empty_scored_regions_are_dropped():
    text = "<think> a.\n\nb"  # an opening tag only: the thinking runs to the end, the response is empty
    assert scored_regions(text, 0, len(text), StepRules(score_span="response")) == []
    assert scored_regions(text, 0, len(text), StepRules(score_span="both")) == [(7, len(text), "think")]


def test_given_steps_on_the_edge_of_a_span_are_kept(smollm2_tokenizer):
    """A given step is scored when its anchor lies in a scored span, both ends included: the bare tag "<think>",
    anchored right where the thinking starts, is a step of it."""
    trace = build_trace(smollm2_tokenizer, StepRules(), question="Q?", steps=["<think>", "x = 1", "</think>", "ok"],
                        prompt_format="plain")
    assert [(s.text, s.part) for s in trace.steps] == [("<think>.\n\n", "think"), ("x = 1.\n\n", "think")]
    trace = build_trace(smollm2_tokenizer, StepRules(score_span="response"), question="Q?",
                        steps=["<think> x = 1", "</think>", "ok"], prompt_format="plain")
    assert [(s.text, s.part) for s in trace.steps] == [("</think>.\n\n", "response"), ("ok", "response")]


def test_a_formatted_text_gets_no_special_tokens(eos_tokenizer):
    trace = build_trace(eos_tokenizer, StepRules(), text="We add 5 and 8.\n\nThe sum is 13")
    assert eos_tokenizer.eos_token_id not in trace.input_ids  # scored as is (a plain prompt gets them: see above)
    assert [eos_tokenizer.decode([trace.input_ids[p]]) for p in trace.positions] == ["8", "3"]


def test_encode_edge_lengths(smollm2_tokenizer):
    empty = encode(smollm2_tokenizer, "", [], StepRules())
    assert (empty.input_ids, empty.positions, empty.truncated) == ([], [], False)
    one = build_trace(smollm2_tokenizer, StepRules(), question="Q?", solution=ARITHMETIC, prompt_format="plain",
                      max_length=1)
    assert len(one.input_ids) == 1 and one.truncated and one.positions == [None, None, None]
