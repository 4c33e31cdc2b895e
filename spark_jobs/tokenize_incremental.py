"""Incremental tokenization: whether the newest dataset can be extended with only silver's new
rows, and what an incremental run compares those rows with.

    new_rows, inserted, why_full = incremental_rows(spark, silver, version, fingerprint, previous)
    prior = read_keys(spark, previous)       # the _key/_rank rows of the dataset's kept rows

A dataset can be extended when it was tokenized from an older version of the same silver table
with the same tokenizer and settings, and silver has only gained rows since (clean only
appends; silver's Change Data Feed says so). Anything else is a full run, and `why_full` says why.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.tables import CHANGE_COLUMNS, INSERT
from spark_jobs.tokenize_transforms import KEY, ORDER, RANK, UNKNOWN_US, order
from tokenization.dataset import FORMAT, TokenizedDataset


class Incremental(Exception):
    """The rows cannot be added to the previous dataset; a full run follows. Says why."""


def read_keys(spark, dataset: TokenizedDataset) -> DataFrame:
    """The `_key`/`_rank`/`_order` rows of a dataset's kept rows, from its keys files. They are
    older than every new row (`TokenizeRun` checks it), so each takes the earliest place."""
    keys = spark.read.parquet(*dataset.key_files())
    return keys.select(F.struct("h1", "h2").alias(KEY), RANK,
                       order(F.lit(UNKNOWN_US - 1).cast("long"), F.lit("")).alias(ORDER))


def why_not_extendable(previous: TokenizedDataset, table: str, version: int, tok_fp: str) -> str | None:
    """Why the dataset `previous` cannot take silver version `version`'s new rows, or None."""
    key, manifest = previous.key, previous.manifest
    if not manifest.extendable:
        return f"the newest dataset ({key}) was written before incremental tokenization"
    if manifest.source.table != table:
        return f"the newest dataset ({key}) was tokenized from {manifest.source.table}"
    if manifest.format != FORMAT:
        return (f"the newest dataset ({key}) is of format {manifest.format}, not {FORMAT} (which removes "
                "cross-split duplicates by the earliest row, not the train row)")
    if manifest.tokenizer_fingerprint != tok_fp:
        return f"the tokenizer or its settings differ from the newest dataset's ({key})"
    if manifest.source.newest_row_us is None:
        return f"the newest dataset ({key}) does not record when its newest row was written"
    if manifest.source.delta_version >= version:
        return f"silver version {version} is not newer than the newest dataset's ({manifest.source.delta_version})"
    return None


def incremental_rows(spark, silver, version: int, tok_fp: str, previous: TokenizedDataset | None):
    """Silver's rows inserted since the previous dataset's version, when that dataset can be
    extended: the same table, tokenizer and settings, an older version, and only inserts
    since. -> (rows, how many, None), or (None, 0, why not) for a full run (why is None: nothing
    to extend)."""
    if previous is None:
        return None, 0, None
    why = why_not_extendable(previous, str(silver), version, tok_fp)
    if why:
        return None, 0, why
    before = previous.manifest.source.delta_version
    try:
        changes = silver.read_changes(spark, before + 1, version)
        kinds = {r["_change_type"]: r["count"] for r in changes.groupBy("_change_type").count().collect()}
    except Exception as exc:  # noqa: BLE001 - no feed for these versions: Delta says why
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return None, 0, f"silver's change data feed does not cover versions {before + 1} to {version} ({first[:200]})"
    other = {k: n for k, n in kinds.items() if k != INSERT}
    if other:
        return None, 0, (f"silver rows were changed or removed since version {before} "
                         f"({', '.join(f'{n:,} {k}' for k, n in sorted(other.items()))})")
    return changes.where(F.col("_change_type") == INSERT).drop(*CHANGE_COLUMNS), kinds.get(INSERT, 0), None
