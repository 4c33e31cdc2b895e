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

from pathlib import Path

MANIFEST = "manifest.json"
LATEST = "LATEST"
DATA_DIR = "data"
KEYS_DIR = "keys"
FORMAT = "lakebert.tokenized/2"  # 2: cross-split duplicates removed; part of the dataset key


class DataError(ValueError):
    """The tokenized data cannot be found or read; one line for the user."""


def latest_manifest(root: str | Path) -> Path | None:
    """The manifest of the dataset that `<root>/LATEST` names, if it is complete; else None."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    manifest = Path(root) / pointer.read_text().strip() / MANIFEST
    return manifest if manifest.is_file() else None


def resolve_manifest(location: str | Path) -> Path:
    """A manifest.json, a dataset folder holding one, or a tokenized root with a LATEST pointer."""
    path = Path(location)
    if path.is_file():
        return path
    if (path / MANIFEST).is_file():
        return path / MANIFEST
    latest = latest_manifest(path)
    if latest is not None:
        return latest
    raise DataError(f"no tokenized data at {location}: expected a manifest.json, a dataset folder or a "
                    "tokenized root with LATEST (run `lakebert tokenize`)")
