"""MLflow for a training job: exactly one run per job, written by rank 0 only.

    plan = prepare_run(cfg, manifest)             # find or create the job's run (any one process)
    tracker = open_tracker(cfg, plan, is_main)    # MlflowTracker on rank 0, NullTracker elsewhere
    tracker.log_step(step, {"train/loss": 0.7})   # buffered; steps already in the run are skipped

A job is identified by its key (`training.job.job_key`: the `train` config, except where it
reports, and the tokenized data's content hash and tokenizer fingerprint). `prepare_run`
looks for the newest run tagged with that key:

- FINISHED: the job is done; `lakebert train` reports it as up to date and trains nothing.
- RUNNING, FAILED or KILLED: a crashed or killed attempt. The same run is resumed, and the
  points it already has are not logged again (a replayed step after a resume adds nothing).
- none: a new run, tagged with the lineage (`training.lineage`): silver table and Delta
  version, manifest path and content hash, tokenizer fingerprint, git commit.

The tracker names the run in every call (an `MlflowClient` and the run id). `NullTracker`,
what ranks other than 0 hold, has the same methods, each doing nothing.

What the run keeps besides metrics: `data_report/` (the images and `report.json` of the clean and
tokenize runs that made the data, as the manifest names them, and the manifest itself; a file
that cannot be read is a warning, never a failed training), and the model with its card
(`training.lineage.model_card`: the data, metrics, lineage and `mlflow.model_license`), so
MLflow does not go looking for a card and a license on the Hugging Face hub for a model that
is not there. The run's linear baseline (`training.baseline`) has its metrics under `baseline/`
(`baseline/validation/f1_macro`, `baseline/seconds`) and its fitted model under the artifacts'
`baseline/`, where `lakebert score` finds it.

The default store is local: `sqlite:///<lakehouse.root>/mlflow.db`, artifacts under
`<lakehouse.root>/mlartifacts`. See it with `mlflow ui --backend-store-uri <that uri>`.

Params, tags and logged dicts go through `conf.redact.redact`, so no secret reaches the store.
The launcher's first contact with the store (`prepare_run`) uses the client's own retry and
timeout settings turned down (`PREFLIGHT_HTTP`): an unreachable server is reported in about
30 s instead of after MLflow's default retries (almost 5 minutes). The training processes
keep the defaults, which ride out a brief outage.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conf import Config, redact
from conf.paths import is_uri
from tokenization.dataset import MANIFEST, Manifest, Source
from training.lineage import (  # noqa: F401 - the tags this module writes, for its callers too
    TAG_BELOW_BASELINE,
    TAG_CHAMPION, TAG_DEFAULTS, TAG_DEGENERATE, TAG_DEGENERATE_REASON, TAG_GIT_COMMIT, TAG_JOB_KEY, TAG_MANIFEST,
    TAG_MANIFEST_HASH, TAG_REGISTERED_NAME, TAG_REGISTERED_VERSION, TAG_SILVER_TABLE, TAG_SILVER_VERSION,
    TAG_TOKENIZER, TAG_TOKENIZER_PATH, flat_params, lineage_tags, registered_model,
)

MODEL_ARTIFACT = "model"
DATA_REPORT_ARTIFACTS = "data_report"
CHECKPOINT_ARTIFACTS = "checkpoints"
RESULT_ARTIFACT = "result.json"
SQLITE = "sqlite:///"
NEW, RESUME, UP_TO_DATE = "new", "resume", "up_to_date"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
# MLflow's HTTP client settings for the launcher's preflight: 2 retries 1 s and 2 s apart,
# 8 s per request: refused in ~3 s, a silent host in at most ~27 s.
PREFLIGHT_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "8"}
MAX_TAG_CHARS = 5000


class TrackingError(RuntimeError):
    """MLflow cannot be used as configured; one line for the user."""


def tracking_uri(cfg: Config) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    if is_uri(cfg.lakehouse.root):
        raise TrackingError(f"lakehouse.root={cfg.lakehouse.root} is not a local path: set "
                            "mlflow.tracking_uri to your MLflow server (e.g. http://mlflow:5000)")
    return f"{SQLITE}{Path(cfg.lakehouse.root).resolve() / 'mlflow.db'}"


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


def store_client(uri: str, registry: str | None = None):
    """A client of the tracking store `uri` and the model registry `registry` (default: the same store)."""
    from mlflow import MlflowClient

    # The registry is always named. Without it, MLflow asks an active SparkSession for
    # `spark.mlflow.modelRegistryUri`, and a session whose JVM is gone fails every call.
    return MlflowClient(tracking_uri=uri, registry_uri=registry or uri)


def config_client(cfg: Config):
    """The client of the config's tracking store and model registry."""
    return store_client(tracking_uri(cfg), registry_uri(cfg))


def plan_client(plan: RunPlan):
    """The client of a job's tracking store and model registry."""
    return store_client(plan.tracking_uri, plan.registry_uri)


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
            experiment = experiment_id(client, cfg)
            runs = client.search_runs([experiment], filter_string=f"tags.`{TAG_JOB_KEY}` = '{key}'",
                                      order_by=["attributes.start_time DESC"], max_results=1)
        except Exception as exc:
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise TrackingError(redact(f"MLflow at {uri} is not usable: {first[:300]}")) from None
        if runs:
            status = UP_TO_DATE if runs[0].info.status == "FINISHED" else RESUME
            for name, value in extra.items():
                if runs[0].data.tags.get(name) != value:
                    client.set_tag(runs[0].info.run_id, name, value)
            return RunPlan(uri, runs[0].info.run_id, status, key, registry_uri(cfg), manifest.content_hash)
        run = client.create_run(experiment, tags=tags, run_name=f"train-{key[:8]}")
    return RunPlan(uri, run.info.run_id, NEW, key, registry_uri(cfg), manifest.content_hash)


def end_run(plan: RunPlan, status: str) -> None:
    """Set the run's final status from outside the training processes (the launcher)."""
    client = store_client(plan.tracking_uri)
    if client.get_run(plan.run_id).info.status not in TERMINAL:
        client.set_terminated(plan.run_id, status)


def finished_result(plan: RunPlan) -> dict:
    """What a FINISHED run reports: its final metrics, its linear baseline's and its registered
    model, for an up-to-date job."""
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
    return {"metrics": metrics, "registered_model": registered_model(run.data.tags),
            **({"baseline": {"kind": KIND, **baseline}} if baseline else {})}


def model_requirements() -> list[str]:
    """What serving the model needs, pinned to what trained it. (MLflow's own inference of
    requirements imports optional packages such as torchvision and fails without them.)"""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "transformers", "tokenizers")]


class NullTracker:
    """The tracker's interface, doing nothing: what ranks other than 0 hold. A misspelled call
    is an AttributeError here as on the real one."""

    run_id: str | None = None

    def log_step(self, step: int, values: dict[str, float]) -> None:
        pass

    def flush(self) -> None:
        pass

    def log_checkpoint(self, path: Path) -> None:
        pass

    def delete_checkpoints(self) -> None:
        pass

    def log_dict(self, data: dict, name: str) -> None:
        pass

    def log_figure(self, figure, name: str) -> None:
        pass

    def set_tags(self, tags: dict) -> None:
        pass

    def log_data_report(self, manifest: Manifest) -> list[str]:
        return []

    def log_model(self, cfg: Config, model, tokenizer_path: str, max_length: int, truncation_side: str,
                  example_text: str, card: str | None = None) -> dict | None:
        return None

    def promote(self, cfg: Config, registered: dict | None, candidate: float, degenerate: bool,
                champion_score, below_baseline: str | None = None) -> dict | None:
        return None

    def log_baseline(self, step: int, check) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class MlflowTracker(NullTracker):
    """Rank 0's handle on the job's run. Every call names the run: `self.client` with
    `self.run_id`. The run is also MLflow's active run for this process, because two things
    have only MLflow's fluent API: system metrics and `mlflow.transformers.log_model`.
    Step metrics are buffered and sent in batches."""

    FLUSH_EVERY = 200

    def __init__(self, cfg: Config, plan: RunPlan):
        import mlflow

        self.mlflow = mlflow
        self.client = plan_client(plan)
        self.run_id = plan.run_id
        self.resumed = plan.status == RESUME
        self.last_step: dict[str, int] = {}
        self.buffer: list = []
        mlflow.set_tracking_uri(plan.tracking_uri)
        # log_model's registration and the champion's load_model: never from Spark's conf
        mlflow.set_registry_uri(plan.registry_uri or plan.tracking_uri)
        if cfg.mlflow.system_metrics:
            mlflow.set_system_metrics_sampling_interval(cfg.mlflow.system_metrics_interval)
        mlflow.start_run(run_id=plan.run_id, log_system_metrics=cfg.mlflow.system_metrics)
        known = self.client.get_run(self.run_id).data.params
        self._log_params({k: v for k, v in flat_params(cfg).items() if k not in known})

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def _already_logged(self, key: str, step: int) -> bool:
        """After a resume, the points up to where the crashed attempt got are already there."""
        if not self.resumed:
            return False
        if key not in self.last_step:
            history = self.client.get_metric_history(self.run_id, key)
            self.last_step[key] = max((m.step for m in history), default=-1)
        return step <= self.last_step[key]

    def log_step(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in values.items():
            if value is None or not math.isfinite(value) or self._already_logged(key, step):
                continue
            self.buffer.append(Metric(key, float(value), now, step))
        if len(self.buffer) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self.buffer:
            chunk, self.buffer = self.buffer[:1000], self.buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_checkpoint(self, path: Path) -> None:
        self.flush()
        self.client.log_artifacts(self.run_id, str(path), f"{CHECKPOINT_ARTIFACTS}/{path.parent.name}/{path.name}")

    def delete_checkpoints(self) -> None:
        """Remove the run's copies of its checkpoints (a pruned trial's), where the artifact store
        can delete (local files, an `mlflow server` serving artifacts); else say they stay."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.flush()
        try:
            get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri).delete_artifacts(
                CHECKPOINT_ARTIFACTS)
        except Exception as exc:  # noqa: BLE001 - a leftover copy is never worth a failed trial
            print(f"warning: the pruned run's checkpoint artifacts stay in MLflow run {self.run_id}: "
                  f"{redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}", flush=True)

    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, redact(data, by_key=False), name)

    def log_figure(self, figure, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        tags = redact(tags, by_key=False)
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:MAX_TAG_CHARS]) for k, v in tags.items()])

    def log_data_report(self, manifest: Manifest) -> list[str]:
        """Copy the data report that the manifest names (`data_report`: {stage: [file paths]}) into
        the run's `data_report/<stage>/`, with the manifest as `data_report/tokenize/manifest.json`.
        -> warnings: what is missing or cannot be read is said, and training goes on."""
        self.log_dict(manifest.to_dict(), f"{DATA_REPORT_ARTIFACTS}/tokenize/{MANIFEST}")
        reports = manifest.data_report
        if reports is None:
            return ["the tokenized data's manifest names no data report (it was tokenized before lakebert kept "
                    "one); the MLflow run has no data_report images"]
        warnings, failed = [], []
        if not reports.get("clean"):
            source = manifest.source or Source()
            warnings.append(f"no data report of the clean run that wrote {source.table} version "
                            f"{source.delta_version} was found; the MLflow run has tokenize's only")
        for stage, paths in reports.items():
            for path in paths:
                try:  # training reads local or mounted paths, as it reads the manifest
                    if not Path(path).is_file():
                        raise FileNotFoundError(path)
                    self.client.log_artifact(self.run_id, path, f"{DATA_REPORT_ARTIFACTS}/{stage}")
                except Exception:  # noqa: BLE001 - a report is never worth a failed training
                    failed.append(path)
        if failed:
            shown = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
            warnings.append(f"{len(failed)} data report file(s) missing or unreadable, not in the MLflow run: {shown}")
        return [redact(w, by_key=False) for w in warnings]

    def log_model(self, cfg: Config, model, tokenizer_path: str, max_length: int, truncation_side: str,
                  example_text: str, card: str | None = None) -> dict | None:
        """The transformers flavor (model, tokenizer, signature, input example), registered if asked.
        The model carries its input settings: `max_length` in the pyfunc config, the truncation
        side in the tokenizer's config (what `lakebert score` and `pyfunc.load_model` use).

        `card`: the model card (`training.lineage.model_card`, Markdown with YAML metadata whose
        `license` MLflow writes into LICENSE.txt). Without one, MLflow fetches the card of the
        model's name from the Hugging Face hub and warns twice (no card, no license) for a model
        that is not there. (For a base model named by its hub id, MLflow still copies the
        LICENSE file it finds in that hub repository, which is what applies then.)"""
        import pandas as pd
        from huggingface_hub import ModelCard
        from transformers import AutoTokenizer

        self.flush()
        if not cfg.mlflow.log_model:
            return None
        active = self.mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:  # log_model writes into the active run
            raise RuntimeError(f"MLflow's active run is {active and active.info.run_id}, not this job's {self.run_id}")
        from tokenization.tokenizer import local_tokenizer_path

        tokenizer = AutoTokenizer.from_pretrained(local_tokenizer_path(tokenizer_path))
        tokenizer.truncation_side = truncation_side
        name = cfg.mlflow.registered_model
        info = self.mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer}, name=MODEL_ARTIFACT, task="text-classification",
            input_example=pd.DataFrame({"text": [example_text]}),
            model_config={"truncation": True, "max_length": max_length},
            model_card=ModelCard(card) if card else None,
            registered_model_name=name, pip_requirements=model_requirements())
        if not name:
            return None
        version = str(info.registered_model_version)
        self.set_tags({TAG_REGISTERED_NAME: name, TAG_REGISTERED_VERSION: version})
        return {"name": name, "version": version}

    def promote(self, cfg: Config, registered: dict | None, candidate: float, degenerate: bool,
                champion_score, below_baseline: str | None = None) -> dict | None:
        """Move `mlflow.champion_alias` to the registered version when it is not degenerate, not
        held back by its linear baseline (`below_baseline`: why, or None) and beats the champion;
        `champion_score(version)` scores the champion on this run's validation data (None: it
        cannot be compared)."""
        from training.champion import champion_decision  # torch: only rank 0's end of run needs it

        alias = cfg.mlflow.champion_alias
        if not registered or not alias:
            return None
        decision = champion_decision(self.client, registered["name"], registered["version"], alias, candidate,
                                     cfg.train.select_metric, degenerate, champion_score, below_baseline)
        self.set_tags({TAG_CHAMPION: decision["reason"]})
        return decision

    def log_baseline(self, step: int, check) -> None:
        """The linear baseline of the run (a `training.baseline.BaselineCheck`): its metrics under
        `baseline/`, the tag saying whether the model is below it, and the fitted baseline with its
        metrics as artifacts under `baseline/` (what `lakebert score` runs beside the model)."""
        from training.baseline import ARTIFACT, ARTIFACT_DIR, METRICS_ARTIFACT

        if check.summary is None:
            return
        self.log_step(step, check.logged_metrics())
        if check.below is not None:
            self.set_tags({TAG_BELOW_BASELINE: str(check.below).lower()})
        if check.baseline is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / ARTIFACT
                path.write_bytes(check.baseline.to_bytes())
                self.client.log_artifact(self.run_id, str(path), ARTIFACT_DIR)
        self.log_dict({**check.summary, "metrics": check.metrics}, f"{ARTIFACT_DIR}/{METRICS_ARTIFACT}")

    def finish(self, status: str = "FINISHED") -> None:
        try:
            self.flush()
        finally:
            self.mlflow.end_run(status)  # closes the active run (and its system metrics) with the status


def open_tracker(cfg: Config, plan: RunPlan | None, is_main: bool) -> NullTracker:
    return MlflowTracker(cfg, plan) if is_main and plan is not None else NullTracker()


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
