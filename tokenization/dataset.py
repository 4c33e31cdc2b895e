"""The tokenized dataset's layout on disk: the contract between `lakebert tokenize` (which
writes it) and training (which reads it). No Spark, no torch.

    from tokenization.dataset import resolve_manifest
    manifest_path = resolve_manifest("lakehouse/tokenized")   # LATEST, a dataset folder, or a manifest.json

    <tokenized root>/<key>/manifest.json   written last: the dataset exists only once it is there
    <tokenized root>/<key>/data/split=<split>/part-*.parquet
    <tokenized root>/<key>/keys/part-*.parquet   a 128-bit hash of each row's ids and its split's
                                           rank: what an incremental run compares new rows with
    <tokenized root>/LATEST                the key of the newest complete dataset

The manifest's `files` (per split) and `keys` are paths relative to the dataset's folder. An
incremental dataset lists the files of the dataset it extends as `../<that key>/...`, so a
dataset folder must not be deleted while a newer one lists its files.
"""

from __future__ import annotations

import os
from pathlib import Path

from conf import storage

MANIFEST = "manifest.json"
LATEST = "LATEST"
DATA_DIR = "data"
KEYS_DIR = "keys"
FORMAT = "lakebert.tokenized/2"  # 2: cross-split duplicates removed; part of the dataset key


class DataError(ValueError):
    """The tokenized data cannot be found or read; one line for the user."""


def latest_manifest(root: str | Path) -> str | None:
    """The manifest of the dataset that `<root>/LATEST` names, if it is complete; else None
    (any location `conf.storage` reads: a local path, s3a://, ...)."""
    try:
        key = storage.read_text(storage.join(str(root), LATEST)).strip()
    except FileNotFoundError:
        return None
    manifest = storage.join(str(root), key, MANIFEST)
    return manifest if storage.is_file(manifest) else None


def resolve_manifest(location: str | Path) -> str:
    """A manifest.json, a dataset folder holding one, or a tokenized root with a LATEST pointer."""
    location = str(location)
    if storage.is_local(location):  # absolute: the manifest's files are found beside it
        location = os.path.abspath(storage.local_path(location))
    if storage.is_file(location):
        return location
    if storage.is_file(storage.join(location, MANIFEST)):
        return storage.join(location, MANIFEST)
    latest = latest_manifest(location)
    if latest is not None:
        return latest
    raise DataError(f"no tokenized data at {location}: expected a manifest.json, a dataset folder or a "
                    "tokenized root with LATEST (run `lakebert tokenize`)")
