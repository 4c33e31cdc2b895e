"""The `lakebert` command: one sub-command per stage, all sharing the config flags.

    lakebert run --set ingest.source=data/sample     # every stage
    lakebert ingest --set ingest.source=data/sample
    lakebert clean
    lakebert train
    lakebert sample-data --out data/sample
    lakebert --help
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, one-line help). Modules are imported only when chosen.
COMMANDS = {
    "run": ("spark_jobs.pipeline", "the whole pipeline: ingest -> clean -> tokenize -> train, one config"),
    "ingest": ("spark_jobs.ingest", "raw files or a table -> bronze Delta table (+ quarantine)"),
    "clean": ("spark_jobs.clean", "bronze -> silver: normalize, filter, deduplicate, label, split"),
    "tokenize": ("spark_jobs.tokenize", "silver -> tokenized Parquet + manifest (trains a WordPiece tokenizer if asked)"),
    "train": ("spark_jobs.train", "tokenized Parquet -> trained, evaluated, registered model (TorchDistributor + MLflow)"),
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
