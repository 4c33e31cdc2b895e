"""Checkpoints that are either complete or ignored.

    ckpt = CheckpointManager("runs/ckpt", keep_last=3)
    ckpt.save(step, model, optimizer, scheduler, state={"epoch": 1, "rows_done": 640}, rng=rng_state())
    path = ckpt.latest()            # the newest complete, uncorrupted checkpoint, or None
    state = ckpt.load(path, model, optimizer, scheduler)

Design: a checkpoint is written into a temporary folder, every file's sha256 goes into the
`COMPLETE` marker, which is written last, and the folder is then renamed to `step-<N>` (an
atomic rename on POSIX filesystems). `latest()` walks back from the newest `step-*` folder and
takes the first one whose marker exists and whose files still match their hashes, so a
half-written, truncated or corrupted checkpoint is skipped for the one before it.

Nothing is pickled: the model goes to safetensors, and the optimizer and scheduler state go
through `torch.save`, to be read back with `torch.load(weights_only=True)`. The counters and
Python/NumPy RNG states go to JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

COMPLETE = "COMPLETE"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
STATE_FILE = "state.json"
TORCH_RNG_FILE = "torch_rng.pt"
TENSORS_FILE = "tensors.pt"
PREFIX = "step-"


def rng_state() -> dict:
    """This process's RNG states: torch (CPU and CUDA) as tensors, Python and NumPy as JSON."""
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    py = random.getstate()
    return {"tensors": tensors, "python": [py[0], list(py[1]), py[2]],
            "numpy": _jsonable(np.random.get_state())}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["tensors"]["cpu"])
    cuda = [state["tensors"][k] for k in sorted(state["tensors"]) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


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
             rng: dict | None = None, tensors: dict[str, torch.Tensor] | None = None) -> Path:
        """`tensors`: anything else to restore exactly (e.g. every rank's RNG state)."""
        from safetensors.torch import save_model

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{step}-{uuid.uuid4().hex}"
        tmp.mkdir()
        save_model(model, str(tmp / MODEL_FILE))
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        extra = {"step": step, **(state or {})}
        if rng is not None:
            torch.save(rng["tensors"], tmp / TORCH_RNG_FILE)
            extra["rng"] = {"python": rng["python"], "numpy": rng["numpy"]}
        if tensors:
            torch.save(tensors, tmp / TENSORS_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(extra))
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

    def load(self, path: Path, model, optimizer=None, scheduler=None, restore_rng: bool = True) -> dict:
        from safetensors.torch import load_model

        load_model(model, str(path / MODEL_FILE))
        if optimizer is not None and (path / OPTIMIZER_FILE).exists():
            optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=True))
        if scheduler is not None and (path / SCHEDULER_FILE).exists():
            scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=True))
        state = json.loads((path / STATE_FILE).read_text())
        if restore_rng and "rng" in state:
            tensors = torch.load(path / TORCH_RNG_FILE, weights_only=True)
            set_rng_state({"tensors": tensors, **state["rng"]})
        state.pop("rng", None)
        return state

    def load_tensors(self, path: Path) -> dict[str, torch.Tensor]:
        file = path / TENSORS_FILE
        return torch.load(file, weights_only=True) if file.exists() else {}

    def prune(self) -> None:
        """Keep the newest `keep_last` complete checkpoints; drop older ones and stale temp folders."""
        complete = [p for p in self.candidates() if self.is_complete(p)]
        for old in complete[self.keep_last:]:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
