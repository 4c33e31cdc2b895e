"""Clean bronze into silver: normalize, filter, deduplicate, map labels to ids, split.

    lakebert clean
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 spark_jobs/clean.py [--set ...]

Incremental: clean reads only the bronze rows inserted or updated since the bronze version it
last processed (Delta's Change Data Feed; the version is kept in the silver table property
`lakebert.clean.bronze_version`). A rerun without new bronze data changes nothing. A document
that ingest updated (`ingest.on_changed_text=update`) is cleaned again: its silver row takes the
new text and label (keeping its split; `updated`), or leaves silver when the new text is
dropped (`removed`).

Every input row ends in exactly one place, so `input == output + duplicates + quarantined`:
- quarantine, with a `DropReason` (empty/short/long/symbols/repeats after cleaning, or
  `label_conflict`: the same normalized text under two labels; rows already in silver stay);
- `duplicates`: an exact duplicate (same dedup key as an earlier row: existing silver
  rows first, then by `ingested_at`, `doc_id`), or, with `clean.near_dedup.enabled`, a
  near-duplicate (MinHash LSH Jaccard similarity of word shingles >= threshold) of an earlier row;
  the dedup key is the normalized text with whitespace collapsed, case-folded when the
  tokenizer lowercases (`clean.dedup_key`), so two rows the model cannot tell apart are one row;
- silver, with `label_id` from the label map (new labels are appended with the next ids,
  never renumbered) and a `split` from a hash of `doc_id`, so a row keeps its split forever.

Each run that cleans a batch leaves a data report in `_runs/clean/<stage_run_id>/`
(`spark_jobs.data_report`): `report.json` (counts per reason, labels per split, text lengths)
and its images, and names that folder in the silver table property `lakebert.clean.report_dir`
(set with the bronze version, last), where tokenize finds it.
"""

from __future__ import annotations

import json
import sys

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType, TimestampType
from pyspark.sql.window import Window

from conf import Config, storage
from conf.paths import join_path
from conf.schema import AUTO_TOKENIZER, SPLITS, TEST, TRAIN, TRAIN_TOKENIZER, VALIDATION
from spark_jobs.data_report import (CHAR_BINS_PER_DECADE, CLEAN_FILES, REPORT_JSON, REPORT_PROPERTY,
                                     char_length_bins, clean_figures, report_images)
from spark_jobs.filters import DROP_REASON, DropReason, apply_filters, quality_filters
from spark_jobs.normalize import collapse_whitespace, normalize_label, normalize_text
from spark_jobs.quarantine import QUARANTINE_SCHEMA, to_quarantine
from spark_jobs.registry import Stage
from spark_jobs.stage import StageError, run_stage
from spark_jobs.tables import BRONZE, CHANGE_DATA_FEED, LABEL_MAP, QUARANTINE, SILVER, resolve_table, runs_dir

STAGE = "clean"
STATE_PROPERTY = "lakebert.clean.bronze_version"
# The change feed lets tokenize read just the rows a clean run added (incremental tokenization).
SILVER_PROPERTIES = {CHANGE_DATA_FEED: "true"}
EXACT, NEAR = "exact", "near"
DUPLICATE = "duplicate"  # column: null, EXACT or NEAR

SILVER_SCHEMA = StructType([
    StructField("doc_id", StringType(), False),
    StructField("text", StringType(), False),
    StructField("label", StringType(), True),
    StructField("label_id", IntegerType(), True),
    StructField("split", StringType(), False),
    StructField("text_hash", StringType(), False),
    StructField("n_chars", IntegerType(), False),
    StructField("source", StringType(), True),
    StructField("ingested_at", TimestampType(), True),
    StructField("batch_id", StringType(), True),
    StructField("cleaned_at", TimestampType(), True),
])

LABEL_MAP_SCHEMA = StructType([
    StructField("label", StringType(), False),
    StructField("label_id", IntegerType(), False),
    StructField("spellings", ArrayType(StringType()), True),  # the labels as bronze held them
])
LABEL_IDS_SCHEMA = StructType(LABEL_MAP_SCHEMA.fields[:2])
# What an updated document (ingest.on_changed_text=update) changes in its silver row: not its id,
# nor its split, which a document keeps forever.
UPDATED_COLUMNS = ("text", "label", "label_id", "text_hash", "n_chars", "source", "ingested_at", "batch_id",
                   "cleaned_at")
RAW_LABEL = "raw_label"

LENGTH_PERCENTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# "Most labels occur once" is checked from this many labels on: in a small corpus a label
# seen once is ordinary; among many, it means the label column holds ids or free text.
SINGLETON_CHECK_MIN_LABELS = 20
SINGLETON_LABEL_FRACTION = 0.5


# --------------------------------------------------------------------------- transforms

def dedup_hash(text: Column, casefold: bool) -> Column:
    """sha256 of the exact-dedup key: the text with whitespace collapsed, case-folded if asked."""
    key = collapse_whitespace(F.coalesce(text, F.lit("")))
    return F.sha2(F.lower(key) if casefold else key, 256)


def normalize_documents(bronze: DataFrame, clean_cfg, casefold: bool = False) -> DataFrame:
    """Bronze rows with `text` normalized (the original kept as `raw_text`), `label` normalized
    (the original kept as `raw_label`), `drop_reason`, and `text_hash`, the dedup key's hash."""
    df = bronze.withColumnRenamed("text", "raw_text").withColumn("text", normalize_text(F.col("raw_text"), clean_cfg))
    df = df.withColumnRenamed("label", RAW_LABEL).withColumn("label", normalize_label(F.col(RAW_LABEL)))
    df = apply_filters(df, quality_filters(F.col("text"), clean_cfg))
    return df.withColumn("text_hash", dedup_hash(F.col("text"), casefold))


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


def _earliest_first(existing_first: Column) -> list[Column]:
    return [existing_first.desc(), F.col("ingested_at").asc_nulls_last(), F.col("doc_id").asc()]


def mark_exact_duplicates(docs: DataFrame, existing: DataFrame) -> DataFrame:
    """Set `drop_reason=label_conflict` or `duplicate=exact` on rows of `docs` that still pass.

    `existing` holds silver rows (`doc_id`, `text_hash`, `label`, `ingested_at`) that are
    not in `docs`; they are always earlier, and never removed.
    """
    keys = ["doc_id", "text_hash", "label", "ingested_at"]
    passing = docs.where(F.col(DROP_REASON).isNull())
    pool = passing.select(*keys, F.lit(False).alias("_existing")).unionByName(
        existing.select(*keys, F.lit(True).alias("_existing")))
    by_hash = Window.partitionBy("text_hash")
    ranked = pool.select(
        "doc_id", "_existing",
        (F.size(F.collect_set("label").over(by_hash)) > 1).alias("_conflict"),
        F.row_number().over(by_hash.orderBy(*_earliest_first(F.col("_existing")))).alias("_rank"),
    ).where(~F.col("_existing")).drop("_existing")
    marked = docs.join(ranked, "doc_id", "left")
    return marked.select(
        *[c for c in docs.columns if c != DROP_REASON],
        F.when(F.col("_conflict"), F.lit(DropReason.LABEL_CONFLICT)).otherwise(F.col(DROP_REASON)).alias(DROP_REASON),
        F.when(~F.col("_conflict") & (F.col("_rank") > 1), F.lit(EXACT)).alias(DUPLICATE),
    )


def find_near_duplicates(docs: DataFrame, existing: DataFrame, nd_cfg) -> DataFrame:
    """doc_ids of `docs` rows with a near-duplicate that is earlier (in `existing` or `docs`).

    Near-duplicate: the Jaccard similarity of the two texts' sets of word `shingle_size`-grams
    is at least `threshold`. Spark ML hashes the shingles and computes `bands * rows_per_band`
    MinHashes; texts that agree on every MinHash of some band become candidates. (Spark's own
    `approxSimilarityJoin` buckets on single MinHashes, which on templated text puts most rows
    in a few huge buckets; bands of several rows keep buckets small.) Candidates are then
    checked with the exact Jaccard similarity of their shingle sets. Texts shorter than one
    shingle take no part, and existing silver rows are re-hashed on each run.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import HashingTF, MinHashLSH, NGram, RegexTokenizer
    from pyspark.ml.functions import vector_to_array

    cols = ["doc_id", "text", "ingested_at"]
    pool = docs.select(*cols, F.lit(False).alias("_existing")).unionByName(
        existing.select(*cols, F.lit(True).alias("_existing")))
    n_hashes = nd_cfg.bands * nd_cfg.rows_per_band
    shingled = Pipeline(stages=[
        RegexTokenizer(inputCol="text", outputCol="_tokens", pattern=r"\W+", toLowercase=True),
        NGram(n=nd_cfg.shingle_size, inputCol="_tokens", outputCol="_shingles"),
        HashingTF(inputCol="_shingles", outputCol="_features", numFeatures=nd_cfg.num_features, binary=True),
    ]).fit(pool).transform(pool).where(F.size("_shingles") > 0)
    signed = MinHashLSH(inputCol="_features", outputCol="_hashes", numHashTables=n_hashes, seed=17) \
        .fit(shingled).transform(shingled)
    # Two projections, so the MinHashes are computed once per row, not once per band.
    signed = signed.select("doc_id", "ingested_at", "_existing",
                           F.transform("_hashes", lambda v: vector_to_array(v)[0]).alias("_sig"))
    rows = nd_cfg.rows_per_band
    bands = F.transform(F.sequence(F.lit(0), F.lit(nd_cfg.bands - 1)), lambda i: F.struct(
        i.alias("band"), F.xxhash64(F.slice("_sig", i * rows + 1, rows)).alias("key")))
    keyed = signed.select("doc_id", "ingested_at", "_existing", F.inline(bands))

    # Candidate pairs (a new row, an earlier row) that share a band. Grouping by band key reads
    # the signatures once (a self-join would compute them for each side); only ids travel.
    members = F.collect_list(F.struct("doc_id", "ingested_at", "_existing")).alias("_members")
    buckets = keyed.groupBy("band", "key").agg(members).where(F.size("_members") > 1)
    a, b = F.col("a"), F.col("b")
    pairs = (
        buckets.select(F.explode("_members").alias("a"), "_members")
        .select("a", F.explode("_members").alias("b"))
        .where(~a["_existing"] & (a["doc_id"] != b["doc_id"]) & (
            b["_existing"] | (b["ingested_at"] < a["ingested_at"])
            | (F.coalesce(b["ingested_at"] == a["ingested_at"], F.lit(True)) & (b["doc_id"] < a["doc_id"]))))
        .select(a["doc_id"].alias("doc_id"), b["doc_id"].alias("other"))
        .distinct()
    )
    # Check each candidate with the exact Jaccard similarity of the shingle sets.
    sets = shingled.select("doc_id", F.array_distinct("_shingles").alias("_set"))
    checked = pairs.join(sets, "doc_id").join(
        sets.select(F.col("doc_id").alias("other"), F.col("_set").alias("_other_set")), "other")
    jaccard = F.size(F.array_intersect("_set", "_other_set")) / F.size(F.array_union("_set", "_other_set"))
    return checked.where(jaccard >= nd_cfg.threshold).select("doc_id").distinct()


def mark_near_duplicates(docs: DataFrame, existing: DataFrame, nd_cfg) -> DataFrame:
    keep = docs.where(F.col(DROP_REASON).isNull() & F.col(DUPLICATE).isNull())
    near = find_near_duplicates(keep, existing, nd_cfg).withColumn("_near", F.lit(True))
    marked = docs.join(near, "doc_id", "left")
    return marked.withColumn(DUPLICATE, F.when(F.col("_near"), F.lit(NEAR)).otherwise(F.col(DUPLICATE))).drop("_near")


def assign_split(doc_id: Column, split_cfg, seed: int = 0) -> Column:
    """train/validation/test from a hash of doc_id: the same id always gets the same split."""
    u = F.pmod(F.xxhash64(F.lit(seed), doc_id), F.lit(1_000_000)) / 1_000_000.0
    return (F.when(u < split_cfg.train, F.lit(TRAIN))
            .when(u < split_cfg.train + split_cfg.validation, F.lit(VALIDATION))
            .otherwise(F.lit(TEST)))


def extend_label_map(existing: dict[str, int], labels) -> dict[str, int]:
    """New labels get the next ids in sorted order; existing ids never change."""
    out = dict(existing)
    next_id = max(out.values(), default=-1) + 1
    for label in sorted(set(labels) - set(out)):
        out[label] = next_id
        next_id += 1
    return out


def to_silver(kept: DataFrame, label_map: DataFrame, clean_cfg) -> DataFrame:
    return kept.join(F.broadcast(label_map), "label", "left").select(
        "doc_id", "text", "label", F.col("label_id").cast("int").alias("label_id"),
        assign_split(F.col("doc_id"), clean_cfg.split, clean_cfg.seed).alias("split"),
        "text_hash", F.length("text").cast("int").alias("n_chars"), "source", "ingested_at", "batch_id",
        F.current_timestamp().alias("cleaned_at"),
    )


def deduplicate_documents(docs: DataFrame, existing: DataFrame, clean_cfg) -> DataFrame:
    """Normalized docs -> the same rows with label conflicts in `drop_reason` and `duplicate` set."""
    docs = mark_exact_duplicates(docs, existing)
    if clean_cfg.near_dedup.enabled:
        docs = mark_near_duplicates(docs, existing, clean_cfg.near_dedup)
    return docs


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


# --------------------------------------------------------------------------- job

def dedup_casefold(cfg: Config) -> bool:
    """Whether exact dedup ignores case: `clean.dedup_key`, where `auto` follows the tokenizer
    that `tokenize` will use (a trained one's `tokenize.lowercase`, else the tokenizer's own
    normalizer)."""
    mode = cfg.clean.dedup_key
    if mode != "auto":
        return mode == "casefold"
    tokenizer = cfg.tokenize.tokenizer
    if tokenizer == TRAIN_TOKENIZER or (tokenizer == AUTO_TOKENIZER and not cfg.train.pretrained):
        return cfg.tokenize.lowercase
    from tokenization import TokenizerError, load_tokenizer, lowercases

    try:
        return lowercases(load_tokenizer(cfg.train.model if tokenizer == AUTO_TOKENIZER else tokenizer))
    except TokenizerError:
        return False  # tokenize will report the tokenizer; compare texts as they are meanwhile


def _counts(classified: DataFrame) -> tuple[int, dict[str, int], dict[str, int]]:
    rows = classified.groupBy(DROP_REASON, DUPLICATE).count().collect()
    output, quarantined, duplicates = 0, {}, {}
    for row in rows:
        if row[DROP_REASON] is not None:
            quarantined[row[DROP_REASON]] = quarantined.get(row[DROP_REASON], 0) + row["count"]
        elif row[DUPLICATE] is not None:
            duplicates[row[DUPLICATE]] = duplicates.get(row[DUPLICATE], 0) + row["count"]
        else:
            output += row["count"]
    return output, dict(sorted(quarantined.items())), dict(sorted(duplicates.items()))


def char_length_histogram(silver: DataFrame) -> dict:
    """Silver rows per log-spaced text-length bin (`data_report.char_length_bins`), from one
    aggregation over a bucket number: a few dozen rows reach the driver, whatever the table's size."""
    bucket = F.floor(F.log10(F.greatest(F.col("n_chars"), F.lit(1))) * CHAR_BINS_PER_DECADE).cast("int")
    counts = silver.groupBy(bucket.alias("bucket")).count().collect()
    return char_length_bins({row["bucket"]: row["count"] for row in counts})


def quality_report(silver: DataFrame, quarantined: dict[str, int], duplicates: dict[str, int]) -> dict:
    """Counts per reason, label distribution per split, and text-length percentiles and histogram of silver."""
    per_split: dict[str, dict[str, int]] = {}
    for row in silver.groupBy("split", "label").count().collect():
        per_split.setdefault(row["split"], {})[row["label"] if row["label"] is not None else "<none>"] = row["count"]
    stats = silver.agg(
        F.count("*").alias("rows"),
        F.percentile_approx("n_chars", list(LENGTH_PERCENTILES), 10_000).alias("p"),
        F.min("n_chars").alias("min"), F.max("n_chars").alias("max"), F.avg("n_chars").alias("mean"),
    ).first()
    percentiles = {f"p{int(q * 100)}": v for q, v in zip(LENGTH_PERCENTILES, stats["p"] or [])}
    return {
        "quarantined_by_reason": quarantined,
        "duplicates_by_kind": duplicates,
        "silver_rows": stats["rows"],
        "labels_per_split": {s: dict(sorted(per_split.get(s, {}).items())) for s in SPLITS},
        "text_length_chars": {"min": stats["min"], "mean": round(stats["mean"] or 0, 1), **percentiles,
                              "max": stats["max"]},
        "text_length_histogram": char_length_histogram(silver),
    }


def quarantine_counts(quarantine: DataFrame) -> dict[str, dict[str, int]]:
    """The quarantine table's rows by stage and reason ({stage: {reason: rows}}), every run's."""
    counts: dict[str, dict[str, int]] = {}
    for row in quarantine.groupBy("stage", "reason").count().collect():
        counts.setdefault(row["stage"], {})[row["reason"]] = row["count"]
    return {stage: dict(sorted(reasons.items())) for stage, reasons in sorted(counts.items())}


def write_report(spark, folder: str, report: dict) -> list[str]:
    """report.json and its images (`data_report.CLEAN_FILES`) into `folder`. -> warnings."""
    storage.write_text(join_path(folder, REPORT_JSON), json.dumps(report, indent=2))
    images, warnings = report_images(clean_figures, report)
    for name, png in images.items():
        storage.write_bytes(join_path(folder, name), png)
    return warnings


def clean(spark: SparkSession, cfg: Config, stage_run_id: str) -> dict:
    bronze = resolve_table(cfg, BRONZE)
    if not bronze.exists(spark):
        raise StageError(f"bronze table {bronze} does not exist; run `lakebert ingest` first")
    if bronze.properties(spark).get(CHANGE_DATA_FEED) != "true":
        raise StageError(f"bronze table {bronze} has no Change Data Feed; enable it with "
                         f"ALTER TABLE {bronze.sql_ref} SET TBLPROPERTIES ({CHANGE_DATA_FEED} = true)")
    silver, quarantine, labels = (resolve_table(cfg, r) for r in (SILVER, QUARANTINE, LABEL_MAP))
    tables = {"bronze": str(bronze), "silver": str(silver), "quarantine": str(quarantine), "label_map": str(labels)}
    silver.create_if_missing(spark, SILVER_SCHEMA, SILVER_PROPERTIES)
    quarantine.create_if_missing(spark, QUARANTINE_SCHEMA)
    labels.create_if_missing(spark, LABEL_MAP_SCHEMA)

    labels.add_missing_columns(spark, LABEL_MAP_SCHEMA)  # a label map from before `spellings`
    bronze_version = bronze.version(spark)
    properties = silver.properties(spark)
    if properties.get(CHANGE_DATA_FEED) != "true":  # a silver from before tokenize read its feed
        silver.set_properties(spark, SILVER_PROPERTIES)
    done = properties.get(STATE_PROPERTY)
    if done is not None and int(done) >= bronze_version:
        return {"status": "up_to_date", "input": 0, "output": 0, "duplicates": 0, "duplicates_by_kind": {},
                "quarantined": {}, "bronze_version": bronze_version, "silver_version": silver.version(spark),
                "tables": tables}

    start = int(done) + 1 if done is not None else 0
    batch = bronze.read_upserts(spark, start, bronze_version, "doc_id")
    casefold = dedup_casefold(cfg)
    current = {r["label"]: r["label_id"] for r in labels.read(spark).select("label", "label_id").collect()}
    # Cached: dedup reads the normalized rows in several branches, each of which would
    # otherwise re-run the Python normalization.
    cached = normalize_documents(batch, cfg.clean, casefold).persist()
    variants = case_variants(cached, current)
    normalized = fold_labels(cached, variants) if cfg.clean.label_case == "fold" else cached
    label_lines = label_case_lines(variants, cfg.clean.label_case == "fold")
    # Silver's keys are recomputed, so rows cleaned under another dedup key compare correctly.
    existing = (silver.read(spark).join(normalized.select("doc_id"), "doc_id", "left_anti")
                .withColumn("text_hash", dedup_hash(F.col("text"), casefold)))
    classified = deduplicate_documents(normalized, existing, cfg.clean).persist()
    try:
        output, quarantined, duplicates = _counts(classified)
        kept = classified.where(F.col(DROP_REASON).isNull() & F.col(DUPLICATE).isNull())

        n_labels, singletons = label_stats(kept, existing)
        check_labels(n_labels, singletons, cfg)
        spellings = {r["label"]: r["spellings"] for r in label_spellings(kept).collect()}
        label_ids = extend_label_map(current, spellings)
        if spellings:  # new labels, and new spellings of known ones
            rows = [(label, label_ids[label], spelled) for label, spelled in sorted(spellings.items())]
            labels.merge(spark, spark.createDataFrame(rows, LABEL_MAP_SCHEMA), "label",
                         update="t.spellings = array_sort(array_union(coalesce(t.spellings, array()), s.spellings))",
                         when="NOT coalesce(array_size(array_except(s.spellings, t.spellings)) = 0, false)")
        label_map = spark.createDataFrame(sorted(label_ids.items(), key=lambda kv: kv[1]), LABEL_IDS_SCHEMA)

        updated = removed = 0
        if output and not kept.where("_updated").isEmpty():  # documents ingest updated
            _, updated = silver.merge(spark, to_silver(kept, label_map, cfg.clean), "doc_id",
                                      update=", ".join(f"t.{c} = s.{c}" for c in UPDATED_COLUMNS),
                                      when="NOT (t.text <=> s.text AND t.label <=> s.label)")
        elif output:
            silver.insert_new(spark, to_silver(kept, label_map, cfg.clean), "doc_id")
        stale = classified.where(F.col("_updated") & (F.col(DROP_REASON).isNotNull() | F.col(DUPLICATE).isNotNull()))
        if not stale.isEmpty():  # a document ingest updated that clean now drops: its old text leaves silver
            removed = silver.delete_keys(spark, stale, "doc_id")
        if quarantined:
            rejected = classified.where(F.col(DROP_REASON).isNotNull()).select(
                F.col(DROP_REASON).alias("reason"), "doc_id", F.col("raw_text").alias("raw_record"), "source")
            quarantine.insert_new(spark, to_quarantine(rejected, STAGE, stage_run_id), "quarantine_id")
    finally:
        classified.unpersist()
        cached.unpersist()

    report = quality_report(silver.read(spark), quarantined, duplicates)
    report["quarantine_table"] = quarantine_counts(quarantine.read(spark))
    report["label_map"] = label_ids
    report["dedup_key"] = "casefold" if casefold else "exact"
    report_dir = runs_dir(cfg, STAGE, stage_run_id)
    warnings = write_report(spark, report_dir, report)
    print(f"clean: data report in {report_dir}: {', '.join(CLEAN_FILES)}", flush=True)
    for line in warnings:
        print(f"clean: warning: {line}", flush=True)
    for line in label_lines:
        print(f"clean: {line}", flush=True)
    warnings += [line.removeprefix("warning: ") for line in label_lines if line.startswith("warning: ")]
    # Recorded last: a crash before this line replays the batch, which the MERGEs make harmless.
    # The report folder goes into the same commit, so the silver version that ends this run names it.
    silver.set_properties(spark, {STATE_PROPERTY: str(bronze_version), REPORT_PROPERTY: report_dir})
    return {
        "status": "done",
        "input": output + sum(duplicates.values()) + sum(quarantined.values()),
        "output": output,
        "duplicates": sum(duplicates.values()),
        "duplicates_by_kind": duplicates,
        "quarantined": quarantined,
        "updated": updated,
        "removed": removed,
        "labels": len(label_ids),
        "dedup_key": report["dedup_key"],
        "bronze_version": bronze_version,
        "silver_version": silver.version(spark),
        "report": join_path(report_dir, REPORT_JSON),
        "tables": tables,
        "warnings": warnings,
    }


def summary_line(summary: dict) -> str:
    """Clean's line in `lakebert run`."""
    return f"input {summary['input']:,} -> silver {summary['output']:,}, duplicates {summary['duplicates']:,}, " \
           f"quarantined {sum(summary['quarantined'].values()):,}, labels {summary.get('labels', 0):,}"


STAGE_RECORD = Stage(
    name=STAGE, body=clean, description="bronze -> silver: normalize, filter, deduplicate, label, split",
    config=("clean",
            # dedup_key=auto: does the tokenizer lowercase?
            "tokenize.tokenizer", "tokenize.lowercase", "train.model",
            "ingest.label_column",  # named in the wrong-label-column error
            "tables.bronze", "tables.silver", "tables.quarantine", "tables.label_map", "lakehouse", "spark"),
    step=20, timeout_hours=2, summary=summary_line)


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE_RECORD, argv)


if __name__ == "__main__":
    sys.exit(main())
