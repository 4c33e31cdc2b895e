"""ETL throughput: rows/s for ingest and clean on generated documents.

    .venv/bin/python bench/etl.py [--docs 100000] [--near-dedup] [--out bench/out]

Generates the sample corpus at the given size (about 400 characters a document, ~1% bad
rows), then times `ingest` and `clean` in one Spark session (local[*]), excluding JVM
start-up. Prints one JSON line; the figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from conf import load_config
from spark_jobs.clean import clean
from spark_jobs.ingest import ingest
from spark_jobs.sample_data import write_sample
from spark_jobs.session import get_spark


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--near-dedup", action="store_true")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    data = write_sample(out / "data", n_docs=args.docs, seed=7)
    gen_s = time.perf_counter() - t
    size_mb = sum(f.stat().st_size for f in data.iterdir()) / 1e6

    cfg = load_config(overrides=[f"lakehouse.root={out / 'lakehouse'}", f"ingest.source={data}", "ingest.id_column=id",
                                 f"clean.near_dedup.enabled={str(args.near_dedup).lower()}"])
    spark = get_spark(cfg)
    spark.range(1000).selectExpr("sum(id)").collect()  # JVM warm-up outside the timings

    t = time.perf_counter()
    ingested = ingest(spark, cfg, "bench-ingest")
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    cleaned = clean(spark, cfg, "bench-clean")
    clean_s = time.perf_counter() - t

    result = {
        "docs": args.docs, "input_mb": round(size_mb, 1), "cores": os.cpu_count(), "python": platform.python_version(),
        "spark": spark.version, "near_dedup": args.near_dedup, "generate_s": round(gen_s, 1),
        "ingest_rows": ingested["read"], "ingest_s": round(ingest_s, 1),
        "ingest_rows_per_s": round(ingested["read"] / ingest_s),
        "clean_rows": cleaned["input"], "clean_s": round(clean_s, 1),
        "clean_rows_per_s": round(cleaned["input"] / clean_s),
        "silver_rows": cleaned["output"], "duplicates": cleaned["duplicates_by_kind"],
        "quarantined": {"ingest": ingested["quarantined"], "clean": cleaned["quarantined"]},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
