"""Typed lakebert configuration: every key, its type, its default and its allowed range.

Read by `conf.loader.load_config`; nothing here touches files or Spark. Each section is a
pydantic model that forbids unknown keys, so a typo stops the run instead of being ignored.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from conf.identifiers import parse_table_name
from conf.storage import is_uri


def _stringify_mapping(value):
    """Spark options and settings are strings; YAML gives `header: true` as a bool."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        out[str(key)] = item
    return out


SparkSettings = Annotated[dict[str, str], BeforeValidator(_stringify_mapping)]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_path(value: str) -> bool:
    """A path or URI (`/data/t`, `tables/bronze`, `s3a://b/t`, `dbfs:/t`), not a table name."""
    return "/" in value or ":" in value


def _under_root(value: str) -> str:
    """A relative path is joined to lakehouse.root (`conf.paths.under_root`): it must stay below it."""
    if is_uri(value) or value.startswith("/"):
        return value
    normal = posixpath.normpath(value)
    if normal in (".", "..") or normal.startswith("../"):
        raise ValueError("a relative path must name a folder under lakehouse.root "
                         "(give an absolute path or a URI for one elsewhere)")
    return value


def _table_location(value: str) -> str:
    """A path/URI, or a table name of one to three (back-quoted where needed) identifiers."""
    if _CONTROL.search(value):
        raise ValueError("control characters (newline, tab, NUL) are not allowed")
    if not is_path(value):
        parse_table_name(value)
    return _under_root(value)


def _column_name(value: str | None) -> str | None:
    if value is not None and (not value or _CONTROL.search(value)):
        raise ValueError("a column name must be non-empty and without control characters")
    return value


TableLocation = Annotated[str, AfterValidator(_table_location)]
ColumnName = Annotated[str, AfterValidator(_column_name)]
OptionalColumnName = Annotated[str | None, AfterValidator(_column_name)]


class Section(BaseModel):
    # use_attribute_docstrings: the string under each field is its `description`, the one text
    # behind `lakebert <stage> --help` (conf.help); a field's first sentence is its one-line meaning.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


# `train.model` values that build a model from config with random weights; anything else
# (a local save_pretrained directory or a hub name) is a pretrained model to fine-tune.
TINY = "tiny"
PRESET = "preset:"
# `tokenize.tokenizer` values: follow the model, or always train a WordPiece tokenizer.
AUTO_TOKENIZER = "auto"
TRAIN_TOKENIZER = "train"


# The random-weight architectures `preset:<name>` builds (their sizes: training.model.PRESETS).
PRESET_NAMES = ("small", "bert-base", "distilbert-base")
# The splits clean assigns, tokenize writes and training reads.
TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)


def is_pretrained(model: str) -> bool:
    return model != TINY and not model.startswith(PRESET)


def looks_like_path(name: str) -> bool:
    """A model or tokenizer name that can only be a local path: a hub name is `name` or `org/name`."""
    return (name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1
            or os.sep in name.strip("/").split("/", 1)[-1])


def model_name_problem(name: str) -> str | None:
    """What is wrong with `train.model=name` before anything is loaded, or None. The one rule
    behind the launcher's preflight and `training.model.build_model`."""
    if name.startswith(PRESET):
        if name[len(PRESET):] not in PRESET_NAMES:
            return f"train.model={name}: unknown preset (presets: {', '.join(PRESET_NAMES)}, and {TINY})"
        return None
    if name == TINY:
        return None
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return f"train.model={name} has no config.json: give a save_pretrained directory"
        return None
    if looks_like_path(name):
        return f"train.model={name} does not exist: no such directory (a local model is a save_pretrained folder)"
    return None  # a hub name: whether it exists is known only when it is loaded


# Fine-tuning a pretrained BERT: the BERT paper's recipe (Devlin et al. 2019, appendix A.3: lr
# in 2e-5..5e-5, 2-4 epochs, linear decay after 10% warmup, weight decay 0.01), at the top of
# both ranges because our users' datasets are often small: all-MiniLM-L6-v2 on BBC News (976
# articles, 16 steps an epoch) was still improving after 3 epochs at 5e-5 (validation macro F1
# 0.55, 0.89, 0.96). A from-scratch lr of 1e-3 destroys the pretrained weights and the model
# collapses to one class.
FINE_TUNING_DEFAULTS = {"lr": 5e-5, "warmup_ratio": 0.1, "weight_decay": 0.01, "epochs": 4}
# A model trained from random weights on a few thousand documents needs many passes: on real
# BBC News (976 training articles, 16 steps an epoch) the tiny model predicted one class after
# 3 epochs, reached test macro F1 0.85 after 10 and 0.93 after 20 (docs/benchmarks.md, real data).
FROM_SCRATCH_DEFAULTS = {"lr": 1e-3, "warmup_ratio": 0.1, "weight_decay": 0.01, "epochs": 20}


class LakehouseConfig(Section):
    """Where lakebert keeps its tables, tokenized data, models and run records."""

    root: str = "./lakehouse"
    """Directory (or URI: s3a://, abfss://, dbfs:/) under which path-based tables and run records live."""


class TablesConfig(Section):
    """Where each table lives. A plain name (`bronze`) or relative path is a Delta table under
    `lakehouse.root` (and must stay under it: no `..` above it); an absolute path or URI is used as is; a dotted name
    (`catalog.schema.table` or `schema.table`) is a metastore table. A name (anything without
    `/` or `:`) is one to three parts, each `[A-Za-z_][A-Za-z0-9_]*` or back-quoted."""

    bronze: TableLocation = "bronze"
    """Ingest's output: one row per accepted document, as read (text, label, source, batch_id)."""
    silver: TableLocation = "silver"
    """Clean's output: normalized, filtered, deduplicated documents with a label_id and a split."""
    quarantine: TableLocation = "quarantine"
    """Every row ingest or clean rejected, with the stage, the reason and the raw record."""
    label_map: TableLocation = "label_map"
    """Label -> label_id, written by clean; new labels get the next ids, never renumbered."""
    predictions: TableLocation = "predictions"
    """`lakebert score`'s output: one row per (doc_id, model name, model version)."""


class SparkConfig(Section):
    """The Spark session lakebert creates when none is active; an active one (Databricks, a
    notebook) is used as it is."""

    master: str | None = "local[*]"
    """Used only when lakebert creates the session; spark-submit and Databricks keep their own."""
    app_name: str = "lakebert"
    """The application name Spark's UI and logs show."""
    remote: str | None = None
    """A Spark Connect server (`sc://host:15002`) to run every stage on, instead of starting Spark
    here; also `--remote` or $SPARK_REMOTE. The server needs Delta's jars and SQL settings."""
    conf: SparkSettings = Field(default_factory=dict)
    """Any Spark setting, e.g. `spark.conf.spark.sql.shuffle.partitions=8`."""


class IngestConfig(Section):
    """What ingest reads into the bronze table, and how (rejected records go to quarantine)."""

    source: str | None = None
    """File, directory, glob, Delta path or metastore table to read."""
    format: Literal["jsonl", "csv", "parquet", "text", "delta"] = "jsonl"
    """How to read `source`; delta reads a Delta path or, for a plain name, a metastore table."""
    text_column: ColumnName = "text"
    """The field (jsonl), header column (csv) or column holding the text; unused for format=text."""
    label_column: OptionalColumnName = "label"
    """The field or column holding the label (format=text: see label_from_dir); None for unlabelled data."""
    id_column: OptionalColumnName = None
    """Stable document id column; when None, doc_id is a hash of source and text."""
    on_changed_text: Literal["update", "keep_first", "quarantine"] = "update"
    """With `id_column`: a record whose id bronze holds already, with other text or another
    label (counted as `changed`, apart from true duplicates). `update`: it replaces the bronze
    row, and the change flows to silver (clean applies it; tokenize then runs in full).
    `keep_first`: bronze keeps the row it has. `quarantine`: the record goes to quarantine
    (`changed_text`) for a person to decide."""
    require_label: bool = True
    """Quarantine rows without a label (ignored when label_column is None)."""
    max_text_chars: int = Field(1_000_000, ge=1)
    """Longer texts are quarantined as `text_too_long`, before any cleaning."""
    text_mode: Literal["line", "file"] = "line"
    """For format=text: one document per line, or one per file."""
    label_from_dir: bool = False
    """For format=text: take the label from each file's parent directory name."""
    batch_id: str | None = None
    """Id recorded on every row of this run (Airflow passes the logical date); default: a new id."""
    options: SparkSettings = Field(default_factory=dict)
    """Passed to the Spark reader unchanged, e.g. header, sep, quote, escape, multiLine, encoding.
    CSV is read as RFC 4180 where these do not say otherwise: header=true, quote and escape `"`
    (a quote inside a quoted field written `""`), multiLine=true (line breaks inside quoted fields)."""

    @model_validator(mode="after")
    def _source_table_name(self):
        # format=delta reads a metastore table when the source is no path: the same names as tables.*
        if self.format == "delta" and self.source and not is_path(self.source):
            try:
                parse_table_name(self.source)
            except ValueError as exc:
                raise ValueError(f"ingest.source={self.source!r} with ingest.format=delta: {exc}") from None
        return self


class NearDedupConfig(Section):
    """Near-duplicate removal with MinHash LSH (after exact deduplication)."""

    enabled: bool = False
    """Also drop near-duplicates of earlier rows; off by default because it costs a self-join."""
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Jaccard similarity of word-shingle sets at or above which two texts are near-duplicates."""
    shingle_size: int = Field(3, ge=1, le=10)
    """Words per shingle."""
    bands: int = Field(20, ge=1, le=64)
    """Number of LSH bands (see rows_per_band)."""
    rows_per_band: int = Field(6, ge=1, le=32)
    """MinHashes per LSH band. Two texts are compared when all `rows_per_band` MinHashes of any one
    of `bands` bands agree, which happens with probability 1-(1-J^rows)^bands: 20x6 catches
    99.8% of pairs at J=0.8 and 1.4% at J=0.3. Candidates are then checked with exact Jaccard."""
    num_features: int = Field(1 << 20, ge=1024)
    """Shingles are hashed into this many buckets before MinHash."""


class SplitConfig(Section):
    """Fractions of silver rows per split (they must sum to 1); a row's split is a hash of its doc_id."""

    train: float = Field(0.8, ge=0.0, le=1.0)
    """Fraction of rows training learns from."""
    validation: float = Field(0.1, ge=0.0, le=1.0)
    """Fraction that picks the best checkpoint and decides the champion."""
    test: float = Field(0.1, ge=0.0, le=1.0)
    """Fraction held out until the best checkpoint's final evaluation."""

    @model_validator(mode="after")
    def _sums_to_one(self):
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1 (train+validation+test={total:g})")
        return self


class CleanConfig(Section):
    """How clean turns bronze into silver: normalization, quality filters, deduplication, splits."""

    dedup_key: Literal["auto", "exact", "casefold"] = "auto"
    """What makes two texts exact duplicates, after normalization and with whitespace collapsed:
    `exact` compares them as they are, `casefold` ignores case. `auto` = `casefold` when the
    tokenizer lowercases (what the model sees is then the same), else `exact`. Duplicates that
    differ only in case would otherwise land in different splits: the same input in train and test."""
    fix_mojibake: bool = True
    """Repair UTF-8 text that was decoded as Latin-1/cp1252 (`Â£` -> `£`) with ftfy."""
    strip_html: bool = True
    """Remove tags (and script/style bodies) and unescape entities."""
    lowercase: bool = False
    """Lowercase the text written to silver (an uncased tokenizer lowercases anyway)."""
    min_chars: int = Field(10, ge=0)
    """Drop texts shorter than this many characters after normalization."""
    max_chars: int = Field(100_000, ge=1)
    """Drop texts longer than this many characters after normalization."""
    max_symbol_ratio: float = Field(0.5, ge=0.0, le=1.0)
    """Drop texts where more than this fraction of characters are neither letters, digits nor spaces."""
    max_char_run: int = Field(20, ge=2)
    """Drop texts containing one character repeated this many times in a row."""
    label_case: Literal["keep", "fold"] = "keep"
    """Labels are normalized like text (NFKC, zero-width characters removed, whitespace
    collapsed), so `ＳＰＯＲＴ` is `SPORT`. Labels that then differ only by case (`Sport`,
    `sport`): `keep` keeps them as separate classes, with a warning; `fold` merges them into one
    spelling (the label map's, else the most frequent). The raw spellings seen are in the
    label map's `spellings` column."""
    max_labels: int = Field(1000, ge=2)
    """Stop when silver would hold more labels than this: thousands of classes almost always
    mean that ingest.label_column names an id or free-text column, not a label."""
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = 0
    """Salt of the split hash. Changing it re-splits only rows that were never written to silver."""


class TokenizeConfig(Section):
    """Which tokenizer tokenize uses, and how it writes silver as tokenized Parquet."""

    tokenizer: str = AUTO_TOKENIZER
    """`auto`: a pretrained `train.model` brings its own tokenizer, and a from-scratch model
    (`tiny`, `preset:*`) gets a WordPiece tokenizer trained on the silver train split. `train`:
    always train one. Or a local directory in Hugging Face layout, a `tokenizer.json` file, or
    a hub name (needs the network). A tokenizer whose vocabulary or special tokens differ from a
    pretrained model's own is an error: its ids would be meaningless to the model."""
    vocab_size: int = Field(8000, ge=100, le=1_000_000)
    """For a trained tokenizer only."""
    lowercase: bool = True
    """For a trained tokenizer only (a pretrained tokenizer keeps its own normalization)."""
    min_frequency: int = Field(2, ge=1)
    """For a trained tokenizer only: how often two pieces must occur together to be merged into one."""
    train_sample_rows: int = Field(500_000, ge=1)
    """Tokenizer training reads at most this many train texts (the first by doc_id)."""
    retrain_tokenizer: bool = False
    """For a trained tokenizer only. false: train it once, on the silver version first tokenized,
    and reuse it while these settings stay the same, so later versions keep the same ids and
    tokenize only the rows clean added. true: train a new one on every silver version (every
    version is then tokenized in full)."""
    max_length: int = Field(128, ge=4, le=1_000_000)
    """Tokens per text including [CLS]/[SEP]; longer texts are truncated and counted."""
    truncation_side: Literal["right", "left"] = "right"
    """Which end of a too-long text is cut: `right` keeps its beginning, `left` its end."""
    silver_version: int | None = None
    """Delta version of silver to read; None = the latest."""
    output: Annotated[str, AfterValidator(_under_root)] = "tokenized"
    """Directory under lakehouse.root (or an absolute path/URI) holding one folder per dataset version."""
    rows_per_file: int = Field(500_000, ge=1000)
    """The most rows one Parquet file holds."""
    row_group_mb: int = Field(16, ge=1, le=1024)
    """Parquet row-group size: small enough for streaming reads, large enough for fast scans."""
    arrow_batch_rows: int = Field(4096, ge=64)
    """Rows per Arrow batch handed to the tokenizer in each Python worker."""


class TrainConfig(Section):
    """The model, its optimizer, and how training runs: processes, GPUs, checkpoints, evaluation."""

    data: str | None = None
    """Tokenized data: a manifest.json, a dataset folder, or a tokenized root (its LATEST is
    followed). None = `<lakehouse.root>/<tokenize.output>`."""
    model: str = "tiny"
    """`tiny` (a small BERT built from config, for offline use),
    `preset:small|bert-base|distilbert-base` (those architectures from config, random weights),
    a hub name, or a local save_pretrained directory (BERT, DistilBERT, ...)."""
    epochs: int | None = Field(None, ge=1)
    """Passes over the train split. None = the model's default: FINE_TUNING_DEFAULTS for a
    pretrained model, else FROM_SCRATCH_DEFAULTS (the same for lr, weight_decay and
    warmup_ratio). A value you set wins."""
    batch_size: int = Field(32, ge=1)
    """Rows per process per micro-batch."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step (gradient accumulation)."""
    lr: float | None = Field(None, gt=0)
    """Peak learning rate. None = 5e-5 for a pretrained model (the BERT paper's 2e-5..5e-5), 1e-3 from scratch."""
    weight_decay: float | None = Field(None, ge=0)
    """AdamW weight decay. None = the model's default (see epochs)."""
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    """Share of the optimizer steps over which the learning rate rises linearly from 0 (it then
    decays linearly to 0). None = the model's default (see epochs)."""
    max_grad_norm: float = Field(1.0, gt=0)
    """Gradients are clipped to this global L2 norm."""
    bucket_batches: int = Field(16, ge=0)
    """Length bucketing window in batches (0 = off)."""
    seed: int = 42
    """Seeds the initial weights, dropout and the data order (shuffling, bucketing)."""
    eval_every: int = Field(0, ge=0)
    """Also evaluate every N optimizer steps (0 = only at each epoch end)."""
    checkpoint_every: int = Field(0, ge=0)
    """Also checkpoint every N optimizer steps (0 = only at each epoch end)."""
    keep_last: int = Field(3, ge=1)
    """Checkpoints kept (the newest; the best one is kept apart)."""
    select_metric: str = "f1_macro"
    """Validation metric that picks the best checkpoint (higher is better; `loss` is lower-better)."""
    output_dir: str | None = None
    """Checkpoints and results of this job; None = `<lakehouse.root>/train/<job key>` (the key
    hashes the train config and the data, so a changed config never resumes another job's
    checkpoints). With several machines it must be shared storage."""
    use_gpu: bool = False
    """One CUDA GPU per training process (NCCL); false trains on CPU (gloo)."""
    num_processes: int = Field(2, ge=1)
    """Training processes (one per GPU with use_gpu) launched by TorchDistributor."""
    local_mode: bool = True
    """True: the processes run on the Spark driver. False: one barrier task per process (or
    per `spark.task.resource.gpu.amount` GPUs) on the executors."""
    class_weights: Literal["balanced"] | None = None
    """`balanced` weighs the loss by n_rows / (n_labels * n_label_rows) of the train split."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    log_every: int = Field(1, ge=1)
    """Log loss, lr, grad norm and tokens/s every N steps (a host sync; raise it on GPUs)."""
    shuffle_buffer: int = Field(10_000, ge=1)
    """Rows shuffled together, when each rank reads only its own row groups (a large split):
    whole row groups are gathered until they hold this many rows, then permuted. Memory per
    rank: this many rows plus one row group. (A small split is read whole by every rank and
    each row group's rows are permuted.)"""
    prefetch_batches: int = Field(2, ge=0)
    """Batches built ahead on a background thread (pinned memory on GPU); 0 = inline."""
    compile: bool = False
    """torch.compile the model (dynamic shapes). Pays on GPUs for long runs; not on CPU."""
    fused_adamw: bool = True
    """The fused AdamW kernel on CUDA (CPU always uses the default implementation)."""
    ddp_bucket_cap_mb: int = Field(25, ge=1)
    """DDP gradient bucket size: larger buckets, fewer all-reduce calls."""
    ddp_comm_hook: Literal["fp16", "bf16", "powersgd"] | None = None
    """Gradient compression: fp16/bf16 halve the all-reduce bytes; PowerSGD sends a low-rank
    approximation with error feedback (its error state is not checkpointed: a resumed run
    is close to, not bitwise equal to, an uninterrupted one)."""
    powersgd_rank: int = Field(4, ge=1)
    """Rank of PowerSGD's low-rank approximation: higher is closer to exact, sends more."""
    powersgd_start_step: int = Field(10, ge=2)
    """Plain all-reduce for the first steps, PowerSGD from this step on."""
    degenerate_margin: float = Field(0.05, ge=0, le=1)
    """The best checkpoint's validation macro F1 must beat the majority-class baseline's by this
    much, or the model is reported degenerate (tagged, warned, never made `@champion`)."""
    degenerate_max_share: float = Field(0.95, gt=0, le=1)
    """A model that predicts one class for more than this share of validation rows is degenerate
    (unless that class really is that common)."""
    baseline_max_rows: int = Field(50_000, ge=0)
    """The linear baseline (TF-IDF + logistic regression on the same tokens, training.baseline),
    fitted by rank 0 at the end of every run and logged under `baseline/`, trains on at most this
    many train rows: a larger train split is sampled uniformly (seeded by `seed`). On 2 cores it
    took 1 s on BBC News' 976 articles and 20 s on 50,000 rows of real text (docs/benchmarks.md).
    0 = no baseline, and no comparison with it."""
    baseline_margin: float = Field(0.02, ge=0)
    """A model more than this far below the linear baseline on validation `select_metric` is
    reported below it (tagged `lakebert.below_linear_baseline`, warned). 0.02 of macro F1 is two
    or three of BBC News' 121 validation articles: a smaller gap is noise on a small split."""
    require_beat_baseline: bool = True
    """A model below the linear baseline (see baseline_margin) never takes `@champion`; false lets
    it (it is still tagged and warned)."""
    study: str | None = None
    """Set by `lakebert tune` on its trials (leave it unset): the Optuna study whose trial this job
    is. Part of the job's identity, so a trial never reuses a run of another study or of a plain
    `lakebert train`."""

    @property
    def pretrained(self) -> bool:
        return is_pretrained(self.model)

    @property
    def defaults_kind(self) -> str:
        return "fine-tuning" if self.pretrained else "from-scratch"

    @model_validator(mode="after")
    def _model_defaults(self):
        """Fill the unset optimizer settings with the model's defaults (explicit values win)."""
        defaults = FINE_TUNING_DEFAULTS if self.pretrained else FROM_SCRATCH_DEFAULTS
        for key, value in defaults.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)  # not setattr: that would validate again
        return self


UNITY_CATALOG_REGISTRY = "databricks-uc"


class MlflowConfig(Section):
    """Where train and score record their MLflow runs, and what train logs and registers."""

    tracking_uri: str | None = None
    """None = a local store, `sqlite:///<lakehouse.root>/mlflow.db` with artifacts under
    `<lakehouse.root>/mlartifacts`. With `train.local_mode=false`, rank 0 runs on an executor
    and needs a server every executor can reach (`http://host:5000`, see the README)."""
    experiment: str = "lakebert"
    """The MLflow experiment that train's and score's runs go into (created when missing)."""
    registered_model: str | None = "lakebert-classifier"
    """Register the final model under this name; None = log it without registering. Unity Catalog
    (`registry_uri: databricks-uc`) needs three parts: `catalog.schema.model`."""
    registry_uri: str | None = None
    """The model registry, when it is not the tracking store: `databricks-uc` (Unity Catalog), or
    another MLflow store or server. None = the tracking store."""
    log_model: bool = True
    """Log the final model (transformers flavor). False: metrics and checkpoints only (benchmarks)."""
    model_license: str = Field("unknown", min_length=1)
    """The license named in the logged model's card, as a Hugging Face license id (`apache-2.0`, `mit`, `unknown`).
    The ids are listed at https://huggingface.co/docs/hub/repositories-licenses. For a fine-tuned
    pretrained model the base model's license applies (e.g. `apache-2.0` for bert-base-uncased);
    for a model trained from scratch it is the data owner's call. `unknown` (the default) says
    nobody has decided yet. MLflow writes the value into the model's LICENSE.txt; `other` (a
    custom license) makes it warn that it found no license information."""
    log_checkpoints: bool = True
    """Copy each checkpoint into the run's artifacts (a restart on another machine resumes from
    them). Not done when `train.output_dir` is on an object store, which outlives any node."""
    system_metrics: bool = True
    """Record CPU, memory and GPU use on the training run (MLflow system metrics)."""
    system_metrics_interval: float = Field(5.0, gt=0)
    """Seconds between two system-metrics samples."""
    champion_alias: str | None = "champion"
    """The registered model's alias for the version users should load. It moves to a new version
    only when that version is not degenerate, is not below its linear baseline (unless
    `train.require_beat_baseline=false`) and beats the champion on the same validation data
    (`train.select_metric`). None = never set an alias."""

    @model_validator(mode="after")
    def _unity_catalog_name(self):
        """Unity Catalog's registry rejects a one-part name only when registering, after training."""
        if (self.registry_uri or "").startswith(UNITY_CATALOG_REGISTRY) and self.registered_model \
                and len(self.registered_model.split(".")) != 3:
            raise ValueError(f"mlflow.registered_model={self.registered_model!r}: the {UNITY_CATALOG_REGISTRY} "
                             "registry needs a three-part name, catalog.schema.model")
        return self


class ScoreConfig(Section):
    """`lakebert score`: a registered model over new documents, on the executors."""

    source: str | None = None
    """None = the silver table (already normalized by clean). Else a path, glob or table in
    `score.format`, read as ingest reads it (ingest's text/label/id columns and reader options)."""
    format: Literal["jsonl", "csv", "parquet", "text", "delta"] = "delta"
    """How to read `score.source` (as ingest.format reads ingest.source)."""
    split: Literal["train", "validation", "test"] | None = None
    """Score only the rows of this split (sources with a `split` column, such as silver)."""
    model: str | None = None
    """An MLflow model URI: `models:/<name>/<version>`, `models:/<name>@<alias>` or `runs:/<id>/model`.
    None = `models:/<mlflow.registered_model>@<mlflow.champion_alias>` when that alias is set,
    else the latest version of `mlflow.registered_model`."""
    normalize: Literal["auto", "always", "never"] = "auto"
    """Apply clean's normalization with the settings the model's training recorded. auto = yes,
    except for the silver table, whose text clean already normalized."""
    batch_size: int = Field(64, ge=1)
    """Texts per forward pass (sorted by length within each Arrow batch)."""
    arrow_batch_rows: int = Field(2048, ge=16)
    """Rows per Arrow batch handed to the model in each Python worker."""
    drift_threshold: float = Field(0.2, gt=0)
    """Population stability index above which the summary warns (0.1 moderate, 0.25 major shift)."""
    drift_min_rows: int = Field(500, ge=1)
    """Judge drift only over at least this many scored rows: PSI over a few dozen rows is mostly
    sampling noise (the report is still logged)."""
    mistakes: int = Field(20, ge=0)
    """The most confident mistakes listed in the evaluation (when the source has labels)."""


# `train` keys a study may not vary: where the data and outputs are, the model the data was
# tokenized for, the processes (`tune.parallel_trials` splits them), and the metric that picks
# the best checkpoint (`tune.metric` picks the best trial).
NOT_TUNABLE = ("data", "model", "output_dir", "use_gpu", "num_processes", "local_mode", "study", "select_metric")
# `tune.space.<key>.type` -> the kinds of `train` key it fits.
DISTRIBUTIONS = {"loguniform": (float,), "uniform": (float,), "int": (int,), "categorical": (int, float, bool, str)}


def _base_type(annotation) -> type:
    """int, float, bool or str: the type of a `train` field, without `None` (Literal -> str)."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    first = args[0]
    if typing.get_origin(first) is Literal:
        return type(typing.get_args(first)[0])
    return first if isinstance(first, type) else str


def _space_mapping(value):
    """`--set tune.space.lr.type=...` gives the key `lr.type`: grouped as the YAML file form
    gives it (`lr: {type: ...}`); each entry's strings are read by `_inline_entry`."""
    if not isinstance(value, dict):
        return value
    out: dict = {}
    for key, item in value.items():
        name, _, sub = str(key).partition(".")
        if sub:
            entry = out.setdefault(name, {})
            if not isinstance(entry, dict):
                raise ValueError(f"{name} is given both as one value and key by key ({name}.{sub})")
            entry[sub] = item
        else:
            out[name] = dict(item) if isinstance(item, dict) else item
    return out


def _inline_entry(value):
    """`--set tune.space.lr={type: loguniform, low: 1.0e-5, high: 1.0e-3}` (a YAML flow mapping)
    and `--set tune.space.batch_size.choices=[16, 32]`: strings read as YAML, within
    `conf.bounded_yaml`'s limits; what is not valid YAML is this entry's error."""
    from conf.bounded_yaml import YamlError, load_yaml

    try:
        if isinstance(value, str):
            return load_yaml(value)
        if isinstance(value, dict):
            return {key: load_yaml(item) if isinstance(item, str) else item for key, item in value.items()}
    except YamlError as exc:
        raise ValueError(str(exc)) from None
    return value


class Distribution(Section):
    """One `tune.space` entry: `{type: loguniform|uniform|int, low, high}` or `{type: categorical, choices: [...]}`."""

    type: Literal["loguniform", "uniform", "int", "categorical"]
    """loguniform: a float whose log is uniform in [low, high]; uniform: a float in [low, high];
    int: an integer in [low, high] (every `step`); categorical: one of `choices`."""
    low: float | None = None
    """The smallest value (not for categorical)."""
    high: float | None = None
    """The largest value (not for categorical)."""
    step: int = Field(1, ge=1)
    """For int: the spacing of the values."""
    choices: list[int | float | bool | str | None] | None = None
    """For categorical: the values to choose from."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical distribution needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical distribution takes `choices`, not low/high")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} distribution takes low and high, not `choices`")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} distribution needs both low and high")
        if self.low >= self.high:
            raise ValueError(f"low={self.low:g} must be below high={self.high:g}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform distribution needs low > 0 (got {self.low:g})")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int distribution needs whole bounds (got {self.low:g}, {self.high:g})")
        return self

    def values(self) -> list:
        """The values that must each be a valid setting of the key: the bounds, or the choices."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class TuneConfig(Section):
    """`lakebert tune`: an Optuna study over `train` settings, each trial a `lakebert train` job."""

    space: Annotated[dict[str, Annotated[Distribution, BeforeValidator(_inline_entry)]],
                     BeforeValidator(_space_mapping)] = Field(default_factory=dict)
    """What to search: `train` key -> distribution, e.g. `lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}`
    or `batch_size: {type: categorical, choices: [16, 32]}`. Types: loguniform, uniform, int
    (low, high, optional step), categorical (choices). Keys not in the space keep their `train` value."""
    trials: int = Field(8, ge=1)
    """Trials in the study, counting those of earlier (killed) runs of it: a rerun runs the rest."""
    timeout: float | None = Field(None, gt=0)
    """Stop starting new trials after this many seconds of this run. None = no limit."""
    metric: str | None = None
    """The validation metric a trial returns (and reports to the pruner at each evaluation).
    None = `train.select_metric`."""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    """auto = minimize a loss, maximize anything else."""
    sampler: Literal["tpe", "random"] = "tpe"
    """How trials pick their values: TPE (Bayesian, Optuna's default) or random."""
    pruner: Annotated[Literal["median", "successive_halving"] | None,
                      BeforeValidator(lambda v: None if isinstance(v, str) and v.lower() == "none" else v)] = "median"
    """Stop a trial early when its evaluations lag: median = worse than the median of earlier trials
    at the same point; successive_halving = asynchronous successive halving; none (null) = never."""
    pruner_startup_trials: int = Field(2, ge=0)
    """The median pruner prunes nothing until this many trials have finished."""
    seed: int = 0
    """The sampler's seed (a rerun of a study draws from seed + the trials it already has)."""
    parallel_trials: int = Field(1, ge=1)
    """Trials at once, each with `train.num_processes / parallel_trials` processes. 1 = one after
    another, each with all of them (usually faster per trial; see the README)."""
    storage: str | None = None
    """Where the study persists (an Optuna RDB URL). None = `optuna.db` beside a local sqlite
    MLflow store (or under a local lakehouse.root); on a cluster, a database every executor
    reaches, e.g. `postgresql://user@db-host/optuna` (not the MLflow database itself)."""
    study: str | None = None
    """The study's name. None = derived from the data, the `train` config and the search, so the
    same command resumes the same study and a changed one starts a new study."""
    alias: str = Field("tuned", min_length=1)
    """The registered model's alias for the best trial's version."""

    @field_validator("space")
    @classmethod
    def _space_fits_train(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        tunable = [k for k in TrainConfig.model_fields if k not in NOT_TUNABLE]
        for key, dist in space.items():
            if key not in tunable:
                hint = difflib.get_close_matches(key, tunable, n=1)
                raise ValueError(f"{key!r} is not a train key a study can vary"
                                 + (f"; did you mean {hint[0]!r}?" if hint else f"; tunable: {', '.join(tunable)}"))
            kind = _base_type(TrainConfig.model_fields[key].annotation)
            if kind not in DISTRIBUTIONS[dist.type] or (kind is bool and dist.type != "categorical"):
                fits = [name for name, kinds in DISTRIBUTIONS.items() if kind in kinds]
                raise ValueError(f"{key}: a {dist.type} distribution does not fit train.{key}, which is "
                                 f"{kind.__name__} (use {' or '.join(fits)})")
            probe = TrainConfig()
            for value in dist.values():
                try:
                    setattr(probe, key, value)
                except ValidationError as exc:
                    raise ValueError(f"{key}: {value!r} is not a valid train.{key}: "
                                     f"{exc.errors()[0]['msg']}") from None
        return space


class Config(Section):
    lakehouse: LakehouseConfig = Field(default_factory=LakehouseConfig)
    tables: TablesConfig = Field(default_factory=TablesConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

