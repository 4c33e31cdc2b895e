"""storage against a real S3-compatible server (moto's, on 127.0.0.1) and the local disk."""

import pytest

from conf import load_config
import storage
from tests.conftest import S3_TEST_KEYS


@pytest.mark.parametrize("scheme", ["s3a", "s3"])
def test_files_round_trip_on_s3_with_only_the_aws_variables(s3_bucket, tmp_path, scheme):
    storage.configure(load_config().spark.conf)  # no s3a settings in config: the AWS variables alone
    root = f"{scheme}://{s3_bucket}/lh"
    storage.check(root)
    storage.write_text(f"{root}/tokenized/LATEST", "k1")
    storage.write_bytes(f"{root}/tokenized/k1/manifest.json", b'{"rows": 3}')
    assert storage.read_text(f"{root}/tokenized/LATEST") == "k1"
    assert storage.listdir(f"{root}/tokenized") == ["LATEST", "k1"]
    assert storage.files_under(root) == ["tokenized/LATEST", "tokenized/k1/manifest.json"]
    assert storage.exists(f"{root}/tokenized/k1") and storage.is_dir(f"{root}/tokenized/k1")
    assert not storage.exists(f"{root}/nothing") and storage.listdir(f"{root}/nothing") == []
    with pytest.raises(FileNotFoundError):
        storage.read_text(f"{root}/nothing/LATEST")

    (tmp_path / "tok" / "sub").mkdir(parents=True)
    (tmp_path / "tok" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tmp_path / "tok" / "sub" / "config.json").write_text("{}")
    storage.upload(str(tmp_path / "tok"), f"{root}/tokenizers/t1")
    storage.download(f"{root}/tokenizers/t1", str(tmp_path / "back"))
    assert (tmp_path / "back" / "vocab.txt").read_text() == "[PAD]\n[UNK]\n"
    assert (tmp_path / "back" / "sub" / "config.json").read_text() == "{}"

    storage.delete(f"{root}/tokenized")
    assert storage.listdir(root) == ["tokenizers"]


def test_pyarrow_reads_parquet_through_the_resolved_filesystem(s3_bucket):
    import pyarrow as pa
    import pyarrow.parquet as pq

    storage.configure(load_config().spark.conf)
    filesystem, path = storage.resolve(f"s3a://{s3_bucket}/t/part-0.parquet")
    pq.write_table(pa.table({"x": [1, 2, 3]}), path, filesystem=filesystem, row_group_size=2)
    with filesystem.open_input_file(path) as f:
        meta = pq.ParquetFile(f).metadata
        assert meta.num_rows == 3 and meta.num_row_groups == 2


def test_s3a_settings_in_config_win_over_the_aws_variables(s3_bucket, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing answers there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    storage.configure(load_config(overrides=[f"spark.conf.spark.hadoop.fs.s3a.endpoint={s3_server}",
                           f"spark.conf.spark.hadoop.fs.s3a.access.key={S3_TEST_KEYS['AWS_ACCESS_KEY_ID']}",
                           f"spark.conf.spark.hadoop.fs.s3a.secret.key={S3_TEST_KEYS['AWS_SECRET_ACCESS_KEY']}"]).spark.conf)
    storage.write_text(f"s3a://{s3_bucket}/x", "via config")
    assert storage.read_text(f"s3a://{s3_bucket}/x") == "via config"
    storage.configure(load_config().spark.conf)  # a later config without them: the AWS variables again (here: a dead endpoint)
    with pytest.raises(storage.StorageError, match="does not answer"):
        storage.check(f"s3a://{s3_bucket}/x")


def test_a_wrong_endpoint_is_one_line_naming_it_and_no_secret(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    storage.configure(load_config().spark.conf)
    with pytest.raises(storage.StorageError) as err:
        storage.check(f"s3a://{s3_bucket}/lh")
    message = str(err.value)
    assert "\n" not in message and "127.0.0.1:9" in message and "AWS_ENDPOINT_URL" in message
    assert S3_TEST_KEYS["AWS_SECRET_ACCESS_KEY"] not in message


def test_missing_credentials_for_an_s3_server_are_an_error_before_any_request(s3_bucket, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    storage.configure(load_config().spark.conf)
    with pytest.raises(storage.StorageError, match="no S3 credentials .*AWS_ACCESS_KEY_ID"):
        storage.check(f"s3a://{s3_bucket}/lh")


def test_a_missing_bucket_is_named(s3_bucket):
    storage.configure(load_config().spark.conf)
    with pytest.raises(storage.StorageError, match="the bucket 'no-such-bucket' does not exist"):
        storage.check("s3a://no-such-bucket/lh")


def test_local_paths_file_uris_and_dbfs_map_to_the_local_disk(tmp_path):
    storage.write_text(str(tmp_path / "a" / "LATEST"), "k")
    assert storage.read_text((tmp_path / "a" / "LATEST").as_uri()) == "k"
    assert storage.listdir(str(tmp_path / "a")) == ["LATEST"]  # no partial file is left behind
    assert storage.local_path("dbfs:/lakehouse/x") == "/dbfs/lakehouse/x"
    assert storage.scheme_of("/Volumes/main/default/lh") == "file"
    assert storage.scheme_of("abfss://c@acct.dfs.core.windows.net/lh") == "abfss"
    with pytest.raises(storage.StorageError, match="cannot read or write ftp:// locations"):
        storage.exists("ftp://host/lh")
