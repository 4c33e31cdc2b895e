"""Runs found by their tags: the one search-or-create, and a training job's one run.

    run, created = find_or_create_run(client, experiment, {TAG_STUDY: name}, tags, "tune-1a2b3c4d")
    plan = prepare_run(cfg, manifest, manifest_path)    # the job's run: NEW, RESUME or UP_TO_DATE

A job is identified by its key (`training.job.job_key`: the `train` config, except where it
reports, and the tokenized data's content hash and tokenizer fingerprint). `prepare_run`
looks for the newest run tagged with that key:

- FINISHED: the job is done; `lakebert train` reports it as up to date and trains nothing.
- RUNNING, FAILED or KILLED: a crashed or killed attempt. The same run is resumed, and the
  points it already has are not logged again (a replayed step after a resume adds nothing).
- none: a new run, tagged with the lineage (`training.tracking.lineage`): silver table and
  Delta version, manifest path and content hash, tokenizer fingerprint, git commit.

Tune's study run is found the same way (`spark_jobs.tune.parent_run`), by its stage and study tags.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from conf import Config, redact
from tokenization.dataset import Manifest
from training.result import UP_TO_DATE as UP_TO_DATE_RESULT
from training.result import TrainResult
from training.tracking.lineage import lineage_tags
from training.tracking.registry import registered_model
from training.tracking.store import (
    PREFLIGHT_HTTP,
    TrackingError,
    experiment_id,
    first_line,
    http_settings,
    registry_uri,
    store_client,
    tracking_uri,
)
from training.tracking.tags import CHECKPOINT_ARTIFACTS, TAG_JOB_KEY

NEW, RESUME, UP_TO_DATE = "new", "resume", "up_to_date"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch


@dataclass(frozen=True)
class RunPlan:
    tracking_uri: str
    run_id: str
    status: str  # NEW | RESUME | UP_TO_DATE
    job_key: str
    registry_uri: str | None = None
    """None: the tracking store."""
    data_hash: str | None = None
    """The content hash of the tokenized data the job was planned on: every process checks it."""


def plan_client(plan: RunPlan):
    """The client of a job's tracking store and model registry."""
    return store_client(plan.tracking_uri, plan.registry_uri)


def find_or_create_run(client, experiment: str, key: dict[str, str], tags: dict[str, str], run_name: str):
    """The newest run of `experiment` tagged with every `key` tag, or a new one tagged with `key`
    and `tags`. -> (run, created)."""
    where = " and ".join(f"tags.`{name}` = '{value}'" for name, value in key.items())
    found = client.search_runs([experiment], filter_string=where, order_by=["attributes.start_time DESC"],
                               max_results=1)
    if found:
        return found[0], False
    return client.create_run(experiment, tags={**tags, **key}, run_name=run_name), True


def log_params(client, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start:start + PARAMS_PER_BATCH])


def prepare_run(cfg: Config, manifest: Manifest, manifest_path: str, quick: bool = False,
                tags: dict[str, str] | None = None) -> RunPlan:
    """Find the job's run (resume it, or report it done) or create it, with its lineage tags.
    `quick`: give up on an unreachable store within about 30 s (the launcher's preflight).
    `tags`: more tags for the run (a tune trial's parent and number), set on a found run too."""
    uri = tracking_uri(cfg)
    extra = dict(tags or {})
    tags = {**lineage_tags(cfg, manifest, manifest_path), **extra}
    key = tags[TAG_JOB_KEY]
    with http_settings(PREFLIGHT_HTTP if quick else {}):
        try:
            client = store_client(uri)
            run, created = find_or_create_run(client, experiment_id(client, cfg), {TAG_JOB_KEY: key}, tags,
                                              f"train-{key[:8]}")
        except Exception as exc:
            raise TrackingError(redact(f"MLflow at {uri} is not usable: {first_line(exc)[:300]}")) from None
        if created:
            status = NEW
        else:
            status = UP_TO_DATE if run.info.status == "FINISHED" else RESUME
            for name, value in extra.items():
                if run.data.tags.get(name) != value:
                    client.set_tag(run.info.run_id, name, value)
    return RunPlan(uri, run.info.run_id, status, key, registry_uri(cfg), manifest.content_hash)


def end_run(plan: RunPlan, status: str) -> None:
    """Set the run's final status from outside the training processes (the launcher)."""
    client = store_client(plan.tracking_uri)
    if client.get_run(plan.run_id).info.status not in TERMINAL:
        client.set_terminated(plan.run_id, status)


def finished_result(plan: RunPlan) -> TrainResult:
    """What a FINISHED run reports, for an up-to-date job: its final metrics, its linear
    baseline's and its registered model."""
    from training.baseline import KIND, PREFIX

    run = store_client(plan.tracking_uri).get_run(plan.run_id)
    metrics: dict[str, dict] = {}
    baseline: dict = {}
    for key, value in run.data.metrics.items():
        split, _, name = key.partition("/")
        if split in ("validation", "test"):
            metrics.setdefault(split, {})[name] = value
        elif split == PREFIX:  # baseline/<split>/<metric>, baseline/seconds, ...
            split, _, metric = name.partition("/")
            if metric:
                baseline.setdefault(split, {})[metric] = value
            else:
                baseline[split] = value
    return TrainResult(UP_TO_DATE_RESULT, plan.run_id, plan.tracking_uri, metrics=metrics,
                       registered_model=registered_model(run.data.tags),
                       baseline={"kind": KIND, **baseline} if baseline else None)


def fetch_checkpoints(plan: RunPlan, group: str, dest: Path, is_complete) -> Path | None:
    """Copy the newest complete checkpoint of `group` from the run's artifacts into `dest`
    (a restart on a machine that lacks the local copy). Returns its local path, or None."""
    client = store_client(plan.tracking_uri)
    try:
        listed = client.list_artifacts(plan.run_id, f"{CHECKPOINT_ARTIFACTS}/{group}")
    except Exception:
        return None
    for entry in sorted((e for e in listed if e.is_dir), key=lambda e: e.path, reverse=True):
        name = Path(entry.path).name
        if (dest / name).exists() and is_complete(dest / name):
            return dest / name
        with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmp:
            local = Path(client.download_artifacts(plan.run_id, entry.path, tmp))
            if not is_complete(local):
                continue
            dest.mkdir(parents=True, exist_ok=True)
            if (dest / name).exists():
                shutil.rmtree(dest / name)
            shutil.move(str(local), dest / name)
            return dest / name
    return None
