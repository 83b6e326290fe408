"""Step segmentation: text -> steps -> the token positions where step scores are read.

Everything works on character offsets, never on one delimiter token id: tokenizers merge delimiters with their
neighbours differently (SmolLM2 encodes ``".\\n\\n"`` alone as ``['.', '\\n\\n']`` but inside text as
``['.', '\\n', '\\n']``; Qwen has one merged token), so a step end is found in the text and mapped to tokens
through the tokenizer's offset mapping.

The rules, for a region of text to score (a solution, or a whole formatted trace):

* A **delimiter** is any string of ``StepRules.delimiters`` (longest match first). A delimiter occurrence closes
  a step. Occurrences inside fenced code blocks (````` ``` `````), and occurrences of a delimiter without
  whitespace between two digits (``"3.5"`` with delimiter ``"."``), do not (``protect_code_and_numbers``).
* A step's **content** is its text before the delimiter. With ``skip_empty_steps`` (the default) a step whose
  content is only whitespace is not a step. This covers MetaStone-S1's two mask rules: only the first delimiter
  of a run counts (the next one would close an empty step) and none right after ``<think>`` (same reason).
* Text after the last delimiter is the **trailing step** when it has content and ``score_trailing_step`` is set
  (MetaStone-S1 does not score it; we do by default, so a solution with no delimiter at all is one step).
* The score of a step is read at ``token(anchor) + score_offset``, where ``anchor`` is the first character of
  the delimiter and ``token(c)`` the index of the token holding character ``c``. With ``score_offset = -1``
  (MetaStone-S1) that is the token just before the delimiter, whose next-token prediction is the delimiter.
  For the trailing step the anchor is where a delimiter would start: at a trailing prefix of the delimiter that
  is already there (``"The answer is 7."`` -> at the ``"."``), else just after the last content character,
  which reads the last token holding text (never a special token the tokenizer appends, such as an EOS).
* **Think spans** (``<think> ... </think>``), as MetaStone-S1's scorer: the thinking span starts after the
  ``<think>`` tag if exactly one is present (else at the region start) and ends at the ``</think>`` tag if
  exactly one is present (else at the region end). The response is what follows a single ``</think>``; a text
  with no tags is all response. ``score_span`` picks ``"think"`` (MetaStone-S1: the thinking span only, or the
  whole text when it has no tags), ``"response"``, or ``"both"`` (every step labelled with its part).

This module imports nothing from the package; it is shipped as remote code.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

SCORE_SPANS = ("think", "response", "both")


@dataclass(frozen=True)
class StepRules:
    """How to cut text into steps and where to read their scores (built from ``SPRMConfig``)."""

    delimiters: tuple[str, ...] = (".\n\n",)
    score_offset: int = -1
    skip_empty_steps: bool = True
    protect_code_and_numbers: bool = True
    score_trailing_step: bool = True
    score_span: str = "think"
    think_start_tag: str = "<think>"
    think_end_tag: str = "</think>"

    def __post_init__(self):
        delimiters = self.delimiters
        if isinstance(delimiters, str):
            delimiters = (delimiters,)
        if not delimiters or not all(isinstance(d, str) and d for d in delimiters):
            raise ValueError(f"step delimiters must be a non-empty list of non-empty strings, got {self.delimiters!r}")
        object.__setattr__(self, "delimiters", tuple(delimiters))
        if self.score_span not in SCORE_SPANS:
            raise ValueError(f"score_span must be one of {SCORE_SPANS}, got {self.score_span!r}")

    @classmethod
    def from_config(cls, config: Any) -> "StepRules":
        return cls(
            delimiters=tuple(config.step_delimiters),
            score_offset=config.score_offset,
            skip_empty_steps=config.skip_empty_steps,
            protect_code_and_numbers=config.protect_code_and_numbers,
            score_trailing_step=config.score_trailing_step,
            score_span=config.score_span,
            think_start_tag=config.think_start_tag,
            think_end_tag=config.think_end_tag,
        )


@dataclass
class Step:
    """One step of a text. ``start:end`` spans the step's content and its delimiter (if any) in the full text;
    ``anchor`` is the character whose token (plus ``score_offset``) gives the read position."""

    text: str
    start: int
    end: int
    anchor: int
    part: str  # "think" or "response"
    has_delimiter: bool


@dataclass
class EncodedTrace:
    """A text ready for the backbone: tokens, its steps, and the read position of each step.

    ``positions[i]`` is the token index of ``steps[i]``, or ``None`` when truncation cut that step off;
    ``starts[i]`` the index of the step's first token (``None`` where ``positions[i]`` is).
    """

    text: str
    input_ids: list[int]
    steps: list[Step]
    positions: list[int | None]
    truncated: bool
    num_tokens: int  # before truncation
    solution_start: int = 0  # character where the scored region (the solution) starts
    starts: list[int | None] = field(default_factory=list)

    @property
    def scored_positions(self) -> list[int]:
        return [p for p in self.positions if p is not None]


# ----------------------------------------------------------------------------------------------------------------
# Regions and delimiter matches


def _single(text: str, tag: str, start: int, end: int) -> tuple[int | None, int]:
    """Index of ``tag`` in ``text[start:end]`` when it occurs exactly once there, and how often it occurs."""
    count, first, pos = 0, None, text.find(tag, start, end)
    while pos != -1:
        count += 1
        first = pos if first is None else first
        pos = text.find(tag, pos + len(tag), end)
    return (first if count == 1 else None), count


def scored_regions(text: str, start: int, end: int, rules: StepRules) -> list[tuple[int, int, str]]:
    """The ``(start, end, part)`` regions of ``text[start:end]`` whose steps are scored, per ``rules.score_span``."""
    think_at, n_open = _single(text, rules.think_start_tag, start, end)
    close_at, n_close = _single(text, rules.think_end_tag, start, end)
    if n_open == 0 and n_close == 0:  # no tags: the whole region is a plain response, scored in every mode
        return [(start, end, "response")]
    think_start = think_at + len(rules.think_start_tag) if think_at is not None else start
    think = (think_start, close_at if close_at is not None else end)
    response = (close_at + len(rules.think_end_tag), end) if close_at is not None else (end, end)
    regions = []
    if rules.score_span in ("think", "both"):
        regions.append((*think, "think"))
    if rules.score_span in ("response", "both"):
        regions.append((*response, "response"))
    return [r for r in regions if r[0] < r[1]]


def anchor_parts(text: str, anchors: Sequence[int], start: int, rules: StepRules) -> list[str | None]:
    """The part (``"think"`` / ``"response"``) of the scored region of ``text[start:]`` that holds each anchor
    (a character index), or None where ``rules.score_span`` does not score it: which given steps a span keeps."""
    regions = scored_regions(text, start, len(text), rules)
    return [next((part for r_start, r_end, part in regions if r_start <= anchor <= r_end), None) for anchor in anchors]


_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)


def _protected_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _FENCE.finditer(text, start, end)]


def _delimiter_pattern(delimiters: Sequence[str]) -> re.Pattern:
    ordered = sorted(set(delimiters), key=len, reverse=True)  # longest first: ".\n\n" before "\n\n"
    return re.compile("|".join(re.escape(d) for d in ordered))


def _delimiter_matches(text: str, start: int, end: int, rules: StepRules) -> list[tuple[int, int]]:
    spans = []
    protected = _protected_spans(text, start, end) if rules.protect_code_and_numbers else []
    for m in _delimiter_pattern(rules.delimiters).finditer(text, start, end):
        a, b = m.span()
        if rules.protect_code_and_numbers:
            if any(p0 <= a < p1 for p0, p1 in protected):
                continue
            delim = m.group()
            if not any(ch.isspace() for ch in delim) and 0 < a and b < len(text):
                if text[a - 1].isdigit() and text[b].isdigit():  # "3.5" with delimiter "."
                    continue
        spans.append((a, b))
    return spans


def _trailing_anchor(text: str, content_start: int, content_end: int, delimiters: Sequence[str]) -> int:
    """Where a delimiter would start after ``text[content_start:content_end]`` (already right-stripped): at a
    non-whitespace delimiter prefix the content already ends with (the "." of ".\\n\\n"), else at its end."""
    best = 0
    for d in delimiters:
        core = d.rstrip()
        for k in range(len(core), 0, -1):
            if k > best and text.endswith(core[:k], content_start, content_end):
                best = k
                break
    return content_end - best


def segment(text: str, rules: StepRules, start: int = 0, end: int | None = None) -> list[Step]:
    """Cut ``text[start:end]`` into steps (see the module docstring for the rules)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    end = len(text) if end is None else end
    steps: list[Step] = []
    for r_start, r_end, part in scored_regions(text, start, end, rules):
        step_start = r_start
        for a, b in _delimiter_matches(text, r_start, r_end, rules):
            content = text[step_start:a]
            if content.strip() or not rules.skip_empty_steps:
                steps.append(Step(text[step_start:b], step_start, b, a, part, True))
            step_start = b
        content = text[step_start:r_end]
        if rules.score_trailing_step and content.strip():
            stripped_end = step_start + len(content.rstrip())
            anchor = _trailing_anchor(text, step_start, stripped_end, rules.delimiters)
            steps.append(Step(text[step_start:stripped_end], step_start, stripped_end, anchor, part, False))
    return steps


def _closing_delimiter(text: str, delimiters: Sequence[str]) -> str:
    """The longest delimiter ``text`` ends with (``""`` when none): where ``segment`` finds the end of its step."""
    return max((d for d in delimiters if text.endswith(d)), key=len, default="")


def join_steps(steps: Sequence[str], rules: StepRules) -> tuple[str, list[tuple[int, int, int]]]:
    """Join a list of steps into one canonical text, and return ``(text, [(start, end, anchor), ...])``.

    Each step is stripped; every step but the last gets the first delimiter appended, minus the part of it the
    step already ends with (``"x = 5."`` + ``".\\n\\n"`` -> ``"x = 5.\\n\\n"``), and nothing when the step already
    ends with another delimiter (``"答案是7。"`` with delimiters ``[".\\n\\n", "。"]``). When the rules do not score
    text after the last delimiter (``score_trailing_step=False``: MetaStone-S1, token-classification PRMs that read
    a score at each step separator), the last step is ended the same way, so every given step is a scored step.
    Each anchor is where ``segment`` finds it: at the longest delimiter the step's text ends with. Segmenting the
    joined text with the same rules gives back the same steps, unless a step itself contains a delimiter, a think
    tag or an unclosed code fence, or a delimiter without whitespace lands between two digits (``["x = 3", "5 kg"]``
    joined with ``"."``); ``build_trace(steps=...)`` keeps the given boundaries in every case.
    """
    if isinstance(steps, str) or not isinstance(steps, Sequence):
        raise TypeError(f"steps must be a list of strings, got {type(steps).__name__}")
    if not steps:
        raise ValueError("steps is an empty list; give at least one step")
    delimiter = rules.delimiters[0]
    core = delimiter.rstrip()
    terminate_last = not rules.score_trailing_step
    pieces, spans, offset = [], [], 0
    for i, step in enumerate(steps):
        if not isinstance(step, str):
            raise TypeError(f"steps[{i}] must be a string, got {type(step).__name__}")
        content = step.strip()
        if not content:
            raise ValueError(f"steps[{i}] is empty or whitespace only; every step needs text")
        if i < len(steps) - 1 or terminate_last:
            if core and content.endswith(core):
                piece = content + delimiter[len(core) :]
            elif _closing_delimiter(content, rules.delimiters):
                piece = content
            else:
                piece = content + delimiter
            anchor = offset + len(piece) - len(_closing_delimiter(piece, rules.delimiters))
        else:
            piece = content
            anchor = offset + _trailing_anchor(content, 0, len(content), rules.delimiters)
        pieces.append(piece)
        spans.append((offset, offset + len(piece), anchor))
        offset += len(piece)
    return "".join(pieces), spans


# ----------------------------------------------------------------------------------------------------------------
# Characters -> tokens


def _running_ends(offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Running maximum of token end offsets; special tokens with empty ``(0, 0)`` offsets count as -1."""
    running, best = [], -1
    for start, end in offsets:
        best = max(best, end if end > start else -1)
        running.append(best)
    return running


def _text_token_end(offsets: Sequence[tuple[int, int]]) -> int:
    """One past the last token that holds text: special tokens a tokenizer appends (an EOS) are never read."""
    return max((i + 1 for i, (start, end) in enumerate(offsets) if end > start), default=0)


def token_index(offsets: Sequence[tuple[int, int]], char: int) -> int:
    """Index of the first token ending after character ``char`` (the token holding it, or the next one when no
    token covers it); one past the last token holding text when ``char`` lies after all of them."""
    return min(bisect.bisect_right(_running_ends(offsets), char), _text_token_end(offsets))


def read_positions(offsets: Sequence[tuple[int, int]], anchors: Sequence[int], score_offset: int) -> list[int]:
    """Token index where each step's score is read: ``token_index(anchor) + score_offset``, clamped to the
    sequence (a trailing step whose anchor lies past the text reads the last token holding text)."""
    running, text_end = _running_ends(offsets), _text_token_end(offsets)
    last = len(offsets) - 1
    positions = []
    for anchor in anchors:
        token = min(bisect.bisect_right(running, anchor), text_end)
        positions.append(min(max(token + score_offset, 0), last))
    return positions


def encode(
    tokenizer: Any,
    text: str,
    steps: list[Step],
    rules: StepRules,
    max_length: int | None = None,
    add_special_tokens: bool = False,
    solution_start: int = 0,
) -> EncodedTrace:
    """Tokenize ``text`` and map each step to the token where its score is read.

    If the text has more than ``max_length`` tokens it is cut (keeping the start); steps whose read position
    falls outside the kept tokens get position ``None`` and ``truncated`` is set.
    """
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    input_ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if offsets:
        positions: list[int | None] = list(read_positions(offsets, [s.anchor for s in steps], rules.score_offset))
        starts: list[int | None] = list(read_positions(offsets, [s.start for s in steps], 0))
    else:
        positions, starts = [None] * len(steps), [None] * len(steps)
    num_tokens = len(input_ids)
    truncated = max_length is not None and num_tokens > max_length
    if truncated:
        input_ids = input_ids[:max_length]
        positions = [p if p is not None and p < max_length else None for p in positions]
    starts = [s if p is not None else None for s, p in zip(starts, positions)]
    return EncodedTrace(text, input_ids, steps, positions, truncated, num_tokens, solution_start, starts)


# ----------------------------------------------------------------------------------------------------------------
# Inputs -> encoded traces: the one entry point every score goes through


def format_prompt(
    tokenizer: Any, question: str, prompt_format: str = "auto", plain_template: str = "{question}\n\n"
) -> tuple[str, bool]:
    """The text that comes before a solution, and whether it is a chat: the backbone's chat template with the
    question as the user turn (``prompt_format="chat"``, or ``"auto"`` when the tokenizer has a template), else
    ``plain_template``."""
    if prompt_format not in ("auto", "chat", "plain"):
        raise ValueError(f"prompt_format must be 'auto', 'chat' or 'plain', got {prompt_format!r}")
    if prompt_format == "chat" or (prompt_format == "auto" and getattr(tokenizer, "chat_template", None)):
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return plain_template.format(question=question), False


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty or whitespace only")
    return value


def build_trace(
    tokenizer: Any,
    rules: StepRules,
    *,
    question: str | None = None,
    solution: str | None = None,
    steps: Sequence[str] | None = None,
    text: str | None = None,
    prompt_format: str = "auto",
    plain_template: str = "{question}\n\n",
    max_length: int | None = None,
) -> EncodedTrace:
    """Turn one input into an ``EncodedTrace``. Exactly one of:

    * ``question`` + ``solution``: the prompt (``format_prompt``) followed by the solution; steps are found in
      the solution only;
    * ``question`` + ``steps``: the steps joined canonically (``join_steps``) as the solution, with the given
      step boundaries (so this equals scoring the joined text when no step contains a delimiter);
    * ``text``: an already formatted trace (for example a whole chat with ``<think>...</think>``), scored as is
      with no template added, as MetaStone-S1's scorer receives it.
    """
    if text is not None:
        if question is not None or solution is not None or steps is not None:
            raise ValueError("give either `text` alone, or `question` with `solution` or `steps`")
        _check_text("text", text)
        found = segment(text, rules)
        return encode(tokenizer, text, found, rules, max_length, add_special_tokens=False, solution_start=0)
    if question is None:
        raise ValueError("missing `question` (or give a formatted `text`)")
    _check_text("question", question)
    if (solution is None) == (steps is None):
        raise ValueError("give exactly one of `solution` or `steps` with the question")
    if steps is not None:
        solution, spans = join_steps(steps, rules)
    else:
        _check_text("solution", solution)
        spans = None
    prompt, is_chat = format_prompt(tokenizer, question, prompt_format, plain_template)
    full = prompt + solution
    start = len(prompt)
    if spans is None:
        found = segment(full, rules, start=start)
    else:  # explicit boundaries; the think-span rules still decide which steps are scored
        spans = [(a + start, b + start, anchor + start) for a, b, anchor in spans]
        parts = anchor_parts(full, [anchor for _, _, anchor in spans], start, rules)
        found = [Step(full[a:b], a, b, anchor, part, has_delimiter=full[anchor:b] in rules.delimiters)
                 for (a, b, anchor), part in zip(spans, parts) if part is not None]
    # A chat template already wrote the special tokens into the text; a plain prompt gets the tokenizer's own.
    return encode(tokenizer, full, found, rules, max_length, add_special_tokens=not is_chat, solution_start=start)
