"""A model to score with, resolved in the registry: `lakebert score`'s MLflow reads.

    ref = resolve_model(cfg)                 # ModelRef: URI, name, version, run, its params and tags
    folder = download_model(ref, staging)    # the model's files (spark_jobs.scoring caches them)
    baseline = download_baseline(cfg, ref.run_id)   # the training run's linear baseline, or None

`score.model` is an MLflow model URI; by default `models:/<mlflow.registered_model>@champion`,
or the latest version when no version holds the alias. A URI that does not exist is one line
(TrackingError) before any Spark job. The store is named in each call: setting MLflow's global
URIs would leak into the caller's process (a notebook, a test session).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from conf import Config
from training.tracking.store import TrackingError, registry_uri, store_client, tracking_uri

MODELS, RUNS = "models:/", "runs:/"


@dataclass(frozen=True)
class ModelRef:
    uri: str
    name: str
    version: str
    run_id: str | None
    tracking_uri: str
    registry_uri: str
    params: dict = field(default_factory=dict)
    """The training run's params (its resolved config)."""
    tags: dict = field(default_factory=dict)
    """The training run's tags (its lineage)."""
    model_id: str | None = None
    """The registered version's logged model (a `runs:/` URI has none)."""


def default_model_uri(cfg: Config, client) -> str:
    name = cfg.mlflow.registered_model
    if not name:
        raise TrackingError("score.model is not set and mlflow.registered_model is null: give "
                            "--set score.model=models:/<name>/<version>")
    alias = cfg.mlflow.champion_alias
    if alias:
        try:
            client.get_model_version_by_alias(name, alias)
            return f"{MODELS}{name}@{alias}"
        except Exception:  # noqa: BLE001 - no version holds the alias yet
            pass
    if "'" in name:  # MLflow's filter strings have no escape for a quote
        raise TrackingError(f"mlflow.registered_model={name!r}: give score.model=models:/<name>/<version> "
                            "for a name with a quote")
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - a store without a registry, or an unreachable one
        versions = []
    if not versions:
        raise TrackingError(f"no registered model {name!r} in {client.tracking_uri}: train one first "
                            "(lakebert train), or give --set score.model=<MLflow model URI>")
    latest = max(versions, key=lambda v: int(v.version))
    print(f"score: no version of {name} holds @{alias}; scoring the latest, version {latest.version}", flush=True)
    return f"{MODELS}{name}/{latest.version}"


def resolve_version(client, uri: str):
    """-> (name, version, run_id) of a `models:/` or `runs:/` URI; TrackingError when it does not exist."""
    try:
        if uri.startswith(MODELS):
            ref = uri[len(MODELS):].strip("/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, version = ref.rsplit("/", 1)
                mv = client.get_model_version(name, version)
            return mv.name, str(mv.version), mv.run_id
        if uri.startswith(RUNS):
            run_id = uri[len(RUNS):].split("/", 1)[0]
            client.get_run(run_id)
            return f"run-{run_id}", "0", run_id
    except Exception as exc:  # noqa: BLE001 - MLflow's RestException and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"score.model={uri}: no such model ({first[:200]})") from None
    raise TrackingError(f"score.model={uri}: not an MLflow model URI (models:/<name>/<version>, "
                        "models:/<name>@<alias> or runs:/<run id>/<path>)")


def resolve_model(cfg: Config) -> ModelRef:
    """`score.model` (or the default) resolved to its version and training run."""
    uri, registry = tracking_uri(cfg), registry_uri(cfg)
    client = store_client(uri, registry)
    model_uri = cfg.score.model or default_model_uri(cfg, client)
    name, version, run_id = resolve_version(client, model_uri)
    run = client.get_run(run_id) if run_id else None
    params, tags = (run.data.params, run.data.tags) if run else ({}, {})
    model_id = getattr(client.get_model_version(name, version), "model_id", None) \
        if model_uri.startswith(MODELS) else None
    return ModelRef(model_uri, name, version, run_id, uri, registry, dict(params), dict(tags), model_id)


def download_model(ref: ModelRef, staging: str) -> str:
    """The model's files downloaded into `staging` -> their folder."""
    import mlflow

    client = store_client(ref.tracking_uri, ref.registry_uri)
    files = client.get_model_version_download_uri(ref.name, ref.version) if ref.uri.startswith(MODELS) else ref.uri
    return mlflow.artifacts.download_artifacts(artifact_uri=files, dst_path=staging, tracking_uri=ref.tracking_uri)


def download_baseline(cfg: Config, run_id: str | None):
    """The linear baseline that training run `run_id` fitted (training.baseline), or None
    (a model trained before lakebert fitted one, or without a run)."""
    from training.baseline import ARTIFACT, ARTIFACT_DIR, LinearBaseline

    if not run_id:
        return None
    with tempfile.TemporaryDirectory(prefix="lakebert-baseline-") as folder:
        try:
            path = store_client(tracking_uri(cfg)).download_artifacts(run_id, f"{ARTIFACT_DIR}/{ARTIFACT}", folder)
            with open(path, "rb") as f:
                return LinearBaseline.from_bytes(f.read())
        except Exception:  # noqa: BLE001 - not there: the evaluation goes on without it
            return None
