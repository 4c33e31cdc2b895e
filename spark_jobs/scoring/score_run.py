"""The score run in MLflow: one run in `mlflow.experiment`, tagged with the scored model version.

    run_id = log_score_run("score", cfg, model, source, evaluation, drift, counts, baseline, engine="onnx")

It holds the counts (`score/*`), the evaluation (`eval/*`, `evaluation.json`, the reliability
diagram) when the input has labels, the linear baseline's figures beside it (`baseline/eval/*`),
and the drift report (`drift/psi_*`, `drift.json`, `drift.png`). Metrics are logged against the
model version's logged model (`model_id`), so MLflow shows them on the model too.
"""

from __future__ import annotations

import time

from conf import Config
from spark_jobs.scoring.registry import ScoringModel
from spark_jobs.scoring.source import Source
from spark_jobs.scoring.summary import Counts
from training.evaluation import DRIFT_KEYS, EVALUATION_KEYS
from training.tracking.tags import (TAG_SCORE_ENGINE, TAG_SCORE_SOURCE, TAG_SCORE_SOURCE_VERSION, TAG_SCORED_MODEL,
                                    TAG_SCORED_NAME, TAG_SCORED_RUN, TAG_SCORED_VERSION, TAG_STAGE)


def log_score_run(stage: str, cfg: Config, model: ScoringModel, source: Source, evaluation: dict | None,
                  drift: dict | None, counts: Counts, baseline: dict | None = None, engine: str | None = None) -> str:
    """One MLflow run in `mlflow.experiment`, tagged with the stage's name, the scored model version
    and the engine that ran it."""
    from mlflow.entities import Metric, RunTag

    from conf import redact
    from training.baseline import PREFIX as BASELINE_PREFIX
    from training.evaluation import drift_figure, reliability_figure
    from training.tracking.store import experiment_id, store_client, tracking_uri

    client = store_client(tracking_uri(cfg))
    tags = {TAG_STAGE: stage, TAG_SCORED_MODEL: model.uri, TAG_SCORED_NAME: model.name,
            TAG_SCORED_VERSION: model.version, TAG_SCORED_RUN: str(model.run_id),
            TAG_SCORE_SOURCE: source.location, TAG_SCORE_SOURCE_VERSION: str(source.version), TAG_SCORE_ENGINE: str(engine)}
    run = client.create_run(experiment_id(client, cfg), run_name=f"score-{model.name}-v{model.version}",
                            tags=redact(tags, by_key=False))
    run_id, now = run.info.run_id, int(time.time() * 1000)
    metrics = {f"score/{k}": float(v) for k, v in counts.figures().items()}
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
