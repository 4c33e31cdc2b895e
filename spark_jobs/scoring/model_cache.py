"""A downloaded model, kept per model version in this user's own folder under the temp directory.

    target = cached_model(model_workdir(tracking_uri, name, version, run_id), download_fn)

Later runs reuse it. Loading a model runs its code (a flavor's loader, pickles), so a cached
model is used only from a folder that no one else can write to (created 0700; one owned by
another user, or writable by group or others, is not used), and only when its marker, written
last, holds the digest of exactly the files the folder holds: a torn download, a changed file
or a folder without a marker is downloaded again.

No Spark and no MLflow here: the download is the caller's `download_fn`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable

MODEL_FILE = "lakebert-model"  # the name of the model folder Spark ships to the executors
VERIFIED = ".verified"  # `<model folder>.verified`: {"digest": ...}, written after the folder
ARCHIVE = ".zip"  # `<model folder>.zip`: what `executor.ship_model` sends to the executors


def model_workdir(tracking: str, name: str, version: str, run_id: str | None) -> str:
    """A local folder per model version (of this store, from this run): Spark ships a file
    name once per session, and a second run in the session reuses the download."""
    key = hashlib.sha256(f"{tracking}|{name}|{version}|{run_id}".encode()).hexdigest()[:16]
    return os.path.join(model_cache_dir(), f"{MODEL_FILE}-{key}")


def model_cache_dir() -> str:
    """`<temp dir>/lakebert-score-<uid>`, created private; if it cannot be trusted, a new
    private folder for this run (said on the console)."""
    root = os.path.join(tempfile.gettempdir(), f"lakebert-score-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    problem = untrusted_folder(root)
    if problem is None:
        return root
    fresh = tempfile.mkdtemp(prefix=f"lakebert-score-{os.getuid()}-")
    print(f"score: not using the model cache {root} ({problem}); the model goes to {fresh}", flush=True)
    return fresh


def untrusted_folder(path: str) -> str | None:
    """Why another user could change what is in `path`, or None."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory" + (" (a symbolic link)" if stat.S_ISLNK(info.st_mode) else "")
    if info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def cached_model(target: str, download_fn: Callable[[str], str]) -> str:
    """`target` holding the model: as it is when its marker's digest matches its files, else
    `download_fn(staging folder) -> the downloaded folder`, moved to `target`, marker last."""
    marker = target + VERIFIED
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        with open(marker, encoding="utf-8") as fh:
            recorded = json.load(fh)["digest"]
        if not os.path.islink(target) and os.path.isdir(target) and folder_digest(target) == recorded:
            return target
    for stale in (marker, target + ARCHIVE):  # the archive ship_model made of an older folder
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    staging = tempfile.mkdtemp(prefix=".download-", dir=os.path.dirname(target))
    try:
        local = download_fn(staging)
        if os.path.islink(target) or os.path.isfile(target):
            os.remove(target)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(local, target)  # a rename: the staging folder is beside it
        partial = f"{marker}.{os.getpid()}"
        with open(partial, "w", encoding="utf-8") as fh:
            json.dump({"digest": folder_digest(target)}, fh)
        os.replace(partial, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def folder_digest(folder: str) -> str:
    """sha256 over every file's path and content (a link's target) under `folder`."""
    digest = hashlib.sha256()
    for parent, folders, files in os.walk(folder):  # links are not followed
        folders.sort()
        for name in sorted(folders + files):
            path = os.path.join(parent, name)
            digest.update(os.path.relpath(path, folder).encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(path):
                digest.update(b"link " + os.readlink(path).encode("utf-8", "surrogateescape"))
            elif os.path.isfile(path):
                with open(path, "rb") as fh:
                    digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()
