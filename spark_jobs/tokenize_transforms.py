"""The tokenize stage's pure DataFrame transforms: each token sequence's key, the cross-split
duplicates, and the one aggregation every count comes from. No reads, no writes, no config.

    from spark_jobs.tokenize_transforms import count_groups, mark_cross_split_duplicates, shared_keys, with_keys
    keyed = with_keys(tokens)                                   # + _key (the ids' hash), _rank (the split's)
    marked = mark_cross_split_duplicates(keyed, shared_keys(keyed.select(KEY, RANK)))
    groups = count_groups(marked)                               # rows and hash sums per group

No evaluation input is a training input: a validation or test row whose token ids equal a
train row's is marked, and so is a test row equal to a validation row. The mark broadcasts the
few shared keys, so the rows keep their partitions and order (no shuffle of the ids).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from conf.schema import SPLITS
from spark_jobs.tokenize_executor import LABEL_NAME

CROSS_SPLIT = "cross_split_duplicate"  # column: the row's ids occur in an earlier split
KEY, RANK, FIRST = "_key", "_rank", "_first"  # columns: the ids' hash, the split's rank, the earliest rank


def _ids_key() -> Column:
    """128 bits identifying a token sequence (two 64-bit hashes: collisions are negligible)."""
    return F.struct(F.xxhash64("input_ids").alias("h1"), F.xxhash64(F.reverse("input_ids")).alias("h2"))


def _split_rank() -> Column:
    rank = F.lit(None).cast("int")
    for i, split in reversed(list(enumerate(SPLITS))):
        rank = F.when(F.col("split") == split, F.lit(i)).otherwise(rank)
    return rank


def with_keys(tokens: DataFrame) -> DataFrame:
    """Add `_key` (the ids' 128-bit hash) and `_rank` (the split's place in train < validation < test)."""
    return tokens.withColumn(KEY, _ids_key()).withColumn(RANK, _split_rank())


def shared_keys(keys: DataFrame) -> DataFrame:
    """(_key, _first) of the token sequences that occur in more than one split, with the rank of
    the earliest split: a small table, as only cross-split duplicates are in it."""
    return (keys.groupBy(KEY).agg(F.min(RANK).alias(FIRST), F.max(RANK).alias("_last"))
            .where(F.col(FIRST) < F.col("_last")).select(KEY, FIRST))


def mark_cross_split_duplicates(keyed: DataFrame, shared: DataFrame) -> DataFrame:
    """Add `cross_split_duplicate`: true for a row whose token ids also occur in an earlier split
    (train < validation < test). Train rows are never marked, so evaluation never sees a
    training input, and test never sees a validation input that picked the checkpoint.

    `shared` is broadcast, so the rows keep their partitions and order: no shuffle of the ids."""
    return (keyed.join(F.broadcast(shared), KEY, "left")
            .withColumn(CROSS_SPLIT, F.coalesce(F.col(RANK) > F.col(FIRST), F.lit(False))).drop(FIRST))


def stale_keys(prior_keys: DataFrame, shared: DataFrame) -> DataFrame:
    """The rows already written (`prior_keys`) that new rows would now mark as cross-split
    duplicates (their ids in an earlier split among the new rows)."""
    return prior_keys.join(F.broadcast(shared), KEY).where(F.col(RANK) > F.col(FIRST))


def _row_hash() -> Column:
    """Each row's part of the content hash: summed per split, so the hash is order-free."""
    return F.xxhash64("split", "doc_id", "label", "input_ids").cast("decimal(38,0)")


def count_groups(marked: DataFrame) -> list:
    """One aggregation over the marked rows: rows and hash sums per (split, label, length,
    truncated, cross_split_duplicate), from which `tokenize_stats.split_stats` builds everything else."""
    return marked.groupBy("split", "label", LABEL_NAME, "length", "truncated", CROSS_SPLIT).agg(
        F.count("*").alias("rows"), F.sum(_row_hash()).alias("hash")).collect()
