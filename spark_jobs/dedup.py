"""Exact and near deduplication of normalized documents: clean's pure DataFrame transforms.

    from spark_jobs.dedup import deduplicate_documents
    marked = deduplicate_documents(normalized, existing_silver, cfg.clean)   # `duplicate`: null, exact, near

The exact key is the normalized text with whitespace collapsed, case-folded when the tokenizer
lowercases (`clean.dedup_key`); near duplicates are found with MinHash LSH over word shingles
(`clean.near_dedup`). Rows already in silver are always earlier, and never removed; among new
rows the earliest (`ingested_at`, then `doc_id`) is kept.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from conf import Config
from conf.schema import AUTO_TOKENIZER, TRAIN_TOKENIZER
from spark_jobs.filters import DROP_REASON, DropReason
from spark_jobs.normalize import collapse_whitespace

EXACT, NEAR = "exact", "near"
DUPLICATE = "duplicate"  # column: null, EXACT or NEAR


def dedup_hash(text: Column, casefold: bool) -> Column:
    """sha256 of the exact-dedup key: the text with whitespace collapsed, case-folded if asked."""
    key = collapse_whitespace(F.coalesce(text, F.lit("")))
    return F.sha2(F.lower(key) if casefold else key, 256)


def _earliest_first(existing_first: Column) -> list[Column]:
    return [existing_first.desc(), F.col("ingested_at").asc_nulls_last(), F.col("doc_id").asc()]


def mark_exact_duplicates(docs: DataFrame, existing: DataFrame) -> DataFrame:
    """Set `drop_reason=label_conflict` or `duplicate=exact` on rows of `docs` that still pass.

    `existing` holds silver rows (`doc_id`, `text_hash`, `label`, `ingested_at`) that are
    not in `docs`; they are always earlier, and never removed.
    """
    keys = ["doc_id", "text_hash", "label", "ingested_at"]
    passing = docs.where(F.col(DROP_REASON).isNull())
    pool = passing.select(*keys, F.lit(False).alias("_existing")).unionByName(
        existing.select(*keys, F.lit(True).alias("_existing")))
    by_hash = Window.partitionBy("text_hash")
    ranked = pool.select(
        "doc_id", "_existing",
        (F.size(F.collect_set("label").over(by_hash)) > 1).alias("_conflict"),
        F.row_number().over(by_hash.orderBy(*_earliest_first(F.col("_existing")))).alias("_rank"),
    ).where(~F.col("_existing")).drop("_existing")
    marked = docs.join(ranked, "doc_id", "left")
    return marked.select(
        *[c for c in docs.columns if c != DROP_REASON],
        F.when(F.col("_conflict"), F.lit(DropReason.LABEL_CONFLICT)).otherwise(F.col(DROP_REASON)).alias(DROP_REASON),
        F.when(~F.col("_conflict") & (F.col("_rank") > 1), F.lit(EXACT)).alias(DUPLICATE),
    )


def find_near_duplicates(docs: DataFrame, existing: DataFrame, nd_cfg) -> DataFrame:
    """doc_ids of `docs` rows with a near-duplicate that is earlier (in `existing` or `docs`).

    Near-duplicate: the Jaccard similarity of the two texts' sets of word `shingle_size`-grams
    is at least `threshold`. Spark ML hashes the shingles and computes `bands * rows_per_band`
    MinHashes; texts that agree on every MinHash of some band become candidates. (Spark's own
    `approxSimilarityJoin` buckets on single MinHashes, which on templated text puts most rows
    in a few huge buckets; bands of several rows keep buckets small.) Candidates are then
    checked with the exact Jaccard similarity of their shingle sets. Texts shorter than one
    shingle take no part, and existing silver rows are re-hashed on each run.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import HashingTF, MinHashLSH, NGram, RegexTokenizer
    from pyspark.ml.functions import vector_to_array

    cols = ["doc_id", "text", "ingested_at"]
    pool = docs.select(*cols, F.lit(False).alias("_existing")).unionByName(
        existing.select(*cols, F.lit(True).alias("_existing")))
    n_hashes = nd_cfg.bands * nd_cfg.rows_per_band
    shingled = Pipeline(stages=[
        RegexTokenizer(inputCol="text", outputCol="_tokens", pattern=r"\W+", toLowercase=True),
        NGram(n=nd_cfg.shingle_size, inputCol="_tokens", outputCol="_shingles"),
        HashingTF(inputCol="_shingles", outputCol="_features", numFeatures=nd_cfg.num_features, binary=True),
    ]).fit(pool).transform(pool).where(F.size("_shingles") > 0)
    signed = MinHashLSH(inputCol="_features", outputCol="_hashes", numHashTables=n_hashes, seed=17) \
        .fit(shingled).transform(shingled)
    # Two projections, so the MinHashes are computed once per row, not once per band.
    signed = signed.select("doc_id", "ingested_at", "_existing",
                           F.transform("_hashes", lambda v: vector_to_array(v)[0]).alias("_sig"))
    rows = nd_cfg.rows_per_band
    bands = F.transform(F.sequence(F.lit(0), F.lit(nd_cfg.bands - 1)), lambda i: F.struct(
        i.alias("band"), F.xxhash64(F.slice("_sig", i * rows + 1, rows)).alias("key")))
    keyed = signed.select("doc_id", "ingested_at", "_existing", F.inline(bands))

    # Candidate pairs (a new row, an earlier row) that share a band. Grouping by band key reads
    # the signatures once (a self-join would compute them for each side); only ids travel.
    members = F.collect_list(F.struct("doc_id", "ingested_at", "_existing")).alias("_members")
    buckets = keyed.groupBy("band", "key").agg(members).where(F.size("_members") > 1)
    a, b = F.col("a"), F.col("b")
    pairs = (
        buckets.select(F.explode("_members").alias("a"), "_members")
        .select("a", F.explode("_members").alias("b"))
        .where(~a["_existing"] & (a["doc_id"] != b["doc_id"]) & (
            b["_existing"] | (b["ingested_at"] < a["ingested_at"])
            | (F.coalesce(b["ingested_at"] == a["ingested_at"], F.lit(True)) & (b["doc_id"] < a["doc_id"]))))
        .select(a["doc_id"].alias("doc_id"), b["doc_id"].alias("other"))
        .distinct()
    )
    # Check each candidate with the exact Jaccard similarity of the shingle sets.
    sets = shingled.select("doc_id", F.array_distinct("_shingles").alias("_set"))
    checked = pairs.join(sets, "doc_id").join(
        sets.select(F.col("doc_id").alias("other"), F.col("_set").alias("_other_set")), "other")
    jaccard = F.size(F.array_intersect("_set", "_other_set")) / F.size(F.array_union("_set", "_other_set"))
    return checked.where(jaccard >= nd_cfg.threshold).select("doc_id").distinct()


def mark_near_duplicates(docs: DataFrame, existing: DataFrame, nd_cfg) -> DataFrame:
    keep = docs.where(F.col(DROP_REASON).isNull() & F.col(DUPLICATE).isNull())
    near = find_near_duplicates(keep, existing, nd_cfg).withColumn("_near", F.lit(True))
    marked = docs.join(near, "doc_id", "left")
    return marked.withColumn(DUPLICATE, F.when(F.col("_near"), F.lit(NEAR)).otherwise(F.col(DUPLICATE))).drop("_near")


def deduplicate_documents(docs: DataFrame, existing: DataFrame, clean_cfg) -> DataFrame:
    """Normalized docs -> the same rows with label conflicts in `drop_reason` and `duplicate` set."""
    docs = mark_exact_duplicates(docs, existing)
    if clean_cfg.near_dedup.enabled:
        docs = mark_near_duplicates(docs, existing, clean_cfg.near_dedup)
    return docs


def dedup_casefold(cfg: Config) -> bool:
    """Whether exact dedup ignores case: `clean.dedup_key`, where `auto` follows the tokenizer
    that `tokenize` will use (a trained one's `tokenize.lowercase`, else the tokenizer's own
    normalizer)."""
    mode = cfg.clean.dedup_key
    if mode != "auto":
        return mode == "casefold"
    tokenizer = cfg.tokenize.tokenizer
    if tokenizer == TRAIN_TOKENIZER or (tokenizer == AUTO_TOKENIZER and not cfg.train.pretrained):
        return cfg.tokenize.lowercase
    from tokenization import TokenizerError, load_tokenizer, lowercases

    try:
        return lowercases(load_tokenizer(cfg.train.model if tokenizer == AUTO_TOKENIZER else tokenizer))
    except TokenizerError:
        return False  # tokenize will report the tokenizer; compare texts as they are meanwhile
