"""spark_jobs.tokenize_stats: counts that add up across runs, and what the manifest keeps of them
(plain Python over `count_groups` rows; no Spark)."""

from spark_jobs.tokenize_stats import add_stats, counts_of_manifest, split_stats, to_manifest_splits
from tokenization.dataset import Manifest


def _group(split, label, length, rows, row_hash, truncated=False, removed=False, name="x"):
    return {"split": split, "label": label, "label_name": name, "length": length, "truncated": truncated,
            "cross_split_duplicate": removed, "rows": rows, "hash": row_hash}


GROUPS = [_group("train", 0, 5, 3, 10, name="ham"), _group("train", 1, 8, 1, -4, truncated=True, name="spam"),
          _group("validation", 0, 5, 2, 7), _group("validation", 0, 5, 1, 99, removed=True, name="ham")]


def test_split_stats_count_kept_rows_and_removed_rows_apart_with_the_label_map():
    splits, removed, labels = split_stats(GROUPS)
    assert removed == {"validation": 1} and labels == {"ham": 0, "spam": 1, "x": 0}
    train = splits["train"]
    assert (train.rows, train.tokens, train.truncated, train.hash_sum) == (4, 23, 1, 6)
    assert train.label_counts == {"0": 3, "1": 1} and train.length_histogram == {5: 3, 8: 1}


def test_the_manifest_splits_have_exact_percentiles_and_string_keys():
    stats, content_hash = to_manifest_splits(split_stats(GROUPS)[0])
    assert list(stats) == ["train", "validation"]
    train = stats["train"]
    assert train.length_percentiles == {"p50": 5, "p90": 8, "p95": 8, "p99": 8}
    assert train.length_histogram == {"5": 3, "8": 1} and train.hash_sum == "6" and train.truncation_rate == 0.25
    assert len(content_hash) == 64


def test_two_runs_counts_added_through_a_manifest_equal_one_runs():
    first, second = GROUPS[:2], GROUPS[2:]
    written = Manifest.from_dict({"splits": {k: v.to_dict() for k, v in to_manifest_splits(split_stats(first)[0])[0].items()}})
    added = add_stats(counts_of_manifest(written), split_stats(second)[0])
    assert to_manifest_splits(added) == to_manifest_splits(split_stats(GROUPS)[0])
