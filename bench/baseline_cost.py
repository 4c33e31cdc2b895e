"""What the linear baseline (training.baseline) costs a training run, by train split size.

    .venv/bin/python bench/baseline_cost.py                            # 1,000 / 10,000 / 50,000 / 200,000 train rows
    .venv/bin/python bench/baseline_cost.py --rows 5000,100000 --corpus sample

Builds a tokenized dataset in `lakebert tokenize`'s layout (Parquet row groups of 10,000 rows,
the default WordPiece vocabulary of 8,000 and max_length 128, validation and test a tenth of
train each) without Spark, then times `check_against_baseline` as rank 0 runs it at the end of
a training: read the train split (sampled down to `train.baseline_max_rows`, 50,000 by
default), fit TF-IDF + logistic regression, score validation and test. The first call in the
process, which pays scikit-learn's import, is timed apart.

Corpora: `bbc` (default) remixes the sentences of the real BBC News articles
(../shared/data/bbc-text.csv): each document is 20 sentences drawn from articles of one class,
so the vocabulary is real text's; `sample` is `spark_jobs/sample_data.py`'s generated topics
(a few thousand distinct n-grams: the cheap case). Prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BBC = REPO.parent / "shared" / "data" / "bbc-text.csv"
ROW_GROUP = 10_000


def documents(corpus: str, n: int, seed: int) -> tuple[list[str], list[int], list[str]]:
    rng = random.Random(seed)
    if corpus == "sample":
        from spark_jobs.sample_data import LABELS, make_document

        labels = [rng.randrange(len(LABELS)) for _ in range(n)]
        return [make_document(rng, LABELS[y]) for y in labels], labels, list(LABELS)
    if not BBC.is_file():
        sys.exit(f"no BBC data at {BBC}; use --corpus sample")
    sentences: dict[str, list[str]] = {}
    with BBC.open(newline="") as f:
        for row in csv.DictReader(f):
            sentences.setdefault(row["category"], []).extend(s for s in re.split(r"(?<=\.)\s+", row["text"]) if s)
    names = sorted(sentences)
    labels = [rng.randrange(len(names)) for _ in range(n)]
    return [" ".join(rng.choices(sentences[names[y]], k=20)) for y in labels], labels, names


def write_dataset(root: Path, corpus: str, train_rows: int) -> tuple[dict, list[str], int]:
    """The splits as tokenized Parquet (train, then validation and test a tenth of it each)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenization import Encoder, load_tokenizer, train_wordpiece
    from training.data import TokenizedSplit

    texts, labels, names = documents(corpus, train_rows + 2 * (train_rows // 10), seed=7)
    tokenizer = train_wordpiece(texts[:20_000], root / "tokenizer", vocab_size=8000)
    encoder = Encoder(load_tokenizer(str(tokenizer)).to_str(), 128)
    bounds = {"train": (0, train_rows), "validation": (train_rows, train_rows + train_rows // 10),
              "test": (train_rows + train_rows // 10, len(texts))}
    files = {}
    for split, (low, high) in bounds.items():
        ids, offsets, lengths, _ = encoder.encode(texts[low:high])
        table = pa.table({"input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids)),
                          "label": pa.array(labels[low:high], pa.int32())})
        path = root / "data" / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=ROW_GROUP)
        files[split] = [f"data/{split}.parquet"]
    (root / "manifest.json").write_text(json.dumps({"files": files}))
    return {s: TokenizedSplit.open(root / "manifest.json", s) for s in files}, names, 8000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="1000,10000,50000,200000",
                        type=lambda v: [int(x) for x in v.split(",")], help="train rows, comma-separated")
    parser.add_argument("--corpus", choices=("bbc", "sample"), default="bbc")
    args = parser.parse_args()

    from conf import load_config
    from training.baseline import check_against_baseline

    tc = load_config().train
    model = {"validation": {"f1_macro": 0.5}, "test": {"f1_macro": 0.5}}
    with tempfile.TemporaryDirectory(prefix="lakebert-baseline-bench-") as tmp:
        warm, names, vocab = write_dataset(Path(tmp) / "warm", args.corpus, 500)
        started = time.perf_counter()
        check_against_baseline(warm, names, vocab, model, tc)
        print(json.dumps({"first_call_in_process_s": round(time.perf_counter() - started, 2)}), flush=True)
        for rows in args.rows:
            splits, names, vocab = write_dataset(Path(tmp) / str(rows), args.corpus, rows)
            started = time.perf_counter()
            check = check_against_baseline(splits, names, vocab, model, tc)
            seconds = time.perf_counter() - started
            print(json.dumps({"corpus": args.corpus, "train_split_rows": rows,
                              "fitted_on": check.summary["train_rows"], "features": check.summary["features"],
                              "validation_rows": check.summary["validation"]["examples"],
                              "validation_f1_macro": round(check.summary["validation"]["f1_macro"], 4),
                              "seconds": round(seconds, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
