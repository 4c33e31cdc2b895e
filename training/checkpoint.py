"""Checkpoints that are either complete or ignored.

    ckpt = CheckpointManager("runs/ckpt", keep_last=3)
    ckpt.save(step, model, optimizer, scheduler, state={"epoch": 1}, rng={"rank0": rng_state()})
    path = ckpt.latest()            # the newest complete, uncorrupted checkpoint, or None
    state = ckpt.load(path, model, optimizer, scheduler, rank=0)   # rank 0's RNG state restored too

Design: a checkpoint is written into a temporary folder, every file's sha256 goes into the
`COMPLETE` marker, which is written last, and the folder is then renamed to `step-<N>` (an
atomic rename on POSIX filesystems). `latest()` walks back from the newest `step-*` folder and
takes the first one whose marker exists and whose files still match their hashes, so a
half-written, truncated or corrupted checkpoint is skipped for the one before it.

On an object store (`s3a://...`, through `storage`), which has no atomic rename, the
files are uploaded into `step-<N>` and the marker last. An unmarked folder is skipped, and
pruned once a newer complete one exists; the newest complete one is never pruned. A remote
checkpoint is fetched once to check its hashes, and `load` uses that copy.

Nothing is pickled: the model goes to safetensors; the optimizer and scheduler state and
every rank's torch RNG state go through `torch.save`, to be read back with
`torch.load(weights_only=True)`. The counters go to JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import torch

import storage

COMPLETE = "COMPLETE"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
STATE_FILE = "state.json"
TORCH_RNG_FILE = "torch_rng.pt"
PREFIX = "step-"


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch RNG states: the CPU generator's, and its current CUDA device's.
    (lakebert's own randomness, shuffling and bucketing, is seeded by (seed, epoch) and
    needs no saving.)"""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CheckpointManager:
    """The `step-*` checkpoints under `root`: a local folder (paths returned as `Path`) or an
    object-store location such as `s3a://bucket/run/checkpoints` (returned as URI strings)."""

    def __init__(self, root: str | os.PathLike, keep_last: int = 3):
        self.remote = not storage.is_local(str(root))
        self.root = str(root).rstrip("/") if self.remote else Path(storage.local_path(str(root)))
        self.keep_last = keep_last
        self._fetched: tuple[str, tempfile.TemporaryDirectory] | None = None  # the last verified remote copy

    @property
    def name(self) -> str:
        return self.root.rsplit("/", 1)[-1] if self.remote else self.root.name

    def path(self, step: int) -> Path | str:
        name = f"{PREFIX}{step:09d}"
        return storage.join(self.root, name) if self.remote else self.root / name

    def save(self, step: int, model, optimizer=None, scheduler=None, state: dict | None = None,
             rng: dict[str, dict[str, torch.Tensor]] | None = None) -> Path | str:
        """`state`: JSON counters; `rng`: every rank's `rng_state()`, by rank (`"rank0"`, ...)."""
        if self.remote:
            with tempfile.TemporaryDirectory(prefix="lakebert-ckpt-") as tmp:
                hashes = self._write(Path(tmp), step, model, optimizer, scheduler, state, rng)
                final = self.path(step)
                if self._fetched is not None and self._fetched[0] == final:  # our copy of it is about to be stale
                    self._fetched[1].cleanup()
                    self._fetched = None
                storage.delete(storage.join(final, COMPLETE))  # a replayed step: unmarked before it changes
                storage.delete(final)
                storage.upload(tmp, final)
                # last: the checkpoint counts from here (an object store has no atomic folder rename)
                storage.write_text(storage.join(final, COMPLETE), json.dumps(hashes, indent=1))
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".tmp-{step}-{uuid.uuid4().hex}"
            tmp.mkdir()
            hashes = self._write(tmp, step, model, optimizer, scheduler, state, rng)
            (tmp / COMPLETE).write_text(json.dumps(hashes, indent=1))  # last: the checkpoint counts from here
            final = self.path(step)
            if final.exists():  # a replayed step after a resume: the new one replaces it whole
                shutil.rmtree(final)
            os.replace(tmp, final)
        self.prune()
        return final

    @staticmethod
    def _write(folder: Path, step: int, model, optimizer, scheduler, state, rng) -> dict[str, str]:
        """The checkpoint's files in a local folder; their sha256 by name."""
        from safetensors.torch import save_model

        save_model(model, str(folder / MODEL_FILE))
        for name, value in ((OPTIMIZER_FILE, optimizer and optimizer.state_dict()),
                            (SCHEDULER_FILE, scheduler and scheduler.state_dict()), (TORCH_RNG_FILE, rng)):
            if value is not None:
                # through a Python file: a full disk raises OSError(ENOSPC) there, where torch's
                # own writer only says "unexpected pos"
                with open(folder / name, "wb") as fh:
                    torch.save(value, fh)
        (folder / STATE_FILE).write_text(json.dumps({"step": step, **(state or {})}))
        return {p.name: _sha256(p) for p in sorted(folder.iterdir())}

    def is_complete(self, path: Path | str) -> bool:
        """The marker exists and every file matches its hash (a remote checkpoint is fetched to
        check it, and `load` then uses that copy)."""
        if self.remote:
            return self._local_copy(str(path)) is not None
        return _verified(Path(path))

    def _has_marker(self, path: Path | str) -> bool:
        return storage.is_file(storage.join(str(path), COMPLETE))

    def _local_copy(self, path: str) -> Path | None:
        """A verified local copy of a remote checkpoint, or None when it is torn."""
        if self._fetched is not None and self._fetched[0] == path:
            return Path(self._fetched[1].name)
        if not self._has_marker(path):
            return None
        tmp = tempfile.TemporaryDirectory(prefix="lakebert-ckpt-")
        storage.download(path, tmp.name)
        if not _verified(Path(tmp.name)):
            tmp.cleanup()
            return None
        if self._fetched is not None:
            self._fetched[1].cleanup()
        self._fetched = (path, tmp)
        return Path(tmp.name)

    def candidates(self) -> list[Path | str]:
        names = sorted((n for n in storage.listdir(str(self.root)) if n.startswith(PREFIX)), reverse=True)
        if self.remote:
            return [storage.join(self.root, n) for n in names]
        return [self.root / n for n in names if (self.root / n).is_dir()]

    def latest(self) -> Path | str | None:
        return next((p for p in self.candidates() if self.is_complete(p)), None)

    def load(self, path: Path | str, model, optimizer=None, scheduler=None, rank: int | None = 0) -> dict:
        """Restore what `save` wrote, and `rank`'s RNG state (None: leave the RNG alone);
        returns the saved `state` with its `step`."""
        from safetensors.torch import load_model

        if self.remote:
            local = self._local_copy(str(path))
            if local is None:
                raise ValueError(f"checkpoint {path} is incomplete or does not match its hashes")
            path = local
        path = Path(path)
        load_model(model, str(path / MODEL_FILE))
        if optimizer is not None and (path / OPTIMIZER_FILE).exists():
            optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))
        if scheduler is not None and (path / SCHEDULER_FILE).exists():
            scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=True))
        if rank is not None and (path / TORCH_RNG_FILE).exists():
            set_rng_state(torch.load(path / TORCH_RNG_FILE, weights_only=True)[f"rank{rank}"])
        return json.loads((path / STATE_FILE).read_text())

    def clear(self) -> None:
        """Every checkpoint (a new run trains from scratch): the `step-*` folders and temporary
        ones this class writes, nothing else that the folder may hold."""
        if self.remote:
            for name in storage.listdir(self.root):
                if name.startswith(PREFIX):
                    storage.delete(storage.join(self.root, name, COMPLETE))  # unmarked first
                    storage.delete(storage.join(self.root, name))
            return
        for path in [*self.root.glob(f"{PREFIX}*"), *self.root.glob(".tmp-*")]:
            shutil.rmtree(path, ignore_errors=True)

    def prune(self) -> None:
        """Keep the newest `keep_last` complete checkpoints; drop older ones and torn or stale
        temporary ones, never the newest complete one."""
        if self.remote:  # complete = marked (objects are whole); hashes are checked when one is loaded
            candidates = self.candidates()
            marked = [p for p in candidates if self._has_marker(p)]
            newest = marked[0] if marked else None
            for old in marked[self.keep_last:]:
                storage.delete(storage.join(old, COMPLETE))  # unmarked first: never half a checkpoint
                storage.delete(old)
            for torn in candidates:
                if newest is not None and torn not in marked and torn < newest:
                    storage.delete(torn)
            return
        complete = [p for p in self.candidates() if self.is_complete(p)]
        for old in complete[self.keep_last:]:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def _verified(path: Path) -> bool:
    """A local checkpoint folder whose marker exists and whose files match its hashes."""
    try:
        hashes = json.loads((path / COMPLETE).read_text())
        return bool(hashes) and all(_sha256(path / name) == digest for name, digest in hashes.items())
    except (OSError, ValueError):
        return False
