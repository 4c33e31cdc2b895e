"""Trained WordPiece tokenizers: trained once per silver table and settings, kept under the
lakehouse, and reused. No Spark: the caller hands in the texts to train on.

    from tokenization.trained import trained_tokenizer, training_settings
    training = training_settings("/lh/silver", 3, vocab_size=8000, lowercase=True, min_frequency=2,
                                 train_sample_rows=200_000)
    tokenizer, how = trained_tokenizer("/lh/tokenizers", training, texts_fn, retrain=False)

    <lakehouse>/tokenizers/wordpiece-<key>/tokenizer.json, ..., lakebert_training.json

`<key>` hashes the table, its Delta version and the settings. The WordPiece trainer is not
deterministic (huggingface/tokenizers#1794), so retraining could change the ids: a tokenizer
trained with the same table and settings on a version at or before this one is reused
(`retrain=False`, the default), so every later silver version gets the same ids. A folder counts
once its `tokenizer.json` is there; two runs that race both trained the same thing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from collections.abc import Callable, Iterable

import storage
from tokenization.dataset import dataset_key
from tokenization.tokenizer import TOKENIZER_FILE, LoadedTokenizer, load_tokenizer, train_wordpiece

TRAINED_TOKENIZERS = "tokenizers"  # under lakehouse.root
TRAINING_FILE = "lakebert_training.json"  # in a trained tokenizer's folder: the table, version and settings
WORDPIECE_PREFIX = "wordpiece-"


def training_settings(table: str, delta_version: int, vocab_size: int, lowercase: bool, min_frequency: int,
                      train_sample_rows: int) -> dict:
    """How a tokenizer is trained (TRAINING_FILE, and the manifest's `tokenizer_training`)."""
    return {"table": table, "delta_version": delta_version, "vocab_size": vocab_size, "lowercase": lowercase,
            "min_frequency": min_frequency, "train_sample_rows": train_sample_rows}


def trained_tokenizer(trained_root: str, training: dict, texts_fn: Callable[[], Iterable[str]],
                      retrain: bool = False) -> tuple[LoadedTokenizer, dict]:
    """(the tokenizer, how it was trained): a reusable one (unless `retrain`), the one trained
    for this version and these settings, or one trained now on `texts_fn()` (called only then)."""
    if not retrain:
        reusable = reusable_tokenizer(trained_root, training)
        if reusable is not None:
            return load_tokenizer(reusable[0]), reusable[1]
    key = dataset_key(training["table"], str(training["delta_version"]), str(training["vocab_size"]),
                      str(training["lowercase"]), str(training["min_frequency"]), str(training["train_sample_rows"]))
    out = storage.join(trained_root, f"{WORDPIECE_PREFIX}{key}")
    if not storage.is_file(storage.join(out, TOKENIZER_FILE)):
        with tempfile.TemporaryDirectory(prefix="lakebert-tokenizer-") as tmp:
            local = Path(tmp) / "tokenizer"
            train_wordpiece(texts_fn(), local, training["vocab_size"], training["lowercase"],
                            training["min_frequency"])
            (local / TRAINING_FILE).write_text(json.dumps(training, indent=2))
            publish_tokenizer(local, out)
    return load_tokenizer(out), training


def publish_tokenizer(local: Path, out: str) -> None:
    """A trained tokenizer's folder into place; it counts once its TOKENIZER_FILE is there. Another
    run may have won the race: both trained the same thing."""
    if storage.is_local(out):
        target = Path(storage.local_path(out))
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        shutil.copytree(local, staged)
        try:
            staged.rename(target)  # atomic on POSIX filesystems
        except OSError:  # the race's winner is in place
            shutil.rmtree(staged, ignore_errors=True)
        return
    storage.upload(str(local), out, last=TOKENIZER_FILE)


def reusable_tokenizer(trained_root: str, training: dict) -> tuple[str, dict] | None:
    """The first tokenizer trained with the same table and settings (on a silver version at or
    before this one), and how it was trained, or None: every later version gets the same ids."""
    def settings(t: dict) -> dict:
        return {k: v for k, v in t.items() if k != "delta_version"}

    found = []
    for name in storage.listdir(trained_root):
        folder = storage.join(trained_root, name)
        if not name.startswith(WORDPIECE_PREFIX) or not storage.is_file(storage.join(folder, TOKENIZER_FILE)):
            continue
        try:
            other = json.loads(_read_text(storage.join(folder, TRAINING_FILE)) or "")
        except json.JSONDecodeError:
            continue
        if settings(other) == settings(training) and other.get("delta_version", 1 << 62) <= training["delta_version"]:
            found.append((other["delta_version"], folder, other))
    if not found:
        return None
    _, folder, other = min(found, key=lambda f: (f[0], f[1]))
    return folder, other


def _read_text(path: str) -> str | None:
    try:
        return storage.read_text(path)
    except FileNotFoundError:
        return None
