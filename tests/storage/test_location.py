"""storage.location: the one place that decides path, URI or name, and how a path joins a root."""

import os

import pytest

import storage
from conf import load_config
from storage import Location, under_root


@pytest.mark.parametrize("text, kind, scheme", [
    ("bronze", "name", "file"),
    ("main.lake.silver", "name", "file"),
    ("`my-cat`.lake.silver", "name", "file"),
    ("tables/bronze", "path", "file"),
    ("/data/bronze", "path", "file"),
    ("./lakehouse", "path", "file"),
    ("file:/tmp/t", "path", "file"),
    ("file:///tmp/t", "uri", "file"),
    ("s3a://bucket/lh", "uri", "s3a"),
    ("S3://Bucket/lh", "uri", "s3"),
    ("abfss://c@acct.dfs.core.windows.net/lh", "uri", "abfss"),
    ("dbfs:/lh", "uri", "dbfs"),
])
def test_a_location_is_parsed_once_into_path_uri_or_name(text, kind, scheme):
    where = Location.parse(text)
    assert (where.kind, where.scheme, str(where)) == (kind, scheme, text)
    assert where.is_name == (kind == "name") and where.is_uri == (kind == "uri")


def test_local_locations_and_their_local_paths():
    assert Location.parse("dbfs:/lh/t").local_path() == "/dbfs/lh/t"  # Databricks' FUSE mount
    assert Location.parse("file:///tmp/t").local_path() == "/tmp/t"
    assert Location.parse("/tmp/t").local_path() == "/tmp/t"
    assert Location.parse("dbfs:/lh").is_local and Location.parse("relative/x").is_local
    assert not Location.parse("s3a://b/x").is_local and not Location.parse("gs://b/x").is_local


@pytest.mark.parametrize("text, escapes", [
    ("tokenized", False), ("a/../b", False), ("./x", False),
    ("..", True), (".", True), ("../x", True), ("a/../../b", True),
    ("/abs/../x", False), ("s3a://b/../x", False),  # absolute and URIs are not under the root
])
def test_a_relative_path_that_climbs_above_its_root_is_recognised(text, escapes):
    assert Location.parse(text).escapes_root() is escapes


def test_under_root_joins_relative_paths_and_keeps_absolute_ones_and_uris(tmp_path):
    root = str(tmp_path / "lh")
    assert under_root(root, "tokenized") == f"{root}/tokenized"
    assert under_root(root, "train/k1") == f"{root}/train/k1"
    assert under_root(root, "/elsewhere/t") == "/elsewhere/t"
    assert under_root(root, "s3a://b/t") == "s3a://b/t"
    assert under_root(root) == root
    assert under_root("s3a://b/lh/", "tokenized") == "s3a://b/lh/tokenized"
    assert under_root("lh", "x") == os.path.join(os.getcwd(), "lh", "x")  # a relative root: from here


@pytest.mark.parametrize("name, is_path", [
    ("bert-base-uncased", False), ("sentence-transformers/all-MiniLM-L6-v2", False),
    ("./models/mine", True), ("/models/mine", True), ("~/m", True), ("models/", True), ("a/b/c", True),
])
def test_a_model_name_that_can_only_be_a_local_path_is_recognised(name, is_path):
    assert storage.location.looks_like_path(name) is is_path


def test_join_resolves_dotdot_on_object_stores_and_paths():
    assert storage.join("s3a://b/lh/tokenized/k2", "../k1/data") == "s3a://b/lh/tokenized/k1/data"
    assert storage.join("/lh/tokenized/k2/", "/../k1/") == "/lh/tokenized/k1"
    assert storage.join("s3a://b/lh", "x", "y") == "s3a://b/lh/x/y"


def test_loading_a_config_does_not_configure_storage(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    storage.configure({"spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:1"})
    try:
        load_config(overrides=["spark.conf.spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:2"])
        assert storage.s3_options()["endpoint_override"] == "127.0.0.1:1"  # the entry point decides
        storage.configure(load_config().spark.conf)
        assert "endpoint_override" not in storage.s3_options()
    finally:
        storage.configure({})


@pytest.mark.parametrize("module", ["storage", "storage.location", "storage.filesystem", "conf", "conf.fields",
                                    "tokenization", "training.result"])
def test_each_low_package_imports_first_in_a_fresh_interpreter(module):
    # storage and conf import each other's leaves (conf.redact, storage.location): no order may fail
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_python_worker_that_tokenizes_loads_no_config_schema():
    # what a Python worker imports to run tokenize's mapInArrow: pydantic and the schema cost it ~1 s
    import subprocess
    import sys

    code = ("import sys, spark_jobs.tokenize_executor; "
            "print(sorted(m for m in ('pydantic', 'conf.schema', 'conf.loader') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
