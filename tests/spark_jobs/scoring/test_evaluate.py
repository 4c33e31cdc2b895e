"""spark_jobs.scoring.evaluate: the training split from its manifest, and drift against it on Spark."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs.scoring.evaluate import drift_report, training_split
from training.tracking.tags import TAG_MANIFEST

UNK = 1


def write_dataset(folder):
    """A tokenized dataset of 4 training rows (lengths 4, 4, 8, 8; one [UNK] token; one truncated)."""
    rows = pa.table({"input_ids": [[2, 5, 6, 3], [2, UNK, 6, 3], [2, 5, 6, 7, 8, 9, 10, 3], [2] * 8],
                     "length": [4, 4, 8, 8], "truncated": [False, False, False, True], "label": [0, 0, 1, 1]})
    (folder / "data").mkdir(parents=True)
    pq.write_table(rows, folder / "data" / "train.parquet")
    manifest = {"files": {"train": ["data/train.parquet"]}, "splits": {"train": {"label_counts": {"0": 2, "1": 2}}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder / "manifest.json")


def test_the_training_split_is_its_files_beside_the_manifest_and_its_label_counts_by_id(spark, tmp_path):
    path = write_dataset(tmp_path / "tokenized")
    files, label_counts = training_split(spark, path)
    assert files == [f"{tmp_path}/tokenized/data/train.parquet"] and label_counts == {0: 2, 1: 2}


class _Model:
    def __init__(self, manifest):
        self.tags = {TAG_MANIFEST: manifest}


def test_drift_against_the_training_split_is_zero_for_the_same_rows_and_skipped_without_one(spark, tmp_path, capsys):
    path = write_dataset(tmp_path / "tokenized")
    scored = spark.createDataFrame([(4, False, 0, 0), (4, False, 1, 0), (8, False, 0, 1), (8, True, 0, 1)],
                                   "tokens int, truncated boolean, unk_tokens int, label_id int")
    drift = drift_report(spark, scored, _Model(path), ("a", "b"), UNK)
    assert drift["length"]["bins"] == ["<=4", "4-8", ">8"]
    assert drift["length"]["training"] == drift["length"]["scored"] == [2, 2, 0]
    assert drift["unk"]["training"] == drift["unk"]["scored"] == 1 / 24 and drift["truncation"]["scored"] == 0.25
    assert drift["predicted_class"]["training"] == drift["predicted_class"]["scored"] == [2, 2]
    assert all(drift[key]["psi"] == 0 for key in drift)
    assert drift_report(spark, scored, _Model("None"), ("a", "b"), UNK) is None
    assert drift_report(spark, scored, _Model(str(tmp_path / "gone" / "manifest.json")), ("a", "b"), UNK) is None
    assert "score: drift not computed: the training data at" in capsys.readouterr().out
