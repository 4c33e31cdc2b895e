"""The whole pipeline with one config: ingest -> clean -> tokenize -> train (-> registered model).

    lakebert run --set ingest.source=data/sample --set ingest.id_column=id
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 spark_jobs/pipeline.py --set ingest.source=...

One Spark session runs the pipeline steps' own functions in order. A stage with nothing new
says so: ingest inserts 0 rows, clean and tokenize answer `up_to_date`, and train finds the
job's FINISHED MLflow run and trains nothing. The console shows each stage's start and
outcome (`[2/4] clean: input 3,028 -> silver 3,016, ...`), a live progress line, and a human
summary (rows per stage, quarantine by reason, validation and test metrics, the MLflow run
and how to open it, the registered model); then a line naming the run's log. The JSON summary
(every stage's summary plus `metrics`) is saved beside the log as `summary.json`, and printed
as the last line with `--json`. Everything else is in the log (`spark_jobs.console`).

The steps and their order come from the registry (`spark_jobs.registry.steps`): each step's
module declares its position and its line in this output.
"""

from __future__ import annotations

import sys
import time

from conf import Config, redact
from conf.errors import StageError, one_line
from spark_jobs import console
from spark_jobs.registry import Stage, load, steps
from spark_jobs.stage import run_stage
from training.baseline import comparison_line

STAGE = "run"
TRAIN = "train"  # the step whose model the summary reports (metrics, MLflow run, registered model)
UP_TO_DATE = "up_to_date"
SUMMARY_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "loss")


def did_nothing(step: Stage, summary: dict) -> bool:
    """The step changed nothing: its own rule (`Stage.up_to_date`), else its status says so."""
    return step.up_to_date(summary) if step.up_to_date else summary.get("status") == UP_TO_DATE


def status_line(step: Stage, summary: dict) -> str:
    """A step's line in the run's output: up to date, or its own summary line (`Stage.summary`)."""
    if summary.get("status") == UP_TO_DATE:
        return "up to date, nothing to do"
    return step.summary(summary)


def human_summary(cfg: Config, records: tuple[Stage, ...], stages: dict) -> str:
    lines = ["", "lakebert run: summary", "=" * 21]
    for step in records:
        lines.append(f"{step.name:<9} {status_line(step, stages[step.name])}")
    quarantine: dict[str, int] = {}
    for step in records:
        for reason, n in stages[step.name].get("quarantined", {}).items():
            quarantine[reason] = quarantine.get(reason, 0) + n
    if quarantine:
        lines.append("quarantined by reason: " + ", ".join(f"{r} {n:,}" for r, n in sorted(quarantine.items())))
    train = stages[TRAIN]
    for split in ("validation", "test"):
        metrics = train.get("metrics", {}).get(split, {})
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in SUMMARY_METRICS if k in metrics)
        lines.append(f"model on {split:<10} {shown}")
    compared = comparison_line(train.get("metrics", {}).get("validation"), train.get("baseline"))
    if compared:
        lines.append(compared)
    mlflow_run_id = train["run_id"]  # train's summary reports its MLflow run as `run_id`
    lines.append(f"MLflow run {mlflow_run_id} in experiment {cfg.mlflow.experiment!r} at {train['tracking_uri']}")
    if train["tracking_uri"].startswith("sqlite:") or train["tracking_uri"].startswith("file:"):
        lines.append(f"  open it: mlflow ui --backend-store-uri {train['tracking_uri']}")
    else:
        lines.append(f"  open it: {train['tracking_uri']}")
    model = train.get("registered_model")
    if model:
        lines.append(f"registered model {model['name']} version {model['version']} "
                     f"(mlflow.pyfunc.load_model('models:/{model['name']}/{model['version']}'))")
    champion = train.get("champion")
    if champion:
        lines.append(f"champion: {champion['reason']}")
        if champion.get("version"):
            lines.append(f"  load it: mlflow.pyfunc.load_model('models:/{model['name']}@{champion['alias']}')")
    for name in stages:
        for warning in stages[name].get("warnings", []):
            lines.append(f"WARNING ({name}): {warning}")
    return redact("\n".join(lines))


def pipeline(spark, cfg: Config, stage_run_id: str) -> dict:
    if not cfg.ingest.source:
        raise StageError("ingest.source is not set: lakebert run --set ingest.source=<file, folder, glob or table>")
    records = tuple(load(step.name) for step in steps())
    stages: dict[str, dict] = {}
    out = console.current()
    for number, step in enumerate(records, 1):
        name, label = step.name, f"[{number}/{len(records)}] {step.name}"
        out.say(label)
        out.activity = label
        started = time.perf_counter()
        try:
            summary = step.body(spark, cfg, f"{stage_run_id}-{name}")
        except StageError as exc:
            # Bad input before anything was written stays bad input (no error.log, the log not
            # kept); once a stage has written, the trace and the run's log are kept.
            raise type(exc)(f"{name}: {exc}") from (exc if stages else exc.__cause__)  # a SettingError stays one
        except Exception as exc:  # a Java or other unexpected error: name the stage, keep the trace
            raise StageError(f"{name}: {one_line(exc)}") from exc
        stages[name] = {**summary, "seconds": round(time.perf_counter() - started, 3)}
        out.say(f"{label}: {status_line(step, stages[name])}")
    out.activity = STAGE
    out.say(human_summary(cfg, records, stages))
    skipped = [step.name for step in records if did_nothing(step, stages[step.name])]
    train = stages[TRAIN]
    return {"status": UP_TO_DATE if len(skipped) == len(records) else "done", "up_to_date": skipped,
            "stages": stages, "metrics": train.get("metrics", {}),
            "tracking_uri": train["tracking_uri"], "mlflow_run_id": train["run_id"],
            "registered_model": train.get("registered_model")}


STAGE_RECORD = Stage(
    name=STAGE, body=pipeline, runs_steps=True,
    description="the whole pipeline: ingest -> clean -> tokenize -> train, one config")


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE_RECORD, argv)


if __name__ == "__main__":
    sys.exit(main())
