"""Mutation testing of the core modules: do the tests catch small bugs?

Plants one small bug (a *mutant*) at a time in a **copy** of a module, runs that module's fast tests against the
copy, and counts the mutants no test catches (*survivors*). Writes ``benchmarks/results/mutation.json``: machine,
date, commit, per-module counts and every survivor with its diff and, where one is recorded in
``benchmarks/mutation_explanations.json``, the reason it is equivalent (or the test that kills it since).

    python -m benchmarks.mutation                                  # the core modules in PLAN, 40 mutants each
    python -m benchmarks.mutation modeling_sprm/training/losses.py modeling_sprm/steps.py   # some modules only
    python -m benchmarks.mutation modeling_sprm/training/losses.py --functions spr_loss --list  # the mutants only
    python -m benchmarks.mutation modeling_sprm/aggregation.py --max-per-module 0           # every mutant
    python -m benchmarks.mutation --root /tmp/old-checkout --out /tmp/before.json       # another checkout's tests
    python -m benchmarks.mutation --recheck benchmarks/results/mutation.json \
        --out benchmarks/results/mutation_recheck.json            # an earlier run's survivors, against today's tests

A module is named by its path; its functions and tests come from PLAN (looked up by file name, so the plan
follows a module that moves to another folder), or from ``--functions`` / ``--tests`` / ``-k`` for one module.

The mutation operators (one change per mutant, only inside the chosen functions, never in ``raise`` messages or
docstrings): comparison boundaries (``<`` <-> ``<=``, ``>`` <-> ``>=``) and negations (``<`` -> ``>=``,
``==`` -> ``!=``, ``in`` -> ``not in``); arithmetic (``+`` <-> ``-``, ``*`` <-> ``/``, ``**`` -> ``*``, ``+=`` <->
``-=``); ``and`` <-> ``or``, ``&`` <-> ``|``; dropped unary ``-`` / ``not`` / ``~``; off-by-one integer constants;
``True`` <-> ``False``, ``0.0`` <-> ``1.0``, ``"left"`` <-> ``"right"``, ``"inf"`` <-> ``"-inf"``; swapped
``min``/``max`` (builtins, methods, ``minimum``/``maximum``, ``argmin``/``argmax``, ``clamp(min=)``/``clamp(max=)``),
``any``/``all``; a dropped mask (``x * mask`` -> ``x``, ``a & known`` -> ``a``); a dropped ``.detach()``,
``.masked_fill(...)``, ``.clamp(...)``; one branch of ``where(c, a, b)``; and a dropped pass-through keyword
(``global_sum=global_sum``: an option that is not passed on).

Why a script of our own and not mutmut: mutmut 3 would be a new dependency in the shared venv, mutates the
whole tree it copies with its own operator set, and has no per-function restriction or sampling that fits a
one-hour budget on two shared cores; the operators above are the bugs the issue asks about (ties at a
threshold, dropped masks, swapped min/max, options not passed on), and this file is all there is to read.

How a mutant runs: the repository (package, tests, pyproject) is copied once to a temporary folder; per mutant the
module file there is overwritten and pytest runs in a child forked from this process, which imported torch,
transformers, numpy and pytest once (a fresh interpreter per mutant would spend about 5 s on those imports); the
child imports the package from the copy, never from the checkout. Killed = the tests fail or error; timeout = they
run longer than ``--timeout-factor`` x the unmutated run (at least 60 s; counted apart, as caught); survived = they
pass. Runs with nice 10, one torch thread, the tests stopping at the first failure (``-x``).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
EXPLANATIONS = Path(__file__).resolve().parent / "mutation_explanations.json"

# file name -> the functions to mutate and the fast tests that guard them (paths relative to the repository root).
PLAN = {
    "losses.py": {
        "functions": ["_check", "_outcome_targets", "class_balance_weights", "weighted_mean", "weighted_bce",
                      "log1mexp", "bce_from_log_prob", "spr_loss", "outcome_bce", "step_bce", "asymmetric_spr_loss",
                      "mil_loss", "first_error_loss", "get_loss"],
        "tests": ["tests/test_losses.py"],
    },
    "steps.py": {
        "functions": ["StepRules.__post_init__", "EncodedTrace.scored_positions", "_single", "scored_regions",
                      "_protected_spans", "_delimiter_pattern", "_delimiter_matches", "_trailing_anchor", "segment",
                      "_closing_delimiter", "join_steps", "_running_ends", "_text_token_end", "token_index",
                      "read_positions", "encode", "build_trace"],
        "tests": ["tests/test_steps.py"],
    },
    "aggregation.py": {
        "functions": ["_finish", "geometric_mean", "product", "minimum", "mean", "last", "aggregate",
                      "aggregate_scores", "first_error_step"],
        "tests": ["tests/test_aggregation.py", "tests/test_threshold_ties.py"],
    },
    "metrics.py": {  # modeling_sprm/evaluation/metrics.py
        "functions": ["predict_first_error", "_first_below", "choose_threshold", "outcome_auroc", "_disjoint_groups",
                      "best_of_n_accuracy", "majority_vote_accuracy", "expected_calibration_error"],
        "tests": ["tests/test_evaluation.py", "tests/test_threshold_ties.py"],
        "k": "not sprm_eval and not score_records",  # the model-scoring tests are slow and test no metric
    },
    "processbench.py": {  # modeling_sprm/evaluation/sprm_processbench/processbench.py: the metrics' numpy core
        "functions": ["first_below", "_harmonic_mean", "processbench_f1", "auroc", "step_auroc"],
        "tests": ["tests/test_evaluation.py", "tests/test_threshold_ties.py"],
        "k": "not sprm_eval and not score_records",
    },
    "generation.py": {  # the selection code: step search's beam choice, Best-of-N ranking
        "functions": ["partial_score", "summarize", "step_search"],
        "tests": ["tests/test_step_search_selection.py", "tests/test_generation.py"],
        "k": "selection or summarize or partial_score or step_search",
        # not selection: argument checks, seeding, progress reports
        "skip_lines": r"isinstance\(value|MAX_NUM_CANDIDATES|_progress_reporter|progress_callback|seed is not None"
                      r"|threshold is None",
    },
}
PREIMPORTS = ["numpy", "torch", "transformers", "transformers.pipelines", "transformers.models.llama.modeling_llama",
              "safetensors.torch", "tokenizers", "datasets", "evaluate", "pytest"]


# ---------------------------------------------------------------------------------------------------------------
# Mutants


@dataclass
class Mutant:
    module: str
    function: str
    operator: str
    line: int
    line_text: str
    original: str
    replacement: str
    source: str = field(repr=False)
    id: str = ""
    diff: str = ""


class Text:
    """Character offsets of AST positions (whose columns count UTF-8 bytes)."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def at(self, lineno: int, col: int) -> int:
        return self.starts[lineno - 1] + len(self.lines[lineno - 1].encode()[:col].decode())

    def span(self, node) -> tuple[int, int]:
        return self.at(node.lineno, node.col_offset), self.at(node.end_lineno, node.end_col_offset)


COMPARE = {  # operator class -> (its text pattern, [(operator kind, replacement text)])
    ast.Lt: (r"<(?!=)", [("compare-boundary", "<="), ("compare-negate", ">=")]),
    ast.LtE: (r"<=", [("compare-boundary", "<"), ("compare-negate", ">")]),
    ast.Gt: (r">(?!=)", [("compare-boundary", ">="), ("compare-negate", "<=")]),
    ast.GtE: (r">=", [("compare-boundary", ">"), ("compare-negate", "<")]),
    ast.Eq: (r"==", [("compare-negate", "!=")]),
    ast.NotEq: (r"!=", [("compare-negate", "==")]),
    ast.In: (r"(?<!not )\bin\b", [("compare-negate", "not in")]),
    ast.NotIn: (r"\bnot\s+in\b", [("compare-negate", "in")]),
    ast.Is: (r"\bis\b(?!\s+not)", [("compare-negate", "is not")]),
    ast.IsNot: (r"\bis\s+not\b", [("compare-negate", "is")]),
}
BINARY = {
    ast.Add: (r"\+", "-"), ast.Sub: (r"-", "+"), ast.Mult: (r"(?<!\*)\*(?!\*)", "/"), ast.Div: (r"(?<!/)/(?!/)", "*"),
    ast.FloorDiv: (r"//", "/"), ast.Pow: (r"\*\*", "*"), ast.BitAnd: (r"&", "|"), ast.BitOr: (r"\|", "&"),
    ast.Mod: (r"%", "*"),
}
AUGMENTED = {ast.Add: ("+=", "-="), ast.Sub: ("-=", "+="), ast.Mult: ("*=", "/=")}
SWAPS = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum", "argmin": "argmax",
         "argmax": "argmin", "amin": "amax", "amax": "amin", "any": "all", "all": "any"}
STRINGS = {"left": "right", "right": "left", "inf": "-inf", "-inf": "inf"}
DROPPED_CALLS = {"detach", "masked_fill", "clamp", "clamp_min", "clamp_max"}
MASK_WORDS = re.compile(r"mask|keep|kept|known|weight|has_|below|valid")


def function_nodes(tree: ast.Module) -> dict[str, ast.AST]:
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = item
    return found


DIMENSION_CALLS = {"unsqueeze", "squeeze", "sum", "prod", "mean", "cumsum", "cat", "stack", "gather", "expand_as",
                   "min", "max", "argmin", "argmax", "any", "all", "flatten", "softmax", "logsumexp"}


def _dimension_arguments(node: ast.AST) -> list[ast.AST]:
    """The tensor-dimension arguments of a call (``dim=-1``, ``x.sum(-1)``, ``x.shape[-1]``): mutating them
    crashes or reshapes, which says nothing about the rules under test, so they are left alone."""
    if isinstance(node, ast.Call):
        found = [k for k in node.keywords if k.arg in ("dim", "axis", "dims")]
        if isinstance(node.func, ast.Attribute) and node.func.attr in DIMENSION_CALLS:
            found += [a for a in node.args if isinstance(a, (ast.Constant, ast.UnaryOp))]
        return found
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
        return [node.slice]
    return []


def body_nodes(function: ast.AST):
    """Every node of the function's body, skipping its docstring, whatever a ``raise`` builds (messages) and
    tensor-dimension arguments."""
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Raise, ast.JoinedStr)):
            continue
        yield node
        skip = {id(n) for n in _dimension_arguments(node)}
        if isinstance(node, ast.AnnAssign):  # a type annotation is not behaviour
            skip.add(id(node.annotation))
        stack.extend(reversed([n for n in ast.iter_child_nodes(node) if id(n) not in skip]))


def _find(text: Text, start: int, end: int, pattern: str) -> tuple[int, int] | None:
    match = re.search(pattern, text.text[start:end])
    return (start + match.start(), start + match.end()) if match else None


def edits_for(node: ast.AST, text: Text, parameters: set[str]):
    """``(operator, start, end, replacement)`` text edits, each one mutant."""
    src = text.text
    if isinstance(node, ast.Compare):
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            pattern, replacements = COMPARE[type(op)]
            where = _find(text, text.span(left)[1], text.span(right)[0], pattern)
            if where:
                for kind, new in replacements:
                    yield kind, *where, new
            left = right
    elif isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        pattern, new = BINARY[type(node.op)]
        where = _find(text, text.span(node.left)[1], text.span(node.right)[0], pattern)
        if where:
            yield ("bitwise" if isinstance(node.op, (ast.BitAnd, ast.BitOr)) else "arithmetic"), *where, new
        if isinstance(node.op, (ast.Mult, ast.BitAnd)):  # a dropped mask
            start, end = text.span(node)
            for kept, dropped in ((node.left, node.right), (node.right, node.left)):
                if MASK_WORDS.search(src[slice(*text.span(dropped))]):
                    yield "drop-mask", start, end, f"({src[slice(*text.span(kept))]})"
    elif isinstance(node, ast.BoolOp):
        word, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        # all the operators of the chain at once: "a and b and c" -> "a or b or c", as one edit of the whole node
        start, end = text.span(node)
        pieces, last = [], start
        for before, after in zip(node.values, node.values[1:]):
            where = _find(text, text.span(before)[1], text.span(after)[0], rf"\b{word}\b")
            if where is None:
                return
            pieces += [src[last : where[0]], new]
            last = where[1]
        yield "boolean", start, end, "".join(pieces) + src[last:end]
    elif isinstance(node, ast.AugAssign) and type(node.op) in AUGMENTED:
        old, new = AUGMENTED[type(node.op)]
        where = _find(text, text.span(node.target)[1], text.span(node.value)[0], re.escape(old))
        if where:
            yield "arithmetic", *where, new
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
        start = text.span(node)[0]
        where = _find(text, start, text.span(node.operand)[0], r"-|~|not\s*")
        if where and not (isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)):
            yield "drop-unary", *where, ""
    elif isinstance(node, ast.Constant):
        start, end = text.span(node)
        value = node.value
        if isinstance(value, bool):
            yield "constant", start, end, str(not value)
        elif isinstance(value, int):
            yield "constant", start, end, str(value + 1)
            if value > 0:
                yield "constant", start, end, str(value - 1)
        elif isinstance(value, float) and value in (0.0, 1.0):
            yield "constant", start, end, "1.0" if value == 0.0 else "0.0"
        elif isinstance(value, str) and value in STRINGS:
            quote = src[start]
            yield "constant", start, end, f"{quote}{STRINGS[value]}{quote}"
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in SWAPS:
            end = text.span(func)[1]
            yield "swap-min-max" if name not in ("any", "all") else "swap-any-all", end - len(name), end, SWAPS[name]
        for keyword in node.keywords:
            if keyword.arg in ("min", "max"):
                start = text.at(keyword.lineno, keyword.col_offset)
                yield "swap-min-max", start, start + 3, "max" if keyword.arg == "min" else "min"
            if isinstance(keyword.value, ast.Name) and keyword.value.id == keyword.arg and keyword.arg in parameters:
                start, end = text.at(keyword.lineno, keyword.col_offset), text.span(keyword.value)[1]
                before = src[:start].rstrip()
                if before.endswith(","):
                    yield "drop-keyword", len(before) - 1, end, ""
                else:
                    after = re.match(r"\s*,?\s*", src[end:]).end()
                    yield "drop-keyword", start, end + after, ""
        if isinstance(func, ast.Attribute) and name in DROPPED_CALLS:
            yield "drop-call", *text.span(node), f"({src[slice(*text.span(func.value))]})"
        if name == "where" and len(node.args) == 3 and not node.keywords:
            for branch in node.args[1:]:
                yield "where-branch", *text.span(node), f"({src[slice(*text.span(branch))]})"


def make_mutants(
    path: Path, module_key: str, functions: list[str] | None, skip_lines: str | None = None
) -> tuple[list[Mutant], list[str]]:
    source = path.read_text(encoding="utf-8")
    text = Text(source)
    available = function_nodes(ast.parse(source))
    if functions is None:
        functions = list(available)
    missing = [f for f in functions if f not in available]
    if missing:
        raise SystemExit(f"{path}: no function(s) {missing}; it has {sorted(available)}")
    mutants, seen = [], {source}
    occurrences: dict[tuple, int] = {}
    for name in functions:
        function = available[name]
        arguments = function.args
        parameters = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
        for node in body_nodes(function):
            for operator, start, end, new in edits_for(node, text, parameters):
                mutated = source[:start] + new + source[end:]
                if mutated in seen:
                    continue
                try:
                    ast.parse(mutated)
                except SyntaxError:
                    continue
                seen.add(mutated)
                line = source.count("\n", 0, start) + 1
                line_text = text.lines[line - 1].strip()
                if skip_lines and re.search(skip_lines, line_text):
                    continue
                key = (module_key, name, line_text, operator, source[start:end], new)
                occurrences[key] = occurrences.get(key, 0) + 1
                digest = hashlib.sha1(repr((*key, occurrences[key])).encode()).hexdigest()[:12]
                diff = "".join(difflib.unified_diff(source.splitlines(True), mutated.splitlines(True),
                                                    f"a/{path.name}", f"b/{path.name}", n=0))
                mutants.append(Mutant(module_key, name, operator, line, line_text, source[start:end], new, mutated,
                                      digest, diff))
    return mutants, functions


# ---------------------------------------------------------------------------------------------------------------
# Running the tests against a mutant


def copy_repository(root: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".venv", ".git", "test-artifacts", "results", "*.pyc")
    for name in ("modeling_sprm", "tests", "benchmarks"):
        shutil.copytree(root / name, target / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (root / name).exists():
            shutil.copy(root / name, target / name)


def run_tests(copy: Path, tests: list[str], k: str | None, timeout: float, log: Path) -> tuple[str, float]:
    """Run pytest on the copy in a forked child: ``("passed" | "failed" | "timeout", seconds)``."""
    args = ["-q", "-x", "-p", "no:cacheprovider", "--no-header", "-W", "ignore", *tests]
    if k:
        args += ["-k", k]
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 70
        try:
            os.setpgid(0, 0)
            fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(copy)
            sys.path[:] = [str(copy), str(copy / "tests")] + [p for p in sys.path if Path(p or ".").resolve() != ROOT]
            sys.dont_write_bytecode = True
            import pytest
            import torch

            torch.set_num_threads(1)
            code = int(pytest.main(args))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return ("passed" if code == 0 else "failed"), time.monotonic() - start
        if time.monotonic() - start > timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.05)


def default_path(root: Path, name: str) -> str:
    """The file called ``name`` under modeling_sprm/ that defines PLAN's functions (not a re-exporting shim)."""
    for path in sorted(root.glob(f"modeling_sprm/**/{name}")):
        if set(PLAN[name]["functions"]) <= set(function_nodes(ast.parse(path.read_text(encoding="utf-8")))):
            return str(path)
    raise SystemExit(f"no modeling_sprm/**/{name} defines {PLAN[name]['functions']}; give the module paths")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", help="module files (default: PLAN's modules at their current paths)")
    p.add_argument("--functions", nargs="+", help="functions to mutate (one module only; default: PLAN's)")
    p.add_argument("--tests", nargs="+", help="test files to run (one module only; default: PLAN's)")
    p.add_argument("-k", help="pytest -k expression for the tests (one module only; default: PLAN's)")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository whose package and tests are used")
    p.add_argument("--max-per-module", type=int, default=40,
                   help="run a seeded random sample of at most this many mutants per module (0: all); the default "
                        "keeps a run of PLAN's six module files (about 240 mutants) near 20 minutes on 2 shared cores")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--timeout-factor", type=float, default=6.0,
                   help="timeout = this x the unmutated run, at least 60 s (generous: other jobs share the cores)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--only", nargs="+", help="run only the mutants with these ids")
    p.add_argument("--recheck", type=Path,
                   help="run only the survivors of this earlier result (all of them, no sampling), against the "
                        "tests of this checkout; the output lists each one's outcome")
    p.add_argument("--out", type=Path, default=RESULTS / "mutation.json")
    args = p.parse_args(argv)

    root = args.root.resolve()
    modules = args.modules or [default_path(root, name) for name in PLAN]
    recheck = None
    if args.recheck:
        recheck = json.loads(args.recheck.read_text())
        args.only = [s["id"] for s in recheck["survivors"]]
        args.max_per_module = 0
        survived_in = {s["module"] for s in recheck["survivors"]}
        modules = [m for m in modules if str((root / m).resolve().relative_to(root)) in survived_in]
    if (args.functions or args.tests or args.k) and len(modules) != 1:
        p.error("--functions, --tests and -k apply to one module; give exactly one module path")
    plans = []
    for module in modules:
        path = Path(module) if Path(module).is_absolute() else root / module
        if not path.is_file():
            p.error(f"no module file {path}")
        plan = PLAN.get(path.name, {})
        if not plan and not (args.functions and args.tests):
            p.error(f"{path.name} is not in PLAN: give --functions and --tests")
        relative = str(path.resolve().relative_to(root))
        tests = args.tests or plan["tests"]
        missing = [t for t in tests if not (root / t).is_file()]  # e.g. an older checkout's suite (--root)
        tests = [t for t in tests if t not in missing]
        mutants, functions = make_mutants(path, path.name, args.functions or plan.get("functions"),
                                          None if args.functions else plan.get("skip_lines"))
        if args.only:
            mutants = [m for m in mutants if m.id in args.only]
        generated = len(mutants)
        if args.max_per_module and len(mutants) > args.max_per_module:  # same source, same seed: same sample
            mutants = random.Random(f"{args.seed}-{path.name}").sample(mutants, args.max_per_module)
            mutants.sort(key=lambda m: m.line)
        plans.append({"path": relative, "functions": functions, "tests": tests, "missing_tests": missing,
                      "k": args.k if args.k is not None else plan.get("k"), "mutants": mutants,
                      "generated": generated})
    if args.list:
        for plan in plans:
            print(f"== {plan['path']}: {plan['generated']} mutants, running {len(plan['mutants'])}")
            for m in plan["mutants"]:
                print(f"{m.id} {m.function}:{m.line} {m.operator}: {m.original!r} -> {m.replacement!r}   {m.line_text}")
        return

    # Environment as tests/conftest.py sets it, before transformers and huggingface_hub are imported here.
    hf_home = tempfile.mkdtemp(prefix="sprm-mutation-hf-")
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False",
                      HF_HOME=hf_home, HF_DATASETS_CACHE=os.path.join(hf_home, "datasets"),
                      TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    os.nice(10)
    for name in PREIMPORTS:
        try:
            __import__(name)
        except ImportError:
            pass
    assert "modeling_sprm" not in sys.modules, "the package must be imported by the children, from the copy"
    from benchmarks._common import machine  # noqa: E402  (imports torch; after the environment above)

    explanations = json.loads(EXPLANATIONS.read_text()) if EXPLANATIONS.is_file() else {}
    started = time.monotonic()
    result = {
        "machine": machine(),
        "commit": _git(root, "rev-parse", "HEAD"),
        "tree_clean": _git(root, "status", "--porcelain", "--untracked-files=no") == "",
        "diff_sha256": hashlib.sha256(_git(root, "diff", "HEAD").encode()).hexdigest(),
        "command": "python -m benchmarks.mutation " + " ".join(argv if argv is not None else sys.argv[1:]),
        "root": str(root),
        "timeout_factor": args.timeout_factor,
        "max_per_module": args.max_per_module,
        "sample_seed": args.seed,
        "modules": {},
        "survivors": [],
    }
    if recheck is not None:
        result["recheck_of"] = {"path": str(args.recheck), "commit": recheck["commit"], "survivors": len(args.only)}
        result["outcomes"] = []
    with tempfile.TemporaryDirectory(prefix="sprm-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repository(root, copy)
        log = Path(tmp) / "pytest.log"
        for plan in plans:
            target = copy / plan["path"]
            original = target.read_text(encoding="utf-8")
            status, baseline = run_tests(copy, plan["tests"], plan["k"], 1800, log)
            if status != "passed":
                raise SystemExit(f"the tests fail on the unmutated {plan['path']}:\n{log.read_text()[-3000:]}")
            timeout = max(60.0, args.timeout_factor * baseline)
            counts = {"generated": plan["generated"], "run": 0, "killed": 0, "timeout": 0, "survived": 0}
            by_operator: dict[str, dict[str, int]] = {}
            print(f"== {plan['path']}: {len(plan['mutants'])} of {plan['generated']} mutants, baseline "
                  f"{baseline:.1f} s, timeout {timeout:.0f} s", flush=True)
            for i, m in enumerate(plan["mutants"], 1):
                target.write_text(m.source, encoding="utf-8")
                status, seconds = run_tests(copy, plan["tests"], plan["k"], timeout, log)
                counts["run"] += 1
                outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
                counts[outcome] += 1
                if recheck is not None:
                    result["outcomes"].append({"id": m.id, "module": plan["path"], "outcome": outcome})
                tally = by_operator.setdefault(m.operator, {"run": 0, "killed": 0, "timeout": 0, "survived": 0})
                tally["run"] += 1
                tally[outcome] += 1
                print(f"[{i}/{len(plan['mutants'])}] {status:8s} {seconds:5.1f}s {m.id} {m.function}:{m.line} "
                      f"{m.operator}: {m.original!r} -> {m.replacement!r}", flush=True)
                if status == "passed":
                    result["survivors"].append({
                        "id": m.id, "module": plan["path"], "function": m.function, "line": m.line,
                        "operator": m.operator, "original": m.original, "replacement": m.replacement,
                        "line_text": m.line_text, "diff": m.diff,
                        "explanation": explanations.get(m.id, {}).get("explanation"),
                    })
            target.write_text(original, encoding="utf-8")
            result["modules"][plan["path"]] = {
                "functions": plan["functions"], "tests": plan["tests"], "missing_tests": plan["missing_tests"],
                "k": plan["k"],
                "baseline_seconds": round(baseline, 1), "timeout_seconds": round(timeout, 1),
                "sampled": len(plan["mutants"]) < plan["generated"], **counts, "by_operator": by_operator,
            }
    result["totals"] = {key: sum(m[key] for m in result["modules"].values())
                        for key in ("generated", "run", "killed", "timeout", "survived")}
    result["unexplained_survivors"] = sum(s["explanation"] is None for s in result["survivors"])
    result["runtime_s"] = round(time.monotonic() - started)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {result['totals']}, {result['unexplained_survivors']} survivors unexplained")


if __name__ == "__main__":
    main()
