"""Training throughput on GPUs: our loop against Hugging Face `Trainer`, MFU against the H200.

    python bench/train_gpu.py                          # every GPU here; BERT-base and DistilBERT at 128 and 512
    python bench/train_gpu.py --models bert-base --seqs 128 --steps 300 --batch-size 256
    python bench/train_gpu.py --cpu                    # the same code path on CPU (gloo, a small model)

Runs without Spark or Java: each measurement is a `torchrun --standalone` job (`python -m
training` for ours, this file's `--hf-worker` for Trainer) over `bench/train_data.py`'s
variable-length tokenized Parquet. Models are built from config (`preset:bert-base`,
`preset:distilbert-base`), so nothing is downloaded.

Reported per (model, sequence length), steady state (the first `--warmup-steps` excluded):
real (non-pad) tokens/s, MFU = tokens/s x FLOPs per token / (GPUs x 790 TFLOP/s), where FLOPs
per token = 6 N (non-embedding parameters) + 12 L H s (the issue's estimate: 524 M for
BERT-base at s=128), the data-wait fraction, peak GPU memory, the padding fraction, and the
ratio to Trainer (bf16, fused AdamW, the default random sampler with DataCollatorWithPadding)
on the same data, batch and steps. Also the loss after the run for ours and Trainer, to show
the speed-ups do not change the result. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

H200_BF16_FLOPS = 790e12
REPO = Path(__file__).resolve().parent.parent


def flops_per_token(model_preset: str, seq: int, vocab_size: int) -> tuple[float, int]:
    """(6 N + 12 L H s, N) for the preset's architecture."""
    from training.model import build_model, non_embedding_parameters

    model = build_model(f"preset:{model_preset}", {"a": 0, "b": 1}, vocab_size)
    cfg = model.config
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layers
    hidden = getattr(cfg, "hidden_size", None) or cfg.dim
    n = non_embedding_parameters(model)
    return 6 * n + 12 * layers * hidden * seq, n


def steady(intervals: list[dict], warmup_steps: int) -> dict:
    """Tokens/s and data-wait fraction over the intervals after the first `warmup_steps` steps."""
    done, tokens, seconds, wait = 0, 0.0, 0.0, 0.0
    for interval in intervals:
        if done >= warmup_steps:
            tokens += interval["tokens"]
            seconds += interval["seconds"]
            wait += interval["data_wait_seconds"]
        done += interval["steps"]
    if seconds == 0:  # too few steps to drop any: use them all
        return steady(intervals, 0) if warmup_steps else {"tokens_per_s": 0.0, "data_wait_fraction": 0.0}
    return {"tokens_per_s": tokens / seconds, "data_wait_fraction": wait / seconds}


def torchrun(nproc: int, args: list[str], env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def run_ours(opts, data: Path, work: Path, model: str, seq: int, env: dict) -> dict:
    from training.result import TrainResult

    out = Path(tempfile.mkdtemp(prefix=f"ours-{model}-{seq}-", dir=work))
    sets = [f"lakehouse.root={out}", f"train.data={data}", f"train.output_dir={out / 'train'}",
            f"train.model=preset:{model}", "train.epochs=1", f"train.batch_size={opts.batch_size}",
            f"train.lr={opts.lr}", "train.warmup_ratio=0.1", f"train.log_every={opts.log_every}",
            f"train.use_gpu={'false' if opts.cpu else 'true'}", f"train.compile={str(opts.compile).lower()}",
            f"train.bucket_batches={opts.bucket_batches}", f"tokenize.max_length={seq}",
            "mlflow.system_metrics=false", "mlflow.registered_model=null", "mlflow.log_model=false", "mlflow.log_checkpoints=false",
            f"mlflow.tracking_uri=sqlite:///{out / 'mlflow.db'}"]
    if opts.comm_hook:
        sets.append(f"train.ddp_comm_hook={opts.comm_hook}")
    torchrun(opts.nproc, ["-m", "training", *[x for s in sets for x in ("--set", s)]], env)
    result = TrainResult.from_json((out / "train" / "result.json").read_text())
    t = result.throughput
    return {**steady(t["intervals"], opts.warmup_steps), "padding_fraction": t["padding_fraction"],
            "peak_memory_bytes": t.get("peak_memory_bytes"), "steps": result.steps,
            "final_loss": sum(result.history["loss"][-10:]) / len(result.history["loss"][-10:])}


def run_hf(opts, data: Path, work: Path, model: str, seq: int, env: dict) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"hf-{model}-{seq}-", dir=work))
    args = [str(Path(__file__).resolve()), "--hf-worker", "--data", str(data), "--work", str(out),
            "--worker-model", model, "--batch-size", str(opts.batch_size), "--steps", str(opts.steps),
            "--lr", str(opts.lr), "--warmup-steps", str(opts.warmup_steps), "--log-every", str(opts.log_every)]
    if opts.cpu:
        args.append("--cpu")
    if opts.compile:
        args.append("--compile")
    torchrun(opts.nproc, args, env)
    return json.loads((out / "hf-result.json").read_text())


def hf_worker(opts) -> None:
    """One Trainer process under torchrun: Trainer handles DDP itself from the env."""
    import pyarrow.parquet as pq
    import torch
    from transformers import (AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback,
                              TrainingArguments)

    from tokenization.dataset import TokenizedDataset
    from training.model import build_model

    dataset = TokenizedDataset.open(opts.data)  # a local dataset
    table = pq.read_table(dataset.files("train")[0], columns=["input_ids", "label"])
    rows = [{"input_ids": ids, "labels": y} for ids, y in
            zip(table.column("input_ids").to_pylist(), table.column("label").to_pylist())]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows = rows[:opts.steps * opts.batch_size * world]
    lengths = [len(r["input_ids"]) for r in rows]
    tokens_per_step = sum(lengths) / opts.steps  # every row is used once in the one epoch
    tokenizer = AutoTokenizer.from_pretrained(dataset.manifest.tokenizer_path)
    marks = {}

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (opts.warmup_steps, opts.steps):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

    torch.manual_seed(7)
    model = build_model(f"preset:{opts.worker_model}", dataset.manifest.label_map, len(tokenizer))
    args = TrainingArguments(
        output_dir=str(opts.work), per_device_train_batch_size=opts.batch_size, max_steps=opts.steps,
        learning_rate=opts.lr, warmup_steps=int(0.1 * opts.steps), lr_scheduler_type="linear",
        logging_steps=opts.log_every, save_strategy="no", eval_strategy="no", report_to="none",
        use_cpu=opts.cpu, bf16=not opts.cpu, optim="adamw_torch" if opts.cpu else "adamw_torch_fused",
        dataloader_num_workers=2, dataloader_pin_memory=not opts.cpu, seed=7, disable_tqdm=True,
        torch_compile=opts.compile, ddp_find_unused_parameters=False)
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.add_callback(Timer())
    trainer.train()
    if int(os.environ.get("RANK", "0")) == 0:
        seconds = marks[opts.steps] - marks.get(opts.warmup_steps, marks[opts.steps])
        steps = opts.steps - opts.warmup_steps
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        Path(opts.work).mkdir(parents=True, exist_ok=True)
        (Path(opts.work) / "hf-result.json").write_text(json.dumps({
            "tokens_per_s": tokens_per_step * steps / seconds if seconds > 0 else 0.0,
            "peak_memory_bytes": peak, "final_loss": losses[-1] if losses else None}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert-base,distilbert-base")
    parser.add_argument("--seqs", default="128,512")
    parser.add_argument("--nproc", type=int, default=None, help="processes (default: every GPU; 1 with --cpu)")
    parser.add_argument("--batch-size", type=int, default=None, help="per process (default 256 / 64 at seq 512)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--bucket-batches", type=int, default=16)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--comm-hook", default=None, choices=["fp16", "bf16", "powersgd"])
    parser.add_argument("--no-hf", action="store_true", help="skip the Trainer runs")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (gloo), e.g. to test this script")
    parser.add_argument("--out", default=None)
    # internal: one Trainer process
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--worker-model", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if opts.hf_worker:
        opts.batch_size = opts.batch_size or 32
        hf_worker(opts)
        return 0

    import torch

    gpus = torch.cuda.device_count()
    if not opts.cpu and gpus == 0:
        print("no GPU: run with --cpu to exercise this benchmark on CPU", file=sys.stderr)
        return 2
    opts.nproc = opts.nproc or (1 if opts.cpu else gpus)
    work = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="lakebert-bench-gpu-"))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1" if opts.cpu else "4")}
    results, default_batch = [], opts.batch_size
    for seq in [int(s) for s in opts.seqs.split(",")]:
        opts.batch_size = default_batch or (256 if seq <= 128 else 64)
        data = write_data(work, opts, seq)
        for model in opts.models.split(","):
            flops, n = flops_per_token(model, seq, vocab_size=8000)
            ours = run_ours(opts, data, work, model, seq, env)
            row = {"model": model, "seq": seq, "batch_size_per_process": opts.batch_size, "processes": opts.nproc,
                   "non_embedding_params": n, "flops_per_token": flops, "ours": ours,
                   "ours_mfu": ours["tokens_per_s"] * flops / (opts.nproc * H200_BF16_FLOPS)}
            if not opts.no_hf:
                hf = run_hf(opts, data, work, model, seq, env)
                row["hf"] = hf
                row["hf_mfu"] = hf["tokens_per_s"] * flops / (opts.nproc * H200_BF16_FLOPS)
                row["ratio_vs_hf_trainer"] = ours["tokens_per_s"] / hf["tokens_per_s"] if hf["tokens_per_s"] else None
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    device = "cpu" if opts.cpu else torch.cuda.get_device_name(0)
    print(json.dumps({"device": device, "processes": opts.nproc, "steps": opts.steps,
                      "warmup_steps": opts.warmup_steps, "peak_flops_per_device": H200_BF16_FLOPS,
                      "compile": opts.compile, "comm_hook": opts.comm_hook, "results": results}), flush=True)
    return 0


def write_data(work: Path, opts, seq: int) -> Path:
    from train_data import write_dataset  # beside this script, which Python puts on sys.path

    rows = opts.steps * opts.batch_size * opts.nproc
    return write_dataset(work / f"data-{seq}", train_rows=rows, max_length=seq, eval_rows=min(512, rows))


if __name__ == "__main__":
    sys.exit(main())
