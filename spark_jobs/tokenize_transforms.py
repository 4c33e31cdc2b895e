"""The tokenize stage's pure DataFrame transforms: each token sequence's key, the cross-split
duplicates, and the one aggregation every count comes from. No reads, no writes, no config.

    from spark_jobs.tokenize_transforms import count_groups, mark_cross_split_duplicates, shared_keys, with_keys
    keyed = with_keys(tokens)                  # + _key (the ids' hash), _rank (the split's), _order
    marked = mark_cross_split_duplicates(keyed, shared_keys(keyed.select(KEY, RANK, ORDER)))
    groups = count_groups(marked)              # rows and hash sums per group

No evaluation input is a training input, and no token sequence is in two splits. The leakage
rule: among rows with equal token ids, the earliest (by when clean wrote it, which is silver's
commit order, then by doc_id) keeps its split, and every copy in another split is marked, in
any split, train included. Rows are only ever marked for rows older than themselves, so rows
added to silver later never remove a row already tokenized: an incremental run only adds.
The mark broadcasts the few shared keys, so the rows keep their partitions and order (no
shuffle of the ids).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from conf.schema import SPLITS
from spark_jobs.tokenize_executor import ADDED_US, LABEL_NAME

CROSS_SPLIT = "cross_split_duplicate"  # column: an earlier row with the row's ids is in another split
# columns: the ids' hash, the split's rank, the row's place in time, the rank of the ids' earliest row
KEY, RANK, ORDER, FIRST = "_key", "_rank", "_order", "_first"
FIRST_ADDED, LAST_ADDED = "_first_added_us", "_last_added_us"  # count_groups: the rows' oldest and newest
UNKNOWN_US = 0  # a row without `cleaned_at` counts as written at the epoch: before every known one


def _ids_key() -> Column:
    """128 bits identifying a token sequence (two 64-bit hashes: collisions are negligible)."""
    return F.struct(F.xxhash64("input_ids").alias("h1"), F.xxhash64(F.reverse("input_ids")).alias("h2"))


def _split_rank() -> Column:
    rank = F.lit(None).cast("int")
    for i, split in reversed(list(enumerate(SPLITS))):
        rank = F.when(F.col("split") == split, F.lit(i)).otherwise(rank)
    return rank


def order(added_us: Column, doc_id: Column) -> Column:
    """A row's place in time: (when clean wrote it, in µs; doc_id). The smallest is the earliest."""
    return F.struct(F.coalesce(added_us, F.lit(UNKNOWN_US).cast("long")).alias("added_us"), doc_id.alias("doc_id"))


def with_keys(tokens: DataFrame) -> DataFrame:
    """Add `_key` (the ids' 128-bit hash), `_rank` (the split's place in train < validation <
    test) and `_order` (the row's place in time)."""
    return (tokens.withColumn(KEY, _ids_key()).withColumn(RANK, _split_rank())
            .withColumn(ORDER, order(F.col(ADDED_US), F.col("doc_id"))))


def shared_keys(keys: DataFrame) -> DataFrame:
    """(_key, _first) of the token sequences that occur in more than one split, with the split
    rank of the sequence's earliest row: a small table, as only cross-split duplicates are in it."""
    return (keys.groupBy(KEY).agg(F.min_by(RANK, ORDER).alias(FIRST), F.min(RANK).alias("_lo"),
                                  F.max(RANK).alias("_hi"))
            .where(F.col("_lo") < F.col("_hi")).select(KEY, FIRST))


def mark_cross_split_duplicates(keyed: DataFrame, shared: DataFrame) -> DataFrame:
    """Add `cross_split_duplicate`: true for a row whose token ids' earliest row is in another
    split. Evaluation never sees a training input, nor test a validation input that picked the
    checkpoint, and a row is only ever removed for an older one.

    `shared` is broadcast, so the rows keep their partitions and order: no shuffle of the ids."""
    return (keyed.join(F.broadcast(shared), KEY, "left")
            .withColumn(CROSS_SPLIT, F.coalesce(F.col(RANK) != F.col(FIRST), F.lit(False))).drop(FIRST))


def _row_hash() -> Column:
    """Each row's part of the content hash: summed per split, so the hash is order-free."""
    return F.xxhash64("split", "doc_id", "label", "input_ids").cast("decimal(38,0)")


def count_groups(marked: DataFrame) -> list:
    """One aggregation over the marked rows: rows, hash sums and the oldest and newest row's
    time per (split, label, length, truncated, cross_split_duplicate), from which
    `tokenize_stats.split_stats` builds everything else."""
    added = F.col(ORDER)["added_us"]
    return marked.groupBy("split", "label", LABEL_NAME, "length", "truncated", CROSS_SPLIT).agg(
        F.count("*").alias("rows"), F.sum(_row_hash()).alias("hash"), F.min(added).alias(FIRST_ADDED),
        F.max(added).alias(LAST_ADDED)).collect()
