"""The extracted readouts of one data set as flat arrays: one row per read step, solutions contiguous and in order.

``load_table("processbench", data_root, cache_dir)`` reads the chunks ``benchmarks.signal.extract`` wrote (all of
them, or the finished ones with ``partial=True`` while extraction runs) and the records themselves (for the raw
step lengths the trivial baselines use, exactly as the earlier experiments computed them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.signal.extract import DEFAULT_CACHE, load_dataset_records
from modeling_sprm.readouts import CHARACTER_FEATURES, STRUCTURE_FEATURES

STRUCTURE_NAMES = STRUCTURE_FEATURES + CHARACTER_FEATURES


@dataclass
class Table:
    """Per solution (``[n]``) and per read step (``[N]``) arrays of a data set; see ``extract.CHUNK_FIELDS``."""

    name: str
    layers: tuple[int, ...]
    ids: np.ndarray
    groups: np.ndarray
    first_error: np.ndarray
    outcome: np.ndarray
    num_steps: np.ndarray
    num_read: np.ndarray
    truncated: np.ndarray
    step_solution: np.ndarray  # index into the per-solution arrays
    step_index: np.ndarray
    step_label: np.ndarray  # 1 / 0 / nan
    structure: np.ndarray  # [N, 7] float32
    record_chars: np.ndarray  # len() of the record's step string (the earlier baselines' length)
    readouts: dict = field(repr=False, default_factory=dict)  # pooling -> [N, layers, C] float16
    complete: bool = True
    cut: dict | None = None  # per group: solutions / steps cut by the length cap (from done.json)

    @property
    def offsets(self) -> np.ndarray:
        """``[n + 1]``: steps of solution i are rows ``offsets[i]:offsets[i + 1]``."""
        return np.concatenate([[0], np.cumsum(self.num_read)])

    @property
    def group_names(self) -> list[str]:
        return list(dict.fromkeys(self.groups.tolist()))

    def features(self, layers, pooling: str) -> np.ndarray:
        """``[N, len(layers) * C]`` float32: the readout of ``pooling`` at the given hidden_states indices."""
        index = [self.layers.index(layer) for layer in layers]
        block = self.readouts[pooling][:, index, :].astype(np.float32)
        return block.reshape(block.shape[0], -1)

    def subset(self, solutions: np.ndarray) -> "TableView":
        return TableView(self, np.asarray(solutions))


@dataclass
class TableView:
    """Some solutions of a table (in the order given) and their step rows."""

    table: Table
    solutions: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        offsets = self.table.offsets
        return np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in self.solutions]) if len(
            self.solutions) else np.zeros(0, dtype=int)


def cache_folders(name: str, cache_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(cache_dir).glob(f"{name}-*") if (p / "manifest.json").is_file())


def load_table(name: str, data_root: str | Path, cache_dir: str | Path = DEFAULT_CACHE, partial: bool = False,
               groups: tuple[str, ...] | None = None) -> Table:
    """All solutions of data set ``name`` (ProcessBench / BBM), in loader order, with their readouts. Without
    ``partial``, every chunk must be there; with it, only solutions from finished chunks are kept."""
    folders = cache_folders(name, cache_dir)
    if not folders:
        raise SystemExit(f"no extracted readouts of {name} under {cache_dir}: run python -m benchmarks.signal.extract")
    if len(folders) > 1:
        folders.sort(key=lambda p: (p / "manifest.json").stat().st_mtime)
    folder = folders[-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    records = {r["id"]: r for r in load_dataset_records(name, Path(data_root))}
    chunks = []
    for k in range(len(manifest["chunks"])):
        path = folder / f"chunk-{k:04d}.npz"
        if not path.is_file():
            if partial:
                continue
            raise SystemExit(f"{path} is missing: extraction has not finished (or use --partial)")
        with np.load(path) as data:
            chunks.append({key: data[key] for key in data.files})
    if not chunks:
        raise SystemExit(f"no finished chunk in {folder} yet")
    complete = len(chunks) == len(manifest["chunks"])
    # Put solutions back in loader order (chunks hold them sorted by length).
    order = {rid: i for i, rid in enumerate(records)}
    per_solution = []
    for c, chunk in enumerate(chunks):
        starts = np.concatenate([[0], np.cumsum(chunk["num_read"])])
        for i, rid in enumerate(chunk["ids"].tolist()):
            if groups is not None and chunk["groups"][i] not in groups:
                continue
            per_solution.append((order[rid], c, i, starts[i], starts[i + 1]))
    per_solution.sort()
    layers = tuple(int(v) for v in chunks[0]["layers"])

    def gather(key: str) -> np.ndarray:
        return np.concatenate([chunks[c][key][a:b] for _, c, _, a, b in per_solution])

    def solution_field(key: str) -> np.ndarray:
        return np.array([chunks[c][key][i] for _, c, i, _, _ in per_solution])

    num_read = solution_field("num_read")
    ids = solution_field("ids")
    record_chars = np.concatenate([
        np.array([len(s) for s in records[rid]["steps"][:n]], dtype=np.float32) for rid, n in zip(ids, num_read)
    ])
    done = folder / "done.json"
    return Table(
        name=name, layers=layers, ids=ids, groups=solution_field("groups"),
        first_error=solution_field("first_error"), outcome=solution_field("outcome"),
        num_steps=solution_field("num_steps"), num_read=num_read, truncated=solution_field("truncated"),
        step_solution=np.repeat(np.arange(len(per_solution)), num_read), step_index=gather("step_index"),
        step_label=gather("step_label"), structure=gather("structure"), record_chars=record_chars,
        readouts={p: gather(p) for p in ("delimiter", "mean")}, complete=complete,
        cut=json.loads(done.read_text())["cut"] if done.is_file() else None,
    )
