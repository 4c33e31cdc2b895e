"""Tokenize the silver table into training-ready Parquet plus a manifest.

    lakebert tokenize [--set tokenize.tokenizer=auto|train|DIR|tokenizer.json|hub-name]
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 spark_jobs/tokenize_silver.py [--set ...]

The stage is `tokenize`; its file is `tokenize_silver.py` because spark-submit puts this folder
first on sys.path, where a file named after the stage would shadow the standard library's
`tokenize` module.

Output, under `<lakehouse.root>/<tokenize.output>/`, in the layout that `tokenization.dataset`
describes and training reads:

    <key>/data/split=train/part-*.parquet   doc_id, input_ids list<int32> (unpadded), length int32,
                                            label int32, truncated bool; sorted by doc_id
    <key>/manifest.json                     written last: the dataset exists only once it is there
    LATEST                                  the key of the newest complete dataset

The tokenizer follows the model (`tokenize.tokenizer=auto`): a pretrained `train.model` brings
its own, and a WordPiece tokenizer is trained on the train split only for a from-scratch model.
An explicit tokenizer that does not match a pretrained model's vocabulary and special tokens
is an error before any Spark job. The manifest records which model the tokenizer belongs to.

No evaluation input is a training input: a validation or test row whose token ids equal a
train row's (different texts can give the same ids once truncated or normalized) is removed,
and so is a test row equal to a validation row. The manifest counts them
(`cross_split_duplicates`), and `rows` adds up: silver rows == rows + removed.

`<key>` hashes the silver table, its Delta version and the tokenizer fingerprint (tokenizer
files + encoding settings), so a rerun with the same inputs finds its manifest and does
nothing (`"status": "up_to_date"`). A crashed run leaves a folder without a manifest, which
readers ignore; LATEST still names the previous complete dataset.

The data report (`spark_jobs.data_report`): the manifest keeps each split's token-length
histogram (`splits.<split>.length_histogram`, {tokens: rows}), drawn into
`_runs/tokenize/<stage_run_id>/token_lengths.png` before the manifest is written. The manifest's
`data_report` lists that image and the report files of the clean run that wrote this silver
version, which training logs to the MLflow run.

Tokenization runs in `mapInArrow`: each Python worker builds the Rust tokenizer once from
a broadcast copy of `tokenizer.json` (no driver filesystem needed on a cluster), encodes a
whole Arrow batch at once, and returns the ids as an Arrow list array built from offsets.
Spark runs one task per core, so the tokenizer's own thread pool is switched off in workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import uuid
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, IntegerType, StringType, StructField, StructType

from conf import Config
from conf.paths import is_uri, join_path, resolve_root, under_root
from conf.schema import AUTO_TOKENIZER, SPLITS, TRAIN, TRAIN_TOKENIZER
from spark_jobs.data_report import CLEAN_FILES, TOKENIZE_FILES, clean_report_dir, report_images, tokenize_figures
from spark_jobs.session import arrow_batch_rows
from spark_jobs.stage import StageError, run_stage, write_bytes, write_text
from spark_jobs.tables import SILVER, resolve_table, runs_dir
from tokenization import Encoder, TokenizerError, check_matches_model, fingerprint, load_tokenizer, train_wordpiece
from tokenization import dataset
from tokenization.dataset import DATA_DIR, FORMAT, LATEST, MANIFEST
from training.guards import imbalance_warning

STAGE = "tokenize"
TRAINED_TOKENIZERS = "tokenizers"
LENGTH_PERCENTILES = (0.5, 0.9, 0.95, 0.99)
CROSS_SPLIT = "cross_split_duplicate"  # column: the row's ids occur in an earlier split

TOKENIZED_SCHEMA = StructType([
    StructField("doc_id", StringType(), False),
    StructField("input_ids", ArrayType(IntegerType(), False), False),
    StructField("length", IntegerType(), False),
    StructField("label", IntegerType(), True),
    StructField("truncated", BooleanType(), False),
    StructField("split", StringType(), False),
])


# --------------------------------------------------------------------------- executor side

_ENCODERS: dict[str, Encoder] = {}  # per Python worker: built once, reused by every task


def _encoder(key: str, tokenizer_json, max_length: int, side: str) -> Encoder:
    if key not in _ENCODERS:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one task per core already
        _ENCODERS[key] = Encoder(tokenizer_json.value, max_length, side)
    return _ENCODERS[key]


def tokenize_batches_fn(key: str, tokenizer_json, max_length: int, side: str):
    """The `mapInArrow` function: Arrow batches of (doc_id, text, label_id, split) -> TOKENIZED_SCHEMA."""

    def tokenize_batches(batches):
        import pyarrow as pa

        encoder = _encoder(key, tokenizer_json, max_length, side)
        for batch in batches:
            ids, offsets, lengths, truncated = encoder.encode(batch.column("text").to_pylist())
            input_ids = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int32()))
            yield pa.RecordBatch.from_arrays(
                [batch.column("doc_id"), input_ids, pa.array(lengths, pa.int32()),
                 batch.column("label_id").cast(pa.int32()), pa.array(truncated, pa.bool_()), batch.column("split")],
                names=TOKENIZED_SCHEMA.fieldNames())

    return tokenize_batches


def tokenize_documents(silver: DataFrame, key: str, tokenizer_json, max_length: int, side: str) -> DataFrame:
    """silver -> TOKENIZED_SCHEMA rows, each partition sorted by (split, doc_id).

    No shuffle: tokenization runs in the scan's own tasks (Spark already splits the files
    evenly over the cores), so the output order is fixed by the silver version's files and the
    cluster's parallelism, and by doc_id within each file.
    """
    rows = silver.select("doc_id", "text", "label_id", "split")
    return rows.mapInArrow(tokenize_batches_fn(key, tokenizer_json, max_length, side), TOKENIZED_SCHEMA)


def _ids_key() -> Column:
    """128 bits identifying a token sequence (two 64-bit hashes: collisions are negligible)."""
    return F.struct(F.xxhash64("input_ids").alias("h1"), F.xxhash64(F.reverse("input_ids")).alias("h2"))


def _split_rank() -> Column:
    rank = F.lit(None).cast("int")
    for i, split in reversed(list(enumerate(SPLITS))):
        rank = F.when(F.col("split") == split, F.lit(i)).otherwise(rank)
    return rank


def mark_cross_split_duplicates(tokens: DataFrame) -> DataFrame:
    """Add `cross_split_duplicate`: true for a row whose token ids also occur in an earlier split
    (train < validation < test). Train rows are never marked, so evaluation never sees a
    training input, and test never sees a validation input that picked the checkpoint."""
    keyed = tokens.withColumn("_key", _ids_key()).withColumn("_rank", _split_rank())
    shared = (keyed.groupBy("_key").agg(F.min("_rank").alias("_first"), F.max("_rank").alias("_last"))
              .where(F.col("_first") < F.col("_last")).select("_key", "_first"))
    return (keyed.join(shared, "_key", "left")
            .withColumn(CROSS_SPLIT, F.coalesce(F.col("_rank") > F.col("_first"), F.lit(False)))
            .drop("_key", "_rank", "_first"))


# --------------------------------------------------------------------------- driver side

def output_root(cfg: Config) -> str:
    return under_root(cfg, cfg.tokenize.output)


def dataset_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def read_manifest(spark, path: str) -> dict | None:
    try:
        text = spark.sparkContext.wholeTextFiles(path).values().first() if is_uri(path) else Path(path).read_text()
    except Exception:  # noqa: BLE001 - missing means not complete
        return None
    return json.loads(text)


def latest_manifest(cfg: Config) -> str | None:
    """Path of the newest complete dataset's manifest (local lakehouse), or None."""
    manifest = dataset.latest_manifest(output_root(cfg))
    return None if manifest is None else str(manifest)


def _publish_latest(spark, root: str, key: str) -> None:
    if is_uri(root):
        write_text(spark, join_path(root, LATEST), key)
        return
    tmp = Path(root) / f".{LATEST}.{uuid.uuid4().hex}"
    tmp.write_text(key)
    os.replace(tmp, Path(root) / LATEST)  # atomic on POSIX filesystems


def resolve_tokenizer(cfg: Config, silver, silver_df: DataFrame, version: int):
    """The tokenizer for this run and the pretrained model it belongs to (None: trained here).

    `auto`: a pretrained `train.model`'s own tokenizer, or a trained one for a from-scratch
    model. `train`: a trained one. Otherwise the named one. Whatever the choice, a pretrained
    model must get the tokenizer it was trained with."""
    tc, model = cfg.tokenize, cfg.train.model
    try:
        if tc.tokenizer == AUTO_TOKENIZER and cfg.train.pretrained:
            return load_tokenizer(model), model
        if tc.tokenizer in (AUTO_TOKENIZER, TRAIN_TOKENIZER):
            tokenizer = _trained_tokenizer(cfg, silver, silver_df, version)
        else:
            tokenizer = load_tokenizer(tc.tokenizer)
        if not cfg.train.pretrained:
            return tokenizer, None
        check_matches_model(tokenizer, model)
        return tokenizer, model
    except TokenizerError as exc:
        raise StageError(str(exc)) from None


def _trained_tokenizer(cfg: Config, silver, silver_df: DataFrame, version: int):
    """A WordPiece tokenizer trained on the train split, once per silver version and settings."""
    tc = cfg.tokenize
    if is_uri(resolve_root(cfg)):
        raise StageError("training a tokenizer saves it under lakehouse.root, which must be a local "
                         "or mounted path (e.g. /dbfs, /Volumes); or set tokenize.tokenizer to a trained one")
    # Trained once per silver version and settings, then reused: the WordPiece trainer is not
    # deterministic (huggingface/tokenizers#1794), so retraining could change the ids.
    key = dataset_key(str(silver), str(version), str(tc.vocab_size), str(tc.lowercase), str(tc.min_frequency),
                      str(tc.train_sample_rows))
    out = Path(resolve_root(cfg)) / TRAINED_TOKENIZERS / f"wordpiece-{key}"
    if not (out / "tokenizer.json").is_file():
        train = silver_df.where(F.col("split") == TRAIN)
        texts = (r["text"] for r in train.orderBy("doc_id").limit(tc.train_sample_rows).select("text").toLocalIterator())
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}")
        train_wordpiece(texts, tmp, tc.vocab_size, tc.lowercase, tc.min_frequency)
        tmp.rename(out)  # another run may have won the race; both trained the same thing
    return load_tokenizer(str(out))


def _percentile(histogram: dict[int, int], q: float) -> int:
    """Exact percentile (nearest rank) of a {length: count} histogram."""
    rank, seen = max(1, math.ceil(q * sum(histogram.values()))), 0
    for length in sorted(histogram):
        seen += histogram[length]
        if seen >= rank:
            return length
    return 0


def dataset_stats(data: DataFrame) -> tuple[dict, str]:
    """Per-split rows, truncation, exact length percentiles, the length histogram ({tokens: rows},
    at most max_length entries) and labels, plus an order-free content hash, from one aggregation
    over a small (split, label, length) histogram."""
    groups = data.groupBy("split", "label", "length", "truncated").agg(
        F.count("*").alias("rows"),
        F.sum(F.xxhash64("split", "doc_id", "label", "input_ids").cast("decimal(38,0)")).alias("hash"),
    ).collect()
    splits: dict[str, dict] = {}
    lengths: dict[str, dict[int, int]] = {}
    hashes: dict[str, int] = {}
    for g in groups:
        s = splits.setdefault(g["split"], {"rows": 0, "tokens": 0, "truncated": 0, "label_counts": {}})
        s["rows"] += g["rows"]
        s["tokens"] += g["rows"] * g["length"]
        s["truncated"] += g["rows"] if g["truncated"] else 0
        label = str(g["label"])
        s["label_counts"][label] = s["label_counts"].get(label, 0) + g["rows"]
        lengths.setdefault(g["split"], {}).setdefault(g["length"], 0)
        lengths[g["split"]][g["length"]] += g["rows"]
        hashes[g["split"]] = hashes.get(g["split"], 0) + int(g["hash"])
    digest = hashlib.sha256()
    for split in sorted(splits):
        s = splits[split]
        s["truncation_rate"] = round(s["truncated"] / s["rows"], 6)
        s["length_percentiles"] = {f"p{int(q * 100)}": _percentile(lengths[split], q) for q in LENGTH_PERCENTILES}
        s["label_counts"] = dict(sorted(s["label_counts"].items()))
        s["length_histogram"] = {str(length): n for length, n in sorted(lengths[split].items())}
        digest.update(f"{split}:{s['rows']}:{hashes[split]};".encode())
    return dict(sorted(splits.items())), digest.hexdigest()


def list_files(spark, data_dir: str) -> dict[str, list[str]]:
    """The Parquet files of each split, relative to the dataset folder, in read order."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(data_dir)
    listing = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).listFiles(path, True)
    names = []
    while listing.hasNext():
        name = listing.next().getPath().toString()
        if name.endswith(".parquet"):
            names.append(name[name.index(f"/{DATA_DIR}/") + 1:])
    files: dict[str, list[str]] = {}
    for rel in sorted(names):
        files.setdefault(rel.split("/")[1].removeprefix("split="), []).append(rel)
    return files


def write_tokens(spark, tc, silver_df: DataFrame, tokenizer, tok_fp: str, data_dir: str) -> dict[str, int]:
    """Tokenize silver into `data_dir` (Parquet by split), without the validation/test rows
    whose ids equal an earlier split's. -> those removed rows per split."""
    tokenizer_json = spark.sparkContext.broadcast(tokenizer.to_str())
    # The tokenized rows are kept, and the cross-split mark reads the kept rows. Marking the
    # uncached rows put `mapInArrow` into both sides of the mark's join, so every text was
    # tokenized twice (measured on 106k docstrings: tokenize 11.5 s, the mark then 2.7 s,
    # against 26 s for the two together uncached).
    tokenized = tokenize_documents(silver_df, tok_fp, tokenizer_json, tc.max_length, tc.truncation_side)
    tokenized = tokenized.persist(StorageLevel.MEMORY_AND_DISK)
    tokens = mark_cross_split_duplicates(tokenized).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with arrow_batch_rows(spark, tc.arrow_batch_rows):
            tokenized.count()  # tokenize once, into the cache, before the join reads it twice
            removed = {r["split"]: r["count"] for r in tokens.where(CROSS_SPLIT).groupBy("split").count().collect()}
            tokenized.unpersist()  # the marked rows are cached now: one copy during the write
            (tokens.where(~F.col(CROSS_SPLIT)).drop(CROSS_SPLIT)
             .sortWithinPartitions("split", "doc_id")
             .write.mode("overwrite").partitionBy("split")
             .option("maxRecordsPerFile", tc.rows_per_file)
             .option("parquet.block.size", tc.row_group_mb * 1024 * 1024)
             .parquet(data_dir))
    finally:
        tokens.unpersist()
        tokenized.unpersist()
        tokenizer_json.unpersist()
    return removed


def data_warnings(manifest: dict, class_weights: str | None) -> list[str]:
    """What a user should know about the written data: rows removed across splits, imbalance."""
    warnings = []
    removed = manifest["cross_split_duplicates"]
    if sum(removed.values()):
        warnings.append(f"removed {sum(removed.values()):,} validation/test rows whose token ids equal an earlier "
                        f"split's ({', '.join(f'{k} {v:,}' for k, v in removed.items())})")
    imbalance = imbalance_warning(_named_counts(manifest["splits"].get(TRAIN, {}), manifest["label_map"]),
                                  class_weights)
    if imbalance:
        warnings.append(imbalance)
    return warnings


def data_report_files(clean_dir: str | None, report_dir: str) -> dict[str, list[str]]:
    """What the manifest's `data_report` lists: the report files of the clean run that wrote the
    silver version (none when unknown: training then warns) and this run's."""
    return {"clean": [join_path(clean_dir, name) for name in CLEAN_FILES] if clean_dir else [],
            STAGE: [join_path(report_dir, name) for name in TOKENIZE_FILES]}


def tokenize(spark: SparkSession, cfg: Config, stage_run_id: str) -> dict:
    tc = cfg.tokenize
    silver = resolve_table(cfg, SILVER)
    if not silver.exists(spark):
        raise StageError(f"silver table {silver} does not exist; run `lakebert clean` first")
    version = tc.silver_version if tc.silver_version is not None else silver.version(spark)
    silver_df = silver.read(spark, version)
    # One small query gives the rows per split and the label map of exactly this silver version.
    groups = silver_df.groupBy("split", "label", "label_id").count().collect()
    split_rows = {g["split"]: sum(x["count"] for x in groups if x["split"] == g["split"]) for g in groups}
    label_map = {g["label"]: g["label_id"] for g in groups if g["label"] is not None}
    if not split_rows.get(TRAIN):
        raise StageError(f"the train split of {silver} (version {version}) is empty; run `lakebert clean` first")
    tokenizer, tokenizer_model = resolve_tokenizer(cfg, silver, silver_df, version)
    if tc.max_length > tokenizer.model_max_length:
        raise StageError(f"tokenize.max_length={tc.max_length} is larger than the model allows "
                         f"({tokenizer.model_max_length} for {tokenizer.path})")
    settings = {"max_length": tc.max_length, "truncation_side": tc.truncation_side, "add_special_tokens": True}
    tok_fp = fingerprint(tokenizer.files, settings)
    key = dataset_key(str(silver), str(version), tok_fp, FORMAT)
    root = output_root(cfg)
    folder = join_path(root, key)
    manifest_path = join_path(folder, MANIFEST)
    base = {"manifest": manifest_path, "silver_version": version, "tokenizer_fingerprint": tok_fp,
            "tables": {"silver": str(silver)}}

    done = read_manifest(spark, manifest_path)
    if done is not None:
        _publish_latest(spark, root, key)
        return {"status": "up_to_date", "rows": done["rows"], **base}

    if not is_uri(folder):
        shutil.rmtree(folder, ignore_errors=True)  # the leftovers of a crashed run
    rows = sum(split_rows.values())
    data_dir = join_path(folder, DATA_DIR)
    removed = write_tokens(spark, tc, silver_df, tokenizer, tok_fp, data_dir)
    data = spark.read.parquet(data_dir)
    splits, content_hash = dataset_stats(data)
    written = sum(s["rows"] for s in splits.values())
    report_dir = runs_dir(cfg, STAGE, stage_run_id)
    manifest = {
        "format": FORMAT,
        "created_by_run": stage_run_id,
        "source": {"table": str(silver), "delta_version": version},
        "tokenizer_path": tokenizer.path,
        "tokenizer_fingerprint": tok_fp,
        "tokenizer_model": tokenizer_model,
        "max_length": tc.max_length,
        "truncation_side": tc.truncation_side,
        "columns": [f.name for f in TOKENIZED_SCHEMA.fields if f.name != "split"],
        "rows": written,
        "cross_split_duplicates": {split: removed.get(split, 0) for split in SPLITS if split != TRAIN},
        "splits": splits,
        "truncation_rate": round(sum(s["truncated"] for s in splits.values()) / max(written, 1), 6),
        "label_map": dict(sorted(label_map.items(), key=lambda kv: kv[1])),
        "files": list_files(spark, data_dir),
        "content_hash": content_hash,
        "data_report": data_report_files(clean_report_dir(spark, silver, version), report_dir),
    }
    if written + sum(removed.values()) != rows:
        raise StageError(f"wrote {written} rows and removed {sum(removed.values())} cross-split duplicates, but "
                         f"silver version {version} has {rows}; no manifest written")
    images, warnings = report_images(tokenize_figures, manifest)
    for name, png in images.items():
        write_bytes(spark, join_path(report_dir, name), png)
    print(f"tokenize: data report in {report_dir}: {', '.join(TOKENIZE_FILES)}", flush=True)
    write_text(spark, manifest_path, json.dumps(manifest, indent=2))  # the dataset exists from here on
    _publish_latest(spark, root, key)
    warnings += data_warnings(manifest, cfg.train.class_weights)
    for line in warnings:
        print(f"tokenize: warning: {line}", flush=True)
    return {"status": "done", "rows": written, "splits": {k: v["rows"] for k, v in splits.items()},
            "cross_split_duplicates": manifest["cross_split_duplicates"], "truncation_rate": manifest["truncation_rate"],
            "tokenizer_model": tokenizer_model, "warnings": warnings, **base}


def _named_counts(split_stats: dict, label_map: dict[str, int]) -> dict[str, int]:
    names = {str(i): label for label, i in label_map.items()}
    return {names.get(i, i): n for i, n in split_stats.get("label_counts", {}).items()}


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE, argv, tokenize, "Tokenize silver into Parquet for training.")


if __name__ == "__main__":
    sys.exit(main())
