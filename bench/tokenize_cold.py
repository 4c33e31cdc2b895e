"""`lakebert tokenize` as a user runs it (a fresh process each time) against raw `encode_batch_fast`
on the same texts, then an incremental run after a 1% append against a full run.

    .venv/bin/python bench/tokenize_cold.py                          # all three corpora
    .venv/bin/python bench/tokenize_cold.py --corpus docstrings --docs 120000 --runs 2

Corpora (each written as JSON lines: id, text, label):
  generated   the demo's generated sample (`spark_jobs.sample_data`), `--docs` documents;
  bbc         ../shared/data/bbc-text.csv, 1,249 real news articles (skipped when absent);
  docstrings  the docstrings of Python's standard library, then of the venv's packages up to
              `--docs` (real English and code text that every machine has).

For each corpus, `--append` (1%) of the documents, a seeded random sample, are held back: an
append of the same kind of text, which repeats some earlier rows' token ids as real appends do
(the leakage rule removes those copies in other splits). Not timed: ingest and
clean of the rest, one tokenize that trains the stage's WordPiece tokenizer, and a dump of
silver's texts. Then, interleaved `--runs` times:
  raw    `tokenizers` `encode_batch_fast` with truncation to max_length, all cores, the silver
         texts in memory, batches of 4,096 (this process);
  stage  `lakebert tokenize` into a fresh output folder, a new process (cold JVM and Python
         workers); its time is the summary's `seconds`: JVM start excluded, everything else in.
Then the held-back documents are ingested and cleaned, and, interleaved: an incremental
`lakebert tokenize` (the newest dataset plus the new rows) and a full one into a fresh folder;
their manifests' rows and content hashes must be equal. Prints one JSON line per corpus.
"""

from __future__ import annotations

import argparse
import ast
import csv
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BBC = REPO.parent / "shared" / "data" / "bbc-text.csv"
CORPORA = ("generated", "bbc", "docstrings")


def generated(n: int) -> list[dict]:
    from spark_jobs.sample_data import generate

    lines = [line for part in generate(n, 11, False).values() for line in part]
    return [json.loads(line) for line in lines]


def bbc(_: int) -> list[dict]:
    if not BBC.is_file():
        raise FileNotFoundError(f"{BBC} is absent (a user's clone has no ../shared)")
    with BBC.open(newline="", encoding="utf-8") as f:
        return [{"id": f"bbc-{i:05d}", "text": r["text"], "label": r["category"]} for i, r in enumerate(csv.DictReader(f))]


def docstrings(n: int) -> list[dict]:
    """Module, class and function docstrings (at least 20 characters) of the standard library in
    path order, then of site-packages while fewer than `n`: deterministic for one install."""
    paths = sysconfig.get_paths()
    docs: list[dict] = []
    for kind, root in (("std", Path(paths["stdlib"])), ("pkg", Path(paths["purelib"]))):
        for path in sorted(root.rglob("*.py")):
            if kind == "std" and "site-packages" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
            except (SyntaxError, ValueError, OSError):
                continue
            rel = path.relative_to(root)
            label = f"{kind}-{rel.parts[0] if len(rel.parts) > 1 else 'top'}".split(".")[0][:40]
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= 20:
                        docs.append({"id": f"{label}/{rel}:{getattr(node, 'lineno', 0)}", "text": doc[:4000],
                                     "label": label})
                        if len(docs) >= n:
                            return docs
    return docs


def lakebert(root: Path, stage: str, *overrides: str) -> dict:
    """One CLI run in a new process -> its JSON summary (the last line of stdout)."""
    args = [sys.executable, "-m", "spark_jobs.cli", stage, "--json", "--set", f"lakehouse.root={root}"]
    for o in overrides:
        args += ["--set", o]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"lakebert {stage} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def silver_texts(root: Path, dump: Path) -> list[str]:
    """Silver's texts, read by a short Spark process so this one never holds a JVM."""
    code = ("import sys; from conf import load_config; from spark_jobs.session import get_spark; "
            "from spark_jobs.tables import SILVER, resolve_table; "
            f"cfg = load_config(overrides=['lakehouse.root={root}']); spark = get_spark(cfg); "
            f"resolve_table(cfg, SILVER).read(spark).select('text').coalesce(1).write.mode('overwrite').parquet('{dump}')")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True)
    import pyarrow.parquet as pq

    return pq.read_table(dump).column("text").to_pylist()


def raw_seconds(tokenizer_json: Path, texts: list[str], max_length: int) -> float:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length)
    started = time.perf_counter()
    for i in range(0, len(texts), 4096):
        tok.encode_batch_fast(texts[i:i + 4096])
    return time.perf_counter() - started


def manifest_of(summary: dict):
    from tokenization.dataset import TokenizedDataset

    return TokenizedDataset.open(summary["manifest"]).manifest


def bench(corpus: str, args) -> dict:
    docs = globals()[corpus](args.docs)
    out = Path(args.out) / corpus
    shutil.rmtree(out, ignore_errors=True)
    (out / "source").mkdir(parents=True)
    held = set(random.Random(7).sample(range(len(docs)), max(1, round(len(docs) * args.append))))
    appended = [d for i, d in enumerate(docs) if i in held]
    docs = [d for i, d in enumerate(docs) if i not in held]
    (out / "source" / "part-0.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    root = out / "lakehouse"
    ingest = ["ingest.format=jsonl", "ingest.id_column=id", "ingest.label_column=label"]
    lakebert(root, "ingest", f"ingest.source={out / 'source' / 'part-0.jsonl'}", *ingest)
    lakebert(root, "clean")
    length = f"tokenize.max_length={args.max_length}"
    lakebert(root, "tokenize", length, "tokenize.output=tok-warmup")  # trains the tokenizer once
    texts = silver_texts(root, out / "texts.parquet")
    tokenizer = Path(glob.glob(str(root / "tokenizers" / "wordpiece-*"))[0]) / "tokenizer.json"

    raw, stage, summary = [], [], {}
    for i in range(args.runs):
        raw.append(raw_seconds(tokenizer, texts, args.max_length))
        summary = lakebert(root, "tokenize", length, f"tokenize.output=tok-cold-{i}")
        assert summary["status"] == "done" and summary["mode"] == "full", summary
        stage.append(summary["seconds"])

    # The append: the last full run's output folder gets the new rows, once per run.
    (out / "source" / "part-1.jsonl").write_text("".join(json.dumps(d) + "\n" for d in appended))
    lakebert(root, "ingest", f"ingest.source={out / 'source' / 'part-1.jsonl'}", *ingest)
    lakebert(root, "clean")
    base = root / f"tok-cold-{args.runs - 1}"
    base_key = (base / "LATEST").read_text()
    incremental, full = [], []
    for i in range(args.runs):
        for folder in base.iterdir():  # back to the dataset before the append
            if folder.is_dir() and folder.name != base_key:
                shutil.rmtree(folder)
        (base / "LATEST").write_text(base_key)
        inc = lakebert(root, "tokenize", length, f"tokenize.output={base.name}")
        assert inc["mode"] == "incremental", inc
        incremental.append(inc["seconds"])
        ref = lakebert(root, "tokenize", length, f"tokenize.output=tok-full-{i}")
        assert ref["mode"] == "full", ref
        full.append(ref["seconds"])
        a, b = manifest_of(inc), manifest_of(ref)
        assert (a.rows, a.content_hash, a.cross_split_duplicates) == \
            (b.rows, b.content_hash, b.cross_split_duplicates), "incremental != full"
    before = manifest_of({"manifest": str(base / base_key / "manifest.json")})

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "corpus": corpus, "docs": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)),
        "cores": os.cpu_count(), "max_length": args.max_length, "truncation_rate": summary["truncation_rate"],
        "raw_s": [round(x, 2) for x in raw], "stage_s": stage,
        "ratio_stage_over_raw": round(mean(raw) / mean(stage), 3),
        "appended_rows": inc["tokenized_rows"],
        # appended rows whose token ids an earlier row has in another split: removed, by the leakage rule
        "appended_rows_removed": sum(a.cross_split_duplicates.values()) - sum(before.cross_split_duplicates.values()),
        "incremental_s": incremental, "full_s": full,
        "incremental_over_full": round(mean(incremental) / mean(full), 3), "equal_to_full": True,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=[*CORPORA, "all"], default="all")
    parser.add_argument("--docs", type=int, default=120_000, help="generated and docstrings: how many")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--append", type=float, default=0.01, help="the share of documents appended at the end")
    parser.add_argument("--out", default="bench/out-tok-cold")
    args = parser.parse_args()
    for corpus in CORPORA if args.corpus == "all" else (args.corpus,):
        try:
            print(json.dumps(bench(corpus, args)), flush=True)
        except FileNotFoundError as exc:
            print(json.dumps({"corpus": corpus, "skipped": str(exc)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
