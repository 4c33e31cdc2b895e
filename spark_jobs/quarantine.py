"""The quarantine table: every rejected row, with the stage, the reason and the raw record.

Shared by all stages. Rows are inserted by `quarantine_id`, so a rerun adds nothing.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType
from pyspark.sql.window import Window

QUARANTINE_SCHEMA = StructType([
    StructField("quarantine_id", StringType(), False),
    StructField("stage", StringType(), False),
    StructField("reason", StringType(), False),
    StructField("doc_id", StringType(), True),
    StructField("raw_record", StringType(), True),
    StructField("source", StringType(), True),
    StructField("batch_id", StringType(), True),
    StructField("quarantined_at", TimestampType(), True),
])


def to_quarantine(rows: DataFrame, stage: str, batch_id: str) -> DataFrame:
    """Quarantine rows from a frame with `reason`, `doc_id`, `raw_record` and `source`.

    `quarantine_id` hashes the content plus its occurrence number, so rerunning a stage on the
    same input quarantines nothing twice while identical bad lines are still all kept.
    """
    base = F.sha2(F.concat_ws("\u0000", F.lit(stage), "reason", F.coalesce("doc_id", F.lit("")),
                              F.coalesce("source", F.lit("")), F.coalesce("raw_record", F.lit(""))), 256)
    occurrence = F.row_number().over(Window.partitionBy("_base").orderBy("_base"))
    return (
        rows.withColumn("_base", base)
        .withColumn("quarantine_id", F.sha2(F.concat_ws(":", "_base", occurrence.cast("string")), 256))
        .select(
            "quarantine_id", F.lit(stage).alias("stage"), "reason", "doc_id", "raw_record", "source",
            F.lit(batch_id).alias("batch_id"), F.current_timestamp().alias("quarantined_at"),
        )
    )
