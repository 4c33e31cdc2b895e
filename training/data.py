"""Stream the tokenized Parquet, found through its manifest, as shuffled, sharded, padded batches.

    from training.data import TokenizedSplit, batches
    split = TokenizedSplit.open("lakehouse/tokenized", "train")      # LATEST, a folder or a manifest.json
    for batch in batches(split.rows(rank, world_size, epoch, seed), batch_size=32, pad_id=0):
        model(**batch)                                               # input_ids, attention_mask, labels

Sharding (the choice): the rows of an epoch get one global order: the Parquet row groups are
permuted by (seed, epoch), and the rows inside each row group by (seed, epoch, row group).
Rank r takes the rows whose position p in that order has p % world_size == r. So every row
is used exactly once per epoch across ranks, the ranks' counts differ by at most one row, and
the order depends only on the seed and epoch, never on timing. Ranks that end up one batch
short are handled by the training loop (DDP's join), not by repeating or dropping rows.

Memory stays bounded: one row group is read at a time, only the `input_ids` and `label`
columns. Each rank reads every row group and keeps its share. That costs I/O, not memory,
and the token data is small next to the model.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

# The dataset's layout and lookup have one home, tokenization.dataset; both stay importable from here.
from tokenization.dataset import DataError, resolve_manifest

COLUMNS = ["input_ids", "label"]


@dataclass(frozen=True)
class RowGroup:
    path: str
    index: int
    rows: int


@dataclass(frozen=True)
class TokenizedSplit:
    manifest_path: Path
    manifest: dict
    split: str
    row_groups: tuple[RowGroup, ...]

    @classmethod
    def open(cls, location: str | Path, split: str) -> "TokenizedSplit":
        import pyarrow.parquet as pq

        manifest_path = resolve_manifest(location)
        manifest = json.loads(manifest_path.read_text())
        files = manifest.get("files", {}).get(split)
        if files is None:
            raise DataError(f"{manifest_path} has no split {split!r} (splits: {', '.join(manifest.get('files', {}))})")
        groups = []
        for rel in files:
            path = str(manifest_path.parent / rel)
            meta = pq.ParquetFile(path).metadata
            groups += [RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
        return cls(manifest_path, manifest, split, tuple(groups))

    @property
    def num_rows(self) -> int:
        return sum(g.rows for g in self.row_groups)

    def label_counts(self, num_labels: int) -> list[int]:
        """Rows per label id: from the manifest when it has them, else one scan of the label column."""
        known = self.manifest.get("splits", {}).get(self.split, {}).get("label_counts")
        counts = [0] * num_labels
        if known is not None:
            for label, n in known.items():
                counts[int(label)] += n
            return counts
        import pyarrow.parquet as pq

        for path in sorted({g.path for g in self.row_groups}):
            for label in pq.read_table(path, columns=["label"]).column("label").to_pylist():
                counts[label] += 1
        return counts

    def rank_rows(self, rank: int, world_size: int) -> int:
        """How many rows rank `rank` gets in any epoch."""
        return len(range(rank, self.num_rows, world_size))

    def rows(self, rank: int = 0, world_size: int = 1, epoch: int = 0, seed: int = 0, shuffle: bool = True,
             skip: int = 0) -> Iterator[tuple[np.ndarray, int]]:
        """This rank's (input_ids, label) rows for `epoch`, after skipping its first `skip` rows."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        import pyarrow.parquet as pq

        order = np.arange(len(self.row_groups))
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(order)
        position = 0  # of the row group's first row in the epoch's global order
        for g in order:
            group = self.row_groups[g]
            first = (rank - position) % world_size
            mine = len(range(first, group.rows, world_size))
            position += group.rows
            if skip >= mine:  # resuming: the whole share of this row group was already used
                skip -= mine
                continue
            within = np.arange(group.rows)
            if shuffle:
                within = np.random.default_rng([seed, epoch, int(g)]).permutation(group.rows)
            take = within[first::world_size][skip:]
            skip = 0
            table = pq.ParquetFile(group.path).read_row_group(group.index, columns=COLUMNS)
            ids = table.column("input_ids").combine_chunks()
            labels = table.column("label").to_numpy(zero_copy_only=False)
            offsets = ids.offsets.to_numpy()
            values = ids.values.to_numpy()
            for i in take:
                yield values[offsets[i]:offsets[i + 1]], int(labels[i])


def collate(rows: list[tuple[np.ndarray, int]], pad_id: int):
    """Pad to the longest row of the batch; the attention mask marks the real tokens."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (ids, _) in enumerate(rows):
        input_ids[i, :len(ids)] = ids
        mask[i, :len(ids)] = 1
    labels = np.array([label for _, label in rows], dtype=np.int64)
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels)}


def batches(rows: Iterator[tuple[np.ndarray, int]], batch_size: int, pad_id: int, bucket_batches: int = 0,
            seed: int = 0):
    """Padded batches. With `bucket_batches=k`, rows are gathered k batches at a time, sorted by
    length and cut into batches (less padding), and those batches are yielded in a seeded order."""
    rng = np.random.default_rng(seed)
    window = batch_size * max(bucket_batches, 1)
    buffer: list[tuple[np.ndarray, int]] = []

    def flush(buf):
        if bucket_batches:
            buf = sorted(buf, key=lambda r: len(r[0]))
        chunks = [buf[i:i + batch_size] for i in range(0, len(buf), batch_size)]
        if bucket_batches:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        for chunk in chunks:
            yield collate(chunk, pad_id)

    for row in rows:
        buffer.append(row)
        if len(buffer) == window:
            yield from flush(buffer)
            buffer = []
    if buffer:
        yield from flush(buffer)


class Prefetcher:
    """Build the next `depth` batches on a background thread (pinned when feeding a GPU), so the
    training step does not wait for Parquet reads and padding.

        stream = Prefetcher(batches(...), depth=2, pin_memory=True)
        batch = next(stream, None)

    The batches and their order are exactly those of the wrapped iterator. An exception in the
    producer is raised in the consumer."""

    _END = object()

    def __init__(self, iterator, depth: int = 2, pin_memory: bool = False):
        self._queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(iterator, pin_memory), daemon=True)
        self._thread.start()

    def _produce(self, iterator, pin_memory: bool) -> None:
        try:
            for batch in iterator:
                if pin_memory:
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:  # the consumer is busy; check for close() now and then
                        continue
                if self._stop.is_set():
                    return
            item = self._END
        except BaseException as exc:  # handed to the consumer
            item = exc
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
