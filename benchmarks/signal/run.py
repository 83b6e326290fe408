"""Run one experiment of the step-signal study and write benchmarks/results/signal_{experiment}.json.

    python -m benchmarks.signal.run --experiment baselines            # random, length, position + length
    python -m benchmarks.signal.run --experiment readouts --seeds 0   # linear probe on every layer x pooling
    python -m benchmarks.signal.run --experiment heads                # step-supervised heads on chosen readouts
    python -m benchmarks.signal.run --experiment objectives           # outcome-only objectives x outcome labels
    python -m benchmarks.signal.run --experiment bbm                  # BIG-Bench Mistake, leave one task out

Readouts come from ``python -m benchmarks.signal.extract`` (cached under ~/.cache/sprm/signal). The protocol is
``benchmarks/signal/protocol.py``'s. Each JSON records the machine, date, commit and whether the package and
this study's code were clean (the script refuses uncommitted changes there unless ``--allow-dirty``, and then
records a hash of the diff), the data (solutions per group, what the length cap cut), every method's point
metrics per held-out group and averaged, 95% bootstrap intervals over problems, and the paired comparisons the
experiment states.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.signal.extract import DEFAULT_CACHE, LAYERS
from benchmarks.signal.heads import Recipe
from benchmarks.signal.protocol import Context, Method, Readout, compare, evaluate
from benchmarks.signal.table import load_table

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
WATCHED = ("modeling_sprm", "benchmarks/signal")  # code the results depend on: must be committed

# -- recipes ---------------------------------------------------------------------------------------------------------

BALANCED = {"class_balance": True, "positive_factor": 1.0}
# The earlier experiments' step-supervised recipe (central_experiment.py): MetaStone-S1's head, standardised features.
METASTONE_MLP = Recipe("metastone_mlp", dropout=0.5, epochs=8, learning_rate=2e-3, batch_size=64, weight_decay=0.01)
PROBES = tuple(
    Recipe(f"probe_l2_{l2:g}", head="linear", solver="lbfgs", epochs=100, l2=l2, loss_options=BALANCED)
    for l2 in (1e-4, 1e-3, 1e-2, 1e-1)
)
TUNED_MLP = tuple(
    METASTONE_MLP.but(name=f"mlp_balanced_d{dropout}_e{epochs}", dropout=dropout, epochs=epochs,
                      loss_options=BALANCED)
    for dropout in (0.1, 0.5) for epochs in (8, 24)
)

BASELINES = (
    Method("random", baseline="random"),
    Method("length", baseline="length"),
    Method("position_length", baseline="position_length"),
)
MS_READOUT = Readout((29,), ("delimiter",))  # MetaStone-S1's: hidden_states[-2] at the read position


def probe(name: str, readout: Readout) -> Method:
    return Method(name, readout, PROBES)


def readout_sweep() -> list[Readout]:
    """Every readout the linear probe is screened on (experiment ``readouts``)."""
    sweep = [Readout((layer,), (pooling,)) for pooling in ("delimiter", "mean") for layer in LAYERS]
    sweep += [Readout((), (), structure, hidden=False) for structure in ("tokens", "chars")]
    sweep += [Readout((layer,), ("delimiter", "mean")) for layer in (15, 22, 29)]
    several = (8, 15, 22, 29)
    sweep += [Readout(several, (p,)) for p in ("delimiter", "mean")] + [Readout(several, ("delimiter", "mean"))]
    for readout in (Readout((29,), ("delimiter",)), Readout((29,), ("mean",)), Readout((29,), ("delimiter", "mean")),
                    Readout(several, ("delimiter", "mean"))):
        for structure in ("tokens", "chars"):
            sweep.append(Readout(readout.layers, readout.poolings, structure))
    return sweep


def chosen_readout(hidden: bool = True, single_layer: bool = False) -> tuple[Readout, dict]:
    """The readout with the highest mean **validation** step AUROC of the linear probe (training splits only, from
    signal_readouts.json): the choice never looks at a held-out split. ``hidden=False``: among readouts of hidden
    states alone (no structure features); ``single_layer``: among readouts of one layer (the MLP head's first
    layer has 2c x c weights, too slow to train here on several layers' concatenation)."""
    path = RESULTS / "signal_readouts.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run the readouts experiment first")
    sweep = {f"probe {r.label()}": r for r in readout_sweep()}
    best = None
    for name, result in json.loads(path.read_text())["methods"].items():
        readout = sweep.get(name)
        if readout is None or not readout.hidden or (not hidden and readout.structure != "none") or (
                single_layer and len(readout.layers) > 1):
            continue
        values = [d["validation_step_auroc"] for g in result["per_group"].values() for d in g["diagnostics"]]
        value = float(np.mean(values))
        if best is None or value > best[1]:
            best = (name, value)
    return sweep[best[0]], {"readout": best[0], "mean_validation_step_auroc": best[1], "from": path.name}


def experiment_baselines() -> tuple[list[Method], list[tuple[str, str]], dict]:
    return list(BASELINES), [("position_length", "length"), ("length", "random"), ("position_length", "random")], {}


def experiment_readouts() -> tuple[list[Method], list[tuple[str, str]], dict]:
    methods = list(BASELINES) + [probe(f"probe {r.label()}", r) for r in readout_sweep()]
    return methods, [(m.name, "position_length") for m in methods[len(BASELINES):]], {
        "selection": "later experiments use the readout with the best mean validation step AUROC (training splits)"}


OUTCOME_RECIPE = Recipe("outcome", labels="outcome", loss="outcome_bce", dropout=0.5, epochs=8, learning_rate=2e-3,
                        batch_size=64, weight_decay=0.01)
OBJECTIVES = {
    "outcome_bce": OUTCOME_RECIPE,
    "spr": OUTCOME_RECIPE.but(name="spr", loss="spr"),
    "spr_balanced": OUTCOME_RECIPE.but(name="spr_balanced", loss="spr", loss_options={"class_balance": True}),
    "spr_warmup": OUTCOME_RECIPE.but(name="spr_warmup", loss="spr", warmup_steps=72),  # about 2 of 8 epochs
    "mil": OUTCOME_RECIPE.but(name="mil", loss="mil"),
    "first_error": OUTCOME_RECIPE.but(name="first_error", loss="first_error"),
    "asymmetric_spr": OUTCOME_RECIPE.but(name="asymmetric_spr", loss="asymmetric_spr"),
}
OUTCOME_LABELS = ("real", "no_flawed", "ideal")


def experiment_heads() -> tuple[list[Method], list[tuple[str, str]], dict]:
    """Step-supervised heads: the earlier recipe on MetaStone-S1's readout, then probes and MLPs on the readout
    chosen by validation AUROC (with and without structure features)."""
    best, note = chosen_readout()
    best_hidden, note_hidden = chosen_readout(hidden=False)
    single, note_single = chosen_readout(single_layer=True)
    methods = list(BASELINES) + [
        Method("metastone_mlp @ms", MS_READOUT, (METASTONE_MLP,)),
        probe("probe @ms", MS_READOUT),
        probe("probe @best_hidden", best_hidden),
        probe("probe @best", best),
        probe("probe @best_single", single),
        Method("metastone_mlp @best_single", single, (METASTONE_MLP,)),
        Method("tuned_mlp @best_single", single, TUNED_MLP, tune_first_seed_only=True),
        Method("probe @best, threshold keeping half the right solutions", best, PROBES, threshold="step_correct50"),
    ]
    comparisons = [(m.name, "position_length") for m in methods[len(BASELINES):]] + [
        ("probe @best", "length"), ("probe @best", "probe @ms"), ("probe @best", "metastone_mlp @ms"),
        ("tuned_mlp @best_single", "metastone_mlp @best_single"), ("tuned_mlp @best_single", "probe @best_single"),
        ("metastone_mlp @best_single", "metastone_mlp @ms"),
        ("probe @best", "probe @best_hidden"), ("probe @best_hidden", "position_length"),
    ]
    return methods, comparisons, {"best": note, "best_hidden": note_hidden, "best_single": note_single}


def outcome_methods(readout: Readout, head: str, labels=OUTCOME_LABELS, objectives=tuple(OBJECTIVES),
                    suffix: str = "") -> list[Method]:
    return [Method(f"{name} [{label}] {head}{suffix}", readout, (OBJECTIVES[name].but(head=head),), outcome=label)
            for name in objectives for label in labels]


def experiment_objectives() -> tuple[list[Method], list[tuple[str, str]], dict]:
    """Outcome-only objectives x outcome labels, linear head on the chosen readout; MLP head on the real outcome."""
    best, note = chosen_readout()
    single, note_single = chosen_readout(single_layer=True)
    methods = list(BASELINES) + [probe("probe @best", best)]
    methods += outcome_methods(best, "linear")
    methods += outcome_methods(single, "mlp", labels=("real",), suffix=" @best_single")
    for name in ("outcome_bce", "mil"):  # thresholds without step labels, and the shipped head's rule
        recipe = OBJECTIVES[name].but(head="linear")
        methods += [Method(f"{name} [real] linear, threshold from outcomes", best, (recipe,), threshold="outcome"),
                    Method(f"{name} [real] linear, threshold keeping half the right solutions", best, (recipe,),
                           threshold="step_correct50")]
    comparisons = []
    for m in methods[len(BASELINES) + 1:]:
        comparisons += [(m.name, "random"), (m.name, "length")]
    return methods, comparisons, {"best": note, "best_single": note_single}


def experiment_bbm() -> tuple[list[Method], list[tuple[str, str]], dict]:
    best, note = chosen_readout()
    methods = list(BASELINES) + [
        Method("metastone_mlp @ms", MS_READOUT, (METASTONE_MLP,)),
        probe("probe @best", best),
    ] + outcome_methods(best, "linear", labels=("real", "ideal"), objectives=("outcome_bce", "spr", "mil"))
    comparisons = [(m.name, "random") for m in methods[len(BASELINES):]] + [("probe @best", "position_length")]
    return methods, comparisons, {"best": note}


EXPERIMENTS = {"baselines": experiment_baselines, "readouts": experiment_readouts, "heads": experiment_heads,
               "objectives": experiment_objectives, "bbm": experiment_bbm}


# -- provenance -----------------------------------------------------------------------------------------------------


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:  # no git on this machine (the GPU machine gets a copy of the tree)
        return None
    return done.stdout if done.returncode == 0 else None


def provenance(allow_dirty: bool) -> dict:
    if git("rev-parse", "HEAD") is None:  # no history here: the sender says which commit and whether it was clean
        clean = os.environ.get("SPRM_GIT_CLEAN") == "1"
        if not clean and not allow_dirty:
            raise SystemExit("no git history here: set SPRM_GIT_COMMIT and SPRM_GIT_CLEAN=1 (a clean tree), or pass "
                             "--allow-dirty")
        return {"commit": os.environ.get("SPRM_GIT_COMMIT"), "clean": clean,
                "source": "SPRM_GIT_COMMIT / SPRM_GIT_CLEAN (no git history on this machine)"}
    dirty = git("status", "--porcelain", "--", *WATCHED).strip()
    out = {"commit": git("rev-parse", "HEAD").strip(), "clean": not dirty}
    if dirty:
        if not allow_dirty:
            raise SystemExit(f"uncommitted changes under {', '.join(WATCHED)}:\n{dirty}\ncommit them, or pass "
                             "--allow-dirty (the diff's hash is then recorded)")
        diff = git("diff", "HEAD", "--", *WATCHED) + git("ls-files", "--others", "--exclude-standard", *WATCHED)
        out["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
        out["dirty_files"] = dirty.splitlines()
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "processor": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, choices=sorted(EXPERIMENTS))
    parser.add_argument("--dataset", default=None, choices=["processbench", "bbm"],
                        help="default: bbm for the bbm experiment, else processbench")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--partial", action="store_true", help="use the finished chunks only (marked in the JSON)")
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    source = provenance(args.allow_dirty)
    dataset = args.dataset or ("bbm" if args.experiment == "bbm" else "processbench")
    table = load_table(dataset, args.data_root, args.cache_dir, partial=args.partial)
    if not table.complete and not args.partial:
        raise SystemExit("extraction is not complete")
    log = lambda message: print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)  # noqa: E731
    ctx = Context(table, tuple(args.seeds), args.resamples, Path(args.cache_dir), log)
    methods, comparisons, notes = EXPERIMENTS[args.experiment]()
    log(f"{args.experiment}: {len(methods)} methods on {dataset} ({len(table.ids)} solutions, "
        f"{len(table.step_label)} read steps{'' if table.complete else ', PARTIAL'})")
    results = {}
    for method in methods:
        results[method.name] = evaluate(ctx, method)
        average = results[method.name]["averages"]["average"]
        log(f"{method.name:<44} F1 {100 * average['metrics']['f1']:.1f} {_pct(average['interval']['f1'])}  "
            f"step AUROC {average['metrics']['step_auroc']:.3f}")
    paired = [compare(results[a], results[b], metric, average)
              for a, b in comparisons for metric in ("f1", "step_auroc") for average in results[a]["averages"]]
    out = {
        "experiment": args.experiment,
        "command": f"python -m benchmarks.signal.run --experiment {args.experiment} --seeds "
                   + " ".join(map(str, args.seeds)) + f" --resamples {args.resamples}"
                   + (" --partial" if args.partial else "") + (f" --dataset {args.dataset}" if args.dataset else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "source": source,
        "data": {
            "dataset": dataset, "complete": table.complete,
            "solutions": {g: int((table.groups == g).sum()) for g in table.group_names},
            "read_steps": int(len(table.step_label)), "cut_by_length_cap": table.cut,
            "backbone": "SmolLM2-135M-Instruct (embedded, frozen)",
        },
        "protocol": {"seeds": args.seeds, "resamples": args.resamples, "interval": "95% percentile bootstrap over "
                     "solutions of each held-out group, paired across methods", "description": _protocol_text()},
        "notes": notes,
        "methods": {name: public(r) for name, r in results.items()},
        "comparisons": paired,
        "runtime_s": round(time.time() - started),
    }
    path = Path(args.out) if args.out else RESULTS / f"signal_{args.experiment}{'' if table.complete else '_partial'}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    log(f"wrote {path} in {out['runtime_s']} s")


def _pct(ci) -> str:
    return "[-]" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _protocol_text() -> str:
    from benchmarks.signal import protocol

    return " ".join(protocol.__doc__.split("\n\n")[1:3]).replace("\n", " ")


if __name__ == "__main__":
    main()
