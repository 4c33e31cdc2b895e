"""Tokenized Parquet for the training benchmarks, in `lakebert tokenize`'s layout, without Spark.

    from train_data import write_dataset      # in a script in bench/ (its folder is on sys.path)
    location = write_dataset(Path("bench/out-train/data"), train_rows=20000, max_length=128)

Documents are 1 to ~40 sentences of the sample corpus's four topics, with a lognormal number
of sentences (median 5, about 75 tokens), so lengths vary the way real text does: many short
rows, a long tail, and some truncated at max_length. A WordPiece tokenizer is trained on
them (vocab 8000). The result has train/validation/test splits, a manifest and LATEST, so the
training code reads it exactly as it reads the tokenize stage's output.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs.sample_data import LABELS, _sentence
from tokenization import Encoder, load_tokenizer, train_wordpiece
from tokenization.dataset import DATA_DIR, LATEST, MANIFEST


def document(rng: random.Random, label: str) -> str:
    sentences = max(1, min(40, round(math.exp(rng.gauss(math.log(5), 0.8)))))
    return " ".join(_sentence(rng, label) for _ in range(sentences))


def write_dataset(folder: Path, train_rows: int, max_length: int, eval_rows: int = 512, seed: int = 0,
                  vocab_size: int = 8000) -> Path:
    """Write (or reuse) the dataset under `folder`; returns the tokenized root (holding LATEST)."""
    key = f"rows{train_rows}-eval{eval_rows}-len{max_length}-seed{seed}"
    root = folder / "tokenized"
    if (root / key / MANIFEST).is_file():
        (root / LATEST).write_text(key)
        return root
    rng = random.Random(seed)
    tok_dir = folder / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        sample = [document(random.Random(i), LABELS[i % len(LABELS)]) for i in range(4000)]
        train_wordpiece(sample, tok_dir, vocab_size=vocab_size)
    encoder = Encoder(load_tokenizer(str(tok_dir)).to_str(), max_length)
    files, splits, total = {}, {}, 0
    for split, n in (("train", train_rows), ("validation", eval_rows), ("test", eval_rows)):
        labels = [rng.randrange(len(LABELS)) for _ in range(n)]
        ids, offsets, lengths, _ = encoder.encode([document(rng, LABELS[y]) for y in labels])
        table = pa.table({
            "doc_id": [f"{split}-{i:07d}" for i in range(n)],
            "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids)),
            "length": pa.array(lengths), "label": pa.array(labels, pa.int32()),
        })
        rel = f"{DATA_DIR}/split={split}/part-00000.parquet"
        (root / key / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / key / rel, row_group_size=8192)
        files[split] = [rel]
        counts = {str(i): labels.count(i) for i in range(len(LABELS))}
        splits[split] = {"rows": n, "tokens": int(sum(lengths)), "label_counts": counts}
        total += n
    manifest = {"format": "lakebert.tokenized/1", "rows": total, "files": files, "splits": splits,
                "tokenizer_path": str(tok_dir), "max_length": max_length,
                "label_map": {label: i for i, label in enumerate(LABELS)},
                "source": {"table": "bench/train_data.py", "delta_version": None},
                "content_hash": key, "tokenizer_fingerprint": key}
    (root / key / MANIFEST).write_text(json.dumps(manifest, indent=1))
    (root / LATEST).write_text(key)
    return root


def length_stats(root: Path, split: str = "train") -> dict:
    """Mean length and the padding a plain (unbucketed) batch of 32 would carry."""
    key = (root / LATEST).read_text().strip()
    lengths = pq.read_table(root / key / f"{DATA_DIR}/split={split}/part-00000.parquet", columns=["length"])
    values = lengths.column("length").to_pylist()
    return {"rows": len(values), "mean_length": sum(values) / len(values), "max_length": max(values)}
