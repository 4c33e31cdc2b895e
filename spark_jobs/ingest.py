"""Ingest raw text (files or a table) into the bronze Delta table; bad records go to quarantine.

    lakebert ingest --set ingest.source=data/sample --set ingest.format=jsonl
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 spark_jobs/ingest.py --set ingest.source=...

Formats: jsonl, csv, parquet, text (one document per line or per file) and delta (a path or a
metastore table). `ingest.options.*` go to Spark's reader unchanged. Globs and directories work.
CSV is read as RFC 4180 unless `ingest.options.*` say otherwise (`CSV_DEFAULTS`): a header,
`"` quotes, a quote inside a quoted field written `""`, line breaks inside quoted fields.

Every record read ends in exactly one place, so
`read == inserted + changed + duplicates + quarantined`:
- bronze, keyed by `doc_id` (the id column, else sha256 of source and text); a MERGE inserts
  only ids that bronze lacks, so ingesting the same input again inserts nothing;
- `changed`: records whose id bronze holds with other text or another label; what happens to
  them is `ingest.on_changed_text` (`update` bronze's row, which clean carries into silver;
  `keep_first`; or `quarantine`, where they are counted instead);
- `duplicates`: valid records whose doc_id is already in bronze with the same text and label,
  or earlier in this batch;
- quarantine, with the raw record and one reason from `IngestReason`.

The text must be a string: a JSON number, object or list is quarantined as `text_not_string`,
and a column of another type (Parquet, Delta, a table) is a one-line error naming its type.

A record that does not parse (CSV: the wrong number of fields; JSON: not an object) is
quarantined as `unparseable`. For CSV, where a reader setting that does not fit the file is the
usual cause, the summary's `unparseable_rows` locates the first few in their files (line, byte
offset, first characters) and the console warns with the settings in force, so a setting can
be told from a broken file. (A JSON Lines record is its line: the quarantine holds it whole.)

Encoding problems are quarantined, not repaired: invalid UTF-8 (or the U+FFFD that a decoder
left in its place) usually means `ingest.options.encoding` is wrong for the file, and a NUL
byte means binary data; "repairing" either would put silently garbled text into training.
The stored raw record has invalid byte sequences replaced by U+FFFD.

Coded labels (AG News' `1`-`4`, a header-less CSV's numbered classes) get their names from
`ingest.label_names` (a mapping, or a JSON/YAML file of one) before anything is checked, so
bronze, the label map, the reports and the predictions show words. A label value the mapping
does not name is quarantined as `unknown_label`, never kept under its code. A header-less CSV
(`ingest.options.header=false`) names its columns by position: `_c0`, `_c1`, ...
"""

from __future__ import annotations

import sys

import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType
from pyspark.sql.window import Window

from conf import Config
from conf.identifiers import quote_identifier
from conf.errors import StageError
from conf.fields import check_label_names
import storage
from spark_jobs.filters import first_reason
from spark_jobs.quarantine import QUARANTINE_SCHEMA, to_quarantine
from spark_jobs.registry import Stage
from spark_jobs.sources import csv_options, has_labels, locate_record, read_source
from spark_jobs.stage import run_stage
from spark_jobs.tables import BRONZE, CHANGE_DATA_FEED, QUARANTINE, resolve_table


class IngestReason:
    """Why a record went to quarantine at ingest, in the order they are checked."""

    INVALID_UTF8 = "invalid_utf8"
    UNPARSEABLE = "unparseable"
    NUL_BYTE = "nul_byte"
    TEXT_NOT_STRING = "text_not_string"
    EMPTY_TEXT = "empty_text"
    TEXT_TOO_LONG = "text_too_long"
    INVALID_LABEL = "invalid_label"
    MISSING_LABEL = "missing_label"
    UNKNOWN_LABEL = "unknown_label"  # a label value that ingest.label_names does not name
    MISSING_ID = "missing_id"
    CHANGED_TEXT = "changed_text"  # an id bronze holds with other text or label (ingest.on_changed_text=quarantine)


BRONZE_SCHEMA = StructType([
    StructField("doc_id", StringType(), False),
    StructField("text", StringType(), True),
    StructField("label", StringType(), True),
    StructField("source", StringType(), True),
    StructField("ingested_at", TimestampType(), True),
    StructField("batch_id", StringType(), True),
])

# Bronze feeds clean incrementally through the Change Data Feed.
BRONZE_PROPERTIES = {CHANGE_DATA_FEED: "true"}

REPLACEMENT_CHAR = "\ufffd"
STAGE = "ingest"
UNPARSEABLE_SHOWN = 3  # unparseable records located in their files (line, byte offset) per run
SHOWN_CHARS = 60  # of an unparseable record, in the summary and the warning


# --------------------------------------------------------------------------- transform

def name_labels(raw: DataFrame, names: dict[str, str]) -> DataFrame:
    """`_label` -> its name in `names` (keyed by the trimmed value), and `_label_known`: false
    for a present label that `names` does not name."""
    mapping = F.create_map(*[F.lit(part) for pair in sorted(names.items()) for part in pair])
    value = F.trim("_label")
    name = F.try_element_at(mapping, value)
    present = F.col("_label").isNotNull() & (value != "")
    return (raw.withColumn("_label_known", ~present | name.isNotNull())
            .withColumn("_label", F.when(present & name.isNotNull(), name).otherwise(F.col("_label"))))


def classify_records(raw: DataFrame, max_text_chars: int, require_label: bool, use_id: bool) -> DataFrame:
    """Add `_reason`: the first `IngestReason` a record fails, or null when it is valid. After
    `name_labels`, a label it does not name fails as `unknown_label`."""
    R = IngestReason
    text = F.col("_text")
    checks = [
        (R.INVALID_UTF8, ~F.is_valid_utf8("_raw") | F.contains(F.coalesce(text, F.lit("")), F.lit(REPLACEMENT_CHAR))),
        # A record longer than any allowed text that did not parse is too long, not malformed:
        # Spark's Variant caps a parsed JSON record at 16 MiB, so a huge line never parses.
        (R.TEXT_TOO_LONG, ~F.col("_parsed") & (F.length("_raw") > max_text_chars)),
        (R.UNPARSEABLE, ~F.col("_parsed")),
        (R.NUL_BYTE, F.contains(F.coalesce(text, F.lit("")), F.lit("\u0000"))),
        (R.TEXT_NOT_STRING, ~F.col("_text_ok")),
        (R.EMPTY_TEXT, text.isNull() | (F.trim(text) == "")),
        (R.TEXT_TOO_LONG, F.length(text) > max_text_chars),
        (R.INVALID_LABEL, ~F.col("_label_ok")),
    ]
    if require_label:
        checks.append((R.MISSING_LABEL, F.col("_label").isNull() | (F.trim("_label") == "")))
    if "_label_known" in raw.columns:
        checks.append((R.UNKNOWN_LABEL, ~F.col("_label_known")))
    if use_id:
        checks.append((R.MISSING_ID, F.col("_id").isNull() | (F.trim("_id") == "")))
    return raw.withColumn("_reason", first_reason(checks))


def doc_id_column(use_id: bool) -> Column:
    """A record's document id: the trimmed id column, else sha256 of its source and text."""
    return F.trim("_id") if use_id else F.sha2(F.concat_ws("\u0000", "_source", "_text"), 256)


def to_bronze(classified: DataFrame, batch_id: str, use_id: bool, bronze: DataFrame | None = None) -> DataFrame:
    """Valid records as bronze rows, one per doc_id, with the raw record as `_raw` (for
    quarantine) and `_changed`: `bronze` holds the doc_id with other text or another label. Of
    several records of one id, the newest file's is the document (a folder read again holds the
    old file beside the corrected one), then the last source path, then the first text."""
    valid = classified.where(F.col("_reason").isNull())
    rows = valid.select(
        doc_id_column(use_id).alias("doc_id"), F.col("_text").alias("text"),
        F.trim("_label").alias("label"), F.col("_source").alias("source"),
        F.current_timestamp().alias("ingested_at"), F.lit(batch_id).alias("batch_id"), "_raw", "_modified",
    )
    if bronze is None:
        rows = rows.withColumn("_changed", F.lit(False))
    else:
        held = bronze.select("doc_id", F.col("text").alias("_held_text"), F.col("label").alias("_held_label"))
        same = F.col("text").eqNullSafe(F.col("_held_text")) & F.col("label").eqNullSafe(F.col("_held_label"))
        rows = (rows.join(held, "doc_id", "left").withColumn("_changed", F.col("_held_text").isNotNull() & ~same)
                .drop("_held_text", "_held_label"))
    newest = Window.partitionBy("doc_id").orderBy(F.col("_modified").desc_nulls_last(), F.col("source").desc(), "text")
    return rows.withColumn("_n", F.row_number().over(newest)).where("_n = 1").drop("_n", "_modified")


def quarantined_records(classified: DataFrame, batch_id: str) -> DataFrame:
    bad = classified.where(F.col("_reason").isNotNull()).select(
        F.col("_reason").alias("reason"), F.lit(None).cast("string").alias("doc_id"),
        F.make_valid_utf8("_raw").alias("raw_record"), F.col("_source").alias("source"),
    )
    return to_quarantine(bad, STAGE, batch_id)


def changed_records(marked: DataFrame, batch_id: str) -> DataFrame:
    """The `_changed` rows as quarantine rows (`ingest.on_changed_text=quarantine`)."""
    rows = marked.where("_changed").select(F.lit(IngestReason.CHANGED_TEXT).alias("reason"), "doc_id",
                                           F.make_valid_utf8("_raw").alias("raw_record"), "source")
    return to_quarantine(rows, STAGE, batch_id)


# Bronze's own columns, set from a changed record (`ingest.on_changed_text=update`).
UPDATED_COLUMNS = ("text", "label", "source", "ingested_at", "batch_id")


# --------------------------------------------------------------------------- where a record failed

def unparseable_rows(classified: DataFrame, cfg: Config, limit: int = UNPARSEABLE_SHOWN) -> list[dict]:
    """The first `limit` unparseable records (by file, then content), each with its file, line,
    byte offset and first characters."""
    ic = cfg.ingest
    options = {k.lower(): v for k, v in ic.options.items()}
    encoding = options.get("encoding") or options.get("charset") or "utf-8"
    rows = (classified.where(F.col("_reason") == F.lit(IngestReason.UNPARSEABLE))
            .select("_source", F.make_valid_utf8("_raw").alias("_raw")).orderBy("_source", "_raw")
            .limit(limit).collect())
    return [{"source": r["_source"], **locate_record(r["_source"], r["_raw"] or "", encoding),
             "start": (r["_raw"] or "")[:SHOWN_CHARS]} for r in rows]


def unparseable_warning(cfg: Config, count: int, shown: list[dict]) -> str:
    """One line for unparseable CSV records: the reader settings in force and where the first
    ones are, so a wrong setting can be told from a broken file."""
    settings = csv_options(cfg.ingest.options)
    where = "; ".join(f"{row['source']} " + (f"line {row['line']} (byte {row['byte_offset']})"
                                             if row["line"] else "(line not found)")
                      + f" starts {row['start']!r}" for row in shown)
    return (f"{count:,} CSV record(s) could not be parsed (the wrong number of fields) with "
            + " ".join(f"{k}={v!r}" for k, v in settings.items() if k.lower() != "header")
            + f": {where}. A reader setting (ingest.options.sep, quote, escape, multiLine) or a broken file; "
            "they are in the quarantine table as unparseable")


# --------------------------------------------------------------------------- load

def read_label_names(cfg: Config) -> dict[str, str] | None:
    """`ingest.label_names` as a mapping: as given, or read from its JSON or YAML file."""
    given = cfg.ingest.label_names
    if not isinstance(given, str):
        return given
    try:
        loaded = yaml.safe_load(storage.read_text(given))  # JSON is YAML
    except (OSError, storage.StorageError, yaml.YAMLError) as exc:
        raise StageError(f"ingest.label_names={given}: cannot read it ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(loaded, dict):
        raise StageError(f"ingest.label_names={given}: the file must hold a mapping of label values to names "
                         f"(JSON or YAML), not {type(loaded).__name__}")
    named = {str(k): str(v) for k, v in loaded.items()}
    if len(named) != len(loaded):  # YAML's 1 and "1"
        raise StageError(f"ingest.label_names={given}: two keys are the same label value as text (such as 1 and '1')")
    try:
        return check_label_names(named)
    except ValueError as exc:
        raise StageError(f"ingest.label_names={given}: {exc}") from None


def count_by_reason(classified: DataFrame) -> tuple[int, dict[str, int], dict[str, bool]]:
    """(valid rows, quarantined rows per reason, {"parsed"/"text"/"label": whether any record has it})."""
    rows = classified.groupBy("_reason").agg(
        F.count("*").alias("n"),
        F.max("_parsed").alias("parsed"),
        F.max(F.col("_parsed") & F.col("_has_text")).alias("text"),
        F.max(F.col("_parsed") & F.col("_has_label")).alias("label"),
    ).collect()
    counts = {r["_reason"]: r["n"] for r in rows}
    valid = counts.pop(None, 0)
    seen = {key: any(r[key] for r in rows) for key in ("parsed", "text", "label")}
    return valid, dict(sorted(counts.items())), seen


def _require_fields(cfg: Config, seen: dict[str, bool]) -> None:
    """JSON has no schema: a text or label field that no record has is a misnamed column."""
    ic = cfg.ingest
    if not seen["parsed"]:
        return
    if not seen["text"]:
        raise StageError(f"ingest.text_column={ic.text_column!r} is not a field of any record in {ic.source}")
    if ic.label_column is not None and ic.require_label and not seen["label"]:
        raise StageError(f"ingest.label_column={ic.label_column!r} is not a field of any record in {ic.source}; "
                         "set ingest.label_column=null for unlabelled data")


def ingest(spark: SparkSession, cfg: Config, stage_run_id: str) -> dict:
    ic = cfg.ingest
    batch_id = ic.batch_id or stage_run_id
    use_id = ic.id_column is not None and ic.format != "text"
    raw = read_source(spark, cfg)
    names = read_label_names(cfg) if has_labels(cfg) else None
    if names:
        raw = name_labels(raw, names)
    classified = classify_records(raw, ic.max_text_chars, ic.require_label and has_labels(cfg), use_id)
    classified = classified.persist()
    try:
        try:
            valid, quarantined, seen = count_by_reason(classified)
        except Exception as exc:  # noqa: BLE001 - an unreadable or corrupt file, before any write
            first = str(exc).strip().splitlines()[0][:300]
            raise StageError(f"could not read ingest.source={ic.source!r}: {first}") from None
        _require_fields(cfg, seen)
        unparseable = quarantined.get(IngestReason.UNPARSEABLE, 0)
        located = unparseable_rows(classified, cfg) if unparseable and ic.format == "csv" else []
        warnings = [unparseable_warning(cfg, unparseable, located)] if located else []
        for line in warnings:
            print(f"ingest: warning: {line}", flush=True)
        bronze, quarantine = resolve_table(cfg, BRONZE), resolve_table(cfg, QUARANTINE)
        bronze.create_if_missing(spark, BRONZE_SCHEMA, BRONZE_PROPERTIES)
        quarantine.create_if_missing(spark, QUARANTINE_SCHEMA)
        if quarantined:
            quarantine.insert_new(spark, quarantined_records(classified, batch_id), "quarantine_id")
        inserted, changed = load_bronze(spark, cfg, bronze, quarantine, classified, batch_id, use_id) if valid else (0, 0)
    finally:
        classified.unpersist()
    policy = ic.on_changed_text
    if changed and policy == "quarantine":
        quarantined = dict(sorted({**quarantined, IngestReason.CHANGED_TEXT: changed}.items()))
    counted = 0 if policy == "quarantine" else changed
    if changed:
        done = {"update": "bronze's rows updated", "keep_first": "bronze's rows kept",
                "quarantine": "quarantined"}[policy]
        print(f"ingest: {changed:,} records hold an id already in bronze with other text or label: {done} "
              f"(ingest.on_changed_text={policy})", flush=True)
    return {
        "read": valid + sum(v for k, v in quarantined.items() if k != IngestReason.CHANGED_TEXT),
        "inserted": inserted,
        "changed": counted,
        "on_changed_text": policy,
        "duplicates": valid - inserted - changed,
        "quarantined": quarantined,
        **({"unparseable_rows": located} if located else {}),
        **({"warnings": warnings} if warnings else {}),
        **({"label_names": names} if names else {}),
        "batch_id": batch_id,
        "bronze_version": bronze.version(spark),
        "tables": {"bronze": str(bronze), "quarantine": str(quarantine)},
    }


def load_bronze(spark: SparkSession, cfg: Config, bronze, quarantine, classified: DataFrame, batch_id: str,
                use_id: bool) -> tuple[int, int]:
    """MERGE the valid records into bronze -> (inserted, changed). Without an id column a
    document's id is its content's hash, so only with one can a record change a document."""
    columns = [f.name for f in BRONZE_SCHEMA.fields]
    if not use_id:
        return bronze.insert_new(spark, to_bronze(classified, batch_id, use_id).select(*columns), "doc_id"), 0
    marked = to_bronze(classified, batch_id, use_id, bronze.read(spark)).persist()
    try:
        policy, changed = cfg.ingest.on_changed_text, marked.where("_changed").count()
        if changed and policy == "update":  # (a MERGE that can update commits a version even when it does not)
            assignments = ", ".join(f"t.{quote_identifier(c)} = s.{quote_identifier(c)}" for c in UPDATED_COLUMNS)
            return bronze.merge(spark, marked.select(*columns), "doc_id", update=assignments,
                                when="NOT (t.text <=> s.text AND t.label <=> s.label)")
        if changed and policy == "quarantine":
            quarantine.insert_new(spark, changed_records(marked, batch_id), "quarantine_id")
        kept = marked.where("NOT _changed") if changed else marked
        return bronze.insert_new(spark, kept.select(*columns), "doc_id"), changed
    finally:
        marked.unpersist()


def nothing_new(summary: dict) -> bool:
    """Bronze did not change: nothing inserted, and no changed text updated (quarantined rows
    are counted again on a rerun, but not stored twice)."""
    return summary.get("inserted", 0) == 0 and not (summary.get("changed") and summary.get("on_changed_text") == "update")


def summary_line(summary: dict) -> str:
    """Ingest's line in `lakebert run`."""
    quarantined = sum(summary.get("quarantined", {}).values())
    changed = f", changed {summary['changed']:,} ({summary['on_changed_text']})" if summary.get("changed") else ""
    line = f"read {summary['read']:,}, inserted {summary['inserted']:,}{changed}, already in bronze " \
           f"{summary['duplicates']:,}, quarantined {quarantined:,}"
    return line + (" (nothing new: up to date)" if nothing_new(summary) else "")


STAGE_RECORD = Stage(
    name=STAGE, body=ingest, description="raw files or a table -> bronze Delta table (+ quarantine)",
    config=("ingest", "tables.bronze", "tables.quarantine", "lakehouse", "spark"),
    step=10, timeout_hours=2, summary=summary_line, up_to_date=nothing_new)


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE_RECORD, argv)


if __name__ == "__main__":
    sys.exit(main())
