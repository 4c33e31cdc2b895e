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
    largest = max(g.rows for g in split.row_groups)
    assert max(map(len, shards)) - min(map(len, shards)) <= (largest if split.sharded(world) else 1)
    assert [len(s) for s in shards] == [split.rank_rows(r, world, epoch=1, seed=5) for r in range(world)]
    assert max(map(len, shards)) <= split.most_rank_rows(world, epochs=2, seed=5)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_reads_its_own_row_groups_about_one_nth_of_the_bytes(tmp_path, world):
    root = make_dataset(tmp_path, 3000, row_group_size=37, files=3)
    shards, reads = [], []
    for rank in range(world):  # a fresh split per rank: its counter is that process's reads
        split = TokenizedSplit.open(root, "train")
        shards.append(_ids(split, rank, world, epoch=2, seed=1))
        reads.append(split.reads.bytes)
    assert split.sharded(world)
    assert sorted(i for s in shards for i in s) == list(range(3000))
    largest = max(g.bytes for g in split.row_groups)
    assert sum(reads) == split.num_bytes  # each row group read by exactly one rank
    assert all(r <= split.num_bytes / world + largest for r in reads), (reads, split.num_bytes)


def test_a_split_of_few_big_row_groups_is_read_whole_by_every_rank_and_balanced_to_one_row(tmp_path):
    split = TokenizedSplit.open(make_dataset(tmp_path, 300, row_group_size=100, files=1), "train")
    assert not split.sharded(2)  # a 100-row group is a third of a rank's 150 rows
    shards = [_ids(split, r, 2, epoch=1, seed=4) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(300)) and len(shards[0]) == len(shards[1]) == 150
    assert split.reads.bytes == 2 * split.num_bytes


def test_shuffling_mixes_rows_only_within_a_bounded_buffer_of_row_groups(tmp_path):
    split = TokenizedSplit.open(make_dataset(tmp_path, 2000, row_group_size=10, files=1), "train")
    share = split.shares(2, epoch=0, seed=3)[0]
    rows = _ids(split, 0, 2, epoch=0, seed=3, shuffle_buffer=30)  # buffers of 3 row groups
    for b in range(0, len(share) // 3):
        members = {i for g in share[3 * b:3 * b + 3] for i in range(10 * g, 10 * g + 10)}  # row i is in group i // 10
        assert set(rows[30 * b:30 * b + 30]) == members
    assert rows[:30] != sorted(rows[:30])  # shuffled inside the buffer
    big = _ids(split, 0, 2, epoch=0, seed=3, shuffle_buffer=10_000)
    assert sorted(big) == sorted(rows) and big != rows


@pytest.mark.parametrize("n_rows", [60, 3000])  # read whole by every rank; each rank's own row groups
def test_order_is_deterministic_per_seed_and_epoch_and_changes_between_epochs(tmp_path, n_rows):
    split = TokenizedSplit.open(make_dataset(tmp_path, n_rows), "train")
    assert split.sharded(2) == (n_rows == 3000)
    assert _ids(split, 0, 2, epoch=3, seed=1) == _ids(split, 0, 2, epoch=3, seed=1)
    assert _ids(split, 0, 2, epoch=3, seed=1) != _ids(split, 0, 2, epoch=4, seed=1)
    assert _ids(split, 0, 2, epoch=3, seed=1) != _ids(split, 0, 2, epoch=3, seed=2)
    assert _ids(split, 0, 1, shuffle=False) == list(range(n_rows))


@pytest.mark.parametrize("n_rows", [101, 3000])
def test_skip_resumes_exactly_where_a_rank_stopped(tmp_path, n_rows):
    split = TokenizedSplit.open(make_dataset(tmp_path, n_rows), "train")
    full = _ids(split, 1, 3, epoch=2, seed=9, shuffle_buffer=50)
    for skip in (0, 1, 6, 17, 60, len(full) - 1, len(full)):
        assert _ids(split, 1, 3, epoch=2, seed=9, skip=skip, shuffle_buffer=50) == full[skip:]


def test_a_resumed_rank_does_not_read_the_buffers_it_skips(tmp_path):
    root = make_dataset(tmp_path, 3000, row_group_size=10, files=1)
    whole, resumed = TokenizedSplit.open(root, "train"), TokenizedSplit.open(root, "train")
    n = len(_ids(whole, 0, 2, shuffle_buffer=100))
    assert _ids(resumed, 0, 2, skip=n - 5, shuffle_buffer=100) == _ids(whole, 0, 2, shuffle_buffer=100)[-5:]
    assert resumed.reads.row_groups <= 10 + 1 < whole.reads.row_groups / 2  # the last buffer (or two), not all


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


def test_ranks_read_their_own_row_groups_from_s3_and_an_older_datasets_files(tmp_path, s3_bucket):
    from conf import load_config
    import storage

    storage.configure(load_config().spark.conf)  # the AWS variables alone
    root = make_dataset(tmp_path, 3000, row_group_size=37, files=3)
    manifest = json.loads((root / "k1" / "manifest.json").read_text())
    (root / "k2").mkdir()  # an incremental dataset lists the files it extends as ../<key>/...
    (root / "k2" / "manifest.json").write_text(json.dumps(
        {**manifest, "files": {"train": [f"../k1/{rel}" for rel in manifest["files"]["train"]]}}))
    (root / "LATEST").write_text("k2")
    storage.upload(str(root), f"s3a://{s3_bucket}/tokenized")

    shards, reads = [], []
    for rank in range(2):
        split = TokenizedSplit.open(f"s3a://{s3_bucket}/tokenized", "train")
        assert split.manifest_path == f"s3a://{s3_bucket}/tokenized/k2/manifest.json"
        shards.append(_ids(split, rank, 2, epoch=1, seed=7))
        reads.append(split.reads.bytes)
    assert sorted(shards[0] + shards[1]) == list(range(3000))
    assert sum(reads) == split.num_bytes
    assert max(reads) <= split.num_bytes / 2 + max(g.bytes for g in split.row_groups)
    local = TokenizedSplit.open(root, "train")
    assert shards[0] == _ids(local, 0, 2, epoch=1, seed=7)  # the same rows in the same order as on disk


def test_a_manifest_named_relative_to_the_current_folder_finds_its_files(tmp_path, monkeypatch):
    make_dataset(tmp_path, 30)
    monkeypatch.chdir(tmp_path / "k1")
    split = TokenizedSplit.open("manifest.json", "train")
    assert split.manifest_path == str(tmp_path / "k1" / "manifest.json")
    assert sorted(_ids(split, 0, 1)) == list(range(30))
