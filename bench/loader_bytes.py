"""Bytes each training rank reads per epoch: every rank reading the whole split (the loader before
row-group sharding, still used for small splits) against each rank reading its own row groups.

    .venv/bin/python bench/loader_bytes.py                       # 200k rows of 128 tokens, N = 2, 4, 8
    .venv/bin/python bench/loader_bytes.py --rows 50000 --ranks 2 3

The split is written as `lakebert tokenize` writes it (input_ids and label, zstd, row groups of
`--group-rows`), then read by every rank of N for one epoch, in this process, with the real
`training.data.TokenizedSplit`; `ReadCounter` counts the compressed bytes of the row groups read.
"whole" forces the whole-split read (SHARD_IMBALANCE_MAX = 0). Prints one JSON line per N and a
Markdown table. Counts, not times: the figures do not depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import data  # noqa: E402


def write_split(root: Path, rows: int, tokens: int, group_rows: int, files: int) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "k" / "data" / "split=train"
    folder.mkdir(parents=True)
    rels = []
    for f, part in enumerate(np.array_split(np.arange(rows), files)):
        lengths = rng.integers(tokens // 4, tokens + 1, len(part))
        ids = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32()),
                                       pa.array(rng.integers(5, 30000, int(lengths.sum())), pa.int32()))
        table = pa.table({"input_ids": ids, "label": pa.array(rng.integers(0, 5, len(part)), pa.int32())})
        rel = f"data/split=train/part-{f:05d}.parquet"
        pq.write_table(table, root / "k" / rel, row_group_size=group_rows, compression="zstd")
        rels.append(rel)
    (root / "k" / "manifest.json").write_text(json.dumps({"rows": rows, "files": {"train": rels}}))
    return root / "k"


def epoch_reads(location: Path, world: int, whole: bool) -> list[int]:
    saved = data.SHARD_IMBALANCE_MAX
    data.SHARD_IMBALANCE_MAX = 0.0 if whole else saved
    try:
        reads = []
        for rank in range(world):
            split = data.TokenizedSplit.open(location, "train")
            rows = sum(1 for _ in split.rows(rank, world, epoch=0, seed=1))
            assert rows == split.rank_rows(rank, world, epoch=0, seed=1)
            reads.append(split.reads.bytes)
        return reads
    finally:
        data.SHARD_IMBALANCE_MAX = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--tokens", type=int, default=128, help="longest row; rows are 1/4 to all of it")
    parser.add_argument("--group-rows", type=int, default=2_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    opts = parser.parse_args()
    lines = ["| N | split MB | whole: MB per rank | own row groups: MB per rank (max) | 1/N + one row group, MB | ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        location = write_split(Path(tmp), opts.rows, opts.tokens, opts.group_rows, opts.files)
        split = data.TokenizedSplit.open(location, "train")
        total, largest = split.num_bytes, max(g.bytes for g in split.row_groups)
        for world in opts.ranks:
            whole, own = epoch_reads(location, world, True), epoch_reads(location, world, False)
            assert sum(own) == total and max(whole) == total
            row = {"ranks": world, "split_bytes": total, "row_groups": len(split.row_groups),
                   "whole_per_rank": whole, "own_per_rank": own, "bound": total / world + largest,
                   "ratio_max_own_to_whole": round(max(own) / max(whole), 4)}
            print(json.dumps(row))
            lines.append(f"| {world} | {total / 1e6:.1f} | {max(whole) / 1e6:.1f} | {max(own) / 1e6:.2f} | "
                         f"{row['bound'] / 1e6:.2f} | {row['ratio_max_own_to_whole']:.3f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
