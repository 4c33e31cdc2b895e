"""The tokenized rows' statistics: counts per split that add up across incremental runs, and
what the manifest keeps of them (`tokenization.dataset.SplitStats`). Plain Python over the
rows of `tokenize_transforms.count_groups`; no Spark job here.

    splits, removed, label_map = split_stats(count_groups(marked))   # {split: SplitCounts}, ...
    splits = add_stats(counts_of_manifest(older.manifest), splits)   # an incremental run
    manifest_splits, content_hash = to_manifest_splits(splits)

The content hash is order-free (a per-split sum of row hashes), so equal rows give an equal
hash however many runs wrote them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from spark_jobs.tokenize_executor import LABEL_NAME
from spark_jobs.tokenize_transforms import CROSS_SPLIT
from tokenization.dataset import Manifest, SplitStats

LENGTH_PERCENTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass
class SplitCounts:
    """One split's kept rows, as counts that two disjoint sets of rows add up (`+`)."""

    rows: int = 0
    tokens: int = 0
    truncated: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)  # {label id as a string: rows}
    length_histogram: dict[int, int] = field(default_factory=dict)  # {tokens: rows}
    hash_sum: int = 0

    def add_group(self, rows: int, length: int, truncated: bool, label, row_hash) -> None:
        self.rows += rows
        self.tokens += rows * length
        self.truncated += rows if truncated else 0
        self.label_counts[str(label)] = self.label_counts.get(str(label), 0) + rows
        self.length_histogram[length] = self.length_histogram.get(length, 0) + rows
        self.hash_sum += int(row_hash)

    def __add__(self, other: SplitCounts) -> SplitCounts:
        return SplitCounts(self.rows + other.rows, self.tokens + other.tokens, self.truncated + other.truncated,
                           _merged(self.label_counts, other.label_counts),
                           _merged(self.length_histogram, other.length_histogram), self.hash_sum + other.hash_sum)

    @classmethod
    def of(cls, stats: SplitStats) -> SplitCounts:
        """A manifest's split back into counts (for an incremental run to add to)."""
        return cls(stats.rows, stats.tokens, stats.truncated, dict(stats.label_counts or {}),
                   {int(k): n for k, n in stats.length_histogram.items()}, int(stats.hash_sum))

    def to_stats(self) -> SplitStats:
        """What the manifest keeps: the counts, truncation rate and exact length percentiles."""
        lengths = self.length_histogram
        return SplitStats(
            rows=self.rows, tokens=self.tokens, truncated=self.truncated,
            label_counts=dict(sorted(self.label_counts.items())),
            truncation_rate=round(self.truncated / self.rows, 6),
            length_percentiles={f"p{int(q * 100)}": percentile(lengths, q) for q in LENGTH_PERCENTILES},
            length_histogram={str(length): n for length, n in sorted(lengths.items())},
            hash_sum=str(self.hash_sum),  # a string: JSON readers may not keep 80-bit integers
        )


def _merged(a: dict, b: dict) -> dict:
    merged = dict(a)
    for k, n in b.items():
        merged[k] = merged.get(k, 0) + n
    return merged


def split_stats(groups) -> tuple[dict[str, SplitCounts], dict[str, int], dict[str, int]]:
    """`count_groups` rows -> ({split: counts of the kept rows}, {split: rows removed as
    cross-split duplicates}, the label map {name: id} of all the rows)."""
    splits: dict[str, SplitCounts] = {}
    removed: dict[str, int] = {}
    labels: dict[str, int] = {}
    for g in groups:
        if g[LABEL_NAME] is not None:
            labels[g[LABEL_NAME]] = g["label"]
        if g[CROSS_SPLIT]:
            removed[g["split"]] = removed.get(g["split"], 0) + g["rows"]
            continue
        splits.setdefault(g["split"], SplitCounts()).add_group(g["rows"], g["length"], g["truncated"], g["label"],
                                                               g["hash"])
    return splits, removed, labels


def add_stats(a: dict[str, SplitCounts], b: dict[str, SplitCounts]) -> dict[str, SplitCounts]:
    """The counts of two disjoint sets of rows, split by split."""
    return {split: a.get(split, SplitCounts()) + b.get(split, SplitCounts()) for split in set(a) | set(b)}


def counts_of_manifest(manifest: Manifest) -> dict[str, SplitCounts]:
    """A manifest's splits back into counts (for an incremental run to add to)."""
    return {split: SplitCounts.of(stats) for split, stats in manifest.splits.items()}


def percentile(histogram: dict[int, int], q: float) -> int:
    """Exact percentile (nearest rank) of a {length: count} histogram."""
    rank, seen = max(1, math.ceil(q * sum(histogram.values()))), 0
    for length in sorted(histogram):
        seen += histogram[length]
        if seen >= rank:
            return length
    return 0


def to_manifest_splits(counts: dict[str, SplitCounts]) -> tuple[dict[str, SplitStats], str]:
    """The manifest's splits (in split-name order) and the order-free content hash: equal for
    equal rows, however many runs wrote them."""
    digest = hashlib.sha256()
    for split in sorted(counts):
        digest.update(f"{split}:{counts[split].rows}:{counts[split].hash_sum};".encode())
    return {split: counts[split].to_stats() for split in sorted(counts)}, digest.hexdigest()
