"""Score documents with a registered model, on the executors: predictions, evaluation, drift.

    lakebert score                                             # silver, with models:/<name>@champion
    lakebert score --set score.model=models:/lakebert-classifier/3 --set score.split=test
    lakebert score --set score.source=data/new --set score.format=jsonl
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 spark_jobs/score.py [--set ...]

Input (`score.source`): the silver table by default, else anything ingest reads (files in
`score.format`, a Delta path or a metastore table) with ingest's columns and reader options.
Model (`score.model`): an MLflow model URI; by default `models:/<mlflow.registered_model>@champion`,
or the latest version when no version holds the alias. The tokenizer, maximum length,
truncation side and label names come from the model (`training.inference.ModelBundle`), and
the text normalization from the model's training run: clean's own functions with the
settings that run recorded (`clean.*` params). Silver's text is already normalized, so by
default it is scored as it is (`score.normalize`).

Output: the `predictions` Delta table (`tables.predictions`), one row per (doc_id, model
name, model version): the label and label id, the probability of each class, the token count,
truncation and `[UNK]` count, the normalization applied, the source and its Delta version, the
scoring time, and the hash of the text it scored. A MERGE on that key inserts only rows the
model version has not scored, so a rerun scores nothing and new source rows are the only ones
scored; a row whose text changed since it was scored is scored again and its prediction
replaced (`rescored`, counted within `scored` and `skipped`). Rows that cannot be scored
(null, empty, over-long, undecodable) get a null prediction and a `skip_reason`, and

    read == scored + skipped (by reason) + already_scored + duplicate_ids

The model runs in `mapInArrow`: each Python worker downloads nothing and loads the model once
(from a zip archive Spark ships with `addArchive`), sorts each Arrow batch by length, and uses the GPU
Spark assigned to the task (`spark.task.resource.gpu.amount`) with bf16, else the task's CPUs.

When the scored rows have labels, an evaluation (accuracy, macro and per-class
precision/recall/F1, the confusion matrix, expected calibration error with a reliability
diagram, the most confident mistakes) and a drift report (population stability index of
token length, `[UNK]` rate, truncation rate and predicted classes against the model's
training data, which its lineage tags point to) are logged to one MLflow run tagged with the
model version. Drift is reported for unlabelled input too. A PSI above
`score.drift_threshold` puts a warning line in the summary.

Labelled input is also scored by the linear baseline that the model's training run fitted
(training.baseline; its artifact `baseline/linear_baseline.npz`), on the same rows and the same
token ids (the model's tokenizer and max length): the summary's `baseline` beside `evaluation`,
the score run's `baseline/eval/*` metrics, and a line `score: model vs linear baseline on N
labelled rows: macro F1 ... vs ...`. The texts reach the driver in batches (`toLocalIterator`),
so its memory holds a batch and the rows' probabilities, as the evaluation's does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType, BooleanType, FloatType, IntegerType, LongType, StringType, StructField, StructType, TimestampType,
)
from pyspark.sql.window import Window

from conf import Config
from conf.schema import CleanConfig
from spark_jobs.filters import DropReason, is_empty, is_too_long
from spark_jobs.normalize import normalize_label, normalize_text
from spark_jobs.registry import Stage
from spark_jobs.session import arrow_batch_rows, is_connect
from spark_jobs.stage import StageError, run_stage
from spark_jobs.tables import PREDICTIONS, SILVER, Table, resolve_table

STAGE = "score"
BASELINE_BATCH_ROWS = 4096  # labelled texts the driver encodes and scores with the linear baseline at a time
MODEL_FILE = "lakebert-model"  # the name of the model folder Spark ships to the executors
KEY = ("doc_id", "model_name", "model_version")
CONTENT = "text_hash"
NORMALIZED_BY_CLEAN = "silver (normalized by clean)"

PREDICTIONS_SCHEMA = StructType([
    StructField("doc_id", StringType(), False),
    StructField("model_name", StringType(), False),
    StructField("model_version", StringType(), False),
    StructField("model_run_id", StringType(), True),
    StructField("label", StringType(), True),
    StructField("label_id", IntegerType(), True),
    StructField("probability", FloatType(), True),
    StructField("probabilities", ArrayType(FloatType()), True),
    StructField("labels", ArrayType(StringType()), True),
    StructField("skip_reason", StringType(), True),
    StructField("tokens", IntegerType(), True),
    StructField("truncated", BooleanType(), True),
    StructField("unk_tokens", IntegerType(), True),
    StructField("normalization", StringType(), True),
    StructField("source", StringType(), True),
    StructField("source_version", LongType(), True),
    StructField("stage_run_id", StringType(), True),
    StructField("scored_at", TimestampType(), True),
    StructField("text_hash", StringType(), True),  # sha256 of the source text as read: a changed text is scored again
])

# What the executors return for each row, next to doc_id.
SCORED_SCHEMA = StructType([
    StructField("doc_id", StringType(), False),
    StructField("label_id", IntegerType(), True),
    StructField("probabilities", ArrayType(FloatType()), True),
    StructField("tokens", IntegerType(), True),
    StructField("truncated", BooleanType(), True),
    StructField("unk_tokens", IntegerType(), True),
    StructField("skip_reason", StringType(), True),
    StructField("text_hash", StringType(), True),
])


# --------------------------------------------------------------------------- the model

@dataclass
class ScoringModel:
    uri: str
    name: str
    version: str
    run_id: str | None
    local_dir: str
    clean: CleanConfig
    tags: dict = field(default_factory=dict)
    model_id: str | None = None


def default_model_uri(cfg: Config, client) -> str:
    name = cfg.mlflow.registered_model
    if not name:
        raise StageError("score.model is not set and mlflow.registered_model is null: give "
                         "--set score.model=models:/<name>/<version>")
    alias = cfg.mlflow.champion_alias
    if alias:
        try:
            client.get_model_version_by_alias(name, alias)
            return f"models:/{name}@{alias}"
        except Exception:  # noqa: BLE001 - no version holds the alias yet
            pass
    if "'" in name:  # MLflow's filter strings have no escape for a quote
        raise StageError(f"mlflow.registered_model={name!r}: give score.model=models:/<name>/<version> "
                         "for a name with a quote")
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - a store without a registry, or an unreachable one
        versions = []
    if not versions:
        raise StageError(f"no registered model {name!r} in {client.tracking_uri}: train one first (lakebert train), "
                         "or give --set score.model=<MLflow model URI>")
    latest = max(versions, key=lambda v: int(v.version))
    print(f"score: no version of {name} holds @{alias}; scoring the latest, version {latest.version}", flush=True)
    return f"models:/{name}/{latest.version}"


def resolve_version(client, uri: str):
    """-> (name, version, run_id) of a `models:/` or `runs:/` URI; StageError when it does not exist."""
    try:
        if uri.startswith("models:/"):
            ref = uri[len("models:/"):].strip("/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
            return mv.name, str(mv.version), mv.run_id
        if uri.startswith("runs:/"):
            run_id = uri[len("runs:/"):].split("/", 1)[0]
            client.get_run(run_id)
            return f"run-{run_id}", "0", run_id
    except Exception as exc:  # noqa: BLE001 - MLflow's RestException and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"score.model={uri}: no such model ({first[:200]})") from None
    raise StageError(f"score.model={uri}: not an MLflow model URI (models:/<name>/<version>, "
                     "models:/<name>@<alias> or runs:/<run id>/<path>)")


# The clean settings that decide what the model saw (the rest decide which rows it saw).
RECORDED_CLEAN = ("strip_html", "fix_mojibake", "lowercase", "max_chars", "label_case")


def recorded_clean(params: dict[str, str]) -> CleanConfig:
    """clean's normalization as the model's training run recorded it (its `clean.*` params)."""
    recorded = {key: params[f"clean.{key}"] for key in RECORDED_CLEAN if f"clean.{key}" in params}
    return CleanConfig.model_validate(recorded)


def load_model(cfg: Config) -> ScoringModel:
    """Resolve `score.model` (one line when it does not exist), download it once into this
    user's model cache (`cached_model`), and read what its training run recorded (clean's
    settings, lineage tags)."""
    import mlflow

    from training.tracking import TrackingError, registry_uri, store_client, tracking_uri

    try:
        uri = tracking_uri(cfg)
        client = store_client(uri, registry_uri(cfg))
        model_uri = cfg.score.model or default_model_uri(cfg, client)
    except TrackingError as exc:
        raise StageError(str(exc)) from None
    name, version, run_id = resolve_version(client, model_uri)

    def download(staging: str) -> str:
        # The store is named in each call: setting MLflow's global URIs would leak into the
        # caller's process (a notebook, a test session).
        files = client.get_model_version_download_uri(name, version) if model_uri.startswith("models:/") else model_uri
        return mlflow.artifacts.download_artifacts(artifact_uri=files, dst_path=staging, tracking_uri=uri)

    target = cached_model(model_workdir(uri, name, version, run_id), download)
    run = client.get_run(run_id) if run_id else None
    params, tags = (run.data.params, run.data.tags) if run else ({}, {})
    model_id = getattr(client.get_model_version(name, version), "model_id", None) \
        if model_uri.startswith("models:/") else None
    return ScoringModel(model_uri, name, version, run_id, target, recorded_clean(params), dict(tags), model_id)


# --------------------------------------------------------------------------- the input

@dataclass
class Source:
    rows: DataFrame
    """doc_id, text (raw), label (string or null), _reason (why it cannot be scored, or null), text_hash."""
    location: str
    version: int | None
    is_silver: bool


def read_input(spark: SparkSession, cfg: Config) -> Source:
    """`score.source` as (doc_id, text, label, _reason), filtered to `score.split`."""
    sc = cfg.score
    if sc.source is None:
        silver = resolve_table(cfg, SILVER)
        if not silver.exists(spark):
            raise StageError(f"no silver table at {silver}: run ingest and clean first, or set score.source")
        version = silver.version(spark)
        rows = silver.read(spark, version)
        if sc.split:
            rows = rows.where(F.col("split") == F.lit(sc.split))
        rows = rows.select("doc_id", "text", "label", F.lit(None).cast("string").alias("_reason"),
                           text_hash(F.col("text")))
        return Source(rows, str(silver), version, True)
    return read_external(spark, cfg)


def read_external(spark: SparkSession, cfg: Config) -> Source:
    from spark_jobs.ingest import classify_records, doc_id_column, has_labels, read_source

    sc = cfg.score
    ingest_cfg = cfg.ingest.model_copy(update={"source": sc.source, "format": sc.format, "require_label": False})
    view = cfg.model_copy(update={"ingest": ingest_cfg})
    raw = read_source(spark, view)
    version = None
    if sc.format == "delta":
        is_path = "/" in sc.source or ":" in sc.source
        version = Table("source", sc.source, is_path).version(spark) if is_path else None
    if sc.split:
        raise StageError("score.split needs a source with a split column: it applies to the silver table only")
    use_id = ingest_cfg.id_column is not None and sc.format != "text"
    classified = classify_records(raw, ingest_cfg.max_text_chars, False, use_id)
    doc_id = F.coalesce(doc_id_column(use_id), F.sha2(F.concat_ws("\u0000", "_source", "_raw"), 256))
    label = normalize_label(F.col("_label")) if has_labels(view) else F.lit(None).cast("string")
    rows = classified.select(doc_id.alias("doc_id"), F.col("_text").alias("text"), label.alias("label"),
                             F.col("_reason"), text_hash(F.col("_text")))
    return Source(rows, sc.source, version, False)


def text_hash(text) -> "Column":
    """What a prediction is keyed on besides its document: the text as the source holds it."""
    return F.sha2(F.coalesce(text, F.lit("")), 256).alias(CONTENT)


def prepare(source: Source, cfg: Config, clean_cfg: CleanConfig) -> tuple[DataFrame, str]:
    """-> (doc_id, text ready for the model or null, label, skip_reason, text_hash), and the
    normalization applied."""
    mode = cfg.score.normalize
    normalize = mode == "always" or (mode == "auto" and not source.is_silver)
    if normalize:
        text = normalize_text(F.col("text"), clean_cfg)
        steps = [s for s, on in (("strip_html", clean_cfg.strip_html), ("fix_mojibake", clean_cfg.fix_mojibake),
                                 ("nfkc", True), ("collapse_whitespace", True), ("lowercase", clean_cfg.lowercase))
                 if on]
        applied = "clean:" + ",".join(steps)
    else:
        text = F.col("text")
        applied = NORMALIZED_BY_CLEAN if source.is_silver else "none"
    rows = source.rows.withColumn("text", text)
    reason = F.coalesce(F.col("_reason"),
                        F.when(is_empty(F.col("text")), F.lit(DropReason.EMPTY_AFTER_CLEANING)),
                        F.when(is_too_long(F.col("text"), clean_cfg.max_chars), F.lit(DropReason.TOO_LONG)))
    rows = rows.withColumn("skip_reason", reason).select(
        "doc_id", F.when(F.col("skip_reason").isNull(), F.col("text")).alias("text"), "label", "skip_reason", CONTENT)
    return rows, applied


# --------------------------------------------------------------------------- executor side

_CLASSIFIERS: dict[str, object] = {}  # per Python worker: the model, loaded once


def _classifier(path: str, batch_size: int):
    if path not in _CLASSIFIERS:
        import torch
        from pyspark import TaskContext

        from training.inference import Classifier, ModelBundle

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        context = TaskContext.get()
        gpus = (context.resources().get("gpu") if context else None)
        if gpus is not None and gpus.addresses and torch.cuda.is_available():
            device = f"cuda:{gpus.addresses[0]}"
        else:
            device = "cpu"
            torch.set_num_threads(max(1, context.cpus() if context else 1))
        _CLASSIFIERS[path] = Classifier(ModelBundle.read(path), device, batch_size)
    return _CLASSIFIERS[path]


def score_batches_fn(model_file: str, batch_size: int):
    """The `mapInArrow` function: Arrow batches of (doc_id, text or null, skip_reason, text_hash) -> SCORED_SCHEMA."""

    def score_batches(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import SparkFiles

        classifier = _classifier(SparkFiles.get(model_file), batch_size)
        for batch in batches:
            texts = batch.column("text").to_pylist()
            out = classifier.predict(texts)
            scored = pa.array([t is not None for t in texts])
            n, k = out.probabilities.shape
            probabilities = pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)),
                                                     pa.array(out.probabilities.reshape(-1), pa.float32()))
            values = [pa.array(out.label_ids, pa.int32()), probabilities, pa.array(out.tokens, pa.int32()),
                      pa.array(out.truncated, pa.bool_()), pa.array(out.unk, pa.int32())]
            yield pa.RecordBatch.from_arrays(
                [batch.column("doc_id"), *(pc.if_else(scored, v, None) for v in values), batch.column("skip_reason"),
                 batch.column(CONTENT)], names=SCORED_SCHEMA.fieldNames())

    return score_batches


# --------------------------------------------------------------------------- transform

def score_documents(rows: DataFrame, model_file: str, batch_size: int) -> DataFrame:
    """(doc_id, text or null, skip_reason, text_hash) -> SCORED_SCHEMA, the model running on the executors."""
    return rows.select("doc_id", "text", "skip_reason", CONTENT).mapInArrow(score_batches_fn(model_file, batch_size),
                                                                            SCORED_SCHEMA)


def to_predictions(scored: DataFrame, model: ScoringModel, labels: tuple[str, ...], normalization: str,
                   source: Source, stage_run_id: str) -> DataFrame:
    names = F.array(*[F.lit(label) for label in labels])
    return scored.select(
        "doc_id", F.lit(model.name).alias("model_name"), F.lit(model.version).alias("model_version"),
        F.lit(model.run_id).alias("model_run_id"),
        F.when(F.col("label_id").isNotNull(), F.element_at(names, F.col("label_id") + 1)).alias("label"), "label_id",
        F.array_max("probabilities").alias("probability"), "probabilities",
        F.when(F.col("label_id").isNotNull(), names).alias("labels"), "skip_reason", "tokens", "truncated",
        "unk_tokens", F.lit(normalization).alias("normalization"), F.lit(source.location).alias("source"),
        F.lit(source.version).cast("long").alias("source_version"), F.lit(stage_run_id).alias("stage_run_id"),
        F.current_timestamp().alias("scored_at"), CONTENT,
    )


def not_scored(rows: DataFrame, scored: DataFrame) -> DataFrame:
    """The `rows` this model version has no prediction of for their text as it is now (a new
    document, or one whose text changed since)."""
    done = scored.select("doc_id", F.col(CONTENT).alias("_done"))
    return rows.join(done, (rows["doc_id"] == done["doc_id"]) & rows[CONTENT].eqNullSafe(done["_done"]), "left_anti")


def scored_by(predictions: DataFrame, model: ScoringModel) -> DataFrame:
    """The prediction rows of this model version."""
    return predictions.where((F.col("model_name") == F.lit(model.name))
                             & (F.col("model_version") == F.lit(model.version)))


def one_per_doc(rows: DataFrame) -> DataFrame:
    """The first row of each doc_id (a scoreable one before a skipped one, then by text)."""
    order = Window.partitionBy("doc_id").orderBy(F.col("skip_reason").asc_nulls_first(), F.col("text").asc_nulls_last())
    return rows.withColumn("_n", F.row_number().over(order)).where("_n = 1").drop("_n")


def ship_model(spark: SparkSession, model: ScoringModel) -> str:
    """Give the executors a copy of the model (a zip archive that Spark ships and unpacks:
    `addFile` takes a directory only on a local master). -> the name they find it by
    (`SparkFiles.get`). Under Spark Connect the archive goes up as a session artifact."""
    archive = model.local_dir.rstrip("/") + ".zip"
    if not os.path.isfile(archive):
        staging = shutil.make_archive(archive[:-4] + ".partial", "zip", model.local_dir)
        os.replace(staging, archive)
    if is_connect(spark):
        spark.addArtifacts(archive, archive=True)
    else:
        spark.sparkContext.addArchive(archive)
    return os.path.basename(archive)


# --------------------------------------------------------------------------- the model cache
# A downloaded model is kept per model version in this user's own folder under the temp
# directory, and later runs reuse it. Loading a model runs its code (a flavor's loader,
# pickles), so a cached model is used only from a folder that no one else can write to
# (created 0700; one owned by another user, or writable by group or others, is not used), and
# only when its marker, written last, holds the digest of exactly the files the folder holds:
# a torn download, a changed file or a folder without a marker is downloaded again.

VERIFIED = ".verified"  # `<model folder>.verified`: {"digest": ...}, written after the folder


def model_workdir(tracking: str, name: str, version: str, run_id: str | None) -> str:
    """A local folder per model version (of this store, from this run): Spark ships a file
    name once per session, and a second run in the session reuses the download."""
    key = hashlib.sha256(f"{tracking}|{name}|{version}|{run_id}".encode()).hexdigest()[:16]
    return os.path.join(model_cache_dir(), f"{MODEL_FILE}-{key}")


def model_cache_dir() -> str:
    """`<temp dir>/lakebert-score-<uid>`, created private; if it cannot be trusted, a new
    private folder for this run (said on the console)."""
    root = os.path.join(tempfile.gettempdir(), f"lakebert-score-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    problem = untrusted_folder(root)
    if problem is None:
        return root
    fresh = tempfile.mkdtemp(prefix=f"lakebert-score-{os.getuid()}-")
    print(f"score: not using the model cache {root} ({problem}); the model goes to {fresh}", flush=True)
    return fresh


def untrusted_folder(path: str) -> str | None:
    """Why another user could change what is in `path`, or None."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory" + (" (a symbolic link)" if stat.S_ISLNK(info.st_mode) else "")
    if info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def cached_model(target: str, download_fn: Callable[[str], str]) -> str:
    """`target` holding the model: as it is when its marker's digest matches its files, else
    `download_fn(staging folder) -> the downloaded folder`, moved to `target`, marker last."""
    marker = target + VERIFIED
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        with open(marker, encoding="utf-8") as fh:
            recorded = json.load(fh)["digest"]
        if not os.path.islink(target) and os.path.isdir(target) and folder_digest(target) == recorded:
            return target
    for stale in (marker, target + ".zip"):  # the archive ship_model made of an older folder
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    staging = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(target))
    try:
        local = download_fn(staging)
        if os.path.islink(target) or os.path.isfile(target):
            os.remove(target)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(local, target)  # a rename: the staging folder is beside it
        partial = f"{marker}.{os.getpid()}"
        with open(partial, "w", encoding="utf-8") as fh:
            json.dump({"digest": folder_digest(target)}, fh)
        os.replace(partial, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def folder_digest(folder: str) -> str:
    """sha256 over every file's path and content (a link's target) under `folder`."""
    digest = hashlib.sha256()
    for parent, folders, files in os.walk(folder):  # links are not followed
        folders.sort()
        for name in sorted(folders + files):
            path = os.path.join(parent, name)
            digest.update(os.path.relpath(path, folder).encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(path):
                digest.update(b"link " + os.readlink(path).encode("utf-8", "surrogateescape"))
            elif os.path.isfile(path):
                with open(path, "rb") as fh:
                    digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------- evaluation and drift

def scored_input(predictions: DataFrame, prepared: DataFrame, model: ScoringModel) -> DataFrame:
    """This input's rows as the model version scored them (all of them, not only this run's),
    with the input's label, its text as the model read it, and the text's first 200 characters."""
    inputs = one_per_doc(prepared).select("doc_id", F.col("label").alias("true_label"),
                                          F.substring("text", 1, 200).alias("snippet"), "text")
    return scored_by(predictions, model).where(F.col("label_id").isNotNull()).join(inputs, "doc_id")


def evaluation_frame(scored: DataFrame):
    """The labelled scored rows, as pandas: the driver gets only what scikit-learn needs."""
    return scored.where(F.col("true_label").isNotNull()).select(
        "doc_id", "true_label", "snippet", "probabilities").toPandas()


def evaluate(frame, labels: tuple[str, ...], mistakes: int, fold_case: bool = False) -> dict | None:
    import numpy as np

    from training.evaluation import confident_mistakes, evaluate_predictions

    labelled = frame  # evaluation_frame keeps only labelled rows
    if labelled.empty:
        return None
    index = {name: i for i, name in enumerate(labels)}
    if fold_case:  # the model's training merged labels that differ only by case (clean.label_case=fold)
        by_case = {name.lower(): name for name in labels}
        labelled = labelled.assign(true_label=[t if t in index else by_case.get(t.lower(), t)
                                               for t in labelled.true_label])
    known = labelled[labelled.true_label.isin(index)]
    true_ids = known.true_label.map(index).to_numpy(dtype=int)
    probabilities = np.stack(known.probabilities.to_numpy()).astype(float) if len(known) else np.zeros((0, len(labels)))
    report = evaluate_predictions(true_ids, probabilities, list(labels)) if len(known) else {"examples": 0}
    report["unknown_labels"] = int(len(labelled) - len(known))
    report["most_confident_mistakes"] = confident_mistakes(
        known.doc_id.tolist(), known.snippet.tolist(), true_ids, probabilities, list(labels), mistakes) if len(known) else []
    return report


def load_baseline(cfg: Config, model: ScoringModel):
    """The linear baseline that the model's training run fitted (training.baseline), or None
    (a model trained before lakebert fitted one, or without a run)."""
    from training.baseline import ARTIFACT, ARTIFACT_DIR, LinearBaseline
    from training.tracking import store_client, tracking_uri

    if not model.run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="lakebert-baseline-") as folder:
        try:
            path = store_client(tracking_uri(cfg)).download_artifacts(model.run_id, f"{ARTIFACT_DIR}/{ARTIFACT}",
                                                                      folder)
            with open(path, "rb") as f:
                return LinearBaseline.from_bytes(f.read())
        except Exception:  # noqa: BLE001 - not there: the evaluation goes on without it
            return None


def evaluate_baseline(scored: DataFrame, bundle, baseline) -> dict | None:
    """The linear baseline on the labelled rows the model's evaluation covers (labels the model
    knows), each encoded as the model encodes it: the summary's and the run's figures."""
    import numpy as np

    from tokenization import Encoder
    from training.evaluation import evaluate_predictions

    labels = list(bundle.labels)
    if baseline is None or set(baseline.labels) != set(labels):
        return None
    columns = [baseline.labels.index(name) for name in labels]  # the model's label order
    index = {name: i for i, name in enumerate(labels)}
    encoder = Encoder(bundle.tokenizer_json, bundle.max_length, bundle.truncation_side)
    true, probabilities, batch = [], [], []

    def score_batch():
        ids, offsets, _, _ = encoder.encode([text for _, text in batch])
        probabilities.append(baseline.predict_proba(ids, offsets)[:, columns])
        true.extend(index[label] for label, _ in batch)
        batch.clear()

    for row in scored.where(F.col("true_label").isin(labels)).select("true_label", "text").toLocalIterator():
        batch.append((row["true_label"], row["text"]))
        if len(batch) == BASELINE_BATCH_ROWS:
            score_batch()
    if batch:
        score_batch()
    if not true:
        return None
    return evaluate_predictions(np.array(true), np.concatenate(probabilities), labels)


def training_profile(spark: SparkSession, model: ScoringModel, unk_id: int | None) -> tuple[DataFrame, dict] | None:
    """The model's training split (from the manifest its lineage tags name): its rows and label counts."""
    from training.lineage import TAG_MANIFEST

    path = model.tags.get(TAG_MANIFEST)
    if not path or path == "None":
        return None
    try:
        manifest = json.loads(spark.read.text(path, wholetext=True).first()[0])
        folder = path.rsplit("/", 1)[0]
        files = [f"{folder}/{name}" for name in manifest["files"]["train"]]
        rows = spark.read.parquet(*files)
    except Exception as exc:  # noqa: BLE001 - moved or deleted: drift is skipped, and said so
        print(f"score: drift not computed: the training data at {path} is not readable "
              f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})", flush=True)
        return None
    unk = F.size(F.filter("input_ids", lambda x: x == F.lit(unk_id))) if unk_id is not None else F.lit(0)
    rows = rows.select(F.col("length").alias("tokens"), "truncated", unk.alias("unk_tokens"))
    return rows, manifest["splits"]["train"].get("label_counts", {})


def bucket_counts(rows: DataFrame, column: str, edges: list[float]) -> list[int]:
    bucket = sum((F.col(column) > F.lit(e)).cast("int") for e in edges) if edges else F.lit(0)
    counts = [0] * (len(edges) + 1)
    for row in rows.groupBy(bucket.alias("b")).count().collect():
        counts[row["b"]] += row["count"]
    return counts


def rates(rows: DataFrame) -> tuple[float, float]:
    """(truncation rate, unknown-token rate) of rows with tokens, truncated, unk_tokens."""
    r = rows.agg(F.avg(F.col("truncated").cast("double")), F.sum("unk_tokens"), F.sum("tokens")).first()
    return float(r[0] or 0.0), float(r[1] or 0) / max(float(r[2] or 0), 1.0)


def drift_report(spark: SparkSession, scored: DataFrame, model: ScoringModel, labels: tuple[str, ...],
                 unk_id: int | None) -> dict | None:
    """PSI of token length, [UNK] rate, truncation rate and predicted classes against training."""
    from training.evaluation import population_stability_index, rate_psi

    profile = training_profile(spark, model, unk_id)
    if profile is None:
        return None
    train, label_counts = profile
    edges = sorted({float(e) for e in train.approxQuantile("tokens", [i / 10 for i in range(1, 10)], 0.001)})
    names = [f"<={int(edges[0])}"] + [f"{int(a)}-{int(b)}" for a, b in zip(edges, edges[1:])] + [f">{int(edges[-1])}"] \
        if edges else ["all"]
    length_train, length_scored = bucket_counts(train, "tokens", edges), bucket_counts(scored, "tokens", edges)
    train_trunc, train_unk = rates(train)
    scored_trunc, scored_unk = rates(scored)
    class_train = [int(label_counts.get(str(i), 0)) for i in range(len(labels))]
    by_label = dict(scored.groupBy("label_id").count().collect())
    class_scored = [int(by_label.get(i, 0)) for i in range(len(labels))]
    return {
        "length": {"bins": names, "training": length_train, "scored": length_scored,
                   "psi": population_stability_index(length_train, length_scored)},
        "truncation": {"training": train_trunc, "scored": scored_trunc, "psi": rate_psi(train_trunc, scored_trunc)},
        "unk": {"training": train_unk, "scored": scored_unk, "psi": rate_psi(train_unk, scored_unk)},
        "predicted_class": {"bins": list(labels), "training": class_train, "scored": class_scored,
                            "psi": population_stability_index(class_train, class_scored)},
    }


# The evaluation's figures that the score run logs (`eval/*`), and the linear baseline's beside them.
EVALUATION_KEYS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "ece", "examples")
DRIFT_KEYS = {"length": "token length", "truncation": "truncation rate", "unk": "[UNK] rate",
              "predicted_class": "predicted classes vs training labels"}


def drift_warnings(drift: dict | None, threshold: float, rows: int, min_rows: int) -> list[str]:
    if not drift or rows < min_rows:
        return []
    return [f"WARNING (score): {what} drifted from the training data: PSI {drift[key]['psi']:.3f} > {threshold}"
            for key, what in DRIFT_KEYS.items() if drift[key]["psi"] > threshold]


def log_score_run(cfg: Config, model: ScoringModel, source: Source, evaluation: dict | None, drift: dict | None,
                  counts: dict, baseline: dict | None = None) -> str:
    """One MLflow run in `mlflow.experiment`, tagged with the scored model version."""
    from mlflow.entities import Metric, RunTag

    from conf import redact
    from training import lineage
    from training.baseline import PREFIX as BASELINE_PREFIX
    from training.evaluation import drift_figure, reliability_figure
    from training.tracking import experiment_id, store_client, tracking_uri

    client = store_client(tracking_uri(cfg))
    tags = {lineage.TAG_STAGE: STAGE, lineage.TAG_SCORED_MODEL: model.uri, lineage.TAG_SCORED_NAME: model.name,
            lineage.TAG_SCORED_VERSION: model.version, lineage.TAG_SCORED_RUN: str(model.run_id),
            lineage.TAG_SCORE_SOURCE: source.location, lineage.TAG_SCORE_SOURCE_VERSION: str(source.version)}
    run = client.create_run(experiment_id(client, cfg), run_name=f"score-{model.name}-v{model.version}",
                            tags=redact(tags, by_key=False))
    run_id, now = run.info.run_id, int(time.time() * 1000)
    metrics = {f"score/{k}": float(v) for k, v in counts.items() if isinstance(v, (int, float))}
    if evaluation and evaluation.get("examples"):
        metrics.update({f"eval/{k}": evaluation[k] for k in EVALUATION_KEYS})
        metrics.update({f"eval/f1/{name}": v["f1"] for name, v in evaluation["per_class"].items()})
        client.log_dict(run_id, redact(evaluation, by_key=False), "evaluation.json")
        client.log_figure(run_id, reliability_figure(evaluation["calibration_bins"]), "reliability_diagram.png")
    if baseline:
        metrics.update({f"{BASELINE_PREFIX}/eval/{k}": baseline[k] for k in EVALUATION_KEYS})
    if drift:
        metrics.update({f"drift/psi_{key}": drift[key]["psi"] for key in DRIFT_KEYS})
        client.log_dict(run_id, drift, "drift.json")
        client.log_figure(run_id, drift_figure(drift), "drift.png")
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0, model_id=model.model_id) for k, v in metrics.items()
                                      if v == v],
                     tags=[RunTag("mlflow.note.content", f"lakebert score of {model.uri} on {source.location}")])
    client.set_terminated(run_id, "FINISHED")
    return run_id


# --------------------------------------------------------------------------- the stage

def score(spark: SparkSession, cfg: Config, stage_run_id: str) -> dict:
    from training.inference import ModelBundle, ModelFormatError

    sc = cfg.score
    started = time.perf_counter()
    model = load_model(cfg)
    try:
        bundle = ModelBundle.read(model.local_dir)
    except ModelFormatError as exc:
        raise StageError(f"score.model={model.uri}: {exc}") from None
    source = read_input(spark, cfg)
    prepared, normalization = prepare(source, cfg, model.clean)
    predictions = resolve_table(cfg, PREDICTIONS)
    predictions.create_if_missing(spark, PREDICTIONS_SCHEMA)
    predictions.add_missing_columns(spark, PREDICTIONS_SCHEMA)  # a table from before text_hash: scored again once

    totals = prepared.agg(F.count("*").alias("read"), F.count_distinct("doc_id").alias("ids")).first()
    todo = not_scored(one_per_doc(prepared), scored_by(predictions.read(spark), model))
    model_file = ship_model(spark, model)
    rows = to_predictions(score_documents(todo, model_file, sc.batch_size), model, bundle.labels, normalization,
                          source, stage_run_id)
    with arrow_batch_rows(spark, sc.arrow_batch_rows):
        # a document whose text changed since this model version scored it replaces its prediction
        inserted, rescored = predictions.merge(spark, rows, KEY, update="*",
                                               when=f"NOT (t.{CONTENT} <=> s.{CONTENT})")

    by_reason = dict(predictions.read(spark).where(F.col("stage_run_id") == F.lit(stage_run_id))
                     .groupBy("skip_reason").count().collect())
    scored_rows = int(by_reason.pop(None, 0))
    skipped = {reason: int(n) for reason, n in sorted(by_reason.items())}
    counts = {"read": int(totals["read"]), "scored": scored_rows, "skipped": sum(skipped.values()),
              "already_scored": int(totals["ids"]) - inserted - rescored, "rescored": rescored,
              "duplicate_ids": int(totals["read"] - totals["ids"])}
    if scored_rows + counts["skipped"] != inserted + rescored:
        raise StageError(f"predictions: {inserted + rescored} rows written but {scored_rows} scored + "
                         f"{counts['skipped']} skipped carry this run's id (a concurrent writer?)")

    summary = {**counts, "skipped_by_reason": skipped, "model": model.uri, "model_name": model.name,
               "model_version": model.version, "model_run_id": model.run_id, "normalization": normalization,
               "source": source.location, "source_version": source.version,
               "tables": {"predictions": str(predictions)}}
    if inserted or rescored:
        summary.update(report(spark, cfg, model, bundle, source, prepared, predictions.read(spark), counts))
    else:
        summary.update(status="up_to_date", warnings=[])
    seconds = time.perf_counter() - started
    summary["rows_per_second"] = round(scored_rows / seconds, 1) if seconds else None
    return summary


def report(spark: SparkSession, cfg: Config, model: ScoringModel, bundle, source: Source, prepared: DataFrame,
           predictions: DataFrame, counts: dict) -> dict:
    """Evaluation (labelled rows) and drift over this input as the model version scored it,
    logged to one MLflow run; -> the summary's part, with the warning lines (also printed)."""
    sc = cfg.score
    # Persisted: the evaluation and the drift report both read it, and building it re-reads
    # (and re-normalizes) the source.
    scored = scored_input(predictions, prepared, model).persist()
    try:
        evaluation = evaluate(evaluation_frame(scored), bundle.labels, sc.mistakes, model.clean.label_case == "fold")
        labelled = bool(evaluation and evaluation.get("examples"))
        baseline = evaluate_baseline(scored, bundle, load_baseline(cfg, model)) if labelled else None
        drift = drift_report(spark, scored, model, bundle.labels, bundle.unk_id)
    finally:
        scored.unpersist()
    rows = sum(drift["length"]["scored"]) if drift else 0
    warnings = drift_warnings(drift, sc.drift_threshold, rows, sc.drift_min_rows)
    for line in warnings:
        print(line, flush=True)
    out: dict = {"mlflow_run_id": log_score_run(cfg, model, source, evaluation, drift, counts, baseline),
                 "warnings": warnings}
    if labelled:
        out["evaluation"] = {k: round(evaluation[k], 4) for k in
                             ("accuracy", "f1_macro", "precision_macro", "recall_macro", "ece")}
        out["evaluation"]["examples"] = evaluation["examples"]
    if baseline:
        out["baseline"] = {k: round(baseline[k], 4) for k in EVALUATION_KEYS if k != "examples"}
        out["baseline"]["examples"] = baseline["examples"]
        print(f"score: model vs linear baseline on {baseline['examples']:,} labelled rows: macro F1 "
              f"{evaluation['f1_macro']:.3f} vs {baseline['f1_macro']:.3f}", flush=True)
    if drift:
        out["drift_psi"] = {key: round(drift[key]["psi"], 4) for key in DRIFT_KEYS}
        out["drift_rows"] = rows
        if rows < sc.drift_min_rows:
            out["drift_note"] = f"not judged: {rows} scored rows, fewer than score.drift_min_rows={sc.drift_min_rows}"
    return out


STAGE_RECORD = Stage(
    name=STAGE, body=score,
    description="score documents with the registered model -> predictions table, evaluation, drift",
    config=("score",
            "mlflow.tracking_uri", "mlflow.registry_uri", "mlflow.experiment", "mlflow.registered_model",
            "mlflow.champion_alias",
            # score.source is read as ingest reads ingest.source
            "ingest.text_column", "ingest.label_column", "ingest.id_column", "ingest.text_mode",
            "ingest.label_from_dir", "ingest.max_text_chars", "ingest.options",
            "tables.silver", "tables.predictions", "lakehouse", "spark"),
    after="train", timeout_hours=4)


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE_RECORD, argv)


if __name__ == "__main__":
    sys.exit(main())
