"""The commands as a user runs them: `lakebert <stage>` and the real `spark-submit` binary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conf.help import first_sentence
from conf.schema import TokenizeConfig
from spark_jobs.registry import OVERRIDES_ENV
from spark_jobs.registry import stages
from spark_jobs.console import LOG_LEVEL_ENV
from spark_jobs.sample_data import write_sample
from spark_jobs.session import delta_package

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAKEBERT = [sys.executable, "-m", "spark_jobs.cli"]
FAST_SPARK = ["--set", "spark.master=local[2]", "--set", "spark.conf.spark.sql.shuffle.partitions=2"]


def _run(cmd, extra_env=None, **kw):
    env = {key: value for key, value in os.environ.items() if key != LOG_LEVEL_ENV}  # quiet unless asked
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, **(extra_env or {}))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600, **kw)


def _summary(proc):
    """The JSON summary of a command run with `--json`: its last stdout line."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("override, message", [
    ("ingest.sorce=data", "config error: unknown key ingest.sorce"),
    ("clean.min_chars=ten", "config error: clean.min_chars='ten' (from --set): Input should be a valid integer"),
    ("ingest.format=xml", "config error: ingest.format='xml'"),
])
def test_config_error_exits_2_with_one_line_and_writes_nothing(tmp_path, override, message):
    root = tmp_path / "lh"
    proc = _run([*LAKEBERT, "ingest", "--set", f"lakehouse.root={root}", "--set", override])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # exactly one line
    assert proc.stderr.startswith(message)
    assert proc.stdout == "" and not root.exists()


@pytest.mark.parametrize("args, message", [
    (["--set", "tune.space.lr={type: loguniform, low: [1"],
     "config error: tune.space.lr='{type: loguniform, low: [1' (from --set): not valid YAML: expected ',' or ']'"),
    (["--config", "{bomb}"], "config error: {bomb}: holds more than 10,000 values once its aliases are expanded"),
    (["--env", "{outside}"], "config error: env='{outside}' (from env) is not an overlay name"),
    (["--set", "tables.silver=x/../../.."],
     "config error: tables.silver='x/../../..' (from --set): a relative path must name a folder under lakehouse.root"),
    (["--set", "ingest.format=" + "x" * 100_000], "config error: ingest.format='xxxxxxxxxx"),
    (["--set", "clean.split.train=0.5"],
     "config error: clean.split: split fractions must sum to 1 (train+validation+test=0.7) (from {base} and --set)"),
], ids=["inline tune.space", "alias bomb", "env as a path", "table path above the root", "100 KB value",
        "mapping error"])
def test_every_config_error_exits_2_with_one_short_line_naming_its_layer(tmp_path, args, message):
    from tests.conf.test_loader import alias_bomb

    (tmp_path / "bomb.yaml").write_text(alias_bomb(6))
    (tmp_path / "x.yaml").write_text("clean:\n  min_chars: 1\n")
    names = {"{bomb}": str(tmp_path / "bomb.yaml"), "{base}": str(REPO / "conf" / "base.yaml"),
             "{outside}": os.path.relpath(tmp_path / "x", REPO / "conf" / "env")}  # conf/env/../../../tmp/.../x.yaml
    for name, value in names.items():
        args, message = [a.replace(name, value) for a in args], message.replace(name, value)
    root = tmp_path / "lh"
    proc = _run([*LAKEBERT, "ingest", "--set", f"lakehouse.root={root}", *args])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and len(proc.stderr) < 1500
    assert proc.stderr.startswith(message)
    assert proc.stdout == "" and not root.exists()


@pytest.mark.parametrize("handed, message", [
    (["clean.max_chars=many", "clean.min_chars=ten"],
     "config error: clean.max_chars='many' (from $LAKEBERT_OVERRIDES): Input should be a valid integer"),
    ("{not json", "config error: $LAKEBERT_OVERRIDES must hold a JSON list of key=value strings"),
], ids=["bad value", "not a list"])
def test_overrides_handed_in_the_environment_sit_below_set_and_are_named_in_errors(tmp_path, handed, message):
    root = tmp_path / "lh"
    text = handed if isinstance(handed, str) else json.dumps(handed)
    proc = _run([*LAKEBERT, "ingest", "--set", f"lakehouse.root={root}", "--set", "clean.min_chars=5"],
                {OVERRIDES_ENV: text})
    assert proc.returncode == 2 and proc.stderr.startswith(message)
    assert proc.stderr.count("\n") == 1 and proc.stdout == "" and not root.exists()


@pytest.mark.integration
def test_missing_source_path_exits_1_naming_the_path_and_writes_nothing(tmp_path):
    root = tmp_path / "lh"
    proc = _run([*LAKEBERT, "ingest", *FAST_SPARK, "--set", f"lakehouse.root={root}",
                 "--set", f"ingest.source={tmp_path}/missing.jsonl"])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, Spark's start-up is in the log
    message, log = proc.stderr.strip().split(" (log: ")
    assert message == f"ingest error: ingest.source='{tmp_path}/missing.jsonl': path does not exist"
    assert "resolved config" in Path(log.rstrip(")")).read_text()  # a temporary file, outside the lakehouse
    assert not root.exists()


@pytest.mark.integration
def test_lakebert_ingest_shows_its_own_lines_and_logs_spark_and_the_redacted_config(tmp_path):
    src = write_sample(tmp_path / "data", n_docs=200, seed=1)
    root = tmp_path / "lh"
    proc = _run([*LAKEBERT, "ingest", "--json", *FAST_SPARK, "--set", f"lakehouse.root={root}",
                 "--set", f"ingest.source={src}", "--set", "spark.conf.spark.hadoop.fs.s3a.secret.key=hunter2"])
    summary = _summary(proc)
    assert summary["stage"] == "ingest" and summary["read"] == summary["inserted"] + summary["duplicates"] + sum(
        summary["quarantined"].values())
    assert set(summary["tables"]) == {"bronze", "quarantine"} and summary["seconds"] > 0
    saved = root / "_runs" / "ingest" / summary["run_id"]
    assert summary["log"] == str(saved / "run.log")
    # the console: lakebert's lines only (no JVM, Ivy or log4j output), the summary naming the log
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[-2] == f"lakebert ingest: done in {summary['seconds']:,.1f} s; log: {summary['log']}"
    assert all(line.startswith(("ingest:", "lakebert ingest:", "{")) for line in proc.stdout.splitlines())
    # the log: the resolved config (redacted) and everything Spark printed
    log = (saved / "run.log").read_text()
    assert log.startswith("# lakebert ingest: resolved config (secrets redacted)")
    assert ":: resolving dependencies ::" in log  # Ivy's report of Delta's jars
    assert "hunter2" not in log + proc.stdout
    assert json.loads((saved / "summary.json").read_text()) == summary
    assert json.loads((saved / "config.json").read_text())["spark"]["conf"]["spark.hadoop.fs.s3a.secret.key"] == "***"


@pytest.mark.integration
def test_verbose_shows_everything_on_the_console(tmp_path):
    src = write_sample(tmp_path / "data", n_docs=50, seed=3)
    root = tmp_path / "lh"
    proc = _run([*LAKEBERT, "ingest", "--verbose", "--json", *FAST_SPARK, "--set", f"lakehouse.root={root}",
                 "--set", f"ingest.source={src}"])
    summary = _summary(proc)
    assert proc.stdout.startswith("# lakebert ingest: resolved config (secrets redacted)")
    assert ":: resolving dependencies ::" in proc.stdout + proc.stderr
    assert "log" not in summary and not (root / "_runs" / "ingest" / summary["run_id"] / "run.log").exists()


def test_stage_runs_through_the_real_spark_submit_binary(spark, tmp_path):
    """tokenize's script, the one whose name must not shadow the standard library (spark-submit
    puts the script's folder first on sys.path), on bronze and silver made in this process; its
    lakehouse.root handed over in $LAKEBERT_OVERRIDES, as the Airflow DAG does, beside a --set.
    (The Airflow DAG test runs every stage's script through spark-submit.)"""
    from spark_jobs.clean import clean
    from spark_jobs.ingest import ingest
    from tests.conftest import make_config

    src = write_sample(tmp_path / "data", n_docs=200, seed=2)
    root = tmp_path / "lh"
    cfg = make_config(root, f"ingest.source={src}", "ingest.id_column=id")
    ingest(spark, cfg, "i")
    cleaned = clean(spark, cfg, "c")
    args = ["--set", "tokenize.vocab_size=500"]
    submit = [str(BIN / "spark-submit"), "--master", "local[2]", "--packages", delta_package(),
              "--conf", "spark.sql.shuffle.partitions=2"]
    handed = {OVERRIDES_ENV: json.dumps([f"lakehouse.root={root}", "tokenize.vocab_size=9"])}  # --set wins
    tokenized = _summary(_run([*submit, "spark_jobs/tokenize_silver.py", "--json", *args], handed))
    assert tokenized["status"] == "done" and tokenized["rows"] == cleaned["output"]
    assert json.loads(Path(tokenized["manifest"]).read_text())["rows"] == cleaned["output"]


def test_unknown_command_lists_the_commands():
    proc = _run([*LAKEBERT, "frobnicate"])
    assert proc.returncode == 2 and "ingest" in proc.stderr and "clean" in proc.stderr


def test_help_lists_every_command_with_one_line():
    proc = _run([*LAKEBERT, "--help"])
    assert proc.returncode == 0
    for command, stage in stages().items():
        assert f"  {command:<12} {stage.description}" in proc.stdout.splitlines()


def test_stage_help_lists_the_keys_it_reads_with_defaults_and_meanings_from_the_schema():
    proc = _run([*LAKEBERT, "tokenize", "--help"])
    assert proc.returncode == 0 and "--verbose" in proc.stdout
    lines = " ".join(proc.stdout.split())  # meanings wrap over lines
    meaning = first_sentence(TokenizeConfig.model_fields["max_length"].description)
    assert f"tokenize.max_length 128 {meaning}" in lines
    assert "train.model tiny" in lines  # tokenizer=auto follows the model
    assert "train.lr" not in lines and "score.source" not in lines  # keys tokenize never reads


@pytest.mark.parametrize("problem", ["wrong endpoint", "no credentials", "no bucket"])
def test_an_unreachable_object_store_is_one_line_before_spark_starts(s3_bucket, monkeypatch, tmp_path, problem):
    from spark_jobs.stage import EXIT_INPUT

    bucket = s3_bucket
    if problem == "wrong endpoint":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    elif problem == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    else:
        bucket = "no-such-bucket"
    proc = _run([*LAKEBERT, "ingest", "--set", f"lakehouse.root=s3a://{bucket}/lh", "--set", "ingest.source=x.csv"])
    expected = {"wrong endpoint": "the S3 endpoint 127.0.0.1:9 does not answer", "no credentials": "no S3 credentials",
                "no bucket": "the bucket 'no-such-bucket' does not exist"}[problem]
    assert proc.returncode == EXIT_INPUT and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Spark" not in proc.stdout + proc.stderr and "lakebert-test-secret-value" not in proc.stdout + proc.stderr
