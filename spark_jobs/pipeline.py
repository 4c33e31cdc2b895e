"""The whole pipeline with one config: ingest -> clean -> tokenize -> train (-> registered model).

    lakebert run --set ingest.source=data/sample --set ingest.id_column=id
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 spark_jobs/pipeline.py --set ingest.source=...

One Spark session runs the four stages' own functions in order. A stage with nothing new
says so: ingest inserts 0 rows, clean and tokenize answer `up_to_date`, and train finds the
job's FINISHED MLflow run and trains nothing. The console shows each stage's start and
outcome (`[2/4] clean: input 3,028 -> silver 3,016, ...`), a live progress line, and a human
summary (rows per stage, quarantine by reason, validation and test metrics, the MLflow run
and how to open it, the registered model); then a line naming the run's log, and one JSON
line: every stage's summary plus `metrics`. Everything else is in the log (`spark_jobs.console`).
"""

from __future__ import annotations

import sys
import time

from conf import Config, redact
from spark_jobs import console
from spark_jobs.cli import STAGES
from spark_jobs.stage import StageError, one_line, run_stage
from training.baseline import comparison_line

STAGE = "run"
UP_TO_DATE = "up_to_date"
SUMMARY_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "loss")


def stage_functions():
    from spark_jobs.clean import clean
    from spark_jobs.ingest import ingest
    from spark_jobs.tokenize_silver import tokenize
    from spark_jobs.train import train

    return {"ingest": ingest, "clean": clean, "tokenize": tokenize, "train": train}


def _did_nothing(name: str, summary: dict) -> bool:
    if name == "ingest":
        # quarantined rows are re-counted, but not stored twice; an update changed bronze
        return summary.get("inserted", 0) == 0 and not (summary.get("changed") and summary.get("on_changed_text") == "update")
    return summary.get("status") == UP_TO_DATE


def _status_line(name: str, summary: dict) -> str:
    if name == "ingest":
        quarantined = sum(summary.get("quarantined", {}).values())
        changed = f", changed {summary['changed']:,} ({summary['on_changed_text']})" if summary.get("changed") else ""
        line = f"read {summary['read']:,}, inserted {summary['inserted']:,}{changed}, already in bronze " \
               f"{summary['duplicates']:,}, quarantined {quarantined:,}"
        return line + (" (nothing new: up to date)" if _did_nothing(name, summary) else "")
    if summary.get("status") == UP_TO_DATE:
        return "up to date, nothing to do"
    if name == "clean":
        return f"input {summary['input']:,} -> silver {summary['output']:,}, duplicates {summary['duplicates']:,}, " \
               f"quarantined {sum(summary['quarantined'].values()):,}, labels {summary.get('labels', 0):,}"
    if name == "tokenize":
        removed = sum(summary.get("cross_split_duplicates", {}).values())
        return f"{summary['rows']:,} rows tokenized ({', '.join(f'{k} {v:,}' for k, v in summary['splits'].items())})" \
            + (f", {removed:,} removed from validation/test (same ids as an earlier split)" if removed else "")
    return f"trained {summary.get('steps')} steps on {summary.get('world_size')} processes"


def human_summary(cfg: Config, stages: dict) -> str:
    lines = ["", "lakebert run: summary", "=" * 21]
    for name in STAGES:
        lines.append(f"{name:<9} {_status_line(name, stages[name])}")
    quarantine: dict[str, int] = {}
    for name in ("ingest", "clean"):
        for reason, n in stages[name].get("quarantined", {}).items():
            quarantine[reason] = quarantine.get(reason, 0) + n
    if quarantine:
        lines.append("quarantined by reason: " + ", ".join(f"{r} {n:,}" for r, n in sorted(quarantine.items())))
    train = stages["train"]
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
    for name in STAGES:
        for warning in stages[name].get("warnings", []):
            lines.append(f"WARNING ({name}): {warning}")
    return redact("\n".join(lines))


def pipeline(spark, cfg: Config, stage_run_id: str) -> dict:
    if not cfg.ingest.source:
        raise StageError("ingest.source is not set: lakebert run --set ingest.source=<file, folder, glob or table>")
    functions = stage_functions()
    stages: dict[str, dict] = {}
    out = console.current()
    for number, name in enumerate(STAGES, 1):
        step = f"[{number}/{len(STAGES)}] {name}"
        out.say(step)
        out.activity = step
        started = time.perf_counter()
        try:
            summary = functions[name](spark, cfg, f"{stage_run_id}-{name}")
        except StageError as exc:
            # Bad input before anything was written stays bad input (no error.log, the log not
            # kept); once a stage has written, the trace and the run's log are kept.
            raise type(exc)(f"{name}: {exc}") from (exc if stages else exc.__cause__)  # a SettingError stays one
        except Exception as exc:  # a Java or other unexpected error: name the stage, keep the trace
            raise StageError(f"{name}: {one_line(exc)}") from exc
        stages[name] = {**summary, "seconds": round(time.perf_counter() - started, 3)}
        out.say(f"{step}: {_status_line(name, stages[name])}")
    out.activity = STAGE
    out.say(human_summary(cfg, stages))
    skipped = [name for name in STAGES if _did_nothing(name, stages[name])]
    return {"status": UP_TO_DATE if len(skipped) == len(STAGES) else "done", "up_to_date": skipped,
            "stages": stages, "metrics": stages["train"].get("metrics", {}),
            "tracking_uri": stages["train"]["tracking_uri"], "mlflow_run_id": stages["train"]["run_id"],
            "registered_model": stages["train"].get("registered_model")}


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE, argv, pipeline, "Run ingest, clean, tokenize and train with one config.")


if __name__ == "__main__":
    sys.exit(main())
