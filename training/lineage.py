"""What made a model: the MLflow tag names lakebert writes, the lineage tags, the code's git
commit and the resolved config as params. Pure functions; `training.tracking` writes them.

    tags = lineage_tags(cfg, manifest, manifest_path)   # {TAG_SILVER_VERSION: "3", TAG_GIT_COMMIT: ..., ...}
    params = flat_params(cfg)                           # {"train.lr": "5e-05", ...}, secrets redacted
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conf import Config, config_dict, redact
from training.job import job_key

TAG_JOB_KEY = "lakebert.job_key"
# Lineage: which data, tokenizer and code made the model.
TAG_SILVER_TABLE = "lakebert.silver_table"
TAG_SILVER_VERSION = "lakebert.silver_delta_version"
TAG_MANIFEST = "lakebert.manifest"
TAG_MANIFEST_HASH = "lakebert.manifest_content_hash"
TAG_TOKENIZER = "lakebert.tokenizer_fingerprint"
TAG_TOKENIZER_PATH = "lakebert.tokenizer_path"
TAG_GIT_COMMIT = "lakebert.git_commit"
# The model the run registered.
TAG_REGISTERED_NAME = "lakebert.registered_model_name"
TAG_REGISTERED_VERSION = "lakebert.registered_model_version"
# What the end-of-run guard found (training.guards), the defaults in force, and what became
# of the champion alias.
TAG_DEGENERATE = "lakebert.degenerate"
TAG_DEGENERATE_REASON = "lakebert.degenerate_reason"
TAG_DEFAULTS = "lakebert.train_defaults"
TAG_CHAMPION = "lakebert.champion"
# A `lakebert score` run: which model version it scored, on what.
TAG_STAGE = "lakebert.stage"
TAG_SCORED_MODEL = "lakebert.scored_model_uri"
TAG_SCORED_NAME = "lakebert.scored_model_name"
TAG_SCORED_VERSION = "lakebert.scored_model_version"
TAG_SCORED_RUN = "lakebert.scored_model_run_id"
TAG_SCORE_SOURCE = "lakebert.score_source"
TAG_SCORE_SOURCE_VERSION = "lakebert.score_source_delta_version"
MAX_PARAM_CHARS = 6000


def git_commit() -> str:
    """The commit of the code that trains: $LAKEBERT_GIT_COMMIT, else `git rev-parse HEAD` here."""
    if os.environ.get("LAKEBERT_GIT_COMMIT"):
        return os.environ["LAKEBERT_GIT_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def lineage_tags(cfg: Config, manifest: dict, manifest_path: str) -> dict[str, str]:
    source = manifest.get("source") or {}
    return redact({
        TAG_JOB_KEY: job_key(cfg, manifest),
        TAG_SILVER_TABLE: str(source.get("table")),
        TAG_SILVER_VERSION: str(source.get("delta_version")),
        TAG_MANIFEST: str(manifest_path),
        TAG_MANIFEST_HASH: str(manifest.get("content_hash")),
        TAG_TOKENIZER: str(manifest.get("tokenizer_fingerprint")),
        TAG_TOKENIZER_PATH: str(manifest.get("tokenizer_path")),
        TAG_GIT_COMMIT: git_commit(),
    }, by_key=False)


def registered_model(tags: dict) -> dict | None:
    """The {name, version} a run's tags say it registered, or None."""
    name, version = tags.get(TAG_REGISTERED_NAME), tags.get(TAG_REGISTERED_VERSION)
    return {"name": name, "version": version} if name and version else None


def flat_params(cfg: Config) -> dict[str, str]:
    """The resolved config (secrets redacted) as `section.key` params."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = str(value)[:MAX_PARAM_CHARS]

    walk("", config_dict(cfg))
    return out
