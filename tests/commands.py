"""Running lakebert's commands as a user does: a fresh process with `--json`, its JSON summary on
the last stdout line; and finding the training ranks such a process started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def lakebert_cmd(command: str, sets, *flags: str) -> list[str]:
    """`lakebert <command> --json [flags] --set k=v ...` as this interpreter runs it: the JSON
    summary is the last line of its stdout."""
    return [sys.executable, "-m", "spark_jobs.cli", command, "--json", *flags, *(a for s in sets for a in ("--set", s))]


def run_for_summary(cmd: list[str], env: dict | None = None, timeout: int = 1200):
    """`cmd` from the repository root with Spark's Python set to this one (plus `env`); it must
    succeed and print its JSON summary last (`lakebert_cmd`'s `--json`) -> the finished process
    and its summary."""
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYSPARK_PYTHON": sys.executable,
                                              "PYSPARK_DRIVER_PYTHON": sys.executable, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def training_ranks(pid: int) -> dict[str, psutil.Process]:
    """The training ranks under process `pid` (torchrun's workers: LOCAL_RANK in their
    environment), by local rank."""
    ranks = {}
    for process in psutil.Process(pid).children(recursive=True):
        try:
            rank = process.environ().get("LOCAL_RANK") if "python" in process.name() else None
        except psutil.Error:  # exited meanwhile (Spark's short-lived helpers)
            continue
        if rank is not None:
            ranks[rank] = process
    return ranks
