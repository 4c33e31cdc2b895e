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
"""

from __future__ import annotations

import sys

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType
from pyspark.sql.window import Window

from conf import Config
from conf.identifiers import parse_table_name, quote_identifier, quote_table_name
from spark_jobs.filters import first_reason
from spark_jobs.quarantine import QUARANTINE_SCHEMA, to_quarantine
from spark_jobs.registry import Stage
from spark_jobs.session import is_connect
from spark_jobs.stage import StageError, run_stage
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

# Columns of the normalized raw frame every reader produces.
RAW_COLUMNS = ["_raw", "_source", "_parsed", "_text", "_text_ok", "_label", "_label_ok", "_id", "_has_text", "_has_label",
               "_modified"]
# When a record's file was last modified: of two versions of a document, the newer file's wins.
FILE_MODIFIED = "_metadata.file_modification_time"
CORRUPT = "_corrupt_record"
SCALAR_JSON = "^(STRING|BIGINT|INT|SMALLINT|TINYINT|DOUBLE|FLOAT|DECIMAL|BOOLEAN)"
REPLACEMENT_CHAR = "\ufffd"
STAGE = "ingest"
# CSV as spreadsheets, pandas and Python's csv module write it (RFC 4180), where
# `ingest.options.*` do not say otherwise. Spark's own default escape is `\`, which loses rows
# with a quote written `""` (issue 31: 15 of 581 rows of a real file). multiLine lets a quoted
# field hold line breaks; it reads each file in one task (Spark cannot split a file where a
# record may span lines): `ingest.options.multiLine=false` for huge files without them.
CSV_DEFAULTS = {"header": "true", "quote": '"', "escape": '"', "multiLine": "true"}
UNPARSEABLE_SHOWN = 3  # unparseable records located in their files (line, byte offset) per run
SHOWN_CHARS = 60  # of an unparseable record, in the summary and the warning


# --------------------------------------------------------------------------- readers

def read_source(spark: SparkSession, cfg: Config) -> DataFrame:
    """Read `ingest.source` into the raw frame (`RAW_COLUMNS`), one row per record."""
    ic = cfg.ingest
    if not ic.source:
        raise StageError("ingest.source is not set; give it with --set ingest.source=PATH_OR_TABLE")
    readers = {"jsonl": _read_jsonl, "csv": _read_csv, "text": _read_text}
    try:
        raw = readers.get(ic.format, _read_columnar)(spark, cfg).select(*RAW_COLUMNS)
        raw.schema  # noqa: B018 - Spark Connect analyzes lazily: a missing source fails here, not later
        return raw
    except Exception as exc:  # noqa: BLE001 - turn Spark's analysis errors into one line
        if isinstance(exc, StageError):
            raise
        condition = getattr(exc, "getCondition", lambda: None)() or ""
        if condition == "PATH_NOT_FOUND" or "Path does not exist" in str(exc):
            where = " on the Spark Connect server (give an absolute path or a URI)" if is_connect(spark) else ""
            raise StageError(f"ingest.source={ic.source!r}: path does not exist{where}") from None
        if condition in ("TABLE_OR_VIEW_NOT_FOUND",):
            raise StageError(f"ingest.source={ic.source!r}: table does not exist") from None
        raise


def _json_path(key: str, name: str) -> str:
    """The Variant path of a top-level field. Spark's path syntax has no escapes: `['..']`
    cannot hold `'` and `[".."]` cannot hold `"`."""
    if "'" not in name:
        return f"$['{name}']"
    if '"' not in name:
        return f'$["{name}"]'
    raise StageError(f"{key}={name!r}: Spark cannot read a JSON field whose name holds both ' and \"; "
                     "rename the field, or convert the file to Parquet")


def _read_jsonl(spark: SparkSession, cfg: Config) -> DataFrame:
    ic = cfg.ingest
    lines = (
        spark.read.options(**ic.options).text(ic.source)
        .select(F.col("value").alias("_raw"), F.col("_metadata.file_path").alias("_source"),
                F.col(FILE_MODIFIED).alias("_modified"))
        .where(F.trim("_raw") != "")  # blank lines separate records; they are not records
    )
    doc = F.try_parse_json(F.make_valid_utf8("_raw"))
    parsed = doc.isNotNull() & F.schema_of_variant(doc).startswith("OBJECT")
    paths = {name: _json_path(key, name) for key, name in (
        ("ingest.text_column", ic.text_column), ("ingest.label_column", ic.label_column),
        ("ingest.id_column", ic.id_column)) if name is not None}

    def present(name: str | None) -> Column:
        return F.lit(True) if name is None else F.try_variant_get(doc, paths[name], "variant").isNotNull()

    def field(name: str | None) -> Column:
        """The field as a variant; a missing field and JSON null are both SQL NULL."""
        if name is None:
            return F.lit(None).cast("variant")
        value = F.try_variant_get(doc, paths[name], "variant")
        return F.when(~F.is_variant_null(value), value)

    def scalar_ok(value: Column) -> Column:
        return value.isNull() | F.schema_of_variant(value).rlike(SCALAR_JSON)

    def string_ok(value: Column) -> Column:
        return value.isNull() | (F.schema_of_variant(value) == "STRING")

    def as_string(value: Column) -> Column:
        return F.when(scalar_ok(value), F.try_variant_get(value, "$", "string"))

    text, label, doc_id = field(ic.text_column), field(ic.label_column), field(ic.id_column)
    return lines.select(
        "_raw", "_source", parsed.alias("_parsed"),
        as_string(text).alias("_text"), string_ok(text).alias("_text_ok"),
        as_string(label).alias("_label"), scalar_ok(label).alias("_label_ok"),
        as_string(doc_id).alias("_id"),
        present(ic.text_column).alias("_has_text"), present(ic.label_column).alias("_has_label"), "_modified",
    )


def _require_columns(columns: list[str], cfg: Config) -> None:
    ic = cfg.ingest
    wanted = {"ingest.text_column": ic.text_column, "ingest.label_column": ic.label_column,
              "ingest.id_column": ic.id_column}
    for key, name in wanted.items():
        if name is not None and name not in columns:
            raise StageError(f"{key}={name!r} is not a column of {ic.source} (columns: {', '.join(columns)})")


def _from_columns(df: DataFrame, cfg: Config, source: Column, parsed: Column, raw: Column,
                  modified: Column | None = None) -> DataFrame:
    ic = cfg.ingest
    scalar = ("string", "int", "bigint", "smallint", "tinyint", "boolean", "double", "float")
    types = dict(df.dtypes)
    if ic.text_column is not None and types[ic.text_column] != "string":
        raise StageError(f"ingest.text_column={ic.text_column!r} has type {types[ic.text_column]}; the text must "
                         "be a string column")
    if ic.label_column is not None and not (types[ic.label_column] in scalar
                                            or types[ic.label_column].startswith("decimal")):
        raise StageError(f"ingest.label_column={ic.label_column!r} has type {types[ic.label_column]}; a string or "
                         "number column is needed")

    def col_or_null(name: str | None) -> Column:
        return F.col(quote_identifier(name)).cast("string") if name is not None else F.lit(None).cast("string")

    return df.select(
        raw.alias("_raw"), source.alias("_source"), parsed.alias("_parsed"),
        col_or_null(ic.text_column).alias("_text"), F.lit(True).alias("_text_ok"),
        col_or_null(ic.label_column).alias("_label"), F.lit(True).alias("_label_ok"),
        col_or_null(ic.id_column).alias("_id"), F.lit(True).alias("_has_text"), F.lit(True).alias("_has_label"),
        (F.lit(None).cast("timestamp") if modified is None else modified).alias("_modified"),
    )


def csv_options(options: dict[str, str]) -> dict[str, str]:
    """`CSV_DEFAULTS` under the reader options given. Spark's option names ignore case, so a
    default goes when an option of the same name in any case is given."""
    given = {key.lower() for key in options}
    return {**{k: v for k, v in CSV_DEFAULTS.items() if k.lower() not in given}, **options}


def _read_csv(spark: SparkSession, cfg: Config) -> DataFrame:
    ic = cfg.ingest
    options = csv_options(ic.options)  # text_column names a header column
    header = spark.read.options(**options).csv(ic.source).columns
    _require_columns(header, cfg)
    schema = StructType([StructField(c, StringType(), True) for c in header] + [StructField(CORRUPT, StringType())])
    df = (
        spark.read.options(**options).option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
        .schema(schema).csv(ic.source)
    )
    raw = F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*[F.col(quote_identifier(c)) for c in header])))
    return _from_columns(df, cfg, F.col("_metadata.file_path"), F.col(CORRUPT).isNull(), raw, F.col(FILE_MODIFIED))


def _read_columnar(spark: SparkSession, cfg: Config) -> DataFrame:
    ic = cfg.ingest
    if ic.format == "parquet":
        df, source, modified = (spark.read.options(**ic.options).parquet(ic.source), F.col("_metadata.file_path"),
                                F.col(FILE_MODIFIED))
    elif "/" in ic.source or ":" in ic.source:
        df, source, modified = spark.read.format("delta").options(**ic.options).load(ic.source), F.lit(ic.source), None
    else:
        name = quote_table_name(parse_table_name(ic.source))  # validated with the config
        df, source, modified = spark.read.options(**ic.options).table(name), F.lit(ic.source), None
    _require_columns(df.columns, cfg)
    raw = F.to_json(F.struct(*[F.col(quote_identifier(c)) for c in df.columns]))
    return _from_columns(df, cfg, source, F.lit(True), raw, modified)


def _read_text(spark: SparkSession, cfg: Config) -> DataFrame:
    ic = cfg.ingest
    per_file = ic.text_mode == "file"
    df = spark.read.options(**ic.options).text(ic.source, wholetext=per_file)
    df = df.select(F.col("value").alias("_raw"), F.col("_metadata.file_path").alias("_source"),
                   F.col(FILE_MODIFIED).alias("_modified"))
    if not per_file:
        df = df.where(F.trim("_raw") != "")  # blank lines separate documents
    label = F.element_at(F.split("_source", "/"), -2) if ic.label_from_dir else F.lit(None).cast("string")
    return df.select(
        "_raw", "_source", F.lit(True).alias("_parsed"), F.col("_raw").alias("_text"), F.lit(True).alias("_text_ok"),
        label.alias("_label"), F.lit(True).alias("_label_ok"), F.lit(None).cast("string").alias("_id"),
        F.lit(True).alias("_has_text"), F.lit(True).alias("_has_label"), "_modified",
    )


def has_labels(cfg: Config) -> bool:
    ic = cfg.ingest
    return ic.label_from_dir if ic.format == "text" else ic.label_column is not None


# --------------------------------------------------------------------------- transform

def classify_records(raw: DataFrame, max_text_chars: int, require_label: bool, use_id: bool) -> DataFrame:
    """Add `_reason`: the first `IngestReason` a record fails, or null when it is valid."""
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

def find_line(stream, needle: bytes, chunk_bytes: int = 1 << 22) -> tuple[int, int] | None:
    """(line number from 1, byte offset) of the first line of a binary `stream` that starts
    with `needle`, or None. Reads the stream once, in chunks."""
    if not needle:
        return None
    target = b"\n" + needle
    buffer, start, newlines = b"\n", -1, 0  # a virtual newline before the first byte: offset -1
    while True:
        chunk = stream.read(chunk_bytes)
        buffer += chunk
        at = buffer.find(target)
        if at >= 0:
            lines = newlines + buffer.count(b"\n", 0, at + 1) - (1 if start < 0 else 0)
            return lines + 1, start + at + 1
        if not chunk:
            return None
        cut = len(buffer) - (len(target) - 1)  # keep what a match straddling two chunks starts with
        if cut > 0:
            newlines += buffer.count(b"\n", 0, cut) - (1 if start < 0 else 0)
            start, buffer = start + cut, buffer[cut:]


def locate_record(source: str, raw: str, encoding: str) -> dict:
    """Where the record `raw` (as the reader gave it) starts in its file: {line, byte_offset},
    None for each when it cannot be found (the file changed, a codec pyarrow does not know).
    The file is read through `conf.storage` (compressed files by their extension)."""
    from urllib.parse import unquote

    from conf import storage

    first = raw.split("\n", 1)[0].rstrip("\r")
    for location in dict.fromkeys((source, unquote(source))):  # Spark's file_path is URL-encoded
        try:
            filesystem, path = storage.resolve(location)
            with filesystem.open_input_stream(path) as stream:
                found = find_line(stream, first.encode(encoding, errors="replace"))
        except (OSError, LookupError, ValueError, storage.StorageError):
            continue
        if found:
            return {"line": found[0], "byte_offset": found[1]}
    return {"line": None, "byte_offset": None}


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
