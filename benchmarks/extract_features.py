"""Extract and cache SmolLM2 step features for the experiment data sets (ProcessBench, BIG-Bench Mistake).

    python -m benchmarks.extract_features --data-root ../shared/data --cache-dir ~/.cache/sprm/features

Works in chunks of 200 records, each cached on disk as soon as it is done, so an interrupted run resumes where it
stopped; later runs with the same model, rules and data only load the cache. About an hour on 2 idle CPU cores.
"""

import argparse
import time
from pathlib import Path

import torch

from modeling_sprm.data import load_bbm, load_processbench
from modeling_sprm.training.features import extract_step_features
from modeling_sprm.loading import load_model_and_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder with processbench/ and big_bench_mistake/")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache/sprm/features"))
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--datasets", nargs="+", default=["processbench", "bbm"], choices=["processbench", "bbm"])
    parser.add_argument("--reverse", action="store_true",
                        help="do the chunks last to first (a second process can then work from the other end)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, _ = load_model_and_tokenizer(None)
    root = Path(args.data_root)
    loaders = {
        "processbench": lambda: load_processbench(str(root / "processbench")),
        "bbm": lambda: load_bbm(str(root / "big_bench_mistake")),
    }
    for name in args.datasets:
        records = loaders[name]()
        start = time.time()
        if args.reverse:
            for i in reversed(range(0, len(records), 200)):
                extract_step_features(model, tokenizer, records[i : i + 200], batch_size=args.batch_size,
                                      max_length=args.max_length, cache_dir=args.cache_dir)
        dataset = extract_step_features(
            model, tokenizer, records, batch_size=args.batch_size, max_length=args.max_length,
            cache_dir=args.cache_dir, chunk_size=200,
        )
        print(f"{name}: {len(dataset)} records, {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
