"""The model on the executors: shipped once per session, loaded once per Python worker, run in `mapInArrow`.

    engine, warnings = choose_engine_for(spark, cfg.score, model)  # on the driver: torch, onnx or onnx-int8
    model_file = ship_model(spark, model)
    scored = score_documents(rows, model_file, cfg.score.batch_size, engine)  # -> SCORED_SCHEMA

Each Python worker downloads nothing and loads the model once (from the zip archive Spark
ships with `addArchive`, or as a session artifact under Spark Connect), sorts each Arrow batch
by length (`training.inference.Classifier`), and uses the GPU Spark assigned to the task
(`spark.task.resource.gpu.amount`) with bf16, else the task's CPUs. With an ONNX engine it
holds one ONNX Runtime session instead (`training.inference.OnnxClassifier`: the same
tokenizer and batches), its intra-op threads the task's cores (`spark.task.cpus`).
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
from spark_jobs.session import TASK_GPU_AMOUNT, is_connect
from training.export import EXPORT_DIR, FILES, TORCH, ExportRecord, choose_engine

# What the executors return: the predictions table's own fields, in this order.
SCORED_SCHEMA = StructType([PREDICTIONS_SCHEMA[name] for name in (
    "doc_id", "label_id", "probabilities", "tokens", "truncated", "unk_tokens", "skip_reason", CONTENT)])

_CLASSIFIERS: dict[tuple[str, str], object] = {}  # per Python worker: the model, loaded once per engine


def choose_engine_for(spark: SparkSession, sc, model: ScoringModel) -> tuple[str, list[str]]:
    """`score.engine` for this model and session -> (torch, onnx or onnx-int8; warnings): auto
    means torch when Spark gives tasks a GPU (`spark.task.resource.gpu.amount`)."""
    try:
        gpu = float(spark.conf.get(TASK_GPU_AMOUNT, "0") or 0) > 0
    except ValueError:
        gpu = False
    try:
        record = ExportRecord.read(os.path.join(model.local_dir, EXPORT_DIR))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        record = None
        print(f"WARNING (score): the model's {EXPORT_DIR}/ record cannot be read ({exc}); its exports are not used",
              flush=True)
    return choose_engine(sc.engine, record, sc.int8_min_agreement, gpu)


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


def score_documents(rows: DataFrame, model_file: str, batch_size: int, engine: str = TORCH) -> DataFrame:
    """(doc_id, text or null, skip_reason, text_hash) -> SCORED_SCHEMA, the model running on the executors."""
    return rows.select("doc_id", "text", "skip_reason", CONTENT).mapInArrow(
        score_batches_fn(model_file, batch_size, engine), SCORED_SCHEMA)


def _classifier(path: str, batch_size: int, engine: str):
    if (path, engine) not in _CLASSIFIERS:
        from pyspark import TaskContext

        from training.inference import ModelBundle

        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        context = TaskContext.get()
        cpus = max(1, context.cpus() if context else 1)
        bundle = ModelBundle.read(path)
        if engine == TORCH:
            import torch

            from training.inference import Classifier

            gpus = (context.resources().get("gpu") if context else None)
            if gpus is not None and gpus.addresses and torch.cuda.is_available():
                device = f"cuda:{gpus.addresses[0]}"
            else:
                device = "cpu"
                torch.set_num_threads(cpus)
            _CLASSIFIERS[path, engine] = Classifier(bundle, device, batch_size)
        else:
            from training.inference import OnnxClassifier

            _CLASSIFIERS[path, engine] = OnnxClassifier(bundle, os.path.join(path, EXPORT_DIR, FILES[engine]), cpus,
                                                        batch_size)
    return _CLASSIFIERS[path, engine]


def score_batches_fn(model_file: str, batch_size: int, engine: str = TORCH):
    """The `mapInArrow` function: Arrow batches of (doc_id, text or null, skip_reason, text_hash) -> SCORED_SCHEMA."""

    def score_batches(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import SparkFiles

        classifier = _classifier(SparkFiles.get(model_file), batch_size, engine)
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
