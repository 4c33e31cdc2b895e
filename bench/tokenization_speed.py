"""Tokenization throughput: our Spark stage against raw `tokenizers` and `datasets.map`, in one run.

    .venv/bin/python bench/tokenization_speed.py [--docs 100000] [--max-length 128] [--out bench/out-tok]

Builds silver from the generated corpus (not timed), trains one WordPiece tokenizer on it (not
timed), then measures on the same silver texts, tokenizer and settings (truncation to
max_length, special tokens added):
  (a) the limit: `tokenizers` batch encoding on all cores, texts in memory, no I/O;
  (b) the peer:  Hugging Face `datasets.map(batched=True)` with the fast tokenizer, the better of
                 num_proc None and 2;
  (c) our stage: `spark_jobs.tokenize_silver.tokenize`, silver Delta -> Parquet + manifest, JVM
                 start-up excluded, read and write included.
Prints one JSON line with docs/s and the ratios c/a and c/b.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from conf import load_config
from spark_jobs.clean import clean
from spark_jobs.ingest import ingest
from spark_jobs.sample_data import write_sample
from spark_jobs.session import get_spark
from spark_jobs.tables import SILVER, resolve_table
from spark_jobs.tokenize_silver import tokenize
from tokenization import load_tokenizer, train_wordpiece


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def raw_tokenizers(tok_dir: str, texts: list[str], max_length: int) -> dict[str, float]:
    tok = load_tokenizer(tok_dir).backend
    tok.enable_truncation(max_length)
    return {
        "encode_batch_fast": best_of(2, lambda: tok.encode_batch_fast(texts)),
        "encode_batch": best_of(2, lambda: tok.encode_batch(texts)),
    }


def datasets_map(tok_dir: str, texts: list[str], max_length: int) -> dict[str, float]:
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_caching()
    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    ds = datasets.Dataset.from_dict({"text": texts})

    def fn(batch):
        return tok(batch["text"], truncation=True, max_length=max_length)

    out = {}
    for num_proc in (None, 2):
        out[f"num_proc={num_proc}"] = best_of(1, lambda n=num_proc: ds.map(fn, batched=True, num_proc=n,
                                                               remove_columns=["text"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default="bench/out-tok")
    args = parser.parse_args()

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    data = write_sample(out / "data", n_docs=args.docs, seed=11, bad_rows=False)
    base = [f"lakehouse.root={out / 'lakehouse'}", f"ingest.source={data}", "ingest.id_column=id"]
    cfg = load_config(overrides=base)
    spark = get_spark(cfg)
    ingest(spark, cfg, "bench")
    clean(spark, cfg, "bench")
    silver = resolve_table(cfg, SILVER).read(spark)
    texts = [r.text for r in silver.select("text").orderBy("doc_id").collect()]
    tok_dir = str(train_wordpiece(texts, out / "tokenizer", vocab_size=8000))
    chars = sum(map(len, texts))

    a = raw_tokenizers(tok_dir, texts, args.max_length)
    b = datasets_map(tok_dir, texts, args.max_length)
    stage_cfg = load_config(overrides=[*base, f"tokenize.tokenizer={tok_dir}", f"tokenize.max_length={args.max_length}"])
    spark.range(1000).selectExpr("sum(id)").collect()  # warm
    c_runs = []
    for i in range(2):  # a fresh output folder each time: the second run must not be a no-op
        stage_cfg = load_config(overrides=[*base, f"tokenize.tokenizer={tok_dir}",
                                           f"tokenize.max_length={args.max_length}", f"tokenize.output=tok-run{i}"])
        t = time.perf_counter()
        summary = tokenize(spark, stage_cfg, f"bench-{i}")
        c_runs.append(time.perf_counter() - t)
        assert summary["status"] == "done" and summary["rows"] == len(texts)
    c = min(c_runs)

    n = len(texts)
    limit = min(a.values())
    peer = min(b.values())
    result = {
        "docs": n, "mean_chars": round(chars / n), "cores": os.cpu_count(), "max_length": args.max_length,
        "truncation_rate": summary["truncation_rate"],
        "a_raw_tokenizers_docs_per_s": {k: round(n / v) for k, v in a.items()},
        "b_datasets_map_docs_per_s": {k: round(n / v) for k, v in b.items()},
        "c_stage_docs_per_s": round(n / c), "c_stage_seconds": [round(x, 2) for x in c_runs],
        "ratio_c_over_a": round(limit / c, 3),
        "ratio_c_over_b": round(peer / c, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
