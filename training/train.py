"""The training loop: one `train(cfg)` for a single process, torchrun and TorchDistributor.

    python -m training --set lakehouse.root=./lakehouse                 # one process
    torchrun --nproc_per_node=2 -m training --set lakehouse.root=...     # DDP: gloo on CPU, NCCL on CUDA

Reads the tokenized data through its manifest (`training.data`), builds the model
(`training.model`), wraps it in DDP when WORLD_SIZE > 1, and trains with AdamW, linear warmup
and decay, gradient accumulation and clipping. It evaluates on validation at each epoch end
(and every `train.eval_every` steps), keeps the best checkpoint by `train.select_metric`, and
finally evaluates the best one on test.

Uneven shards: ranks get the same number of micro-batches per epoch. A rank whose share of
rows runs out one batch early runs a zero-weight batch instead, so every rank takes the same
optimizer steps and every row is still used exactly once per epoch.

Resume: the newest complete checkpoint in `<output_dir>/checkpoints` is loaded, with model,
optimizer, scheduler, every rank's torch RNG state and the position in the epoch. The
epoch's batches are then regenerated and the consumed ones skipped, so a resumed run computes
the same losses and weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from conf import Config
from conf.paths import under_root
from training.checkpoint import CheckpointManager
from training.data import TokenizedSplit, batches
from training.metrics import MetricAccumulator
from training.model import build_model

TRAIN, VALIDATION, TEST = "train", "validation", "test"
LOWER_IS_BETTER = {"loss"}
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0  # this process logs and writes checkpoints


def init_distributed(use_gpu: bool) -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = use_gpu and torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistEnv(rank, world, local_rank, device)


def data_location(cfg: Config) -> str:
    return cfg.train.data or under_root(cfg, cfg.tokenize.output)


def output_dir(cfg: Config) -> Path:
    return Path(cfg.train.output_dir or under_root(cfg, "train"))


def _vocab(manifest: dict) -> tuple[int, int]:
    """(vocab size, pad id) of the tokenizer that made the data."""
    from tokenizers import Tokenizer

    path = Path(manifest["tokenizer_path"])
    tok = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
    pad = tok.token_to_id("[PAD]")
    return tok.get_vocab_size(), 0 if pad is None else pad


def _rank_rng(env: DistEnv) -> dict[str, torch.Tensor]:
    """Every rank's torch RNG state, gathered on all ranks (they are small)."""
    mine = torch.get_rng_state()
    if env.world_size == 1:
        return {"rank0": mine}
    states = [None] * env.world_size
    dist.all_gather_object(states, mine)
    return {f"rank{r}": s for r, s in enumerate(states)}


def evaluate(model, split: TokenizedSplit, env: DistEnv, batch_size: int, pad_id: int, num_labels: int) -> dict:
    model.eval()
    acc = MetricAccumulator(num_labels)
    with torch.no_grad():
        for batch in batches(split.rows(env.rank, env.world_size, shuffle=False), batch_size, pad_id):
            batch = {k: v.to(env.device) for k, v in batch.items()}
            out = model(**batch)
            acc.update(out.logits, batch["labels"], out.loss.double() * len(batch["labels"]))
    model.train()
    return acc.compute()


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best


def train(cfg: Config, stop_after_steps: int | None = None) -> dict:
    """Train, evaluate and return the result. `stop_after_steps` ends the run abruptly (tests)."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import get_linear_schedule_with_warmup

    tc = cfg.train
    env = init_distributed(tc.use_gpu)
    started = time.perf_counter()
    try:
        location = data_location(cfg)
        splits = {s: TokenizedSplit.open(location, s) for s in (TRAIN, VALIDATION, TEST)}
        manifest = splits[TRAIN].manifest
        label_map = manifest["label_map"]
        vocab_size, pad_id = _vocab(manifest)

        torch.manual_seed(tc.seed)  # the same initial weights on every rank
        model = build_model(tc.model, label_map, vocab_size).to(env.device)
        torch.manual_seed(tc.seed + 1 + env.rank)  # but different dropout masks per rank
        wrapped = DDP(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None) \
            if env.world_size > 1 else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        batches_per_epoch = math.ceil(splits[TRAIN].rank_rows(0, env.world_size) / tc.batch_size)
        steps_per_epoch = math.ceil(batches_per_epoch / tc.grad_accum)
        total_steps = steps_per_epoch * tc.epochs
        scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total_steps), total_steps)

        out_dir = output_dir(cfg)
        ckpt = CheckpointManager(out_dir / "checkpoints", tc.keep_last)
        best_ckpt = CheckpointManager(out_dir / "best", keep_last=1)
        step, epoch, batches_done, best = 0, 0, 0, None
        history: dict[str, list] = {"loss": [], "lr": [], "grad_norm": [], "eval": []}
        latest = ckpt.latest()
        if latest is not None:
            state = ckpt.load(latest, model, optimizer, scheduler, restore_rng=False)
            torch.set_rng_state(ckpt.load_tensors(latest)[f"rank{env.rank}"])
            step, epoch, batches_done, best = state["step"], state["epoch"], state["batches_done"], state["best"]
            history = state["history"]

        def save(path_manager, at_epoch, at_batch):
            rng = _rank_rng(env)  # collective: every rank takes part
            if env.is_main:
                path_manager.save(step, model, optimizer, scheduler, tensors=rng, state={
                    "epoch": at_epoch, "batches_done": at_batch, "best": best, "history": history})
            if env.world_size > 1:
                dist.barrier()

        def validate() -> dict:
            nonlocal best
            metrics = evaluate(model, splits[VALIDATION], env, tc.batch_size, pad_id, len(label_map))
            history["eval"].append({"step": step, **{k: v for k, v in metrics.items() if k != "confusion_matrix"}})
            improved = _better(tc.select_metric, metrics[tc.select_metric], best)
            if improved:
                best = metrics[tc.select_metric]
            return metrics, improved

        dummy = {"input_ids": torch.tensor([[0, 0]]), "attention_mask": torch.tensor([[1, 1]]),
                 "labels": torch.tensor([0])}
        model.train()
        while epoch < tc.epochs:
            rows = splits[TRAIN].rows(env.rank, env.world_size, epoch, tc.seed)
            stream = batches(rows, tc.batch_size, pad_id, tc.bucket_batches, seed=tc.seed + epoch)
            for index in range(batches_per_epoch):
                batch = next(stream, None)
                if index < batches_done:
                    continue  # resuming: this micro-batch was already used
                weight = 1.0 if batch is not None else 0.0  # a zero-weight stand-in keeps ranks in step
                batch = {k: v.to(env.device) for k, v in (batch or dummy).items()}
                last_of_step = (index + 1) % tc.grad_accum == 0 or index + 1 == batches_per_epoch
                sync = nullcontext() if last_of_step or env.world_size == 1 else wrapped.no_sync()
                with sync:
                    with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=env.device.type == "cuda"):
                        loss = wrapped(**batch).loss * weight
                    (loss / tc.grad_accum).backward()
                if not last_of_step:
                    continue
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                history["loss"].append(float(loss.detach()))
                history["lr"].append(scheduler.get_last_lr()[0])
                history["grad_norm"].append(float(grad_norm))
                if tc.eval_every and step % tc.eval_every == 0:
                    validate()
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and index + 1 < batches_per_epoch:
                    save(ckpt, epoch, index + 1)
                if stop_after_steps is not None and step >= stop_after_steps:
                    raise SystemExit(f"stopped after step {step}")
            epoch, batches_done = epoch + 1, 0
            _, improved = validate()
            if improved:
                save(best_ckpt, epoch, 0)
            save(ckpt, epoch, 0)

        best_path = best_ckpt.latest()
        best_ckpt.load(best_path, model, restore_rng=False)
        final = {
            VALIDATION: evaluate(model, splits[VALIDATION], env, tc.batch_size, pad_id, len(label_map)),
            TEST: evaluate(model, splits[TEST], env, tc.batch_size, pad_id, len(label_map)),
        }
        result = {
            "metrics": final, "steps": step, "epochs": tc.epochs, "world_size": env.world_size,
            "best_checkpoint": str(best_path), "select_metric": tc.select_metric, "history": history,
            "data": {"manifest": str(splits[TRAIN].manifest_path), "rows": manifest["rows"],
                     "source": manifest.get("source"), "tokenizer_fingerprint": manifest.get("tokenizer_fingerprint")},
            "seconds": round(time.perf_counter() - started, 3),
        }
        if env.is_main:
            (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
        return result
    finally:
        if env.world_size > 1 and dist.is_initialized():
            try:
                dist.barrier()  # no rank tears gloo down while another still talks to it
            finally:
                dist.destroy_process_group()
