"""Answer equivalence on numbers: the fast path of `modeling_sprm.answers` (parse both as numbers, compare by value)
against math-verify alone, on the same pairs: do they give the same verdicts, and how much faster is the fast path?

    python -m benchmarks.answer_equivalence --gsm8k ../shared/data/gsm8k/test.jsonl   # -> results/answer_equivalence.json

Pairs, for each GSM8K reference answer r: the same value spelled as written, ``r.0``, ``$r``, ``r.`` and (for
r >= 1000) with thousands separators, each against r (should match); r + 1 and r / 10, written exactly, against r (should not).
"""

from __future__ import annotations

import argparse
import time

from benchmarks._common import git_state, gsm8k_path, machine, write_result


def spellings(reference: str) -> tuple[list[str], list[str]]:
    """(same-value spellings, other values) of a GSM8K reference answer."""
    value = float(reference.replace(",", ""))
    plain = reference.replace(",", "")
    same = [plain, f"{plain}.0", f"${plain}", f"{plain}."]
    if abs(value) >= 1000 and value == int(value):
        same.append(f"{int(value):,}")
    exact = (lambda v: str(int(v)) if v == int(v) else repr(v))
    other = [exact(value + 1), exact(value / 10)]
    return same, other


def timed(function, pairs) -> tuple[list[bool], float]:
    start = time.perf_counter()
    verdicts = [function(a, b) for a, b in pairs]
    return verdicts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gsm8k", help="GSM8K test.jsonl (or set $SPRM_GSM8K)")
    parser.add_argument("--limit", type=int, default=None, help="Use the first N problems.")
    args = parser.parse_args()
    from modeling_sprm.answers import math_equivalent, normalize_number, numbers_match
    from modeling_sprm.data import load_gsm8k_problems

    path = gsm8k_path(args.gsm8k)
    answers = [p["answer"] for p in load_gsm8k_problems(path)][: args.limit]
    pairs, expected = [], []
    for reference in answers:
        same, other = spellings(reference)
        pairs += [(s, reference) for s in same] + [(o, reference) for o in other]
        expected += [True] * len(same) + [False] * len(other)
    start_machine, start_git = machine(), git_state()  # before the run: the tree may change while it runs

    def fast(a: str, b: str) -> bool:
        return numbers_match(normalize_number(a), normalize_number(b))

    math_equivalent("1", "1")  # math-verify's first call imports sympy's parser: not part of the comparison
    fast_verdicts, fast_s = timed(fast, pairs)
    mv_verdicts, mv_s = timed(math_equivalent, pairs)
    disagreements = [{"pair": p, "fast_path": f, "math_verify": m}
                     for p, f, m in zip(pairs, fast_verdicts, mv_verdicts) if f != m]
    result = {
        "command": f"python -m benchmarks.answer_equivalence --gsm8k {path}" + (f" --limit {args.limit}" if args.limit else ""),
        "machine": start_machine,
        **start_git,
        "problems": len(answers),
        "pairs": len(pairs),
        "fast_path": {"seconds": round(fast_s, 4), "us_per_pair": round(1e6 * fast_s / len(pairs), 2),
                      "correct": sum(v == e for v, e in zip(fast_verdicts, expected))},
        "math_verify": {"seconds": round(mv_s, 4), "us_per_pair": round(1e6 * mv_s / len(pairs), 2),
                        "correct": sum(v == e for v, e in zip(mv_verdicts, expected))},
        "same_verdicts": len(pairs) - len(disagreements),
        "disagreements": disagreements[:20],
        "speedup": round(mv_s / fast_s, 1),
    }
    print(write_result("answer_equivalence", result))
    print({k: result[k] for k in ("pairs", "fast_path", "math_verify", "same_verdicts", "speedup")})


if __name__ == "__main__":
    main()
