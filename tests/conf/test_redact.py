"""conf.redact: realistic cloud keys and URLs never leave the process, through any output of
the config (printed YAML, saved JSON, MLflow params, error messages)."""

import json

import pytest

from conf import ConfigError, config_dict, config_yaml, load_config, redact
from conf.redact import is_secret_key

# (--set key, value, the secret string that must never be shown)
SECRETS = [
    ("spark.conf.spark.hadoop.fs.azure.account.key.lakebertacct.dfs.core.windows.net",
     "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg==", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg=="),
    ("spark.conf.spark.hadoop.fs.s3a.encryption.key", "c3NlLWMta2V5LTMyLWJ5dGVzLWxvbmctLS0t", "c3NlLWMta2V5LTMyLWJ5dGVzLWxvbmctLS0t"),
    ("spark.conf.spark.hadoop.fs.s3a.server-side-encryption.key", "kmsKeyMaterial0042", "kmsKeyMaterial0042"),
    ("spark.conf.spark.hadoop.fs.s3a.secret.key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("spark.conf.spark.hadoop.fs.azure.sas.token", "sv=2022-11-02&ss=b&sig=SasSig0123", "SasSig0123"),
    ("spark.conf.spark.hadoop.fs.azure.account.oauth2.client.secret", "oauthClientSecret~77", "oauthClientSecret~77"),
    ("spark.conf.spark.executorEnv.AZURE_STORAGE_KEY", "AzureStorageKeyValue99", "AzureStorageKeyValue99"),
    ("spark.conf.spark.executorEnv.GITHUB_PAT", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("spark.conf.spark.executorEnv.HF_TOKEN", "hf_AbCdEfGhIjKlMnOpQrStUv", "hf_AbCdEfGhIjKlMnOpQrStUv"),
    ("ingest.options.password", "jdbc-Passw0rd!", "jdbc-Passw0rd!"),
    ("ingest.options.sasToken", "sp=r&sig=OptSig555", "OptSig555"),
    ("mlflow.tracking_uri", "https://ghtok0123456789abc@mlflow.example.com/", "ghtok0123456789abc"),
    ("mlflow.tracking_uri", "http://alice:PASSW0RD@127.0.0.1:5000", "PASSW0RD"),
    ("ingest.source", "jdbc:postgresql://db.example.com:5432/reviews?user=etl&password=Pg-Secret-42", "Pg-Secret-42"),
    ("ingest.source", "jdbc:sqlserver://db.example.com:1433;databaseName=rv;user=etl;password=Sql-Secret-7",
     "Sql-Secret-7"),
    ("lakehouse.root", "https://acct.blob.core.windows.net/lake?sv=2022-11-02&se=2030&sig=BlobSig%2Bq1", "BlobSig%2Bq1"),
    ("lakehouse.root", "s3a://AKIAEXAMPLE:s3aInlineSecret@bucket/lake", "s3aInlineSecret"),
    # names missed before issue 38: an HTTP header, auth, a split passphrase, a prefixed password
    ("ingest.options.Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.lakebert", "eyJhbGciOiJIUzI1NiJ9.lakebert"),
    ("ingest.options.auth", "AuthValue-31337", "AuthValue-31337"),
    ("ingest.options.passPhrase", "Correct-Horse-Battery", "Correct-Horse-Battery"),
    ("ingest.options.sslpassword", "SslPassw0rd-9", "SslPassw0rd-9"),
]


@pytest.mark.parametrize("key, value, secret", SECRETS)
def test_secret_is_absent_from_every_rendering_of_the_config(key, value, secret):
    from training.tracking.lineage import flat_params

    cfg = load_config(overrides=[f"{key}={value}"])
    assert secret not in config_yaml(cfg)
    assert secret not in json.dumps(config_dict(cfg))
    assert secret not in json.dumps(flat_params(cfg))  # MLflow params
    assert secret in json.dumps(config_dict(cfg, redact=False))  # the stages still get it
    # Free text that echoes the value (a Java exception, a traceback) is hidden too.
    assert secret not in redact(f"java.io.IOException: bad setting {value} for {key}")


def test_key_words_match_anywhere_in_a_dotted_key_but_only_as_whole_words():
    for key in ("fs.azure.account.key.acct.dfs.core.windows.net", "fs.s3a.encryption.key", "GITHUB_PAT",
                "spark.executorEnv.AZURE_STORAGE_KEY", "spark.hadoop.fs.gs.auth.service.account.private.key",
                "apiKey", "db.passwd", "x.credential", "sasToken", "X-Amz-Signature"):
        assert is_secret_key(key), key
    for key in ("tokenize.tokenizer", "tokenize.max_length", "spark.sql.shuffle.partitions", "clean.min_chars",
                "train.keep_last", "lakebert.job_key", "path", "ingest.text_column"):
        assert not is_secret_key(key), key


def test_auth_header_and_prefixed_or_split_password_names_are_secrets_but_an_auth_type_is_not():
    for key in ("Authorization", "ingest.options.Authorization", "proxyAuthorization", "auth", "http_auth",
                "passphrase", "pass_phrase", "passPhrase", "sslpassword", "ingest.options.sslpassword",
                "db_sslpassword", "csrftoken"):
        assert is_secret_key(key), key
    for key in ("spark.hadoop.fs.azure.account.auth.type", "spark.authenticate", "author", "authority",
                "train.max_tokens", "spark.kubernetes.driver.secrets.vol", "passage"):
        assert not is_secret_key(key), key


def test_http_credentials_in_free_text_are_hidden_by_value():
    assert redact('curl -H "Authorization: Bearer eyJhbGciOi.abc-DEF_123" x') == 'curl -H "Authorization: Bearer ***" x'
    assert redact("Proxy-Authorization: Basic dXNlcjpwYXNz") == "Proxy-Authorization: Basic ***"
    assert redact("the bearer of bad news; Authorization required") == "the bearer of bad news; Authorization required"


def test_urls_keep_everything_but_the_credentials():
    assert redact("http://user:pw1234@host:5000/x") == "http://user:***@host:5000/x"
    assert redact("https://tok987654@github.com/org/repo.git") == "https://***@github.com/org/repo.git"
    assert redact("abfss://container@acct.dfs.core.windows.net/lake") == "abfss://container@acct.dfs.core.windows.net/lake"
    assert redact("jdbc:mysql://h/db?user=etl&password=pw99&ssl=true") == "jdbc:mysql://h/db?user=etl&password=***&ssl=true"
    assert redact({"job_key": "abc123", "tracking_uri": "http://u:pw55@h"}, by_key=False) == {
        "job_key": "abc123", "tracking_uri": "http://u:***@h"}


def test_config_error_on_a_secret_value_names_the_key_but_not_the_secret():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["tables.bronze=main.t?password=ErrPass777"])
    assert "ErrPass777" not in str(err.value) and str(err.value).startswith("config error: tables.bronze=")
