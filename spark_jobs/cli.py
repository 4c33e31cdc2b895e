"""The `lakebert` command: one sub-command per stage, all sharing the config flags.

    lakebert run --set ingest.source=data/sample     # every stage
    lakebert ingest --set ingest.source=data/sample
    lakebert clean
    lakebert tokenize
    lakebert train
    lakebert score                                   # the @champion model over silver (or score.source)
    lakebert tune --config tune.yaml                 # an Optuna study of train jobs (tune.space)
    lakebert sample-data --out data/sample
    lakebert --help

Also the one home of the stages' names and their spark-submit scripts (`STAGE_SCRIPTS`).
This file imports nothing but the standard library: the Airflow DAG reads it at parse time
without importing lakebert.
"""

from __future__ import annotations

import importlib
import sys

# The pipeline's stages in order, each with the module that runs it. A stage's name is what
# users see (`lakebert tokenize`, the summary's `stage`, Airflow's task ids, `_runs/<stage>/`);
# its spark-submit script is its module's file. spark-submit puts the script's folder first on
# sys.path, so no script may share a standard library module's name: tokenize's module is
# `tokenize_silver`, not `tokenize`.
STAGE_MODULES = {
    "ingest": "spark_jobs.ingest",
    "clean": "spark_jobs.clean",
    "tokenize": "spark_jobs.tokenize_silver",
    "train": "spark_jobs.train",
}
STAGES = tuple(STAGE_MODULES)
# After the pipeline, on demand: score new documents with the registered model (the DAG's
# optional `score` task).
SCORE_MODULE = "spark_jobs.score"
# stage -> its script, relative to the repository root: `spark-submit spark_jobs/tokenize_silver.py`
STAGE_SCRIPTS = {stage: module.replace(".", "/") + ".py" for stage, module in STAGE_MODULES.items()}
SCORE_SCRIPT = SCORE_MODULE.replace(".", "/") + ".py"
# After tokenize, on demand: an Optuna study of train jobs (the DAG's optional `tune` task).
TUNE_MODULE = "spark_jobs.tune"
TUNE_SCRIPT = TUNE_MODULE.replace(".", "/") + ".py"
# `--set` items handed to a stage in the environment (a JSON list of `key=value`), not in its
# argv, which `ps` shows to every user of the machine: how the Airflow DAG passes its overrides.
OVERRIDES_ENV = "LAKEBERT_OVERRIDES"

# sub-command -> (module, one-line help). Modules are imported only when chosen.
COMMANDS = {
    "run": ("spark_jobs.pipeline", "the whole pipeline: ingest -> clean -> tokenize -> train, one config"),
    "ingest": (STAGE_MODULES["ingest"], "raw files or a table -> bronze Delta table (+ quarantine)"),
    "clean": (STAGE_MODULES["clean"], "bronze -> silver: normalize, filter, deduplicate, label, split"),
    "tokenize": (STAGE_MODULES["tokenize"],
                 "silver -> tokenized Parquet + manifest (trains a WordPiece tokenizer if asked)"),
    "train": (STAGE_MODULES["train"],
              "tokenized Parquet -> trained, evaluated, registered model (TorchDistributor + MLflow)"),
    "score": (SCORE_MODULE, "score documents with the registered model -> predictions table, evaluation, drift"),
    "tune": (TUNE_MODULE, "an Optuna study of train jobs over tune.space -> the best model registered @tuned"),
    "sample-data": ("spark_jobs.sample_data", "write the deterministic sample corpus"),
}

# sub-command -> the config it reads, for `lakebert <command> --help` (`conf.help.config_help`):
# whole sections, or single `section.key`s where a command reads a few keys of another's section.
# Taken from the code (`cfg.<section>` in the command's module and in what it calls), not from
# intent; own section first. Every stage reads lakehouse.root (tables, run records, the default
# MLflow store) and spark (the session it creates). run = the union of its four stages.
COMMAND_CONFIG = {
    "run": ("ingest", "clean", "tokenize", "train", "mlflow", "tables.bronze", "tables.quarantine",
            "tables.silver", "tables.label_map", "lakehouse", "spark"),
    "ingest": ("ingest", "tables.bronze", "tables.quarantine", "lakehouse", "spark"),
    "clean": ("clean",
              # dedup_key=auto: does the tokenizer lowercase?
              "tokenize.tokenizer", "tokenize.lowercase", "train.model",
              "tables.bronze", "tables.silver", "tables.quarantine", "tables.label_map", "lakehouse", "spark"),
    "tokenize": ("tokenize",
                 "train.model",          # tokenizer=auto: the pretrained model's own, or train one
                 "train.class_weights",  # the class-imbalance warning
                 "tables.silver", "lakehouse", "spark"),
    "train": ("train", "mlflow",
              "tokenize.output",  # the data when train.data is null
              # recorded on the MLflow run as the model's normalization, which score applies
              # (spark_jobs.score.RECORDED_CLEAN)
              "clean.strip_html", "clean.fix_mojibake", "clean.lowercase", "clean.max_chars", "clean.label_case",
              "lakehouse", "spark"),
    "score": ("score",
              "mlflow.tracking_uri", "mlflow.registry_uri", "mlflow.experiment", "mlflow.registered_model",
              "mlflow.champion_alias",
              # score.source is read as ingest reads ingest.source
              "ingest.text_column", "ingest.label_column", "ingest.id_column", "ingest.text_mode",
              "ingest.label_from_dir", "ingest.max_text_chars", "ingest.options",
              "tables.silver", "tables.predictions", "lakehouse", "spark"),
    "tune": ("tune", "train", "mlflow",
             "tokenize.output",  # the data when train.data is null
             "clean.strip_html", "clean.fix_mojibake", "clean.lowercase", "clean.max_chars",  # as train
             "lakehouse", "spark"),
    "sample-data": (),
}


def usage() -> str:
    lines = ["usage: lakebert <command> [--env ENV] [--config FILE] [--set key.sub=value ...] [--remote sc://HOST:PORT] [--verbose]",
             "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "lakebert <command> --help lists the config keys the command reads, with defaults and meanings."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"lakebert: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
