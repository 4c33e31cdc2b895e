"""The model on the executors: shipped once per session, loaded once per Python worker, run in `mapInArrow`.

    model_file = ship_model(spark, model)                          # on the driver
    scored = score_documents(rows, model_file, cfg.score.batch_size)  # -> SCORED_SCHEMA

Each Python worker downloads nothing and loads the model once (from the zip archive Spark
ships with `addArchive`, or as a session artifact under Spark Connect), sorts each Arrow batch
by length (`training.inference.Classifier`), and uses the GPU Spark assigned to the task
(`spark.task.resource.gpu.amount`) with bf16, else the task's CPUs.
"""

from __future__ import annotations

import os
import shutil

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from spark_jobs.scoring.model_cache import ARCHIVE
from spark_jobs.scoring.registry import ScoringModel
from spark_jobs.scoring.source import CONTENT
from spark_jobs.scoring.transforms import PREDICTIONS_SCHEMA
from spark_jobs.session import is_connect

# What the executors return for each row, next to doc_id.
# What the executors return: the predictions table's own fields, in this order.
SCORED_SCHEMA = StructType([PREDICTIONS_SCHEMA[name] for name in (
    "doc_id", "label_id", "probabilities", "tokens", "truncated", "unk_tokens", "skip_reason", CONTENT)])

_CLASSIFIERS: dict[str, object] = {}  # per Python worker: the model, loaded once


def ship_model(spark: SparkSession, model: ScoringModel) -> str:
    """Give the executors a copy of the model (a zip archive that Spark ships and unpacks:
    `addFile` takes a directory only on a local master). -> the name they find it by
    (`SparkFiles.get`). Under Spark Connect the archive goes up as a session artifact."""
    archive = model.local_dir.rstrip("/") + ARCHIVE
    if not os.path.isfile(archive):
        staging = shutil.make_archive(archive[:-len(ARCHIVE)] + ".partial", "zip", model.local_dir)
        os.replace(staging, archive)
    if is_connect(spark):
        spark.addArtifacts(archive, archive=True)
    else:
        spark.sparkContext.addArchive(archive)
    return os.path.basename(archive)


def score_documents(rows: DataFrame, model_file: str, batch_size: int) -> DataFrame:
    """(doc_id, text or null, skip_reason, text_hash) -> SCORED_SCHEMA, the model running on the executors."""
    return rows.select("doc_id", "text", "skip_reason", CONTENT).mapInArrow(score_batches_fn(model_file, batch_size),
                                                                            SCORED_SCHEMA)


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
