"""lakebert audit: real fold jobs (TorchDistributor, gloo), a real MLflow store, a real Delta table.

The sample data (300 documents) through ingest, clean and tokenize; three one-epoch fold jobs
of the tiny model, one process each.
"""

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from pyspark.testing import assertDataFrameEqual

from spark_jobs.audit import NOISE_ARTIFACT, audit, cost_line
from spark_jobs.audit_folds import FOLD, assign_folds, sample_rows
from tests.conftest import make_config, tokenized_sample
from tokenization.dataset import TokenizedDataset
from training.tracking.tags import TAG_AUDIT_FOLD, TAG_PARENT_RUN, TAG_REGISTERED_NAME

AUDIT = ["audit.folds=3", "train.epochs=1", "train.batch_size=16", "train.num_processes=1", "train.seed=5",
         "mlflow.system_metrics=false", "tokenize.max_length=32"]


@pytest.fixture(scope="module")
def lakehouse(spark, tmp_path_factory):
    return tokenized_sample(spark, tmp_path_factory.mktemp("audit") / "lh", 300, 11, "tokenize.vocab_size=800",
                            "tokenize.max_length=32")


def test_the_cost_line_states_k_the_rows_and_an_estimate_scaled_from_the_last_train_job():
    cfg = make_config("/tmp/unused", "audit.folds=4", "audit.parallel_folds=2", "train.num_processes=2")
    line = cost_line(cfg, audited=500, train_rows=1000, seconds=600)
    # 4 jobs on 3/4 of half the rows, 2 at a time: 600 s * 4 * 3/4 * 1/2 / 2 = 450 s
    assert "K=4 folds over 500 of 1000" in line and "4 train jobs" in line and "about 7.5 min" in line
    assert "no finished train job" in cost_line(cfg, 500, 1000, None)


def test_folds_follow_the_token_ids_so_copies_share_a_fold_whatever_the_row_order(spark):
    rows = spark.createDataFrame([(f"d{i}", [101, i % 150, 102]) for i in range(200)],
                                 "doc_id string, input_ids array<int>")
    one = assign_folds(rows, 5, seed=1)
    other = assign_folds(rows.orderBy("doc_id", ascending=False).repartition(3), 5, seed=1)
    assertDataFrameEqual(one, other)
    folds = {r["doc_id"]: r[FOLD] for r in one.collect()}
    assert set(folds.values()) == set(range(5))
    assert all(folds[f"d{i}"] == folds[f"d{i + 150}"] for i in range(50))  # equal ids, one fold
    assert sample_rows(rows, 0.5, 0).count() == sample_rows(rows.repartition(4), 0.5, 0).count() < 200


def test_every_row_is_predicted_by_a_fold_model_that_never_trained_on_it_and_a_rerun_inserts_nothing(spark,
                                                                                                      lakehouse):
    cfg = make_config(lakehouse, *AUDIT)
    first = audit(spark, cfg, "a1")
    parent = first["audit_run_id"]
    table = spark.read.format("delta").load(str(lakehouse / "label_issues"))
    rows = table.where(table.audit_run_id == parent).collect()
    # counts add up: every labelled train row audited once, each row inserted once
    assert len(rows) == first["audited"] == first["train_rows"] == first["inserted"] > 0
    assert len({r.doc_id for r in rows}) == len(rows)
    assert first["flagged"] == sum(r.is_issue for r in rows)
    assert sorted(r["rank"] for r in rows) == list(range(1, len(rows) + 1))
    assert all(r.silver_version is not None and 0.0 <= r.label_quality <= 1.0 for r in rows)

    client = MlflowClient(first["tracking_uri"])
    for k, manifest in enumerate(first["fold_manifests"]):
        data = TokenizedDataset.open(manifest)
        trained_on = set(pq.read_table(data.files("train")[0], columns=["doc_id"]).column("doc_id").to_pylist())
        for path in data.files("train")[1:]:
            trained_on |= set(pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist())
        held_out = [r for r in rows if r.fold == k]
        assert held_out and not {r.doc_id for r in held_out} & trained_on  # out of fold means out of fold
        assert {r.fold_run_id for r in held_out} == {first["fold_runs"][k]}
        run = client.get_run(first["fold_runs"][k])
        assert run.data.tags[TAG_PARENT_RUN] == parent and run.data.tags[TAG_AUDIT_FOLD] == str(k)
        assert TAG_REGISTERED_NAME not in run.data.tags  # a fold job registers nothing
    assert client.search_registered_models() == []  # and no alias moved: nothing is registered at all
    artifacts = {a.path for a in client.list_artifacts(parent, "audit")}
    assert NOISE_ARTIFACT in artifacts and "audit/lowest_quality.json" in artifacts

    second = audit(spark, cfg, "a2")
    assert second["inserted"] == 0 and second["already_there"] == first["audited"]
    assert second["audit_run_id"] == parent and second["fold_runs"] == first["fold_runs"]  # nothing trained again
    assert table.count() == len(rows)
