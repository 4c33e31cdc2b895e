"""The MLflow store: where runs and models live, and a client that names both.

    client = config_client(cfg)                 # tracking store + model registry from `mlflow.*`
    experiment = experiment_id(client, cfg)     # `mlflow.experiment`, created when missing

The default store is local: `sqlite:///<lakehouse.root>/mlflow.db`, artifacts under
`<lakehouse.root>/mlartifacts`. See it with `mlflow ui --backend-store-uri <that uri>`.
The registry is always named, never taken from MLflow's process-wide settings or Spark's conf.

The launcher's first contact with the store uses the client's own retry and timeout settings
turned down (`PREFLIGHT_HTTP`): an unreachable server is reported in about 30 s instead of after
MLflow's default retries (almost 5 minutes). The training processes keep the defaults, which
ride out a brief outage.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from conf import Config
import storage

SQLITE = "sqlite:///"
# MLflow's HTTP client settings for the launcher's preflight: 2 retries 1 s and 2 s apart,
# 8 s per request: refused in ~3 s, a silent host in at most ~27 s.
PREFLIGHT_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "8"}


class TrackingError(RuntimeError):
    """MLflow cannot be used as configured, or a model is not there; one line for the user."""


def first_line(exc: BaseException) -> str:
    """An MLflow exception's first non-empty line (its traces are long), else its class name."""
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def tracking_uri(cfg: Config) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    if storage.is_uri(cfg.lakehouse.root):
        raise TrackingError(f"lakehouse.root={cfg.lakehouse.root} is not a local path: set "
                            "mlflow.tracking_uri to your MLflow server (e.g. http://mlflow:5000)")
    return f"{SQLITE}{Path(cfg.lakehouse.root).resolve() / 'mlflow.db'}"


def beside_local_store(uri: str, name: str) -> str | None:
    """The sqlite URI of database `name` beside a local sqlite store `uri` (tune's Optuna
    study), or None for another store."""
    if not uri.startswith(SQLITE):
        return None
    return f"{SQLITE}{Path(uri[len(SQLITE):]).parent / name}"


def artifact_root(cfg: Config) -> str | None:
    """Where a new experiment keeps artifacts: beside a local sqlite store (`mlartifacts/`),
    else the server's default."""
    uri = tracking_uri(cfg)
    if not uri.startswith(SQLITE):
        return None
    return (Path(uri[len(SQLITE):]).parent / "mlartifacts").as_uri()


def registry_uri(cfg: Config) -> str:
    """Where models are registered: `mlflow.registry_uri` (`databricks-uc`, another store), else
    the tracking store."""
    return cfg.mlflow.registry_uri or tracking_uri(cfg)


def store_client(uri: str, registry: str | None = None):
    """A client of the tracking store `uri` and the model registry `registry` (default: the same store)."""
    from mlflow import MlflowClient

    # The registry is always named. Without it, MLflow asks an active SparkSession for
    # `spark.mlflow.modelRegistryUri`, and a session whose JVM is gone fails every call.
    return MlflowClient(tracking_uri=uri, registry_uri=registry or uri)


def config_client(cfg: Config):
    """The client of the config's tracking store and model registry."""
    return store_client(tracking_uri(cfg), registry_uri(cfg))


def experiment_id(client, cfg: Config) -> str:
    """The id of `mlflow.experiment`, created (with its artifact root) when it does not exist."""
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(cfg.mlflow.experiment, artifact_location=artifact_root(cfg))
    except Exception:  # created meanwhile by another job
        experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def http_settings(settings: dict[str, str]):
    """MLflow's HTTP client settings (read from the environment on each request) for a block."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
