"""What every stage's `main()` shares: argument parsing, config loading, the printed resolved
config, the saved run record and the JSON summary as the last stdout line.

    lakebert <stage> [--env local] [--config FILE] [--set key.sub=value ...]
    spark-submit spark_jobs/<stage>.py [same arguments]

Exit codes: 0 done, 1 the input or a table is wrong (`StageError`), 2 the config is wrong.
A config or input error is detected before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Callable

from conf import Config, ConfigError, config_dict, config_yaml, load_config
from conf.paths import is_uri, join_path
from spark_jobs.tables import runs_dir

EXIT_OK, EXIT_INPUT, EXIT_CONFIG = 0, 1, 2


class StageError(RuntimeError):
    """Bad input or state a user can fix; printed as one line, exit code 1."""


def build_parser(stage: str, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"lakebert {stage}", description=description)
    add_config_arguments(parser)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=None, help="conf/env/<env>.yaml overlay (default: $LAKEBERT_ENV or local)")
    parser.add_argument("--config", default=None, help="an extra YAML file, above the env overlay")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override keys, e.g. --set ingest.format=csv clean.min_chars=20 (repeatable)")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def write_text(spark, path: str, text: str) -> None:
    """Write a small file locally, or through Hadoop's FileSystem for a URI (s3a://, abfss://)."""
    if not is_uri(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def run_stage(stage: str, argv: list[str] | None,
              body: Callable[[object, Config, str], dict], description: str = "") -> int:
    """Load config, start Spark, run `body(spark, cfg, run_id) -> summary`, report."""
    args = build_parser(stage, description).parse_args(argv)
    try:
        cfg = load_config(env=args.env, overrides=args.overrides, config_file=args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    return run_with_config(stage, cfg, body)


def run_with_config(stage: str, cfg: Config, body: Callable[[object, Config, str], dict]) -> int:
    """What `main()` does: run the stage, print its summary last, map errors to exit codes."""
    try:
        summary = execute(stage, cfg, body)
    except StageError as exc:
        print(f"{stage} error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(json.dumps(summary), flush=True)
    return EXIT_OK


def execute(stage: str, cfg: Config, body: Callable[[object, Config, str], dict], spark=None) -> dict:
    """Print the resolved config, run `body(spark, cfg, run_id)`, save the run record
    (`_runs/<stage>/<run_id>/{config,summary}.json`) and return the summary. Notebooks and
    the Airflow tasks' scripts call this; `StageError` propagates."""
    from spark_jobs.session import get_spark

    print(f"# lakebert {stage}: resolved config (secrets redacted)")
    print(config_yaml(cfg), end="", flush=True)
    spark = spark or get_spark(cfg)
    run_id = new_run_id()
    started = time.perf_counter()  # the stage's own time, after Spark start-up
    summary = body(spark, cfg, run_id)
    # A stage may report its own run id (train: the MLflow run's); the record keeps the stage's.
    summary = {"stage": stage, "run_id": run_id, **summary, "stage_run_id": run_id,
               "seconds": round(time.perf_counter() - started, 3)}
    record = runs_dir(cfg, stage, run_id)
    write_text(spark, join_path(record, "config.json"), json.dumps(config_dict(cfg), indent=2))
    write_text(spark, join_path(record, "summary.json"), json.dumps(summary, indent=2))
    return summary
