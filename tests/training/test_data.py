"""training.data without Spark: manifest lookup, exact-once sharding, shuffling, padding."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from training.data import DataError, TokenizedSplit, batches, collate, resolve_manifest


def make_dataset(root, n_rows, row_group_size=7, files=2, key="k1"):
    """A tokenized dataset laid out as `lakebert tokenize` writes it: row i has ids [i, i, ...]."""
    folder = root / key
    (folder / "data" / "split=train").mkdir(parents=True)
    rels = []
    bounds = np.linspace(0, n_rows, files + 1).astype(int)
    for f in range(files):
        rows = range(bounds[f], bounds[f + 1])
        table = pa.table({
            "doc_id": [f"d{i}" for i in rows],
            "input_ids": pa.array([[i] * (1 + i % 5) for i in rows], pa.list_(pa.int32())),
            "length": pa.array([1 + i % 5 for i in rows], pa.int32()),
            "label": pa.array([i % 3 for i in rows], pa.int32()),
        })
        rel = f"data/split=train/part-{f:05d}.parquet"
        pq.write_table(table, folder / rel, row_group_size=row_group_size)
        rels.append(rel)
    (folder / "manifest.json").write_text(json.dumps({"rows": n_rows, "files": {"train": rels}}))
    (root / "LATEST").write_text(key)
    return root


def _ids(split, rank, world, epoch=0, seed=0, **kw):
    return [int(ids[0]) for ids, _ in split.rows(rank, world, epoch, seed, **kw)]


@pytest.mark.parametrize("n_rows", [10, 11, 1001])
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_shards_covering_every_row_once(tmp_path, n_rows, world):
    split = TokenizedSplit.open(make_dataset(tmp_path, n_rows), "train")
    shards = [_ids(split, r, world, epoch=1, seed=5) for r in range(world)]
    everything = [i for s in shards for i in s]
    assert sorted(everything) == list(range(n_rows))  # the union is all rows, no overlap
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(s) for s in shards] == [split.rank_rows(r, world) for r in range(world)]


def test_order_is_deterministic_per_seed_and_epoch_and_changes_between_epochs(tmp_path):
    split = TokenizedSplit.open(make_dataset(tmp_path, 200), "train")
    assert _ids(split, 0, 2, epoch=3, seed=1) == _ids(split, 0, 2, epoch=3, seed=1)
    assert _ids(split, 0, 2, epoch=3, seed=1) != _ids(split, 0, 2, epoch=4, seed=1)
    assert _ids(split, 0, 1, shuffle=False) == list(range(200))


def test_skip_resumes_exactly_where_a_rank_stopped(tmp_path):
    split = TokenizedSplit.open(make_dataset(tmp_path, 101), "train")
    full = _ids(split, 1, 3, epoch=2, seed=9)
    for skip in (0, 1, 6, 17, len(full)):
        assert _ids(split, 1, 3, epoch=2, seed=9, skip=skip) == full[skip:]


def test_manifest_found_from_root_folder_or_file(tmp_path):
    root = make_dataset(tmp_path, 10)
    assert resolve_manifest(root) == resolve_manifest(root / "k1") == resolve_manifest(root / "k1" / "manifest.json")
    with pytest.raises(DataError, match="run `lakebert tokenize`"):
        resolve_manifest(tmp_path / "nothing")
    with pytest.raises(DataError, match="no split 'test'"):
        TokenizedSplit.open(root, "test")


def test_collate_pads_to_the_longest_row_and_masks_padding():
    batch = collate([(np.array([5, 6, 7]), 1), (np.array([8]), 0)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_length_bucketing_keeps_every_row_and_reduces_padding(tmp_path):
    split = TokenizedSplit.open(make_dataset(tmp_path, 300), "train")

    def run(bucket):
        out = list(batches(split.rows(0, 1, seed=2), batch_size=8, pad_id=0, bucket_batches=bucket, seed=2))
        rows = sorted(int(b["input_ids"][i, 0]) for b in out for i in range(len(b["labels"])))
        padding = sum(int((b["attention_mask"] == 0).sum()) for b in out)
        return rows, padding

    plain_rows, plain_pad = run(0)
    bucket_rows, bucket_pad = run(8)
    assert plain_rows == bucket_rows == list(range(300))
    assert bucket_pad < plain_pad / 2


def test_prefetcher_yields_the_same_batches_in_the_same_order(tokenized_root):
    from training.data import Prefetcher

    split = TokenizedSplit.open(tokenized_root / "tokenized", "train")
    plain = list(batches(split.rows(0, 2, epoch=1, seed=9), 16, 0, bucket_batches=4, seed=3))
    ahead = list(Prefetcher(batches(split.rows(0, 2, epoch=1, seed=9), 16, 0, bucket_batches=4, seed=3), depth=3))
    assert len(plain) == len(ahead) == 15
    assert all(torch.equal(a[k], b[k]) for a, b in zip(plain, ahead) for k in a)


def test_prefetcher_raises_the_producers_error_in_the_consumer():
    from training.data import Prefetcher

    def broken():
        yield {"x": torch.zeros(1)}
        raise OSError("parquet file vanished")

    stream = Prefetcher(broken(), depth=2)
    assert torch.equal(next(stream)["x"], torch.zeros(1))
    with pytest.raises(OSError, match="vanished"):
        next(stream)
    assert next(stream, None) is None
