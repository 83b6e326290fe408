import pytest

from modeling_sprm.answers import answers_match, extract_answer, extract_boxed, extract_gsm8k_answer, get_extractor


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Janet sells 9 eggs.\nShe makes $18.\n#### 18", "18"),
        ("#### 1,000", "1000"),
        ("So the answer is $18.", "18"),
        ("The answer: 3/4", "0.75"),
        ("We get 3.5 and then 4.", "4"),
        ("no number here", None),
    ],
)
def test_gsm8k_style(text, expected):
    assert extract_gsm8k_answer(text) == expected


def test_boxed_nested_and_last():
    assert extract_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{unclosed") is None
    assert extract_answer(r"so \boxed{42.0}") == "42"
    assert extract_answer(r"\boxed{x+1}") == "x+1"


def test_matching():
    assert answers_match("18", "18.000")
    assert answers_match("0.75", "3/4")
    assert not answers_match("18", "19")
    assert not answers_match(None, "1")
    assert answers_match("(A) red", "(a)  red")


def test_pluggable_extractor():
    assert get_extractor("gsm8k") is extract_gsm8k_answer
    custom = get_extractor(lambda text: text[-1])
    assert custom("abc") == "c"
    with pytest.raises(ValueError, match="unknown answer extractor"):
        get_extractor("nope")
    with pytest.raises(TypeError):
        extract_answer(12)
