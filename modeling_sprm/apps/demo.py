"""The SPRM demo: a Gradio app that scores solutions step by step, shows ``<think>`` traces span by span, and
picks the best of N sampled solutions. ``sprm demo`` and the Hugging Face Space (``demo/app.py``) both build it
with `build_demo` and start it with `launch`.

Interface contract (people script against it; keep it stable, and change the README's "Demo" section with it):

* Scoring tab: text inputs labelled ``Question`` and ``Solution``, a button labelled ``Score``, the aggregated
  score in a component labelled ``Solution score``.
* API endpoint ``/score`` (``gradio_client``): ``(question, solution)`` -> the JSON object that
  ``sprm score --json`` prints (`ScoredSolution.public_json`), scored with the model's own threshold and
  aggregation.
* API endpoint ``/generate``: ``(question, mode)`` -> the record of `generation.best_of_n` (candidates with their
  step scores, ranking, SPRM pick, majority and weighted votes), within the demo's limits.

Limits (`DemoLimits`) are checked on the server, for the page and the API alike. Bad input and failures are
reported, never as a stack trace: on the page as a message in place of the result plus a pop-up, through the API
as ``gr.Error`` (``AppError`` in gradio_client). The app has no file inputs and refuses to widen gradio's
``allowed_paths``. Beyond the text limits: a request body over ``max_request_bytes`` is refused at the HTTP layer
before it is read (`RequestSizeLimit`, status 413), a model call running past its time budget is stopped between
two layers with a message (`DemoScorer.time_budget`), and requests beyond the queue get gradio's "queue is full"
message.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import torch
from matplotlib.figure import Figure

from ..aggregation import AGGREGATIONS, first_error_step
from ..data import gsm8k_reference
from ..generation import MODES as GENERATION_MODES
from ..generation import best_of_n
from ..loading import untrained_head_warning
from ..evaluation.report import scoring_pipeline
from ..outputs import UNSCORED_REASONS, ScoredSolution

logger = logging.getLogger(__name__)

PAPER_URL = "https://arxiv.org/abs/2507.01951"
STEP_MODES = {
    "model": "at the model's step delimiter ('.' + blank line)",
    "paragraphs": "at every blank line (one step per paragraph)",
}


@dataclass(frozen=True)
class DemoLimits:
    """What one request may ask for. Checked on the server for the page and the API alike."""

    max_question_chars: int = 2_000
    max_solution_chars: int = 8_000
    max_candidates: int = 8
    max_new_tokens: int = 320  # per sampled candidate
    concurrency: int = 1  # model calls at a time (they share one CPU model)
    max_queue: int = 32  # waiting requests beyond this are turned away with a message
    max_request_bytes: int = 1_000_000  # an HTTP request body over this is refused before it is read
    time_budget_s: float = 30.0  # a scoring call running longer is stopped (queue time does not count)
    generate_time_budget_s: float = 180.0  # the same for sampling and scoring candidates


# ----------------------------------------------------------------------------------------------------------------
# Input checks (pure; ValueError messages are shown to the user as they are)


def check_text(label: str, value: Any, max_chars: int) -> str:
    """``value`` as a non-empty string of at most ``max_chars`` characters, else a ValueError naming ``label``."""
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text, got {type(value).__name__}.")
    if not value.strip():
        raise ValueError(f"{label} is empty: please enter some text.")
    if len(value) > max_chars:
        raise ValueError(
            f"{label} is too long: {len(value):,} characters; this demo takes at most {max_chars:,}. "
            "Shorten it, or run it locally with `sprm score`."
        )
    return value


def split_paragraphs(text: str) -> list[str]:
    """One step per paragraph: the non-empty blocks between blank lines."""
    return [p.strip() for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def check_candidates(mode: str, limits: DemoLimits) -> int:
    """The number of candidates for a generation mode, or a ValueError when it is unknown or over the limit."""
    if mode not in GENERATION_MODES:
        raise ValueError(f"mode must be one of {sorted(GENERATION_MODES)}, got {mode!r}.")
    n = GENERATION_MODES[mode]
    if n > limits.max_candidates:
        raise ValueError(
            f"Mode '{mode}' samples {n} candidates; this demo allows at most {limits.max_candidates} "
            f"(it runs on CPU). Pick a smaller mode, or run it locally with "
            f"`sprm demo --max-candidates {n}`."
        )
    return n


# ----------------------------------------------------------------------------------------------------------------
# Rendering (pure: dicts in, HTML strings / figures out)

# Red (likely wrong) -> yellow -> green (likely right), ColorBrewer RdYlGn.
_COLOR_STOPS = [(0.0, (215, 48, 39)), (0.25, (252, 141, 89)), (0.5, (254, 224, 139)), (0.75, (145, 207, 96)),
                (1.0, (26, 152, 80))]  # fmt: skip
_UNSCORED = "#9ca3af"


def _rgb(score: float) -> tuple[int, int, int]:
    score = min(max(float(score), 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(_COLOR_STOPS, _COLOR_STOPS[1:]):
        if score <= x1:
            t = (score - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))
    return _COLOR_STOPS[-1][1]


def score_color(score: float | None) -> str:
    """The colour-scale colour of a step score in [0, 1] (``#rrggbb``); grey for an unscored step."""
    if score is None:
        return _UNSCORED
    return "#{:02x}{:02x}{:02x}".format(*_rgb(score))


def _tint(score: float | None, amount: float = 0.3) -> str:
    """A light background of the score's colour (``amount`` of it on white)."""
    if score is None:
        return "#f3f4f6"
    return "#{:02x}{:02x}{:02x}".format(*(round(255 + (c - 255) * amount) for c in _rgb(score)))


STEPS_CSS = """
.sprm-steps { display: flex; flex-direction: column; gap: 6px; font-size: 15px; }
.sprm-step { border-left: 6px solid; border-radius: 6px; padding: 6px 10px; color: #111827; }
.sprm-step.sprm-first-error { outline: 2px solid #b91c1c; outline-offset: 1px; }
.sprm-step-head { display: flex; align-items: center; gap: 8px; font-size: 13px; color: #374151; }
.sprm-badge { font-weight: 700; border-radius: 10px; padding: 0 8px; color: #111827;
  font-variant-numeric: tabular-nums; }
.sprm-flag { font-weight: 700; color: #fff; background: #b91c1c; border-radius: 10px; padding: 0 8px; }
.sprm-step-text { white-space: pre-wrap; margin-top: 2px; }
.sprm-error { color: #7f1d1d; background: #fee2e2; border: 1px solid #fca5a5; border-radius: 6px;
  padding: 8px 12px; font-size: 15px; }
.sprm-note { color: #374151; background: #f3f4f6; border-radius: 6px; padding: 6px 10px; font-size: 14px; }
.sprm-legend { display: flex; align-items: center; gap: 8px; font-size: 13px; margin-top: 6px; }
.sprm-legend-bar { position: relative; flex: 1; height: 12px; border-radius: 6px; max-width: 320px; }
.sprm-legend-mark { position: absolute; top: -4px; width: 2px; height: 20px; background: #111827; }
.sprm-candidates { width: 100%; border-collapse: collapse; border: none; font-size: 14px; }
.sprm-candidates td, .sprm-candidates th { padding: 6px 8px; border: none; border-bottom: 1px solid #e5e7eb;
  text-align: left; vertical-align: top; }
.sprm-candidates summary { cursor: pointer; font-size: 13px; color: #374151; margin: 4px 0; }
.sprm-cells { display: flex; gap: 2px; }
.sprm-cell { width: 14px; height: 14px; border-radius: 3px; }
.sprm-best { background: #ecfdf5; }
"""


def legend_html(threshold: float) -> str:
    """The colour scale, with the threshold marked."""
    stops = ", ".join(f"{score_color(x)} {x * 100:.0f}%" for x, _ in _COLOR_STOPS)
    return (
        '<div class="sprm-legend"><span>0 = likely wrong</span>'
        f'<span class="sprm-legend-bar" style="background: linear-gradient(to right, {stops});">'
        f'<span class="sprm-legend-mark" style="left: calc({threshold * 100:.1f}% - 1px);" '
        f'title="threshold {threshold:.2f}"></span></span>'
        f"<span>1 = likely right</span><span>│ threshold {threshold:.2f}</span></div>"
    )


def note_html(text: str) -> str:
    return f'<div class="sprm-note">{html.escape(text)}</div>'


def steps_html(steps: list[dict], first_error: int | None, threshold: float, number_from: int = 1) -> str:
    """Each step in a box coloured by its score, the first predicted error outlined and flagged.

    ``steps``: ``[{"text", "score"(, "part")}]``; ``first_error``: index into ``steps`` or None. The boxes carry
    ``data-score`` and ``data-index`` (0-based) attributes, so tests and scripts can read them from the page.
    """
    if not steps:
        return note_html("No steps found: the text has no step to score.")
    rows = []
    for i, step in enumerate(steps):
        score = step["score"]
        is_error = i == first_error
        badge = _format_score(score)
        flag = '<span class="sprm-flag">⚠ first predicted error</span>' if is_error else ""
        below = score is not None and score < threshold
        title = "cut off by the model's maximum length" if score is None else ("below" if below else "at or above")
        if score is not None:
            title += f" the threshold {threshold:.2f}"
        rows.append(
            f'<div class="sprm-step{" sprm-first-error" if is_error else ""}" data-index="{i}" '
            f'data-score="{"" if score is None else f"{score:.6f}"}" '
            f'style="border-left-color: {score_color(score)}; background: {_tint(score)};" title="{title}">'
            f'<div class="sprm-step-head"><span>Step {i + number_from}</span>'
            f'<span class="sprm-badge" style="background: {score_color(score)};">{badge}</span>{flag}</div>'
            f'<div class="sprm-step-text">{html.escape(step["text"])}</div></div>'
        )
    return f'<div class="sprm-steps">{"".join(rows)}</div>'


def summary_html(result: dict, threshold: float, aggregation: str) -> str:
    """One line under the score: how many steps, where the first predicted error is, and caveats."""
    steps = result["steps"]
    scored = sum(s["score"] is not None for s in steps)
    first = result["first_error_step"]
    if result["no_steps"]:
        parts = ["No steps found, so the solution gets the model's empty-solution score."]
    elif first is None:
        parts = [f"{scored} step(s) scored; none below the threshold {threshold:.2f}."]
    else:
        parts = [
            f"{scored} step(s) scored; first predicted error: step {first + 1} "
            f"(score {steps[first]['score']:.3f} < threshold {threshold:.2f})."
        ]
    parts.append(f"Solution score = {aggregation.replace('_', ' ')} of the step scores.")
    if result["truncated"]:
        parts.append("The input was longer than the model's context: steps after the cut are not scored.")
    return note_html(" ".join(parts)) + unscored_html(result.get("unscored", [])) + legend_html(threshold)


def unscored_html(unscored: list[dict]) -> str:
    """The text that got no score (`outputs.UnscoredText`: outside the scored span, cut off, in no step), each
    part with its reason and character range, so that nothing is dropped silently."""
    if not unscored:
        return ""
    items = "".join(
        f'<li data-start="{u["start"]}" data-end="{u["end"]}">characters {u["start"]}–{u["end"]}, '
        f'{html.escape(UNSCORED_REASONS[u["reason"]])}: <q>{html.escape(_shorten(u["text"], 160))}</q></li>'
        for u in unscored
    )
    return f'<div class="sprm-note sprm-unscored"><b>Not scored:</b><ul>{items}</ul></div>'


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def step_plot(steps: list[dict], threshold: float, first_error: int | None) -> Figure | None:
    """A compact bar chart of the step scores, coloured like the steps, with the threshold line."""
    if not steps:
        return None
    n = len(steps)
    fig = Figure(figsize=(6.4, 2.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    xs = list(range(1, n + 1))
    heights = [0.0 if s["score"] is None else s["score"] for s in steps]
    bars = ax.bar(xs, heights, color=[score_color(s["score"]) for s in steps], edgecolor="#374151", linewidth=0.5)
    if first_error is not None:
        bars[first_error].set_edgecolor("#b91c1c")
        bars[first_error].set_linewidth(2.5)
        ax.annotate("first error", (xs[first_error], heights[first_error]), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=8, color="#b91c1c")  # fmt: skip
    ax.axhline(threshold, color="#111827", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.12)
    ax.set_xlim(0.4, n + 0.6)
    ax.set_xticks(xs if n <= 30 else xs[:: max(1, n // 15)])
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("score", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _format_score(score: float | None) -> str:
    return "not scored" if score is None else f"{score:.3f}"


def candidates_html(result: dict, threshold: float) -> str:
    """Best-of-N candidates ranked by SPRM score (best first): score, answer, a strip of step colours, and the
    scored steps (unfolded for the SPRM's pick)."""
    rows = []
    for rank, index in enumerate(result["ranking"], start=1):
        cand = result["candidates"][index]
        steps = cand["steps"]
        cells = "".join(
            f'<span class="sprm-cell" style="background: {score_color(s["score"])};" '
            f'title="step {k + 1}: {_format_score(s["score"])}"></span>'
            for k, s in enumerate(steps)
        )
        answer = "no answer" if cand["answer"] is None else html.escape(str(cand["answer"]))
        best = index == result["best"]
        first = cand.get("first_error_step")
        found = f"{len(steps)} step{'s' if len(steps) != 1 else ''}"
        found += "" if first is None else f", first predicted error: step {first + 1}"
        found += ", cut at the token limit" if cand["truncated"] else ""
        rows.append(
            f'<tr class="{"sprm-best" if best else ""}" data-candidate="{index}" data-score="{cand["score"]:.6f}">'
            f'<td>{rank}{" ★" if best else ""}</td><td>#{index + 1}</td><td><b>{cand["score"]:.3f}</b></td>'
            f'<td>{answer}</td><td><div class="sprm-cells">{cells}</div>'
            f'<details{" open" if best else ""}><summary>{found}</summary>'
            f"{steps_html(steps, first, threshold)}</details></td></tr>"
        )
    head = "<tr><th>rank</th><th>sample</th><th>SPRM score</th><th>answer</th><th>steps</th></tr>"
    return f'<table class="sprm-candidates">{head}{"".join(rows)}</table>'


def pick_summary_html(result: dict) -> str:
    def show(answer):
        return "no answer" if answer is None else html.escape(str(answer))

    best = result["candidates"][result["best"]]
    n = len(result["candidates"])
    agree = "agree" if result["sprm_answer"] == result["majority_answer"] else "disagree"
    return (
        f'<div class="sprm-note"><b>SPRM pick:</b> {show(result["sprm_answer"])} (sample #{result["best"] + 1}, '
        f'score {best["score"]:.3f}) · <b>majority vote:</b> {show(result["majority_answer"])} · '
        f'<b>SPRM-weighted vote:</b> {show(result["weighted_answer"])} — the pick and the vote {agree}. '
        f'{n} samples, {result["num_without_answer"]} without an answer.</div>'
    )


# ----------------------------------------------------------------------------------------------------------------
# Scoring (the model calls behind the tabs)


class _Deadlines(threading.local):
    """The deadline of the model call running in this thread (None: none), read by the layer hooks."""

    at: float | None = None
    seconds: float = 0.0


_DEADLINES = _Deadlines()


def _check_deadline(_module, _inputs) -> None:
    if _DEADLINES.at is not None and time.monotonic() > _DEADLINES.at:
        raise TimeoutError(
            f"This request took longer than the demo's time budget of {_DEADLINES.seconds:g} s and was stopped (the "
            "server may be busy, or the input long). Try a shorter input, or run it locally with `sprm score`."
        )


def _hook_layers(model) -> None:
    """Check the calling thread's deadline before every layer of the model (the members of its ``ModuleList``s):
    a forward pass, or a generation, stops within one layer of it. Hooked once per model."""
    if getattr(model, "_sprm_deadline_hooks", False):
        return
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList):
            for layer in module:
                layer.register_forward_pre_hook(_check_deadline)
    model._sprm_deadline_hooks = True


class DemoScorer:
    """The model behind the demo: scoring through the ``step-scoring`` pipeline (the same path as
    ``sprm score``), plus the think/response view, which scores both spans of a ``<think>`` trace. Every model call
    runs within a time budget (`time_budget`)."""

    def __init__(self, model, tokenizer, model_name: str, limits: DemoLimits = DemoLimits()):
        self.model, self.tokenizer, self.model_name, self.limits = model.eval(), tokenizer, model_name, limits
        self.pipe = scoring_pipeline(model, tokenizer)  # stays on the device the model was loaded on
        _hook_layers(model)

    @staticmethod
    @contextlib.contextmanager
    def time_budget(seconds: float):
        """Model calls in this block (in this thread) raise a TimeoutError with a message once ``seconds`` pass."""
        _DEADLINES.at, _DEADLINES.seconds = time.monotonic() + seconds, seconds
        try:
            yield
        finally:
            _DEADLINES.at = None

    @property
    def config(self):
        return self.model.config

    def _check(self, question: str, solution: str, solution_label: str = "Solution") -> None:
        check_text("Question", question, self.limits.max_question_chars)
        check_text(solution_label, solution, self.limits.max_solution_chars)

    def score_api(self, question: str, solution: str) -> dict:
        """The ``/score`` endpoint: the JSON object of ``sprm score --json`` (model threshold and aggregation)."""
        self._check(question, solution)
        with self.time_budget(self.limits.time_budget_s):
            result = self.pipe({"question": question, "solution": solution}, threshold=self.config.threshold)
        return result.public_json(self.model_name)

    def score(
        self, question: str, solution: str, step_mode: str, threshold: float, aggregation: str
    ) -> ScoredSolution:
        """A pipeline result with ``score`` under ``aggregation`` and ``first_error_step`` under ``threshold``."""
        self._check(question, solution)
        if step_mode not in STEP_MODES:
            raise ValueError(f"step mode must be one of {sorted(STEP_MODES)}, got {step_mode!r}.")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {sorted(AGGREGATIONS)}, got {aggregation!r}.")
        if step_mode == "paragraphs":
            record = {"question": question, "steps": split_paragraphs(solution)}
        else:
            record = {"question": question, "solution": solution}
        with self.time_budget(self.limits.time_budget_s):
            return self.pipe(record, threshold=float(threshold), aggregation=aggregation)

    def score_parts(self, question: str, trace: str, threshold: float, aggregation: str) -> ScoredSolution:
        """Score the thinking span and the response of a ``<think>...</think>`` trace separately (the pipeline with
        ``score_span="both"``): a result with ``part_scores`` ({"think", "response"}) under ``aggregation``, and
        a ``has_tags`` item."""
        self._check(question, trace, "Trace")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {sorted(AGGREGATIONS)}, got {aggregation!r}.")
        with self.time_budget(self.limits.time_budget_s):
            result = self.pipe(
                {"question": question, "solution": trace}, threshold=float(threshold), aggregation=aggregation,
                score_span="both",
            )
        result["has_tags"] = self.config.think_start_tag in trace or self.config.think_end_tag in trace
        return result

    def generate(self, question: str, mode: str, progress_callback: Callable | None = None) -> dict:
        """Best-of-N for a mode (``generation.best_of_n``'s record), within the limits."""
        n = check_candidates(mode, self.limits)
        check_text("Question", question, self.limits.max_question_chars)
        with self.time_budget(self.limits.generate_time_budget_s):
            return best_of_n(
                self.model,
                self.tokenizer,
                question,
                num_candidates=n,
                max_new_tokens=self.limits.max_new_tokens,
                progress_callback=progress_callback,
            )

    def generate_api(self, question: str, mode: str) -> dict:
        """The ``/generate`` endpoint: ``generation.best_of_n``'s record for ``mode`` ("low", "medium", ...)."""
        return self.generate(question, mode)


# ----------------------------------------------------------------------------------------------------------------
# Examples (committed slices, shipped in modeling_sprm/examples; see its README for sources and licenses)


def _examples_dir() -> Path:
    return Path(str(resources.files("modeling_sprm") / "examples"))


def gsm8k_solution(answer: str) -> str:
    """A GSM8K reference answer as a step-by-step solution (`data.gsm8k_reference`): one step per line ending with
    a full stop, ``#### x`` -> ``The answer is x.``; steps separated by blank lines."""
    steps, final = gsm8k_reference(answer)
    return "\n\n".join(s if s.endswith(".") else s + "." for s in [*steps, f"The answer is {final}"])


def load_examples() -> dict[str, list]:
    """``{"score": [[question, solution, step_mode], ...], "score_labels": [...], "think": [[question, trace]],
    "think_labels": [...], "questions": [question, ...]}`` from the committed slices."""
    folder = _examples_dir()
    score, labels = [], []
    gsm8k = [json.loads(line) for line in (folder / "gsm8k_test_first4.jsonl").read_text().splitlines() if line]
    for i, row in enumerate(gsm8k):
        score.append([row["question"], gsm8k_solution(row["answer"]), "model"])
        labels.append(f"GSM8K #{i + 1} · reference solution")
    for row in json.loads((folder / "processbench_slice.json").read_text()):
        score.append([row["problem"], "\n\n".join(row["steps"]), "paragraphs"])
        verdict = "no wrong step" if row["label"] < 0 else f"first wrong: step {row['label'] + 1}"
        labels.append(f"ProcessBench {row['id']} · human label: {verdict}")
    think = json.loads((folder / "think_traces.json").read_text())
    return {
        "score": score,
        "score_labels": labels,
        "think": [[t["question"], t["trace"]] for t in think],
        "think_labels": [t["name"] for t in think],
        "questions": [row["question"] for row in gsm8k],
    }


# ----------------------------------------------------------------------------------------------------------------
# The app


def _user_message(err: Exception) -> str:
    """What the user sees for a failed request: the message of bad input (ValueError, TypeError) or of a request
    past its time budget (TimeoutError) as it is, a short note for anything else (the traceback goes to the server
    log only). Call it inside ``except``."""
    if isinstance(err, (ValueError, TypeError, TimeoutError)):
        return str(err)
    logger.exception("demo request failed")
    return f"Something went wrong on the server ({type(err).__name__}). Please try again."


def _api_errors(fn: Callable) -> Callable:
    """For API endpoints: a failure becomes ``gr.Error`` with `_user_message` (``AppError`` in gradio_client)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise gr.Error(html.escape(_user_message(err), quote=False), print_exception=False) from None

    return wrapper


def _page_errors(n_outputs: int, message_at: int) -> Callable:
    """For page events: a failure becomes a visible message in output ``message_at`` (the other outputs are
    cleared, so no stale result stays on screen) and a pop-up, never a stack trace."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                message = html.escape(_user_message(err), quote=False)
                gr.Warning(message)
                outputs = [None] * n_outputs
                outputs[message_at] = f'<div class="sprm-error" role="alert">⚠ {message}</div>'
                return tuple(outputs)

        return wrapper

    return decorate


def about_markdown(model_name: str, model_card_url: str | None, has_card: bool, limits: DemoLimits) -> str:
    card = f" ([model card]({model_card_url}))" if model_card_url else (" (model card below)" if has_card else "")
    return f"""# Step-by-step scores for math solutions

A **self-supervised process reward model** (SPRM, [MetaStone-S1]({PAPER_URL})) gives every *step* of a solution a
score between 0 (likely wrong) and 1 (likely right). It is a small head on a language model's own hidden states,
trained from final-answer correctness only. Paste a question and a solution, or pick an example below.
Model: **{html.escape(model_name)}**{card}. This demo runs on CPU: at most {limits.max_solution_chars:,}
characters per solution and {limits.max_candidates} sampled candidates.
"""


def _model_card_text(model) -> str | None:
    path = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", "")
    card = Path(path) / "README.md" if path else None
    return card.read_text(encoding="utf-8") if card is not None and card.is_file() else None


def build_demo(
    model,
    tokenizer,
    model_name: str,
    limits: DemoLimits = DemoLimits(),
    model_card_url: str | None = None,
) -> gr.Blocks:
    """The demo app (queue configured; start it with `launch`)."""
    scorer = DemoScorer(model, tokenizer, model_name, limits)
    examples = load_examples()
    default_threshold = float(model.config.threshold)
    aggregations = list(AGGREGATIONS)

    with gr.Blocks(title="SPRM: step scores for math solutions", fill_width=False) as demo:
        card_text = _model_card_text(model)
        gr.Markdown(about_markdown(model_name, model_card_url, card_text is not None, limits))
        if (warning := untrained_head_warning(model, model_name)) is not None:
            warning = warning.removeprefix("warning: ")
            gr.Markdown(f"> ⚠️ **{html.escape(warning[:1].upper() + warning[1:])}**", elem_id="untrained-warning")

        with gr.Tab("Score a solution", id="score", elem_id="score-tab"):
            with gr.Row():
                with gr.Column(scale=5):
                    question = gr.Textbox(label="Question", lines=3, elem_id="question")
                    solution = gr.Textbox(
                        label="Solution",
                        lines=9,
                        elem_id="solution",
                        placeholder="Write the steps one after another; end each with '.' and a blank line.",
                    )
                    step_mode = gr.Radio([(v, k) for k, v in STEP_MODES.items()], value="model", label="Split steps")
                    with gr.Row():
                        threshold = gr.Slider(0, 1, value=default_threshold, step=0.01, label="Error threshold")
                        aggregation = gr.Dropdown(
                            aggregations, value=model.config.aggregation, label="Aggregation"
                        )
                    score_button = gr.Button("Score", variant="primary", elem_id="score-button")
                with gr.Column(scale=6):
                    solution_score = gr.Number(
                        label="Solution score", precision=4, interactive=False, elem_id="solution-score"
                    )
                    summary = gr.HTML(css_template=STEPS_CSS, elem_id="score-summary")
                    steps_view = gr.HTML(css_template=STEPS_CSS, elem_id="score-steps")
                    plot = gr.Plot(label="Step scores", format="png", elem_id="score-plot")
                    with gr.Accordion("JSON (as `sprm score --json`)", open=False):
                        result_json = gr.JSON(show_label=False)
            gr.Examples(
                examples["score"],
                inputs=[question, solution, step_mode],
                example_labels=examples["score_labels"],
                cache_examples=False,
                label="Examples: GSM8K reference solutions and ProcessBench model solutions with human labels",
            )

            @_page_errors(n_outputs=5, message_at=1)
            def on_score(q, s, mode, t, agg):
                result = scorer.score(q, s, mode, t, agg)
                first = result["first_error_step"]
                return (
                    round(result["score"], 4),
                    summary_html(result, t, agg),
                    steps_html(result["steps"], first, t),
                    step_plot(result["steps"], t, first),
                    result.public_json(model_name),
                )

            score_button.click(
                on_score,
                inputs=[question, solution, step_mode, threshold, aggregation],
                outputs=[solution_score, summary, steps_view, plot, result_json],
                api_visibility="private",
                concurrency_id="model",
            )

        with gr.Tab("Think / response", id="think", elem_id="think-tab"):
            gr.Markdown(
                "For traces with `<think>...</think>`: the thinking span and the final response are cut into "
                "steps and scored **separately** (each with its own aggregated score)."
            )
            with gr.Row():
                with gr.Column(scale=5):
                    think_question = gr.Textbox(label="Question", lines=2, elem_id="think-question")
                    trace = gr.Textbox(label="Trace", lines=10, elem_id="think-trace",
                                       placeholder="<think>\nstep.\n\nstep.\n\n</think>\n\nanswer.")  # fmt: skip
                    with gr.Row():
                        think_threshold = gr.Slider(0, 1, value=default_threshold, step=0.01, label="Error threshold")
                        think_aggregation = gr.Dropdown(
                            aggregations, value=model.config.aggregation, label="Aggregation"
                        )
                    think_button = gr.Button("Score both spans", variant="primary", elem_id="think-button")
                with gr.Column(scale=6):
                    with gr.Row():
                        think_score = gr.Number(label="Think score", precision=4, interactive=False)
                        response_score = gr.Number(label="Response score", precision=4, interactive=False)
                    think_note = gr.HTML(css_template=STEPS_CSS, elem_id="think-note")
                    gr.Markdown("**Thinking**")
                    think_view = gr.HTML(css_template=STEPS_CSS, elem_id="think-steps")
                    gr.Markdown("**Response**")
                    response_view = gr.HTML(css_template=STEPS_CSS, elem_id="response-steps")
            gr.Examples(
                examples["think"],
                inputs=[think_question, trace],
                example_labels=examples["think_labels"],
                cache_examples=False,
            )

            @_page_errors(n_outputs=5, message_at=2)
            def on_think(q, text, t, agg):
                result = scorer.score_parts(q, text, t, agg)
                parts = {p: [s for s in result["steps"] if s["part"] == p] for p in ("think", "response")}
                note = "" if result["has_tags"] else "No <think>...</think> tags: the whole text is the response."
                if result["truncated"]:
                    note += " The trace was longer than the model's context: steps after the cut are not scored."
                firsts = {p: first_error_step([s["score"] for s in parts[p]], t) for p in parts}
                views = [steps_html(parts[p], firsts[p], t) for p in ("think", "response")]
                scores = [round(result["part_scores"][p], 4) if parts[p] else None for p in ("think", "response")]
                note = (note_html(note.strip()) if note else "") + unscored_html(result["unscored"])
                return (*scores, note + legend_html(t), *views)

            think_button.click(
                on_think,
                inputs=[think_question, trace, think_threshold, think_aggregation],
                outputs=[think_score, response_score, think_note, think_view, response_view],
                api_visibility="private",
                concurrency_id="model",
            )

        with gr.Tab("Generate and pick", id="generate", elem_id="generate-tab"):
            _generate_tab(scorer, examples["questions"], limits)

        if card_text:
            with gr.Accordion("Model card", open=False):
                gr.Markdown(card_text)

        gr.api(_api_errors(scorer.score_api), api_name="score", concurrency_id="model")
        gr.api(_api_errors(scorer.generate_api), api_name="generate", concurrency_id="model")

    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.max_queue)
    demo.sprm_limits = limits  # launch() reads max_request_bytes
    return demo


def _generate_tab(scorer: DemoScorer, questions: list[str], limits: DemoLimits) -> None:
    gr.Markdown(
        "Sample several solutions from the backbone, score each with the SPRM (from the hidden states computed "
        "while sampling), and compare the SPRM's pick (highest solution score) with the majority-vote answer. "
        "Modes: "
        + ", ".join(f"**{m}** = {n} samples" for m, n in GENERATION_MODES.items())
        + f" (this demo allows at most {limits.max_candidates}, of up to {limits.max_new_tokens} tokens each)."
    )
    with gr.Row():
        with gr.Column(scale=5):
            question = gr.Textbox(label="Question", lines=3, elem_id="generate-question")
            mode = gr.Radio(list(GENERATION_MODES), value="low", label="Mode", elem_id="generate-mode")
            button = gr.Button("Generate and pick", variant="primary", elem_id="generate-button")
        with gr.Column(scale=6):
            pick = gr.HTML(css_template=STEPS_CSS, elem_id="generate-pick")
            table = gr.HTML(css_template=STEPS_CSS, elem_id="generate-candidates")
    gr.Examples([[q] for q in questions], inputs=[question], cache_examples=False)

    @_page_errors(n_outputs=2, message_at=0)
    def on_generate(q, m, progress=gr.Progress()):
        def report(stage: str, done: int, total: int) -> None:
            what = "sampling candidates" if stage == "generate" else "scoring"
            progress(done / max(total, 1), desc=what)

        result = scorer.generate(q, m, progress_callback=report)
        return pick_summary_html(result), candidates_html(result, scorer.config.threshold)

    button.click(
        on_generate, inputs=[question, mode], outputs=[pick, table], api_visibility="private", concurrency_id="model"
    )


def hub_model_url(name_or_path: str | None) -> str | None:
    """The Hub page of a model id (``owner/name``); None for a local folder or the embedded default."""
    if not name_or_path or Path(name_or_path).exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path):
        return None
    return f"https://huggingface.co/{name_or_path}"


class RequestSizeLimit:
    """ASGI middleware: a request whose body is over ``max_bytes`` gets 413 and a message, before its body is read
    (a declared ``Content-Length``), or as soon as the part read passes the limit (a chunked body: the app then
    sees the client leave). Gradio reads a whole body into memory before any check of the app's own; this stops a
    50 MB request at the door."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send, int(declared) if declared.isdigit() else None)
        received, started, refused = 0, False, False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes and not started:
                refused = True
                await self._refuse(send, None)
                return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            if refused:  # the app's answer to a request already refused
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, watched_send)

    async def _refuse(self, send, size: int | None) -> None:
        what = f"{size:,} bytes" if size is not None else "more than that"
        body = json.dumps({"error": f"Request body too large ({what}): this demo accepts at most "
                                    f"{self.max_bytes:,} bytes."}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, **kwargs):
    """Start the app (theme and page settings in one place for `sprm demo`, the Space and the tests). ``host``
    and ``port`` default to gradio's (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``, else 127.0.0.1:7860). The
    request-size limit is the one `build_demo` was given (`DemoLimits.max_request_bytes`)."""
    if kwargs.get("allowed_paths") or os.environ.get("GRADIO_ALLOWED_PATHS"):
        raise ValueError("the demo serves no files: do not set allowed_paths or GRADIO_ALLOWED_PATHS")
    from starlette.middleware import Middleware

    max_bytes = getattr(demo, "sprm_limits", DemoLimits()).max_request_bytes
    app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(RequestSizeLimit, max_bytes=max_bytes)]
    kwargs["app_kwargs"] = app_kwargs
    kwargs.setdefault("theme", gr.themes.Soft(primary_hue="indigo"))
    kwargs.setdefault("show_error", True)  # messages of gr.Error, never tracebacks
    kwargs.setdefault("footer_links", ["api", "gradio"])
    return demo.launch(server_name=host, server_port=port, **kwargs)
