"""Stream the tokenized Parquet, found through its manifest, as shuffled, sharded, padded batches.

    from training.data import TokenizedSplit, batches
    split = TokenizedSplit.open("lakehouse/tokenized", "train")      # LATEST, a folder or a manifest.json
    for batch in batches(split.rows(rank, world_size, epoch, seed), batch_size=32, pad_id=0):
        model(**batch)                                               # input_ids, attention_mask, labels

Sharding: every rank reads only its share of the files. The split's Parquet row groups are
permuted by (seed, epoch), then each in turn goes whole to the rank with the fewest rows so
far. So a rank reads about 1/N of the bytes (at most one row group more), every row is used
exactly once per epoch, and the ranks' row counts differ by at most one row group. Ranks
with fewer rows run zero-weight batches at the epoch's end (the training loop's business).
A split whose largest row group exceeds SHARD_IMBALANCE_MAX of a rank's rows (a small split,
a few big files) is read whole by every rank instead, each keeping every N-th row of the
epoch's order: balanced to one row, at N times the reads, which a small split can afford.

Shuffling is bounded: a rank's own row groups are read in order into buffers of at least
`shuffle_buffer` rows (whole row groups), whose rows are permuted by (seed, epoch, rank,
buffer); read whole, each row group's rows are permuted by (seed, epoch, row group). The
order depends only on the seed and epoch, never on timing, so a resumed epoch regenerates
the same rows. The next row group is read on a thread while the current one is used, so
object-storage reads overlap compute. Memory: a buffer plus one row group.
Only the `input_ids` and `label` columns are read; `ReadCounter` counts their bytes.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import numpy as np

from conf.schema import TrainConfig
import storage
# The dataset's layout and lookup have one home, tokenization.dataset; both stay importable from here.
from tokenization.dataset import DataError, Manifest, TokenizedDataset, resolve_manifest  # noqa: F401 - re-exported

COLUMNS = ["input_ids", "label"]
# Whole row groups per rank only when the largest is at most this share of a rank's rows.
SHARD_IMBALANCE_MAX = 0.1
SHUFFLE_BUFFER = TrainConfig.model_fields["shuffle_buffer"].default  # rows permuted together (own row groups)


@dataclass(frozen=True)
class RowGroup:
    path: str
    index: int
    rows: int
    bytes: int  # compressed size of the columns the loader reads (COLUMNS)


class ReadCounter:
    """Bytes and row groups a process has read from a split (thread-safe: the read-ahead thread counts)."""

    def __init__(self):
        self.bytes, self.row_groups, self._lock = 0, 0, threading.Lock()

    def add(self, group: RowGroup) -> None:
        with self._lock:
            self.bytes += group.bytes
            self.row_groups += 1


def assign(groups: tuple[RowGroup, ...], order, world_size: int) -> list[list[int]]:
    """Whole row groups to ranks: each group in `order` goes to the rank with the fewest rows so
    far (ties: the lower rank). Shares then differ by at most one row group's rows."""
    import heapq

    shares: list[list[int]] = [[] for _ in range(world_size)]
    heap = [(0, rank) for rank in range(world_size)]
    for g in order:
        rows, rank = heapq.heappop(heap)
        shares[rank].append(int(g))
        heapq.heappush(heap, (rows + groups[g].rows, rank))
    return shares


@dataclass(frozen=True)
class TokenizedSplit:
    manifest_path: str
    manifest: Manifest
    split: str
    row_groups: tuple[RowGroup, ...]
    reads: ReadCounter

    @classmethod
    def open(cls, location: str | Path, split: str) -> TokenizedSplit:
        """A split of the dataset at `location` (a local path or any URI `storage` reads)."""
        return cls.of(TokenizedDataset.open(location), split)

    @classmethod
    def of(cls, dataset: TokenizedDataset, split: str) -> TokenizedSplit:
        """A split of a dataset already opened."""
        groups = []
        for path in dataset.files(split):
            meta = _parquet(path).metadata
            read = [j for j in range(meta.num_columns) if meta.schema.column(j).path.split(".")[0] in COLUMNS]
            groups += [RowGroup(path, i, meta.row_group(i).num_rows,
                                sum(meta.row_group(i).column(j).total_compressed_size for j in read))
                       for i in range(meta.num_row_groups)]
        return cls(dataset.manifest_path, dataset.manifest, split, tuple(groups), ReadCounter())

    @property
    def num_rows(self) -> int:
        return sum(g.rows for g in self.row_groups)

    @property
    def num_bytes(self) -> int:
        return sum(g.bytes for g in self.row_groups)

    def label_counts(self, num_labels: int) -> list[int]:
        """Rows per label id: from the manifest when it has them, else one scan of the label column."""
        known = self.manifest.split(self.split).label_counts
        counts = [0] * num_labels
        if known is not None:
            for label, n in known.items():
                counts[int(label)] += n
            return counts
        for path in sorted({g.path for g in self.row_groups}):
            for label in _parquet(path).read(columns=["label"]).column("label").to_pylist():
                counts[label] += 1
        return counts

    def sharded(self, world_size: int) -> bool:
        """Whole row groups per rank, when that keeps the ranks' shares within SHARD_IMBALANCE_MAX
        of each other (the greedy assignment's shares differ by at most the largest row group)."""
        most = max((g.rows for g in self.row_groups), default=0)
        return world_size == 1 or most <= SHARD_IMBALANCE_MAX * self.num_rows / world_size

    def shares(self, world_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True) -> list[list[int]]:
        """The row groups (indexes into `row_groups`, in reading order) each rank reads in `epoch`:
        its own when `sharded`, else all of them (each rank then keeps every world_size-th row)."""
        order = np.arange(len(self.row_groups))
        if shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(order)
        if not self.sharded(world_size):
            return [[int(g) for g in order]] * world_size
        return assign(self.row_groups, order, world_size)

    def rank_rows(self, rank: int, world_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True) -> int:
        """How many rows rank `rank` gets in `epoch`."""
        if not self.sharded(world_size):
            return len(range(rank, self.num_rows, world_size))
        return sum(self.row_groups[g].rows for g in self.shares(world_size, epoch, seed, shuffle)[rank])

    def most_rank_rows(self, world_size: int, epochs: int, seed: int) -> int:
        """The largest share of any rank in any of `epochs`: the rows every rank steps through per epoch."""
        if not self.sharded(world_size):
            return self.rank_rows(0, world_size)
        return max(sum(self.row_groups[g].rows for g in share)  # one assignment per epoch, not per rank
                   for epoch in range(max(epochs, 1)) for share in self.shares(world_size, epoch, seed))

    def rows(self, rank: int = 0, world_size: int = 1, epoch: int = 0, seed: int = 0, shuffle: bool = True,
             skip: int = 0, shuffle_buffer: int = SHUFFLE_BUFFER) -> Iterator[tuple[np.ndarray, int]]:
        """This rank's (input_ids, label) rows for `epoch`, after skipping its first `skip` rows."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        groups = self.shares(world_size, epoch, seed, shuffle)[rank]
        if self.sharded(world_size):
            yield from self._own_rows(groups, rank, epoch, seed, shuffle, skip, shuffle_buffer)
        else:
            yield from self._interleaved_rows(groups, rank, world_size, epoch, seed, shuffle, skip)

    def _own_rows(self, groups: list[int], rank: int, epoch: int, seed: int, shuffle: bool, skip: int,
                  shuffle_buffer: int):
        """The rows of this rank's own row groups, permuted within buffers of >= shuffle_buffer rows."""
        import pyarrow as pa

        buffers, current, size = [], [], 0  # (row groups, rows) of at least shuffle_buffer rows each
        for g in groups:
            current.append(g)
            size += self.row_groups[g].rows
            if size >= max(shuffle_buffer, 1):
                buffers.append((current, size))
                current, size = [], 0
        if current:
            buffers.append((current, size))
        kept = []
        for b, (members, size) in enumerate(buffers):  # resuming: buffers already used up are never read
            if skip >= size:
                skip -= size
            else:
                kept.append((b, members))
        tables = self._read_ahead([g for _, members in kept for g in members])
        for b, members in kept:
            read = [next(tables) for _ in members]
            ids = pa.chunked_array([t.column("input_ids").combine_chunks() for t in read]).combine_chunks()
            labels = np.concatenate([t.column("label").to_numpy(zero_copy_only=False) for t in read])
            order = np.arange(len(labels))
            if shuffle:
                order = np.random.default_rng([seed, epoch, rank, b]).permutation(len(labels))
            offsets, values = ids.offsets.to_numpy(), ids.values.to_numpy()
            for i in order[skip:]:
                yield values[offsets[i]:offsets[i + 1]], int(labels[i])
            skip = 0

    def _interleaved_rows(self, groups: list[int], rank: int, world_size: int, epoch: int, seed: int,
                          shuffle: bool, skip: int):
        """Every row group read, every world_size-th row of the epoch's global order kept (small splits)."""
        position, wanted = 0, []  # position: of the row group's first row in the epoch's global order
        for g in groups:
            group = self.row_groups[g]
            first = (rank - position) % world_size
            mine = len(range(first, group.rows, world_size))
            position += group.rows
            if skip >= mine:  # resuming: the whole share of this row group was already used
                skip -= mine
                continue
            within = np.random.default_rng([seed, epoch, g]).permutation(group.rows) if shuffle \
                else np.arange(group.rows)
            wanted.append((g, within[first::world_size][skip:]))
            skip = 0
        tables = self._read_ahead([g for g, _ in wanted])
        for (_, take), table in zip(wanted, tables):
            ids = table.column("input_ids").combine_chunks()
            labels = table.column("label").to_numpy(zero_copy_only=False)
            offsets, values = ids.offsets.to_numpy(), ids.values.to_numpy()
            for i in take:
                yield values[offsets[i]:offsets[i + 1]], int(labels[i])

    def _read_ahead(self, order: list[int]) -> Iterator:
        """The row groups' tables in `order`, the next one read on a thread while this one is used."""
        from concurrent.futures import ThreadPoolExecutor

        if not order:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakebert-read") as pool:
            pending = pool.submit(self._read, order[0])
            for nxt in [*order[1:], None]:
                table = pending.result()
                if nxt is not None:
                    pending = pool.submit(self._read, nxt)
                yield table

    def read_row_group(self, g: int):
        """Row group `g`'s `input_ids` and `label` (a pyarrow table), read outside the loader and
        so not counted in `reads` (the linear baseline, training.baseline, reads the splits so)."""
        group = self.row_groups[g]
        return _parquet(group.path).read_row_group(group.index, columns=COLUMNS)

    def _read(self, g: int):
        group = self.row_groups[g]
        table = _parquet(group.path).read_row_group(group.index, columns=COLUMNS)
        self.reads.add(group)
        return table


def _parquet(location: str):
    """A Parquet file at any location `storage` reads (object stores: ranged reads)."""
    import pyarrow.parquet as pq

    filesystem, path = storage.resolve(location)
    return pq.ParquetFile(filesystem.open_input_file(path))


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
