"""The training loop: one `train(cfg)` for a single process, torchrun and TorchDistributor.

    python -m training --set lakehouse.root=./lakehouse                 # one process
    torchrun --nproc_per_node=2 -m training --set lakehouse.root=...     # DDP: gloo on CPU, NCCL on CUDA
    lakebert train                                                      # TorchDistributor (spark_jobs/train.py)

Reads the tokenized data through its manifest (`training.data`), builds the model
(`training.model`), wraps it in DDP when WORLD_SIZE > 1, and trains with AdamW, linear warmup
and decay, gradient accumulation and clipping. It evaluates on validation at each epoch end
(and every `train.eval_every` steps), keeps the best checkpoint by `train.select_metric`, and
finally evaluates the best one on validation and test. Rank 0 logs everything to the job's one
MLflow run (`training.tracking`) and logs and registers the final model.

Uneven shards: ranks get the same number of micro-batches per epoch. A rank whose share of
rows runs out one batch early runs a zero-weight batch instead, so every rank takes the same
optimizer steps and every row is still used exactly once per epoch.

Resume: the newest complete checkpoint in `<output_dir>/checkpoints` is loaded (fetched from
the MLflow run's artifacts first when the folder has none), with model, optimizer, scheduler,
every rank's torch RNG state and the position in the epoch. The epoch's batches are then
regenerated and the consumed ones skipped, so a resumed run computes the same losses and
weights as an uninterrupted one, and logs no step twice.

A failing rank writes `<output_dir>/failures/rank-<r>.json` (error and traceback) for the
launcher to report, and rank 0 ends the MLflow run FAILED.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from conf import Config, redact
from conf.paths import under_root
from conf.redact import remember_secrets
from training import tracking
from training.checkpoint import CheckpointManager
from training.data import Prefetcher, TokenizedSplit, batches, collate, resolve_manifest
from training.guards import degenerate_check, imbalance_warning
from training.metrics import MetricAccumulator, confusion_figure, metrics_from
from training.model import build_model

TRAIN, VALIDATION, TEST = "train", "validation", "test"
LOWER_IS_BETTER = {"loss"}
RESULT_FILE = "result.json"
FAILURES = "failures"
PROGRESS_PREFIX = "[lakebert train]"
PROGRESS_SECONDS = 5.0
MAX_INTERVALS = 10_000


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


def read_manifest(cfg: Config) -> tuple[Path, dict]:
    path = resolve_manifest(data_location(cfg))
    return path, json.loads(path.read_text())


def output_dir(cfg: Config, manifest: dict) -> Path:
    """`train.output_dir`, else a folder per job under the lakehouse: another config never
    resumes this job's checkpoints."""
    return Path(cfg.train.output_dir or under_root(cfg, f"train/{tracking.job_key(cfg, manifest)}"))


def _tokenizer(manifest: dict):
    """The `tokenizers` tokenizer that made the data (read once per run)."""
    from tokenizers import Tokenizer

    path = Path(manifest["tokenizer_path"])
    return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))


def _vocab(tok) -> tuple[int, int]:
    """(vocab size, pad id)."""
    pad = tok.token_to_id("[PAD]")
    return tok.get_vocab_size(), 0 if pad is None else pad


def _example_text(tok, split: TokenizedSplit) -> str:
    """A real input for the logged model's input example: the first validation row, decoded."""
    ids, _ = next(split.rows(shuffle=False), (None, None))
    return tok.decode(list(map(int, ids))) if ids is not None else "example text"


def _rank_rng(env: DistEnv) -> dict[str, torch.Tensor]:
    """Every rank's torch RNG state, gathered on all ranks (they are small)."""
    mine = torch.get_rng_state()
    if env.world_size == 1:
        return {"rank0": mine}
    states = [None] * env.world_size
    dist.all_gather_object(states, mine)
    return {f"rank{r}": s for r, s in enumerate(states)}


def _broadcast(env: DistEnv, value):
    """Rank 0's `value` on every rank; an exception on rank 0 is raised on every rank."""
    if env.world_size == 1:
        if isinstance(value, BaseException):
            raise value
        return value
    box = [value if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def evaluate(model, split: TokenizedSplit, env: DistEnv, batch_size: int, pad_id: int, num_labels: int) -> dict:
    model.eval()
    acc = MetricAccumulator(num_labels)
    with torch.no_grad():
        for batch in batches(split.rows(env.rank, env.world_size, shuffle=False), batch_size, pad_id):
            batch = {k: v.to(env.device) for k, v in batch.items()}
            with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=env.device.type == "cuda"):
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss_sum = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
            acc.update(logits, batch["labels"], loss_sum.double())
    model.train()
    return acc.compute()


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return True
    return new < best if metric in LOWER_IS_BETTER else new > best


def class_weights(label_counts: list[int], mode: str | None) -> torch.Tensor | None:
    """None: unweighted. `balanced`: n_rows / (n_labels * n_label_rows) over the train split's
    rows per label id, 0 for a label the train split lacks."""
    if mode is None:
        return None
    counts = torch.tensor(label_counts, dtype=torch.float32)
    weights = counts.sum() / (len(label_counts) * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def score_other_model(model, tokenizer, split: TokenizedSplit, our_tokenizer, label_map: dict[str, int],
                      same_tokenizer: bool, max_length: int, device: torch.device, batch_size: int) -> dict | None:
    """Metrics of another registered model (`transformers` components) on this run's split, in
    one process. Same tokenizer: the split's own ids. Another one: the rows are decoded with
    ours and re-encoded with its. None when its labels are not ours."""
    their = {str(label): int(i) for i, label in model.config.id2label.items()}
    if set(their) != set(label_map):
        return None
    order = [their[label] for label, _ in sorted(label_map.items(), key=lambda kv: kv[1])]  # our id -> theirs
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = list(split.rows(shuffle=False))
    if not same_tokenizer:
        texts = our_tokenizer.decode_batch([list(map(int, ids)) for ids, _ in rows], skip_special_tokens=True)
        encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        rows = [(ids, label) for ids, (_, label) in zip(encoded, rows)]
    confusion = torch.zeros(len(order), len(order), dtype=torch.long)
    loss_sum = 0.0
    model.to(device).eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start:start + batch_size], pad).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            logits = logits[:, order]  # columns in our label ids
            loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            index = batch["labels"] * len(order) + logits.argmax(dim=-1)
            confusion += torch.bincount(index.cpu(), minlength=len(order) ** 2).view(len(order), len(order))
    return metrics_from(confusion.numpy(), loss_sum, torch.zeros(0).numpy(), torch.zeros(0).numpy())


def champion_score_fn(cfg: Config, plan: tracking.RunPlan, manifest: dict, split: TokenizedSplit, our_tokenizer,
                      env: DistEnv):
    """How to score the current champion on this run's validation data (`tracking.champion_decision`).

    Trained on the same data: its own logged validation metric. Otherwise its model is loaded
    from the registry and evaluated here."""
    metric = cfg.train.select_metric

    def score(version) -> float | None:
        import mlflow

        run = tracking.store_client(plan.tracking_uri).get_run(version.run_id)
        logged = run.data.metrics.get(f"{VALIDATION}/{metric}")
        if run.data.tags.get(tracking.TAG_MANIFEST_HASH) == manifest.get("content_hash") and logged is not None:
            return logged
        components = mlflow.transformers.load_model(f"models:/{version.name}/{version.version}",
                                                    return_type="components")
        same = run.data.tags.get(tracking.TAG_TOKENIZER) == manifest.get("tokenizer_fingerprint")
        metrics = score_other_model(components["model"], components["tokenizer"], split, our_tokenizer,
                                    manifest["label_map"], same, manifest.get("max_length", 512), env.device,
                                    cfg.train.batch_size)
        return None if metrics is None else metrics[metric]

    return score


def _scalars(metrics: dict, prefix: str) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _write_failure(out_dir: Path, env: DistEnv, exc: BaseException) -> None:
    try:
        folder = out_dir / FAILURES
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank-{env.rank}.json").write_text(json.dumps({
            "rank": env.rank, "local_rank": env.local_rank, "host": socket.gethostname(), "pid": os.getpid(),
            "error": redact(f"{type(exc).__name__}: {exc}"), "traceback": redact(traceback.format_exc()[-8000:])}))
    except OSError:
        pass


class _Progress:
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


def _throughput(t: dict, device: torch.device) -> dict:
    """Real (non-pad) tokens per second of training, the padding fraction, the data wait, and
    the per-report intervals (summed over ranks; evaluation and checkpoints excluded)."""
    seconds = max(t["seconds"], 1e-9)
    out = {"tokens": int(t["tokens"]), "seconds": round(t["seconds"], 4), "steps": t["steps"],
           "tokens_per_s": t["tokens"] / seconds,
           "padding_fraction": 1 - t["tokens"] / max(t["padded_tokens"], 1.0),
           "data_wait_fraction": t["data_wait_seconds"] / seconds, "intervals": t["intervals"]}
    if device.type == "cuda":
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    return out


def register_comm_hook(ddp_model, tc) -> None:
    """Gradient compression for DDP's all-reduce, from `train.ddp_comm_hook`."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

    if tc.ddp_comm_hook == "fp16":
        ddp_model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif tc.ddp_comm_hook == "bf16":
        ddp_model.register_comm_hook(None, default_hooks.bf16_compress_hook)
    elif tc.ddp_comm_hook == "powersgd":
        state = powersgd.PowerSGDState(process_group=None, matrix_approximation_rank=tc.powersgd_rank,
                                       start_powerSGD_iter=tc.powersgd_start_step)
        ddp_model.register_comm_hook(state, powersgd.powerSGD_hook)


def _publish(cfg: Config, plan, tracker, model, tokenizer, manifest: dict, splits: dict, final: dict, check,
             names: list[str], step: int, out_dir: Path, env: DistEnv) -> tuple[dict | None, dict | None]:
    """Rank 0, after training: final metrics and confusion matrices, the guard's verdict, the
    model (registered), and the champion alias. -> (registered model, champion decision)."""
    for split, metrics in final.items():
        tracker.log_step(step, _scalars(metrics, split))
        tracker.log_dict({"labels": names, "matrix": metrics["confusion_matrix"]}, f"eval/confusion_matrix_{split}.json")
        figure = confusion_figure(metrics["confusion_matrix"], names, f"{split} (best checkpoint)")
        figure.savefig(out_dir / f"confusion_matrix_{split}.png")
        tracker.log_figure(figure, f"eval/confusion_matrix_{split}.png")
    tracker.log_step(step, _scalars(check.metrics(), VALIDATION))
    tracker.set_tags({tracking.TAG_DEGENERATE: str(check.degenerate).lower(),
                      tracking.TAG_DEGENERATE_REASON: "; ".join(check.reasons)[:5000] or "none"})
    registered = tracker.log_model(cfg, model, manifest["tokenizer_path"], manifest.get("max_length", 512),
                                   _example_text(tokenizer, splits[VALIDATION]))
    champion = tracker.promote(cfg, registered, final[VALIDATION][cfg.train.select_metric], check.degenerate,
                               champion_score_fn(cfg, plan, manifest, splits[VALIDATION], tokenizer, env))
    return registered, champion


def train(cfg: Config, plan: tracking.RunPlan | None = None, stop_after_steps: int | None = None) -> dict:
    """Train, evaluate, log to MLflow and return the result.

    `plan`: the job's MLflow run, as the launcher prepared it; None = rank 0 finds or creates
    it. `stop_after_steps` ends the run abruptly, as a crash would (tests)."""
    tc = cfg.train
    env = init_distributed(tc.use_gpu)
    out_dir = None
    tracker = tracking.NullTracker()
    try:
        manifest_path, manifest = read_manifest(cfg)
        out_dir = output_dir(cfg, manifest)
        if plan is None:
            try:
                plan = tracking.prepare_run(cfg, manifest, str(manifest_path)) if env.is_main else None
            except Exception as exc:  # every rank must learn of it, not only rank 0
                plan = exc
            plan = _broadcast(env, plan)
        if plan.status == tracking.UP_TO_DATE:
            return {"status": "up_to_date", "run_id": plan.run_id, "tracking_uri": plan.tracking_uri,
                    **tracking.finished_result(plan)}
        try:
            tracker = tracking.open_tracker(cfg, plan, env.is_main)
            opened = None
        except Exception as exc:
            opened = exc
        _broadcast(env, opened)  # a rank 0 that cannot log stops every rank, not only itself
        result = _train(cfg, env, plan, tracker, manifest_path, manifest, out_dir, stop_after_steps)
        tracker.finish("FINISHED")
        return result
    except BaseException as exc:
        if out_dir is not None and not isinstance(exc, KeyboardInterrupt):
            _write_failure(out_dir, env, exc)
        tracker.finish("FAILED")  # never left RUNNING, never FINISHED
        raise
    finally:
        if env.world_size > 1 and dist.is_initialized():
            try:
                dist.barrier()  # no rank tears gloo down while another still talks to it
            except Exception:
                pass  # a peer is gone already; tear down anyway
            finally:
                dist.destroy_process_group()


def _train(cfg: Config, env: DistEnv, plan: tracking.RunPlan, tracker, manifest_path: Path, manifest: dict,
           out_dir: Path, stop_after_steps: int | None) -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import get_linear_schedule_with_warmup

    tc = cfg.train
    started = time.perf_counter()
    splits = {s: TokenizedSplit.open(manifest_path, s) for s in (TRAIN, VALIDATION, TEST)}
    label_map = manifest["label_map"]
    num_labels = len(label_map)
    tokenizer = _tokenizer(manifest)
    vocab_size, pad_id = _vocab(tokenizer)
    train_counts = splits[TRAIN].label_counts(num_labels)
    weights = class_weights(train_counts, tc.class_weights)  # the counts are read once (a scan without stats)
    weights = weights.to(env.device) if weights is not None else None
    warnings = []
    names = [label for label, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    imbalance = imbalance_warning(dict(zip(names, train_counts)), tc.class_weights)
    if imbalance:
        warnings.append(imbalance)
    if env.is_main:
        tracker.set_tags({tracking.TAG_DEFAULTS: tc.defaults_kind})

    torch.manual_seed(tc.seed)  # the same initial weights on every rank
    model = build_model(tc.model, label_map, vocab_size).to(env.device)
    if tc.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name for it
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(tc.seed + 1 + env.rank)  # but different dropout masks per rank
    cuda = env.device.type == "cuda"
    wrapped = model
    if env.world_size > 1:
        wrapped = DDP(model, device_ids=[env.local_rank] if cuda else None, bucket_cap_mb=tc.ddp_bucket_cap_mb)
        register_comm_hook(wrapped, tc)
    if tc.compile:
        wrapped = torch.compile(wrapped, dynamic=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                  **({"fused": True} if cuda and tc.fused_adamw else {}))
    batches_per_epoch = math.ceil(splits[TRAIN].rank_rows(0, env.world_size) / tc.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / tc.grad_accum)
    total_steps = steps_per_epoch * tc.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * total_steps), total_steps)

    ckpt = CheckpointManager(out_dir / "checkpoints", tc.keep_last)
    best_ckpt = CheckpointManager(out_dir / "best", keep_last=1)
    if env.is_main:
        for manager in (ckpt, best_ckpt):
            if plan.status == tracking.NEW:  # a new run trains from scratch, so all its steps are in it
                shutil.rmtree(manager.root, ignore_errors=True)
            elif manager.latest() is None:  # resuming on a machine without them: take the run's copies
                tracking.fetch_checkpoints(plan, manager.root.name, manager.root, manager.is_complete)
    if env.world_size > 1:
        dist.barrier()
    step, epoch, batches_done, best = 0, 0, 0, None
    history: dict[str, list] = {"loss": [], "lr": [], "grad_norm": [], "eval": []}
    latest = ckpt.latest()
    if latest is not None:
        state = ckpt.load(latest, model, optimizer, scheduler, restore_rng=False)
        torch.set_rng_state(ckpt.load_tensors(latest)[f"rank{env.rank}"])
        step, epoch, batches_done, best = state["step"], state["epoch"], state["batches_done"], state["best"]
        history = state["history"]
        if env.is_main:
            print(f"{PROGRESS_PREFIX} resuming from {latest} (step {step}/{total_steps})", flush=True)

    pending: list[tuple] = []  # steps not yet reported: (step, lr, loss_sum, rows, tokens, grad_norm) tensors
    progress = _Progress(total_steps, step, tc.epochs)
    clock = {"since": time.perf_counter(), "wait": 0.0}
    # Training-only totals (evaluation and checkpoints excluded), summed over ranks.
    throughput = {"tokens": 0.0, "padded_tokens": 0.0, "seconds": 0.0, "data_wait_seconds": 0.0, "steps": 0,
                  "intervals": []}

    def report():
        """Sum the pending steps' loss, rows and tokens over ranks (one collective), log them."""
        if not pending:
            return
        stacked = torch.stack([torch.stack([p[2], p[3], p[4], p[6]]) for p in pending]).double()
        if env.world_size > 1:
            dist.all_reduce(stacked)
        norms = torch.stack([p[5] for p in pending]).tolist()
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - clock["since"], 1e-9)
        totals = stacked.sum(dim=0).tolist()
        tokens_per_s = totals[2] / elapsed
        wait_fraction = min(clock["wait"] / elapsed, 1.0)
        throughput["tokens"] += totals[2]
        throughput["padded_tokens"] += totals[3]
        throughput["seconds"] += elapsed
        throughput["data_wait_seconds"] += clock["wait"]
        throughput["steps"] += len(pending)
        if len(throughput["intervals"]) < MAX_INTERVALS:  # lets a benchmark drop the warm-up steps
            throughput["intervals"].append({"steps": len(pending), "tokens": totals[2], "seconds": elapsed,
                                            "data_wait_seconds": clock["wait"]})
        for (at, lr, *_), (loss_sum, rows, tokens, _padded), norm in zip(pending, stacked.tolist(), norms):
            loss = loss_sum / max(rows, 1.0)
            history["loss"].append(loss)
            history["lr"].append(lr)
            history["grad_norm"].append(norm)
            tracker.log_step(at, {"train/loss": loss, "train/lr": lr, "train/grad_norm": norm,
                                  "train/tokens_per_s": tokens_per_s, "train/data_wait_fraction": wait_fraction,
                                  "train/padding_fraction": 1 - tokens / max(_padded, 1.0), "train/epoch": epoch})
        if env.is_main:
            progress.update(pending[-1][0], epoch, history["loss"][-1], pending[-1][1], tokens_per_s)
        pending.clear()
        clock["since"], clock["wait"] = time.perf_counter(), 0.0

    def save(manager, at_epoch, at_batch):
        report()
        rng = _rank_rng(env)  # collective: every rank takes part
        if env.is_main:
            path = manager.save(step, model, optimizer, scheduler, tensors=rng, state={
                "epoch": at_epoch, "batches_done": at_batch, "best": best, "history": history})
            if cfg.mlflow.log_checkpoints:
                tracker.log_checkpoint(path)
        if env.world_size > 1:
            dist.barrier()
        clock["since"], clock["wait"] = time.perf_counter(), 0.0

    def validate() -> bool:
        nonlocal best
        report()
        metrics = evaluate(model, splits[VALIDATION], env, tc.batch_size, pad_id, num_labels)
        if tc.select_metric not in metrics:
            raise ValueError(f"train.select_metric={tc.select_metric!r} is not a metric "
                             f"(have: {', '.join(k for k in metrics if k != 'confusion_matrix')})")
        history["eval"].append({"step": step, **{k: v for k, v in metrics.items() if k != "confusion_matrix"}})
        tracker.log_step(step, _scalars(metrics, "eval"))
        improved = _better(tc.select_metric, metrics[tc.select_metric], best)
        if improved:
            best = metrics[tc.select_metric]
        clock["since"], clock["wait"] = time.perf_counter(), 0.0
        return improved

    dummy = {"input_ids": torch.tensor([[0, 0]]), "attention_mask": torch.tensor([[1, 1]]),
             "labels": torch.tensor([0])}
    zero = torch.zeros((), dtype=torch.float64, device=env.device)
    model.train()
    while epoch < tc.epochs:
        rows = splits[TRAIN].rows(env.rank, env.world_size, epoch, tc.seed)
        stream = batches(rows, tc.batch_size, pad_id, tc.bucket_batches, seed=tc.seed + epoch)
        if tc.prefetch_batches:
            stream = Prefetcher(stream, tc.prefetch_batches, pin_memory=cuda)
        loss_sum, n_rows, n_tokens, n_padded = zero.clone(), zero.clone(), zero.clone(), zero.clone()
        for index in range(batches_per_epoch):
            waited = time.perf_counter()
            batch = next(stream, None)
            clock["wait"] += time.perf_counter() - waited
            if index < batches_done:
                continue  # resuming: this micro-batch was already used
            weight = 1.0 if batch is not None else 0.0  # a zero-weight stand-in keeps ranks in step
            batch = {k: v.to(env.device, non_blocking=True) for k, v in (batch or dummy).items()}
            last_of_step = (index + 1) % tc.grad_accum == 0 or index + 1 == batches_per_epoch
            sync = nullcontext() if last_of_step or env.world_size == 1 else wrapped.no_sync()
            with sync:
                with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=env.device.type == "cuda"):
                    logits = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = F.cross_entropy(logits.float(), batch["labels"], weight=weights) * weight
                (loss / tc.grad_accum).backward()
            rows_here = len(batch["labels"]) * weight
            loss_sum += loss.detach().double() * rows_here
            n_rows += rows_here
            n_tokens += batch["attention_mask"].sum() * weight
            n_padded += batch["attention_mask"].numel() * weight
            if not last_of_step:
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            pending.append((step, scheduler.get_last_lr()[0], loss_sum, n_rows, n_tokens, grad_norm.detach().double(),
                            n_padded))
            loss_sum, n_rows, n_tokens, n_padded = zero.clone(), zero.clone(), zero.clone(), zero.clone()
            if step % tc.log_every == 0:
                report()
            if tc.eval_every and step % tc.eval_every == 0:
                validate()
            if tc.checkpoint_every and step % tc.checkpoint_every == 0 and index + 1 < batches_per_epoch:
                save(ckpt, epoch, index + 1)
            if stop_after_steps is not None and step >= stop_after_steps:
                report()
                raise SystemExit(f"stopped after step {step}")
        if isinstance(stream, Prefetcher):
            stream.close()
        report()
        if env.is_main:
            progress.show(force=True)
        epoch, batches_done = epoch + 1, 0
        if validate():
            save(best_ckpt, epoch, 0)
        save(ckpt, epoch, 0)

    best_path = best_ckpt.latest()
    best_ckpt.load(best_path, model, restore_rng=False)
    final = {split: evaluate(model, splits[split], env, tc.batch_size, pad_id, num_labels)
             for split in (VALIDATION, TEST)}
    # The guard: is the best checkpoint clearly better than always predicting train's largest class?
    check = degenerate_check(final[VALIDATION]["confusion_matrix"], int(torch.tensor(train_counts).argmax()),
                             tc.degenerate_margin, tc.degenerate_max_share)
    if check.degenerate:
        warnings.append(check.warning())
    outcome = None
    if env.is_main:
        try:
            outcome = _publish(cfg, plan, tracker, model, tokenizer, manifest, splits, final, check, names, step,
                               out_dir, env)
        except Exception as exc:  # every rank must learn of it, or they wait for rank 0 forever
            outcome = exc
    registered, champion = _broadcast(env, outcome)
    result = {
        "status": "done", "run_id": plan.run_id, "tracking_uri": plan.tracking_uri, "registered_model": registered,
        "champion": champion, "degenerate": check.degenerate, "warnings": warnings,
        "defaults": {"kind": tc.defaults_kind, "lr": tc.lr, "epochs": tc.epochs, "warmup_ratio": tc.warmup_ratio,
                     "weight_decay": tc.weight_decay},
        "metrics": final, "steps": step, "epochs": tc.epochs, "world_size": env.world_size,
        "best_checkpoint": str(best_path), "select_metric": tc.select_metric, "output_dir": str(out_dir),
        "data": {"manifest": str(manifest_path), "rows": manifest["rows"], "source": manifest.get("source"),
                 "content_hash": manifest.get("content_hash"),
                 "tokenizer_fingerprint": manifest.get("tokenizer_fingerprint")},
        "throughput": _throughput(throughput, env.device),
        "history": history,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if env.is_main:
        (out_dir / RESULT_FILE).write_text(json.dumps(redact(result, by_key=False), indent=2))
        tracker.log_dict({k: v for k, v in result.items() if k != "history"}, tracking.RESULT_ARTIFACT)
    return result


def train_job(config: dict, plan: dict | None = None) -> dict:
    """What TorchDistributor runs in every process: plain data in, rank 0's result out."""
    remember_secrets(config)  # this process did not load the config: hide its secrets here too
    result = train(Config.model_validate(config), tracking.RunPlan(**plan) if plan else None)
    return {k: v for k, v in result.items() if k != "history"} | {"losses": result.get("history", {}).get("loss")}
