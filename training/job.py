"""A training job's identity and where its files live; shared by the launcher and the loop.

    from training import job
    manifest_path, manifest = job.read_manifest(cfg)   # the tokenized data this config trains on
    key = job.job_key(cfg, manifest)                   # same config + same data = same job
    out = job.output_dir(cfg, manifest)                # checkpoints, best/, failures/, result.json

A job is a `train` config (except where and how often it reports) applied to one tokenized
dataset (its content hash, tokenizer fingerprint and row counts). The job key names its
folder under the lakehouse, so another config never resumes this job's checkpoints, and it
tags the job's one MLflow run (`training.tracking.prepare_run`).

A failing rank writes `<output_dir>/failures/rank-<r>.json`; the launcher reads them all to
say which rank failed first and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import traceback

from conf import Config, redact
from conf import storage
from conf.paths import under_root
from tokenization.dataset import resolve_manifest

RESULT_FILE = "result.json"
FAILURES = "failures"
CHECKPOINTS = "checkpoints"
BEST = "best"
# Config keys that say where or how to report, not what is trained: not part of the job key.
# The linear baseline's settings judge the model (training.baseline); they do not change it.
NOT_IN_JOB_KEY = {"output_dir", "data", "log_every", "local_mode", "baseline_max_rows", "baseline_margin",
                  "require_beat_baseline"}


def data_location(cfg: Config) -> str:
    """`train.data`, else the tokenized root under the lakehouse."""
    return cfg.train.data or under_root(cfg, cfg.tokenize.output)


def read_manifest(cfg: Config) -> tuple[str, dict]:
    path = resolve_manifest(data_location(cfg))
    return path, json.loads(storage.read_text(path))


def job_key(cfg: Config, manifest: dict) -> str:
    train = {k: v for k, v in cfg.train.model_dump().items() if k not in NOT_IN_JOB_KEY}
    identity = {"train": train, "data": manifest.get("content_hash"),
                "tokenizer": manifest.get("tokenizer_fingerprint"), "rows": manifest.get("rows")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def output_dir(cfg: Config, manifest: dict) -> str:
    """`train.output_dir`, else a folder per job under the lakehouse: a local path or a URI
    (`s3a://...`; everything in it goes through `conf.storage`)."""
    return str(cfg.train.output_dir or under_root(cfg, f"train/{job_key(cfg, manifest)}"))


def failures_dir(out_dir: str) -> str:
    return storage.join(str(out_dir), FAILURES)


def write_failure(out_dir: str, rank: int, local_rank: int, exc: BaseException) -> None:
    """This rank's error and traceback, redacted, for the launcher's report."""
    try:
        storage.write_text(storage.join(failures_dir(out_dir), f"rank-{rank}.json"), json.dumps({
            "rank": rank, "local_rank": local_rank, "host": socket.gethostname(), "pid": os.getpid(),
            "error": redact(f"{type(exc).__name__}: {exc}"), "traceback": redact(traceback.format_exc()[-8000:])}))
    except (OSError, storage.StorageError):
        pass


def read_failures(folder: str) -> dict[int, dict]:
    """Every failed rank's record in a `failures_dir`, by rank."""
    names = [n for n in storage.listdir(str(folder)) if n.startswith("rank-") and n.endswith(".json")]
    records = (json.loads(storage.read_text(storage.join(str(folder), n))) for n in names)
    return {int(info["rank"]): info for info in records}
