"""What training reports while it runs: the steps not yet logged, their timing and throughput,
and rank 0's progress line.

    meter = StepMeter(env, tracker, progress)
    batch = meter.timed_next(stream)              # the wait for data is counted apart
    meter.add(StepRecord(step, lr, totals, grad_norm))
    meter.flush(state)                            # one all-reduce for all pending steps; log them
    meter.summary()                               # tokens/s, padding and data-wait fractions, intervals

A step's loss, rows and tokens stay on the device until a flush, so logging costs one
collective per `train.log_every` steps, not one per step. Throughput counts training only:
evaluation and checkpoints restart the clock (`restart_clock`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from training.distributed import DistEnv

PROGRESS_PREFIX = "[lakebert train]"
PROGRESS_SECONDS = 5.0
MAX_INTERVALS = 10_000


class StepTotals:
    """The micro-batches of one optimizer step, summed on the device (float64)."""

    def __init__(self, device: torch.device):
        zero = torch.zeros((), dtype=torch.float64, device=device)
        self.loss_sum, self.rows, self.tokens, self.padded = zero.clone(), zero.clone(), zero.clone(), zero.clone()

    def add(self, loss: torch.Tensor, batch: dict, weight: float) -> None:
        """A micro-batch's mean loss; `weight` 0 for a stand-in batch that counts nothing."""
        rows = len(batch["labels"]) * weight
        self.loss_sum += loss.detach().double() * rows
        self.rows += rows
        self.tokens += batch["attention_mask"].sum() * weight
        self.padded += batch["attention_mask"].numel() * weight

    def stacked(self) -> torch.Tensor:
        return torch.stack([self.loss_sum, self.rows, self.tokens, self.padded])


@dataclass
class StepRecord:
    """One optimizer step, not yet logged."""

    step: int
    lr: float
    totals: StepTotals
    grad_norm: torch.Tensor


@dataclass
class Throughput:
    """Training-only totals over the run, summed over ranks."""

    tokens: float = 0.0
    padded_tokens: float = 0.0
    seconds: float = 0.0
    data_wait_seconds: float = 0.0
    steps: int = 0
    intervals: list[dict] = field(default_factory=list)  # one per flush: lets a benchmark drop warm-up

    def add(self, steps: int, tokens: float, padded: float, seconds: float, wait: float) -> None:
        self.tokens += tokens
        self.padded_tokens += padded
        self.seconds += seconds
        self.data_wait_seconds += wait
        self.steps += steps
        if len(self.intervals) < MAX_INTERVALS:
            self.intervals.append({"steps": steps, "tokens": tokens, "seconds": seconds, "data_wait_seconds": wait})

    def summary(self, device: torch.device) -> dict:
        """Real (non-pad) tokens per second, the padding fraction, the data wait, the intervals."""
        seconds = max(self.seconds, 1e-9)
        out = {"tokens": int(self.tokens), "seconds": round(self.seconds, 4), "steps": self.steps,
               "tokens_per_s": self.tokens / seconds,
               "padding_fraction": 1 - self.tokens / max(self.padded_tokens, 1.0),
               "data_wait_fraction": self.data_wait_seconds / seconds, "intervals": self.intervals}
        if device.type == "cuda":
            out["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        return out


class Progress:
    """Rank 0's progress line: step/total, loss, tokens/s, ETA (the launcher shows it at the driver)."""

    def __init__(self, total_steps: int, start_step: int, epochs: int):
        self.total, self.start_step, self.epochs = total_steps, start_step, epochs
        self.started = self.last_shown = time.perf_counter()
        self.latest: tuple | None = None

    def update(self, step: int, epoch: int, loss: float, lr: float, tokens_per_s: float) -> None:
        self.latest = (step, epoch, loss, lr, tokens_per_s)
        self.show()

    def show(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.latest is None or (not force and now - self.last_shown < PROGRESS_SECONDS):
            return
        self.last_shown = now
        step, epoch, loss, lr, tokens_per_s = self.latest
        eta = (now - self.started) / max(step - self.start_step, 1) * (self.total - step)
        print(f"{PROGRESS_PREFIX} step {step}/{self.total} epoch {min(epoch + 1, self.epochs)}/{self.epochs} "
              f"loss {loss:.4f} lr {lr:.2e} tokens/s {tokens_per_s:,.0f} "
              f"eta {time.strftime('%H:%M:%S', time.gmtime(eta))}", flush=True)


class StepMeter:
    """The steps since the last flush, the clock since then (and how much of it was waiting for
    data), the run's throughput, and the progress line."""

    def __init__(self, env: DistEnv, tracker, progress: Progress):
        self.env, self.tracker, self.progress = env, tracker, progress
        self.pending: list[StepRecord] = []
        self.throughput = Throughput()
        self.restart_clock()

    def restart_clock(self) -> None:
        self.since, self.wait = time.perf_counter(), 0.0

    def timed_next(self, stream):
        """The stream's next batch (None at its end), counting the wait."""
        started = time.perf_counter()
        batch = next(stream, None)
        self.wait += time.perf_counter() - started
        return batch

    def add(self, record: StepRecord) -> None:
        self.pending.append(record)

    def flush(self, state) -> None:
        """Sum the pending steps' loss, rows and tokens over ranks (one collective), log them
        and append them to `state.history`."""
        if not self.pending:
            return
        stacked = torch.stack([p.totals.stacked() for p in self.pending]).double()
        if self.env.world_size > 1:
            dist.all_reduce(stacked)
        norms = torch.stack([p.grad_norm for p in self.pending]).tolist()
        if self.env.cuda:
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        _, _, tokens, padded = stacked.sum(dim=0).tolist()
        tokens_per_s = tokens / elapsed
        wait_fraction = min(self.wait / elapsed, 1.0)
        self.throughput.add(len(self.pending), tokens, padded, elapsed, self.wait)
        for record, (loss_sum, rows, step_tokens, step_padded), norm in zip(self.pending, stacked.tolist(), norms):
            loss = loss_sum / max(rows, 1.0)
            state.record_step(loss, record.lr, norm)
            self.tracker.log_step(record.step, {
                "train/loss": loss, "train/lr": record.lr, "train/grad_norm": norm,
                "train/tokens_per_s": tokens_per_s, "train/data_wait_fraction": wait_fraction,
                "train/padding_fraction": 1 - step_tokens / max(step_padded, 1.0), "train/epoch": state.epoch})
        if self.env.is_main:
            last = self.pending[-1]
            self.progress.update(last.step, state.epoch, state.history["loss"][-1], last.lr, tokens_per_s)
        self.pending.clear()
        self.restart_clock()
