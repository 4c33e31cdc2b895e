"""The model `lakebert score` scores with, from MLflow: every MLflow read of score is here.

    model = load_model(cfg)                 # ScoringModel: URI, name, version, run, local folder, clean settings
    baseline = load_baseline(cfg, model)    # the training run's linear baseline, or None

`score.model` is an MLflow model URI; by default `models:/<mlflow.registered_model>@champion`,
or the latest version when no version holds the alias. A URI that does not exist is one line
(StageError) before any Spark job. The model is downloaded once per version into this user's
model cache (`model_cache.cached_model`); its training run's `clean.*` params say how the
model's text was normalized, and its lineage tags where its training data is.

No Spark here (its one import from spark_jobs is StageError, which is moving to a module of
its own): this module is meant to move into the MLflow package.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from conf import Config
from conf.schema import CleanConfig
from spark_jobs.scoring.model_cache import cached_model, model_workdir
from spark_jobs.stage import StageError

# The clean settings that decide what the model saw (the rest decide which rows it saw).
RECORDED_CLEAN = ("strip_html", "fix_mojibake", "lowercase", "max_chars", "label_case")


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
