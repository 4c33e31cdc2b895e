"""Running lakebert's commands as a user does: a fresh process, its JSON summary on the last stdout line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lakebert_cmd(command: str, sets, *flags: str) -> list[str]:
    """`lakebert <command> [flags] --set k=v ...` as this interpreter runs it."""
    return [sys.executable, "-m", "spark_jobs.cli", command, *flags, *(a for s in sets for a in ("--set", s))]


def run_for_summary(cmd: list[str], env: dict | None = None, timeout: int = 1200):
    """`cmd` from the repository root with Spark's Python set to this one (plus `env`); it must
    succeed -> the finished process and its summary."""
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYSPARK_PYTHON": sys.executable,
                                              "PYSPARK_DRIVER_PYTHON": sys.executable, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])
