"""Training throughput on CPU: our training loop against Hugging Face `Trainer`, side by side.

    .venv/bin/python bench/train_cpu.py [--steps 40] [--batch-size 32] [--rounds 2] [--out bench/out-train]

Both sides get the same small BERT (`preset:small`: 4 layers, hidden 256, the same initial
weights from the same seed), the same rows (one epoch of steps x batch-size rows of
`bench/train_data.py`'s variable-length data, max_length 128), the same batch size, step
count, AdamW settings, warmup and clipping, one process and the same torch threads.

- ours: `training.train.train` as `lakebert train` runs it (length bucketing, prefetching);
  its training-only time and real-token count come from its own accounting, with evaluation,
  checkpoints and MLflow excluded.
- peer: `transformers.Trainer` as a notebook would set it up: `DataCollatorWithPadding`, the
  default random sampler, no evaluation, no saving. Time from `on_train_begin` to
  `on_train_end`; real tokens counted in the collator.

Rounds alternate ours/peer; each side's best round counts. Variants run once, to show where
the speed comes from and that no optimisation changes the result: ours without bucketing,
ours without prefetching (the same batches, so the same losses bitwise), and `Trainer` with
`train_sampling_strategy="group_by_length"`. Prints one JSON line: ours_tokens_per_s, hf_tokens_per_s,
ratio_vs_hf_trainer, and per-run padding fractions and final losses (mean of the last 10
steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from conf import load_config
from train_data import length_stats, write_dataset  # beside this script, which Python puts on sys.path

MODEL = "preset:small"
LR, WEIGHT_DECAY, WARMUP_RATIO, MAX_GRAD_NORM, SEED = 5e-4, 0.01, 0.1, 1.0, 7


def run_ours(data: Path, out: Path, steps: int, batch_size: int, label: str, *overrides: str) -> dict:
    from training.train import train

    # A new folder (and MLflow store) per run: MLflow keeps its sqlite connections open, so a
    # deleted and re-created store would still show the previous run, which is then up to date.
    folder = Path(tempfile.mkdtemp(prefix=f"ours-{label}-", dir=out))
    cfg = load_config(overrides=[
        f"lakehouse.root={folder}", f"train.data={data}", f"train.model={MODEL}", "train.epochs=1",
        f"train.batch_size={batch_size}", f"train.lr={LR}", f"train.weight_decay={WEIGHT_DECAY}",
        f"train.warmup_ratio={WARMUP_RATIO}", f"train.max_grad_norm={MAX_GRAD_NORM}", f"train.seed={SEED}",
        "train.log_every=10", "mlflow.system_metrics=false", "mlflow.registered_model=null", "mlflow.log_model=false",
        "mlflow.log_checkpoints=false", *overrides])
    result = train(cfg)
    assert result.steps == steps, result.steps
    t = result.throughput
    return {"tokens_per_s": t["tokens_per_s"], "tokens": t["tokens"], "seconds": t["seconds"],
            "padding_fraction": t["padding_fraction"], "data_wait_fraction": t["data_wait_fraction"],
            "final_loss": statistics.fmean(result.history["loss"][-10:]), "losses": result.history["loss"]}


def run_hf(data: Path, out: Path, steps: int, batch_size: int, group_by_length: bool = False) -> dict:
    import pyarrow.parquet as pq
    from transformers import (AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback,
                              TrainingArguments)

    from tokenization.dataset import TokenizedDataset
    from training.model import build_model

    dataset = TokenizedDataset.open(data)  # a local dataset
    table = pq.read_table(dataset.files("train")[0], columns=["input_ids", "label"])
    rows = [{"input_ids": ids, "labels": y} for ids, y in
            zip(table.column("input_ids").to_pylist(), table.column("label").to_pylist())][:steps * batch_size]
    tokenizer = AutoTokenizer.from_pretrained(dataset.manifest.tokenizer_path)
    padder = DataCollatorWithPadding(tokenizer)
    counted = {"tokens": 0, "padded": 0}

    def collate(features):
        batch = padder(features)
        counted["tokens"] += int(batch["attention_mask"].sum())
        counted["padded"] += batch["attention_mask"].numel()
        return batch

    clock = {}

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            clock["end"] = time.perf_counter()

    torch.manual_seed(SEED)
    vocab = len(tokenizer)
    model = build_model(MODEL, dataset.manifest.label_map, vocab)
    args = TrainingArguments(
        output_dir=str(out / "hf"), per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=LR,
        weight_decay=WEIGHT_DECAY, warmup_steps=int(WARMUP_RATIO * steps), lr_scheduler_type="linear",
        max_grad_norm=MAX_GRAD_NORM, logging_steps=min(10, steps), save_strategy="no", eval_strategy="no", report_to="none",
        use_cpu=True, dataloader_num_workers=0, seed=SEED, disable_tqdm=True,
        train_sampling_strategy="group_by_length" if group_by_length else "random")
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Timer()])
    trainer.train()
    seconds = clock["end"] - clock["start"]
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"tokens_per_s": counted["tokens"] / seconds, "tokens": counted["tokens"], "seconds": seconds,
            "padding_fraction": 1 - counted["tokens"] / counted["padded"], "final_loss": losses[-1]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lakebert-bench-train-"))
    rows = args.steps * args.batch_size
    # Evaluation is outside both sides' timed training; a short run does not need 2 x 512 rows of it.
    data = write_dataset(out / "data", train_rows=rows, max_length=128, eval_rows=min(512, rows))

    ours, hf = [], []
    for _ in range(args.rounds):
        ours.append(run_ours(data, out, args.steps, args.batch_size, "default"))
        hf.append(run_hf(data, out, args.steps, args.batch_size))
    best_ours = max(ours, key=lambda r: r["tokens_per_s"])
    best_hf = max(hf, key=lambda r: r["tokens_per_s"])
    variants = {}
    if args.variants:
        variants["ours_no_bucketing"] = run_ours(data, out, args.steps, args.batch_size, "nobucket",
                                                 "train.bucket_batches=0")
        no_prefetch = run_ours(data, out, args.steps, args.batch_size, "noprefetch", "train.prefetch_batches=0")
        no_prefetch["same_losses_as_default"] = no_prefetch["losses"] == best_ours["losses"]
        variants["ours_no_prefetch"] = no_prefetch
        variants["hf_group_by_length"] = run_hf(data, out, args.steps, args.batch_size, group_by_length=True)

    def strip(r):
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "losses"}

    summary = {
        "model": MODEL, "steps": args.steps, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
        "data": length_stats(data),
        "ours_tokens_per_s": round(best_ours["tokens_per_s"], 1),
        "hf_tokens_per_s": round(best_hf["tokens_per_s"], 1),
        "ratio_vs_hf_trainer": round(best_ours["tokens_per_s"] / best_hf["tokens_per_s"], 3),
        "ours": strip(best_ours), "hf": strip(best_hf),
        "rounds": {"ours_tokens_per_s": [round(r["tokens_per_s"], 1) for r in ours],
                   "hf_tokens_per_s": [round(r["tokens_per_s"], 1) for r in hf]},
        "variants": {name: strip(r) for name, r in variants.items()},
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
