"""Labels: the label map (ids that never change, the spellings seen), case variants, and the
checks that stop a wrong label column before anything is written.

    from spark_jobs.labels import record_labels
    label_ids = record_labels(spark, label_map_table, kept_rows, current_ids)

A new label gets the next id in sorted order; an existing id never changes. Labels that differ
only by case are warned about, or merged into the label map's spelling with
`clean.label_case=fold`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType
from pyspark.sql.window import Window

from conf import Config
from conf.errors import StageError

LABEL_MAP_SCHEMA = StructType([
    StructField("label", StringType(), False),
    StructField("label_id", IntegerType(), False),
    StructField("spellings", ArrayType(StringType()), True),  # the labels as bronze held them
])
LABEL_IDS_SCHEMA = StructType(LABEL_MAP_SCHEMA.fields[:2])
RAW_LABEL = "raw_label"  # column: the label as bronze held it, beside the normalized `label`
# "Most labels occur once" is checked from this many labels on: in a small corpus a label
# seen once is ordinary; among many, it means the label column holds ids or free text.
SINGLETON_CHECK_MIN_LABELS = 20
SINGLETON_LABEL_FRACTION = 0.5
# Adds the spellings a batch brought to a label already in the map; only when there is a new one.
_SPELLINGS_UPDATE = "t.spellings = array_sort(array_union(coalesce(t.spellings, array()), s.spellings))"
_SPELLINGS_NEW = "NOT coalesce(array_size(array_except(s.spellings, t.spellings)) = 0, false)"


def case_variants(docs: DataFrame, known: dict[str, int]) -> list[list[str]]:
    """Groups of labels that differ only by case, among `docs`' labels and the label map's
    (`known`), each ordered: the label map's spelling first (its lowest id), then by rows in
    `docs` (most first), then by spelling. Only labels that have a variant reach the driver."""
    known_folded = sorted({label.lower() for label in known})
    counts = docs.where(F.col("label").isNotNull()).groupBy("label").count().withColumn("_folded", F.lower("label"))
    counts = counts.withColumn("_spellings", F.count("*").over(Window.partitionBy("_folded")))
    rows = counts.where((F.col("_spellings") > 1) | F.col("_folded").isin(known_folded)).collect()
    groups: dict[str, dict[str, int]] = {}
    for label, n in [*((r["label"], r["count"]) for r in rows), *((label, 0) for label in known)]:
        groups.setdefault(label.lower(), {}).setdefault(label, n)
    order = {label: (known.get(label, float("inf")), -n, label) for group in groups.values()
             for label, n in group.items()}
    return [sorted(group, key=order.get) for group in groups.values() if len(group) > 1]


def fold_labels(docs: DataFrame, variants: list[list[str]]) -> DataFrame:
    """`label` of each case variant replaced by its group's first spelling (`case_variants`)."""
    mapping = {spelling: group[0] for group in variants for spelling in group[1:]}
    if not mapping:
        return docs
    lookup = F.create_map(*[F.lit(x) for pair in sorted(mapping.items()) for x in pair])
    return docs.withColumn("label", F.coalesce(lookup[F.col("label")], F.col("label")))


def label_case_lines(variants: list[list[str]], fold: bool) -> list[str]:
    """What the console says about labels that differ only by case."""
    def names(group):
        return ", ".join(repr(label) for label in group)
    if fold:
        return [f"labels {names(group[1:])} merged into {group[0]!r} (clean.label_case=fold)" for group in variants]
    return [f"warning: labels {names(group)} differ only by case and are separate classes; set "
            "clean.label_case=fold to merge them" for group in variants]


def label_spellings(kept: DataFrame) -> DataFrame:
    """(label, spellings): the sorted raw spellings of each label among `kept`."""
    return kept.where(F.col("label").isNotNull()).groupBy("label").agg(
        F.array_sort(F.collect_set(F.coalesce(RAW_LABEL, "label"))).alias("spellings"))


def extend_label_map(existing: dict[str, int], labels) -> dict[str, int]:
    """New labels get the next ids in sorted order; existing ids never change."""
    out = dict(existing)
    next_id = max(out.values(), default=-1) + 1
    for label in sorted(set(labels) - set(out)):
        out[label] = next_id
        next_id += 1
    return out


def label_stats(kept: DataFrame, existing: DataFrame) -> tuple[int, int]:
    """(labels, labels with one row) over silver as it would be after this batch. Aggregated in
    Spark, so a wrong label column with millions of values never reaches the driver."""
    labels = kept.select("label").unionByName(existing.select("label")).where(F.col("label").isNotNull())
    row = labels.groupBy("label").count().agg(
        F.count("*").alias("labels"), F.sum((F.col("count") == 1).cast("int")).alias("singletons")).first()
    return int(row["labels"]), int(row["singletons"] or 0)


def check_labels(n_labels: int, singletons: int, cfg: Config) -> None:
    """Stop before writing when the labels look like ids or free text, not classes."""
    column = f"ingest.label_column={cfg.ingest.label_column!r}"
    if n_labels > cfg.clean.max_labels:
        raise StageError(f"{n_labels:,} distinct labels, more than clean.max_labels={cfg.clean.max_labels:,}: "
                         f"{column} may name the wrong column (an id or free text?); fix it and re-ingest, "
                         "or raise clean.max_labels if you really have that many classes")
    if n_labels >= SINGLETON_CHECK_MIN_LABELS and singletons > SINGLETON_LABEL_FRACTION * n_labels:
        raise StageError(f"{singletons:,} of {n_labels:,} labels occur only once: {column} may name the wrong "
                         "column (an id or free text?); a classifier needs several examples per label")


def record_labels(spark, labels, kept: DataFrame, current: dict[str, int]) -> tuple[dict[str, int], DataFrame]:
    """New labels and new spellings of known ones into the label map table `labels` (a MERGE).
    -> (label -> id for every label, the same as a (label, label_id) DataFrame)."""
    spellings = {r["label"]: r["spellings"] for r in label_spellings(kept).collect()}
    label_ids = extend_label_map(current, spellings)
    if spellings:
        rows = [(label, label_ids[label], spelled) for label, spelled in sorted(spellings.items())]
        labels.merge(spark, spark.createDataFrame(rows, LABEL_MAP_SCHEMA), "label",
                     update=_SPELLINGS_UPDATE, when=_SPELLINGS_NEW)
    ids = spark.createDataFrame(sorted(label_ids.items(), key=lambda kv: kv[1]), LABEL_IDS_SCHEMA)
    return label_ids, ids
