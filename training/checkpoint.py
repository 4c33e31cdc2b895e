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

Nothing is pickled: the model goes to safetensors; the optimizer and scheduler state and
every rank's torch RNG state go through `torch.save`, to be read back with
`torch.load(weights_only=True)`. The counters go to JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import torch

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
    def __init__(self, root: str | os.PathLike, keep_last: int = 3):
        self.root = Path(root)
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.root / f"{PREFIX}{step:09d}"

    def save(self, step: int, model, optimizer=None, scheduler=None, state: dict | None = None,
             rng: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
        """`state`: JSON counters; `rng`: every rank's `rng_state()`, by rank (`"rank0"`, ...)."""
        from safetensors.torch import save_model

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{step}-{uuid.uuid4().hex}"
        tmp.mkdir()
        save_model(model, str(tmp / MODEL_FILE))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        if rng is not None:
            torch.save(rng, tmp / TORCH_RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **(state or {})}))
        hashes = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / COMPLETE).write_text(json.dumps(hashes, indent=1))  # last: the checkpoint counts from here
        final = self.path(step)
        if final.exists():  # a replayed step after a resume: the new one replaces it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        self.prune()
        return final

    def is_complete(self, path: Path) -> bool:
        marker = path / COMPLETE
        try:
            hashes = json.loads(marker.read_text())
            return bool(hashes) and all(_sha256(path / name) == digest for name, digest in hashes.items())
        except (OSError, ValueError):
            return False

    def candidates(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted((p for p in self.root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)), reverse=True)

    def latest(self) -> Path | None:
        return next((p for p in self.candidates() if self.is_complete(p)), None)

    def load(self, path: Path, model, optimizer=None, scheduler=None, rank: int | None = 0) -> dict:
        """Restore what `save` wrote, and `rank`'s RNG state (None: leave the RNG alone);
        returns the saved `state` with its `step`."""
        from safetensors.torch import load_model

        load_model(model, str(path / MODEL_FILE))
        if optimizer is not None and (path / OPTIMIZER_FILE).exists():
            optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))
        if scheduler is not None and (path / SCHEDULER_FILE).exists():
            scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=True))
        if rank is not None and (path / TORCH_RNG_FILE).exists():
            set_rng_state(torch.load(path / TORCH_RNG_FILE, weights_only=True)[f"rank{rank}"])
        return json.loads((path / STATE_FILE).read_text())

    def prune(self) -> None:
        """Keep the newest `keep_last` complete checkpoints; drop older ones and stale temp folders."""
        complete = [p for p in self.candidates() if self.is_complete(p)]
        for old in complete[self.keep_last:]:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
