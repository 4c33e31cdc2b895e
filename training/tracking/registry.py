"""The model registry: which version a run registered, registering a run's model, and `@champion`.

    set_registration_tags(client, run_id, "lakebert-classifier", "7")   # the one writer of the tags
    registered_model(run.data.tags)                                    # their one reader: {name, version}
    version = register_run_model(client, "lakebert-classifier", run_id)  # tune's best trial
    decision = champion_decision(client, "lakebert-classifier", "7", "champion", 0.93, "f1_macro",
                                 degenerate=False, champion_score=champion_score_fn(...))
    decision["reason"]   # "version 7 (f1_macro 0.9300) beats version 5 (0.9100) and is now @champion"

The `@champion` alias moves to a newly registered version only when that version is not
degenerate, is not below the linear baseline (training.baseline, unless
`train.require_beat_baseline=false`), and beats the current champion on this run's validation
data (`training.champion.champion_score_fn` scores it).
"""

from __future__ import annotations

from conf import redact
from training.confusion import LOWER_IS_BETTER
from training.tracking.store import TrackingError
from training.tracking.tags import TAG_REGISTERED_NAME, TAG_REGISTERED_VERSION


def set_registration_tags(client, run_id: str, name: str, version: str) -> None:
    """Tag run `run_id` with the model version it registered (a training run, tune's best trial
    and tune's study run)."""
    from mlflow.entities import RunTag

    tags = redact({TAG_REGISTERED_NAME: name, TAG_REGISTERED_VERSION: str(version)}, by_key=False)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def registered_model(tags: dict) -> dict | None:
    """The {name, version} a run's tags say it registered, or None."""
    name, version = tags.get(TAG_REGISTERED_NAME), tags.get(TAG_REGISTERED_VERSION)
    return {"name": name, "version": version} if name and version else None


def register_run_model(client, name: str, run_id: str) -> str:
    """The version of model `name` that run `run_id` registered, or its logged model registered
    now (and the run tagged with it). TrackingError when the run logged no model."""
    from mlflow.exceptions import MlflowException

    run = client.get_run(run_id)
    known = registered_model(run.data.tags)
    if known and known["name"] == name:
        return known["version"]
    logged = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
                                         max_results=1)
    if not logged:
        raise TrackingError(f"the best trial's run {run_id} has no logged model to register")
    try:  # the client, not mlflow.register_model: no process-wide tracking URI is changed
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # the model's own artifact location as source: a `models:/<id>` source is looked up through the
    # process-wide tracking URI (mlflow's sqlalchemy registry), which may be another store
    version = str(client.create_model_version(name, logged[0].artifact_location, run_id=run_id,
                                              model_id=logged[0].model_id).version)
    set_registration_tags(client, run_id, name, version)
    return version


def champion_decision(client, name: str, version: str, alias: str, candidate: float, metric: str,
                      degenerate: bool, champion_score, below_baseline: str | None = None) -> dict:
    """Set `alias` on `version` of model `name` if it earns it, and say what happened.
    `below_baseline`: why the version may not take it for its linear baseline, or None."""
    try:
        current = client.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - MLflow raises RESOURCE_DOES_NOT_EXIST for an unset alias
        current = None
    decision = {"alias": alias, "version": str(current.version) if current else None, "moved": False}
    if degenerate:
        return {**decision, "reason": f"version {version} is degenerate: @{alias} stays "
                                      f"{f'on version {current.version}' if current else 'unset'}"}
    if below_baseline:
        return {**decision, "reason": f"version {version} {below_baseline}: @{alias} stays "
                                      f"{f'on version {current.version}' if current else 'unset'}"}
    if current is not None and str(current.version) == str(version):
        return {**decision, "reason": f"version {version} is already @{alias}"}
    if current is not None:
        score = champion_score(current)
        if score is None:
            return {**decision, "reason": f"@{alias} (version {current.version}) cannot be scored on this run's "
                                          f"validation data (other labels); it stays"}
        better = candidate < score if metric in LOWER_IS_BETTER else candidate > score
        if not better:
            return {**decision, "reason": f"version {version} ({metric} {candidate:.4f}) does not beat @{alias} "
                                          f"version {current.version} ({score:.4f}) on the same validation data"}
        reason = (f"version {version} ({metric} {candidate:.4f}) beats version {current.version} ({score:.4f}) "
                  f"and is now @{alias}")
    else:
        reason = f"version {version} is the first @{alias}"
    client.set_registered_model_alias(name, alias, str(version))
    return {"alias": alias, "version": str(version), "moved": True, "reason": reason}
