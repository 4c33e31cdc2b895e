"""The `lakebert` command: one sub-command per stage, all sharing the config flags.

    lakebert run --set ingest.source=data/sample     # every stage
    lakebert ingest --set ingest.source=data/sample
    lakebert clean
    lakebert tokenize
    lakebert train
    lakebert score                                   # the @champion model over silver (or score.source)
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
    "sample-data": ("spark_jobs.sample_data", "write the deterministic sample corpus"),
}


def usage() -> str:
    lines = ["usage: lakebert <command> [--env ENV] [--config FILE] [--set key.sub=value ...]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
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
