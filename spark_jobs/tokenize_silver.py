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

Incremental runs (`"mode": "incremental"`). When the dataset LATEST names was tokenized from
an older version of the same silver table with the same tokenizer and settings, and silver has
only gained rows since (clean only appends; silver's Change Data Feed says so), only the new
rows are tokenized. The new folder holds their files and keys; its manifest lists the older
dataset's files too (`../<key>/data/...`) and adds up both runs' statistics, so its rows,
statistics and content hash equal a full run's. Anything else (another tokenizer or setting,
rows changed or removed, no change feed, or new rows that would remove already-written
validation/test rows as cross-split duplicates) is a full run, and the console says why. A
trained tokenizer is reused across silver versions for that reason (`tokenize.retrain_tokenizer`).

The data report (`spark_jobs.data_report`): the manifest keeps each split's token-length
histogram (`splits.<split>.length_histogram`, {tokens: rows}), drawn into
`_runs/tokenize/<stage_run_id>/token_lengths.png` before the manifest is written. The manifest's
`data_report` lists that image and the report files of the clean run that wrote this silver
version, which training logs to the MLflow run.

One pass: the rows are tokenized once into Spark's cache; the cross-split mark broadcasts the
few shared keys (no shuffle of the ids); one aggregation gives every count, the length
histograms and the order-free content hash; the writes read the cache; and a count of the
written files checks the rows. Silver's row count comes from the Delta log.

Tokenization runs in `mapInArrow`: each Python worker builds the Rust tokenizer once from
the copy of `tokenizer.json` its task's closure carries (no driver filesystem needed on a
cluster, and no `broadcast`, which Spark Connect lacks), encodes a
whole Arrow batch at once, and returns the ids as an Arrow list array built from offsets.
Spark runs one task per core, so the tokenizer's own thread pool is switched off in workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, IntegerType, StringType, StructField, StructType

from conf import Config, storage
from conf.paths import join_path, resolve_root, under_root
from conf.schema import AUTO_TOKENIZER, SPLITS, TRAIN, TRAIN_TOKENIZER
from spark_jobs.console import detail
from spark_jobs.data_report import CLEAN_FILES, TOKENIZE_FILES, report_dir_in, report_images, tokenize_figures
from spark_jobs.registry import Stage
from spark_jobs.session import arrow_batch_rows
from spark_jobs.stage import StageError, run_stage
from spark_jobs.tables import CHANGE_COLUMNS, INSERT, SILVER, resolve_table, runs_dir
from tokenization import Encoder, TokenizerError, check_matches_model, fingerprint, load_tokenizer, train_wordpiece
from tokenization import dataset
from tokenization.dataset import DATA_DIR, FORMAT, KEYS_DIR, LATEST, MANIFEST
from tokenization.tokenizer import TOKENIZER_FILE, precut_is_exact
from training.guards import imbalance_warning

STAGE = "tokenize"
TRAINED_TOKENIZERS = "tokenizers"
TRAINING_FILE = "lakebert_training.json"  # in a trained tokenizer's folder: the table, version and settings
LENGTH_PERCENTILES = (0.5, 0.9, 0.95, 0.99)
CROSS_SPLIT = "cross_split_duplicate"  # column: the row's ids occur in an earlier split
KEY, RANK, FIRST = "_key", "_rank", "_first"  # columns: the ids' hash, the split's rank, the earliest rank

TOKENIZED_SCHEMA = StructType([
    StructField("doc_id", StringType(), False),
    StructField("input_ids", ArrayType(IntegerType(), False), False),
    StructField("length", IntegerType(), False),
    StructField("label", IntegerType(), True),
    StructField("truncated", BooleanType(), False),
    StructField("split", StringType(), False),
])
LABEL_NAME = "label_name"  # column: silver's label, carried through tokenization for the label map
TOKENIZE_OUTPUT = StructType([*TOKENIZED_SCHEMA.fields, StructField(LABEL_NAME, StringType(), True)])


# --------------------------------------------------------------------------- executor side

_ENCODERS: dict[str, Encoder] = {}  # per Python worker: built once, reused by every task


def _encoder(key: str, tokenizer_json: str, max_length: int, side: str) -> Encoder:
    if key not in _ENCODERS:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one task per core already
        _ENCODERS[key] = Encoder(tokenizer_json, max_length, side)
    return _ENCODERS[key]


def tokenize_batches_fn(key: str, tokenizer_json: str, max_length: int, side: str):
    """The `mapInArrow` function: Arrow batches of (doc_id, text, label, label_id, split) -> TOKENIZE_OUTPUT.

    The tokenizer travels in the function's closure (`tokenizer.json` as a string): Spark ships
    the closure with the job's tasks, on a classic session and under Spark Connect alike (where
    there is no `broadcast`), and each Python worker builds the encoder once per `key`."""

    def tokenize_batches(batches):
        import pyarrow as pa

        encoder = _encoder(key, tokenizer_json, max_length, side)
        for batch in batches:
            ids, offsets, lengths, truncated = encoder.encode(batch.column("text").to_pylist())
            input_ids = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int32()))
            yield pa.RecordBatch.from_arrays(
                [batch.column("doc_id"), input_ids, pa.array(lengths, pa.int32()),
                 batch.column("label_id").cast(pa.int32()), pa.array(truncated, pa.bool_()), batch.column("split"),
                 batch.column("label")],
                names=TOKENIZE_OUTPUT.fieldNames())

    return tokenize_batches


def tokenize_documents(silver: DataFrame, key: str, tokenizer_json: str, max_length: int, side: str) -> DataFrame:
    """silver -> TOKENIZE_OUTPUT rows (TOKENIZED_SCHEMA plus the label's name), in silver's order.

    No shuffle: tokenization runs in the scan's own tasks (Spark already splits the files
    evenly over the cores), so the output order is fixed by the silver version's files and the
    cluster's parallelism, and by doc_id within each file.
    """
    rows = silver.select("doc_id", "text", "label", "label_id", "split")
    return rows.mapInArrow(tokenize_batches_fn(key, tokenizer_json, max_length, side), TOKENIZE_OUTPUT)


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


# --------------------------------------------------------------------------- statistics

def _row_hash() -> Column:
    """Each row's part of the content hash: summed per split, so the hash is order-free."""
    return F.xxhash64("split", "doc_id", "label", "input_ids").cast("decimal(38,0)")


def count_groups(marked: DataFrame) -> list:
    """One aggregation over the marked rows: rows and hash sums per (split, label, length,
    truncated, cross_split_duplicate), from which `split_stats` builds everything else."""
    return marked.groupBy("split", "label", LABEL_NAME, "length", "truncated", CROSS_SPLIT).agg(
        F.count("*").alias("rows"), F.sum(_row_hash()).alias("hash")).collect()


def split_stats(groups) -> tuple[dict, dict[str, int], dict[str, int]]:
    """-> ({split: counts of the kept rows}, {split: rows removed as cross-split duplicates},
    the label map {name: id} of all the rows).

    The counts add up across runs (`add_stats`): rows, tokens, truncated, label_counts,
    length_histogram ({tokens: rows}) and hash_sum."""
    splits: dict[str, dict] = {}
    removed: dict[str, int] = {}
    labels: dict[str, int] = {}
    for g in groups:
        if g[LABEL_NAME] is not None:
            labels[g[LABEL_NAME]] = g["label"]
        if g[CROSS_SPLIT]:
            removed[g["split"]] = removed.get(g["split"], 0) + g["rows"]
            continue
        s = splits.setdefault(g["split"], {"rows": 0, "tokens": 0, "truncated": 0, "label_counts": {},
                                           "length_histogram": {}, "hash_sum": 0})
        s["rows"] += g["rows"]
        s["tokens"] += g["rows"] * g["length"]
        s["truncated"] += g["rows"] if g["truncated"] else 0
        label = str(g["label"])
        s["label_counts"][label] = s["label_counts"].get(label, 0) + g["rows"]
        s["length_histogram"][g["length"]] = s["length_histogram"].get(g["length"], 0) + g["rows"]
        s["hash_sum"] += int(g["hash"])
    return splits, removed, labels


def add_stats(a: dict, b: dict) -> dict:
    """The counts of two disjoint sets of rows, split by split."""
    out = {}
    for split in set(a) | set(b):
        x, y = a.get(split, {}), b.get(split, {})
        out[split] = {key: x.get(key, 0) + y.get(key, 0) for key in ("rows", "tokens", "truncated", "hash_sum")}
        for key in ("label_counts", "length_histogram"):
            merged = dict(x.get(key, {}))
            for k, n in y.get(key, {}).items():
                merged[k] = merged.get(k, 0) + n
            out[split][key] = merged
    return out


def stats_of_manifest(manifest: dict) -> dict:
    """A manifest's `splits` back into `split_stats` counts (for an incremental run to add to)."""
    return {split: {"rows": s["rows"], "tokens": s["tokens"], "truncated": s["truncated"],
                    "label_counts": dict(s["label_counts"]),
                    "length_histogram": {int(k): n for k, n in s["length_histogram"].items()},
                    "hash_sum": int(s["hash_sum"])}
            for split, s in manifest["splits"].items()}


def _percentile(histogram: dict[int, int], q: float) -> int:
    """Exact percentile (nearest rank) of a {length: count} histogram."""
    rank, seen = max(1, math.ceil(q * sum(histogram.values()))), 0
    for length in sorted(histogram):
        seen += histogram[length]
        if seen >= rank:
            return length
    return 0


def manifest_splits(stats: dict) -> tuple[dict, str]:
    """The manifest's `splits` (rows, truncation, exact length percentiles, the length histogram,
    labels, the hash sum) and the order-free content hash: equal for equal rows, however many
    runs wrote them."""
    splits = {}
    digest = hashlib.sha256()
    for split in sorted(stats):
        s = stats[split]
        lengths = s["length_histogram"]
        splits[split] = {
            "rows": s["rows"], "tokens": s["tokens"], "truncated": s["truncated"],
            "label_counts": dict(sorted(s["label_counts"].items())),
            "truncation_rate": round(s["truncated"] / s["rows"], 6),
            "length_percentiles": {f"p{int(q * 100)}": _percentile(lengths, q) for q in LENGTH_PERCENTILES},
            "length_histogram": {str(length): n for length, n in sorted(lengths.items())},
            "hash_sum": str(s["hash_sum"]),  # a string: JSON readers may not keep 80-bit integers
        }
        digest.update(f"{split}:{s['rows']}:{s['hash_sum']};".encode())
    return splits, digest.hexdigest()


# --------------------------------------------------------------------------- driver side

def output_root(cfg: Config) -> str:
    return under_root(cfg, cfg.tokenize.output)


def dataset_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _read_text(path: str) -> str | None:
    """A small file's text (any location `conf.storage` reads), or None when it does not exist."""
    try:
        return storage.read_text(path)
    except FileNotFoundError:
        return None


def read_manifest(path: str) -> dict | None:
    text = _read_text(path)
    return None if text is None else json.loads(text)


def latest_manifest(cfg: Config) -> str | None:
    """Location of the newest complete dataset's manifest (any store), or None."""
    return dataset.latest_manifest(output_root(cfg))


def latest_dataset(root: str) -> tuple[str, dict] | None:
    """(key, manifest) of the dataset that `<root>/LATEST` names, when it is complete."""
    key = _read_text(join_path(root, LATEST))
    if not key or not key.strip():
        return None
    manifest = read_manifest(join_path(root, key.strip(), MANIFEST))
    return None if manifest is None else (key.strip(), manifest)


def _publish_latest(root: str, key: str) -> None:
    storage.write_text(join_path(root, LATEST), key)  # whole: a local file is renamed into place


def resolve_tokenizer(cfg: Config, silver, silver_df: DataFrame, version: int):
    """(the tokenizer for this run, the pretrained model it belongs to or None, how it was trained
    or None).

    `auto`: a pretrained `train.model`'s own tokenizer, or a trained one for a from-scratch
    model. `train`: a trained one. Otherwise the named one. Whatever the choice, a pretrained
    model must get the tokenizer it was trained with."""
    tc, model = cfg.tokenize, cfg.train.model
    try:
        if tc.tokenizer == AUTO_TOKENIZER and cfg.train.pretrained:
            return load_tokenizer(model), model, None
        training = None
        if tc.tokenizer in (AUTO_TOKENIZER, TRAIN_TOKENIZER):
            tokenizer, training = _trained_tokenizer(cfg, silver, silver_df, version)
        else:
            tokenizer = load_tokenizer(tc.tokenizer)
        if not cfg.train.pretrained:
            return tokenizer, None, training
        check_matches_model(tokenizer, model)
        return tokenizer, model, training
    except TokenizerError as exc:
        raise StageError(str(exc)) from None


def _trained_tokenizer(cfg: Config, silver, silver_df: DataFrame, version: int):
    """A WordPiece tokenizer trained on the train split, and how (TRAINING_FILE): trained once
    per settings and reused by later silver versions of the same table, or, with
    `tokenize.retrain_tokenizer`, once per silver version."""
    tc = cfg.tokenize
    trained = join_path(resolve_root(cfg), TRAINED_TOKENIZERS)
    training = {"table": str(silver), "delta_version": version, "vocab_size": tc.vocab_size,
                "lowercase": tc.lowercase, "min_frequency": tc.min_frequency,
                "train_sample_rows": tc.train_sample_rows}
    if not tc.retrain_tokenizer:
        reusable = _reusable_tokenizer(trained, training)
        if reusable is not None:
            return load_tokenizer(reusable[0]), reusable[1]
    # Trained once per silver version and settings, then reused: the WordPiece trainer is not
    # deterministic (huggingface/tokenizers#1794), so retraining could change the ids.
    key = dataset_key(str(silver), str(version), str(tc.vocab_size), str(tc.lowercase), str(tc.min_frequency),
                      str(tc.train_sample_rows))
    out = join_path(trained, f"wordpiece-{key}")
    if not storage.is_file(join_path(out, TOKENIZER_FILE)):
        train = silver_df.where(F.col("split") == TRAIN)
        texts = (r["text"] for r in train.orderBy("doc_id").limit(tc.train_sample_rows).select("text").toLocalIterator())
        first = next(texts, None)
        if first is None:
            raise StageError(f"the train split of {silver} (version {version}) is empty; run `lakebert clean` first")
        with tempfile.TemporaryDirectory(prefix="lakebert-tokenizer-") as tmp:
            local = Path(tmp) / "tokenizer"
            train_wordpiece(itertools.chain([first], texts), local, tc.vocab_size, tc.lowercase, tc.min_frequency)
            (local / TRAINING_FILE).write_text(json.dumps(training, indent=2))
            _publish_tokenizer(local, out)
    return load_tokenizer(out), training


def _publish_tokenizer(local: Path, out: str) -> None:
    """A trained tokenizer's folder into place; it counts once its TOKENIZER_FILE is there. Another
    run may have won the race: both trained the same thing."""
    if storage.is_local(out):
        target = Path(storage.local_path(out))
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        shutil.copytree(local, staged)
        try:
            staged.rename(target)  # atomic on POSIX filesystems
        except OSError:  # the race's winner is in place
            shutil.rmtree(staged, ignore_errors=True)
        return
    storage.upload(str(local), out, last=TOKENIZER_FILE)


def _reusable_tokenizer(trained: str, training: dict) -> tuple[str, dict] | None:
    """The first tokenizer trained with the same table and settings (on a silver version at or
    before this one), and how it was trained, or None: every later version gets the same ids."""
    def settings(t: dict) -> dict:
        return {k: v for k, v in t.items() if k != "delta_version"}

    found = []
    for name in storage.listdir(trained):
        folder = join_path(trained, name)
        if not name.startswith("wordpiece-") or not storage.is_file(join_path(folder, TOKENIZER_FILE)):
            continue
        try:
            other = json.loads(_read_text(join_path(folder, TRAINING_FILE)) or "")
        except json.JSONDecodeError:
            continue
        if settings(other) == settings(training) and other.get("delta_version", 1 << 62) <= training["delta_version"]:
            found.append((other["delta_version"], folder, other))
    if not found:
        return None
    _, folder, other = min(found, key=lambda f: (f[0], f[1]))
    return folder, other


def list_files(folder: str, sub: str) -> list[str]:
    """The Parquet files under `<folder>/<sub>`, relative to `folder`, sorted."""
    return [f"{sub}/{rel}" for rel in storage.files_under(join_path(folder, sub)) if rel.endswith(".parquet")]


def by_split(files: list[str]) -> dict[str, list[str]]:
    """data/split=<s>/part-*.parquet paths -> {split: paths}."""
    out: dict[str, list[str]] = {}
    for rel in files:
        split = next(p for p in rel.split("/") if p.startswith("split=")).removeprefix("split=")
        out.setdefault(split, []).append(rel)
    return out


def _from_sibling(key: str, rel: str) -> str:
    """A path relative to dataset `key`'s folder, made relative to a sibling dataset's folder."""
    return rel if rel.startswith("../") else f"../{key}/{rel}"


class Incremental(Exception):
    """The rows cannot be added to the previous dataset; a full run follows. Says why."""


class TokenizeRun:
    """One run's rows through tokenization: `count()` tokenizes them into the cache, marks the
    cross-split duplicates and counts everything the manifest says; `write(folder)` writes the
    kept rows (`<folder>/data`, Parquet by split) and their keys (`<folder>/keys`). Use it as a
    context manager: leaving it drops the cache.

    `prior_keys` (incremental runs): the keys of the rows already in the dataset. A new row that
    repeats one of them in a later split is removed; a new row that would remove one of them
    (its ids in an earlier split) raises `Incremental`, as those files cannot change."""

    def __init__(self, spark, tc, rows: DataFrame, tokenizer, tok_fp: str, prior_keys: DataFrame | None = None):
        self.spark, self.tc, self.prior_keys = spark, tc, prior_keys
        # Tokenized once, into the cache: the keys' aggregation, the counts and the writes read it.
        tokens = with_keys(tokenize_documents(rows, tok_fp, tokenizer.to_str(), tc.max_length, tc.truncation_side))
        self.tokens = tokens.persist(StorageLevel.MEMORY_AND_DISK)
        keys = self.tokens.select(KEY, RANK)
        self.shared = shared_keys(keys if prior_keys is None else keys.unionByName(prior_keys)).persist()
        self.kept = mark_cross_split_duplicates(self.tokens, self.shared)
        self.counted = None

    def __enter__(self) -> "TokenizeRun":
        return self

    def __exit__(self, *exc) -> None:
        self.shared.unpersist()
        self.tokens.unpersist()

    def count(self) -> tuple[dict, dict[str, int], dict[str, int]]:
        """-> `split_stats` of the rows: kept counts, removed rows per split, label map."""
        with arrow_batch_rows(self.spark, self.tc.arrow_batch_rows):
            self.shared.count()  # tokenizes every row into the cache
        if self.prior_keys is not None:
            stale = self.prior_keys.join(F.broadcast(self.shared), KEY).where(F.col(RANK) > F.col(FIRST)).count()
            if stale:
                raise Incremental(f"new rows repeat the token ids of {stale:,} validation/test rows already "
                                  "tokenized, which a full run removes")
        self.counted = split_stats(count_groups(self.kept))
        return self.counted

    @property
    def tokenized(self) -> int:
        stats, removed, _ = self.counted
        return sum(s["rows"] for s in stats.values()) + sum(removed.values())

    def write(self, folder: str) -> tuple[dict[str, list[str]], list[str]]:
        """-> (the data files per split, the keys files), relative to `folder`; checks that the
        files hold the rows counted."""
        tc = self.tc
        kept = self.kept.where(~F.col(CROSS_SPLIT))
        (kept.select(*TOKENIZED_SCHEMA.fieldNames())
         .sortWithinPartitions("split", "doc_id")
         .write.mode("overwrite").partitionBy("split")
         .option("maxRecordsPerFile", tc.rows_per_file)
         .option("parquet.block.size", tc.row_group_mb * 1024 * 1024)
         .parquet(join_path(folder, DATA_DIR)))
        (kept.select(F.col(KEY)["h1"].alias("h1"), F.col(KEY)["h2"].alias("h2"), RANK)
         .write.mode("overwrite").parquet(join_path(folder, KEYS_DIR)))
        files = list_files(folder, DATA_DIR)
        counted = sum(s["rows"] for s in self.counted[0].values())
        on_disk = self.spark.read.parquet(*(join_path(folder, f) for f in files)).count() if files else 0
        if on_disk != counted:
            raise StageError(f"counted {counted} rows to write but the written files hold {on_disk}; "
                             "no manifest written")
        return by_split(files), list_files(folder, KEYS_DIR)


def read_keys(spark, root: str, key: str, manifest: dict) -> DataFrame:
    """The `_key`/`_rank` rows of a dataset's kept rows, from its keys files."""
    folder = join_path(root, key)
    keys = spark.read.parquet(*(join_path(folder, f) for f in manifest["keys"]))
    return keys.select(F.struct("h1", "h2").alias(KEY), RANK)


def incremental_rows(spark, silver, version: int, tok_fp: str, previous: tuple[str, dict] | None):
    """Silver's rows inserted since the previous dataset's version, when that dataset can be
    extended: the same table, tokenizer and settings, an older version, and only inserts
    since. -> (rows, how many, None), or (None, 0, why not) for a full run (why is None: nothing
    to extend)."""
    if previous is None:
        return None, 0, None
    key, manifest = previous
    before = manifest["source"]["delta_version"]
    if "keys" not in manifest or "hash_sum" not in next(iter(manifest["splits"].values()), {}):
        return None, 0, f"the newest dataset ({key}) was written before incremental tokenization"
    if manifest["source"]["table"] != str(silver):
        return None, 0, f"the newest dataset ({key}) was tokenized from {manifest['source']['table']}"
    if manifest["tokenizer_fingerprint"] != tok_fp or manifest.get("format") != FORMAT:
        return None, 0, f"the tokenizer or its settings differ from the newest dataset's ({key})"
    if before >= version:
        return None, 0, f"silver version {version} is not newer than the newest dataset's ({before})"
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


def silver_state(spark, silver, pinned: int | None) -> tuple[int, list[dict]]:
    """(the version to read, silver's history): one read of the Delta log."""
    try:
        history = silver.history(spark)
    except Exception:  # noqa: BLE001 - not a Delta table, or not there
        raise StageError(f"silver table {silver} does not exist; run `lakebert clean` first") from None
    return (pinned if pinned is not None else history[0]["version"]), history


def tokenize(spark: SparkSession, cfg: Config, stage_run_id: str) -> dict:
    tc = cfg.tokenize
    silver = resolve_table(cfg, SILVER)
    version, history = silver_state(spark, silver, tc.silver_version)
    silver_df = silver.read(spark, version)
    root = output_root(cfg)
    previous = latest_dataset(root)
    tokenizer, tokenizer_model, training = resolve_tokenizer(cfg, silver, silver_df, version)
    if tc.max_length > tokenizer.model_max_length:
        raise StageError(f"tokenize.max_length={tc.max_length} is larger than the model allows "
                         f"({tokenizer.model_max_length} for {tokenizer.path})")
    settings = {"max_length": tc.max_length, "truncation_side": tc.truncation_side, "add_special_tokens": True}
    tok_fp = fingerprint(tokenizer.files, settings)
    precut = tc.truncation_side == "right" and precut_is_exact(tokenizer.to_str())
    detail(f"tokenize: {tokenizer.path}; long texts are {'pre-cut (only a prefix is encoded)' if precut else 'encoded whole'}")
    key = dataset_key(str(silver), str(version), tok_fp, FORMAT)
    folder = join_path(root, key)
    manifest_path = join_path(folder, MANIFEST)
    base = {"manifest": manifest_path, "silver_version": version, "tokenizer_fingerprint": tok_fp,
            "tables": {"silver": str(silver)}}

    done = read_manifest(manifest_path)
    if done is not None:
        _publish_latest(root, key)
        return {"status": "up_to_date", "rows": done["rows"], **base}

    new_rows, inserted, why_full = incremental_rows(spark, silver, version, tok_fp, previous)
    if new_rows is not None:
        old = previous[1]
        # Silver's rows, by Delta: the previous version's (kept + removed) plus the feed's inserts.
        silver_rows = old["rows"] + sum(old["cross_split_duplicates"].values()) + inserted
        try:
            return publish(spark, cfg, stage_run_id, TokenizeRun(spark, tc, new_rows, tokenizer, tok_fp,
                                                                 read_keys(spark, root, *previous)),
                           folder, silver_rows, previous, history, tokenizer, tokenizer_model, training, base)
        except Incremental as exc:
            why_full = str(exc)
    if why_full:
        print(f"tokenize: tokenizing all of silver version {version}: {why_full}", flush=True)
    silver_rows = silver_df.count()  # from the Delta log's file statistics: no scan
    return publish(spark, cfg, stage_run_id, TokenizeRun(spark, tc, silver_df, tokenizer, tok_fp), folder,
                   silver_rows, None, history, tokenizer, tokenizer_model, training, base)


def publish(spark, cfg: Config, stage_run_id: str, run: TokenizeRun, folder: str, silver_rows: int,
            extends: tuple[str, dict] | None, history: list[dict], tokenizer, tokenizer_model, training,
            base: dict) -> dict:
    """Count and write `run`'s rows into `folder` (added to the dataset `extends` names, if any),
    draw the data report while the files are written, then write the manifest and LATEST."""
    tc, version = cfg.tokenize, base["silver_version"]
    root, key = folder.rsplit("/", 1)
    report_dir = runs_dir(cfg, STAGE, stage_run_id)
    with run:
        stats, removed, label_map = run.count()
        if extends is not None:
            old_key, old = extends
            stats = add_stats(stats_of_manifest(old), stats)
            removed = {s: old["cross_split_duplicates"].get(s, 0) + removed.get(s, 0) for s in SPLITS if s != TRAIN}
            label_map = {**old["label_map"], **label_map}
        if not stats.get(TRAIN, {}).get("rows"):
            raise StageError(f"the train split of {base['tables']['silver']} (version {version}) is empty; "
                             "run `lakebert clean` first")
        splits, content_hash = manifest_splits(stats)
        total = sum(s["rows"] for s in splits.values())
        if total + sum(removed.values()) != silver_rows:
            raise StageError(f"counted {total} rows and {sum(removed.values())} cross-split duplicates, but "
                             f"silver version {version} has {silver_rows}; no manifest written")
        manifest = {
            "format": FORMAT,
            "created_by_run": stage_run_id,
            "source": {"table": base["tables"]["silver"], "delta_version": version},
            "extends": extends[0] if extends else None,
            "tokenizer_path": tokenizer.path,
            "tokenizer_fingerprint": base["tokenizer_fingerprint"],
            "tokenizer_model": tokenizer_model,
            "tokenizer_training": training,
            "max_length": tc.max_length,
            "truncation_side": tc.truncation_side,
            "columns": [f.name for f in TOKENIZED_SCHEMA.fields if f.name != "split"],
            "rows": total,
            "cross_split_duplicates": {split: removed.get(split, 0) for split in SPLITS if split != TRAIN},
            "splits": splits,
            "truncation_rate": round(sum(s["truncated"] for s in splits.values()) / max(total, 1), 6),
            "label_map": dict(sorted(label_map.items(), key=lambda kv: kv[1])),
            "content_hash": content_hash,
            "data_report": data_report_files(report_dir_in(history, version), report_dir),
        }
        with ThreadPoolExecutor(1) as pool:  # matplotlib draws while the JVM writes
            drawing = pool.submit(report_images, tokenize_figures, manifest)
            storage.delete(folder)  # the leftovers of a crashed run
            files, keys = run.write(folder)
            images, warnings = drawing.result()
        tokenized = run.tokenized
    if extends is not None:
        files = {s: [_from_sibling(old_key, f) for f in old["files"].get(s, [])] + files.get(s, [])
                 for s in sorted(set(old["files"]) | set(files))}
        keys = [_from_sibling(old_key, f) for f in old["keys"]] + keys
        print(f"tokenize: added {tokenized:,} new rows of silver version {version} to the "
              f"{old['rows']:,} of dataset {old_key} (version {old['source']['delta_version']})", flush=True)
    manifest.update(files=files, keys=keys)
    for name, png in images.items():
        storage.write_bytes(join_path(report_dir, name), png)
    print(f"tokenize: data report in {report_dir}: {', '.join(TOKENIZE_FILES)}", flush=True)
    storage.write_text(join_path(folder, MANIFEST), json.dumps(manifest, indent=2))  # the dataset exists from here on
    _publish_latest(root, key)
    warnings += data_warnings(manifest, cfg.train.class_weights)
    for line in warnings:
        print(f"tokenize: warning: {line}", flush=True)
    return {"status": "done", "mode": "incremental" if extends else "full", "tokenized_rows": tokenized,
            "rows": total, "splits": {k: v["rows"] for k, v in splits.items()},
            "cross_split_duplicates": manifest["cross_split_duplicates"], "truncation_rate": manifest["truncation_rate"],
            "tokenizer_model": tokenizer_model, "warnings": warnings, **base}


def _named_counts(split_stats: dict, label_map: dict[str, int]) -> dict[str, int]:
    names = {str(i): label for label, i in label_map.items()}
    return {names.get(i, i): n for i, n in split_stats.get("label_counts", {}).items()}


def summary_line(summary: dict) -> str:
    """Tokenize's line in `lakebert run`."""
    removed = sum(summary.get("cross_split_duplicates", {}).values())
    return f"{summary['rows']:,} rows tokenized ({', '.join(f'{k} {v:,}' for k, v in summary['splits'].items())})" \
        + (f", {removed:,} removed from validation/test (same ids as an earlier split)" if removed else "")


STAGE_RECORD = Stage(
    name=STAGE, body=tokenize,
    description="silver -> tokenized Parquet + manifest (trains a WordPiece tokenizer if asked)",
    config=("tokenize",
            "train.model",  # tokenizer=auto: the pretrained model's own, or train one
            "train.class_weights",  # the class-imbalance warning
            "tables.silver", "lakehouse", "spark"),
    step=30, timeout_hours=2, summary=summary_line)


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE_RECORD, argv)


if __name__ == "__main__":
    sys.exit(main())
