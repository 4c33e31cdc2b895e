"""lakebert train: TorchDistributor in local mode, MLflow, resume (with checkpoints on S3), bad config.

Everything is real: the sample data through ingest, clean and tokenize; TorchDistributor
launching 2 gloo processes; a sqlite MLflow store; a real S3-compatible server. Training on
executors (`train.local_mode=false`) with a real `mlflow server` is the standalone-cluster
test's (tests/spark_jobs/test_cluster.py).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file

from conf.schema import FINE_TUNING_DEFAULTS
from spark_jobs.sample_data import LABELS, make_document
from spark_jobs.stage import EXIT_CONFIG, StageError, one_line, run_with_config
from spark_jobs.tokenize_silver import tokenize
from spark_jobs.train import failure_report, train
from tests.commands import training_ranks
from tests.conftest import TEST_SPARK, make_config, tokenized_sample
from tests.servers import free_port
from training.tracking.tags import (
    TAG_BELOW_BASELINE,
    TAG_DEFAULTS,
    TAG_DEGENERATE,
    TAG_DEGENERATE_REASON,
    TAG_GIT_COMMIT,
    TAG_JOB_KEY,
    TAG_MANIFEST,
    TAG_MANIFEST_HASH,
    TAG_SILVER_TABLE,
    TAG_SILVER_VERSION,
    TAG_TOKENIZER,
    TAG_TOKENIZER_PATH,
)

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["train.epochs=3", "train.batch_size=16", "train.num_processes=2", "train.seed=5"]


@pytest.fixture(scope="module")
def lakehouse(spark, tmp_path_factory):
    """Sample data (1,200 docs) through ingest, clean and tokenize."""
    return tokenized_sample(spark, tmp_path_factory.mktemp("train") / "lh", 1200, 4, "tokenize.vocab_size=1500",
                            "tokenize.max_length=64")


def _cfg(root, store, *overrides):
    return make_config(root, "tokenize.max_length=64", *TRAIN, f"mlflow.tracking_uri={store}", *overrides)


# The shared run's settings, also the SIGKILL test's: 120 steps, a checkpoint every 10.
CHECKPOINTED = ("train.epochs=2", "train.checkpoint_every=10", "train.batch_size=8", "train.keep_last=10")


@pytest.fixture(scope="module")
def trained(spark, lakehouse, tmp_path_factory):
    """One training of the module's data, shared by the tests that need a good run: the local-mode
    test checks it, the degenerate test trains a bad run into its store after it, and the SIGKILL
    test compares its resumed run with it. Realistic cloud secrets are in its config (the session
    exists already, so Spark ignores them): none may reach the store, its artifacts or the summary.
    Its 2 epochs leave it below the linear baseline on the sample's easy topics (validation macro
    F1 0.66 against 1.00 when written); `train.require_beat_baseline=false` lets it take @champion
    anyway, as a user may (an explicit setting wins), so the degenerate test has a champion to keep."""
    from tests.conf.test_redact import SECRETS

    folder = tmp_path_factory.mktemp("trained")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    secret_keys = [f"{key}={value}" for key, value, _ in SECRETS if key.startswith(("spark.conf", "ingest.options"))]
    cfg = _cfg(lakehouse, store, "mlflow.system_metrics_interval=1", "train.require_beat_baseline=false", *CHECKPOINTED,
               *secret_keys)
    return {"cfg": cfg, "store": store, "folder": folder, "secret_keys": secret_keys,
            "summary": train(spark, cfg, "r1")}


def _job_runs(client, summary):
    """The store's runs of `summary`'s job (the degenerate test adds another job's run to the store)."""
    experiment = client.get_experiment_by_name("lakebert").experiment_id
    return client.search_runs([experiment], filter_string=f"tags.`{TAG_JOB_KEY}` = '{summary['job_key']}'")


def test_local_mode_two_processes_log_one_run_and_register_a_model_that_predicts(spark, trained):
    from tests.conf.test_redact import SECRETS

    cfg, store, summary, secret_keys = trained["cfg"], trained["store"], trained["summary"], trained["secret_keys"]
    assert summary["status"] == "done" and summary["world_size"] == 2
    assert summary["registered_model"] == {"name": "lakebert-classifier", "version": "1"}

    client = MlflowClient(store)
    runs = _job_runs(client, summary)
    assert len(runs) == 1  # one run for the job, whatever the number of processes
    run = runs[0]
    assert run.info.run_id == summary["run_id"] and run.info.status == "FINISHED"
    assert run.data.params["train.num_processes"] == "2" and run.data.params["train.batch_size"] == "8"
    steps = summary["steps"]
    for key in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"):
        points = client.get_metric_history(run.info.run_id, key)
        assert sorted(p.step for p in points) == list(range(1, steps + 1)), key
    assert any(key.startswith("system/") for key in run.data.metrics)
    assert {"eval/accuracy", "validation/f1_macro", "test/accuracy"} <= set(run.data.metrics)
    assert {"baseline/validation/f1_macro", "baseline/test/f1_macro", "baseline/seconds"} <= set(run.data.metrics)
    assert run.data.tags[TAG_BELOW_BASELINE] == str(summary["baseline"]["below"]).lower()

    manifest_path = Path(summary["manifest"])
    manifest = json.loads(manifest_path.read_text())
    tags = run.data.tags
    assert tags[TAG_SILVER_TABLE] == manifest["source"]["table"]
    assert tags[TAG_SILVER_VERSION] == str(manifest["source"]["delta_version"])
    assert tags[TAG_MANIFEST] == str(manifest_path)
    assert tags[TAG_MANIFEST_HASH] == manifest["content_hash"]
    assert tags[TAG_TOKENIZER] == manifest["tokenizer_fingerprint"]
    assert len(tags[TAG_GIT_COMMIT].split("-")[0]) == 40

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"eval/confusion_matrix_test.png", "eval/confusion_matrix_test.json"} <= artifacts
    checkpoints = client.list_artifacts(run.info.run_id, "checkpoints/checkpoints")
    assert [Path(c.path).name for c in checkpoints][-1] == f"step-{steps:09d}"

    assert run.data.params["spark.conf.spark.executorEnv.GITHUB_PAT"] == "***"
    stored = [trained["folder"] / "mlflow.db", *Path(run.info.artifact_uri.removeprefix("file://")).rglob("*"),
              *Path(summary["output_dir"]).rglob("*")]
    for _, _, secret in SECRETS:
        if secret in " ".join(secret_keys):
            assert secret not in json.dumps(summary)
            assert not [p for p in stored if p.is_file() and secret.encode() in p.read_bytes()], secret

    val = summary["metrics"]["validation"]
    majority = max(map(sum, val["confusion_matrix"])) / val["examples"]
    assert val["accuracy"] > majority
    losses = [p.value for p in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda p: p.step)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5

    import mlflow

    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model("models:/lakebert-classifier/1")
    import random

    texts = [make_document(random.Random(i), LABELS[i % 4]) for i in range(6)]
    predictions = model.predict(pd.DataFrame({"text": texts}))
    assert len(predictions) == 6 and set(predictions["label"]) <= set(LABELS)

    again = train(spark, cfg, "r2")  # the same job again: nothing to do
    assert again["status"] == "up_to_date" and again["run_id"] == run.info.run_id
    assert again["registered_model"] == summary["registered_model"]
    assert len(_job_runs(client, summary)) == 1


@pytest.mark.parametrize("override, message", [
    ("train.use_gpu=true", "needs 2 GPUs"),
    ("train.model=/no/such/model", "no such directory"),
    ("train.data=/no/such/tokenized", "no tokenized data"),
])
def test_bad_config_fails_before_any_process_or_run_starts(spark, lakehouse, tmp_path, override, message):
    store = tmp_path / "mlflow.db"
    with pytest.raises(StageError, match=message):
        train(spark, _cfg(lakehouse, f"sqlite:///{store}", override), "r")
    assert not store.exists()  # not even an MLflow run was created


def test_collapsed_model_is_flagged_degenerate_and_never_takes_champion(spark, lakehouse, trained):
    store, good = trained["store"], trained["summary"]  # the module's good run, the store's first
    assert good["degenerate"] is False
    allowed = "may still take @champion (train.require_beat_baseline=false)"
    assert [w for w in good["warnings"] if allowed not in w] == []
    assert good["champion"]["moved"] and good["champion"]["version"] == "1"
    client = MlflowClient(store)
    assert str(client.get_model_version_by_alias("lakebert-classifier", "champion").version) == "1"
    assert client.get_run(good["run_id"]).data.tags[TAG_DEGENERATE] == "false"

    # An absurd learning rate: the model ends up predicting one class
    bad = train(spark, _cfg(lakehouse, store, "mlflow.system_metrics=false", "train.lr=20"), "bad")
    assert bad["status"] == "done" and bad["registered_model"]["version"] == "2"  # still registered...
    assert bad["degenerate"] is True and not bad["champion"]["moved"]
    assert str(client.get_model_version_by_alias("lakebert-classifier", "champion").version) == "1"  # ...never champion
    run = client.get_run(bad["run_id"])
    assert run.data.tags[TAG_DEGENERATE] == "true" and "baseline" in run.data.tags[TAG_DEGENERATE_REASON]
    assert run.data.metrics["validation/baseline_f1_macro"] < 0.5
    assert any("degenerate" in w and "learning rate" in w for w in bad["warnings"])


def test_train_refuses_an_output_folder_of_files_it_did_not_write_and_removes_nothing(spark, lakehouse, tmp_path,
                                                                                       capfd):
    folder = tmp_path / "users-folder"
    files = {"checkpoints/thesis.txt": "years of work", "best/photo.txt": "a photo", "failures/keep.txt": "keep",
             "result.json": "{\"mine\": true}"}
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    store = tmp_path / "mlflow.db"
    cfg = _cfg(lakehouse, f"sqlite:///{store}", f"train.output_dir={folder}")
    assert run_with_config("train", cfg, train) == EXIT_CONFIG
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"train.output_dir={folder} is not empty and lakebert did not make it" in lines[0]
    assert {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()} == files
    assert not store.exists()  # nothing started: not even an MLflow run


def test_a_job_trains_on_the_dataset_it_named_when_latest_moves_after_launch(spark, lakehouse, tmp_path, monkeypatch,
                                                                            capfd):
    """`lakebert tokenize` publishes another dataset (LATEST moves) right after `lakebert train`
    resolved its own: every process trains on the first, and the run, its tags and result.json
    name it. Another job is then refused the same output folder, which keeps its checkpoints."""
    import spark_jobs.train as launcher

    root = tmp_path / "tokenized"
    first = (lakehouse / "tokenized" / "LATEST").read_text().strip()
    shutil.copytree(lakehouse / "tokenized" / first, root / first)
    tokenize(spark, make_config(lakehouse, f"tokenize.output={root}", "tokenize.vocab_size=1500",
                                "tokenize.max_length=32"), "t32")
    other = (root / "LATEST").read_text().strip()
    assert other != first
    (root / "LATEST").write_text(first)
    launch = launcher.launch

    def launch_as_latest_moves(*args, **kwargs):
        (root / "LATEST").write_text(other)  # tokenize publishes now, after train resolved its data
        return launch(*args, **kwargs)

    monkeypatch.setattr(launcher, "launch", launch_as_latest_moves)
    store, out = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "job"
    settings = (f"tokenize.output={root}", f"train.output_dir={out}", "mlflow.system_metrics=false",
                "mlflow.log_model=false")
    summary = train(spark, _cfg(lakehouse, store, *settings, "train.epochs=1"), "r")
    assert (root / "LATEST").read_text() == other
    manifest_path = root / first / "manifest.json"
    content_hash = json.loads(manifest_path.read_text())["content_hash"]
    assert summary["status"] == "done" and summary["manifest"] == str(manifest_path)
    result = json.loads((out / "result.json").read_text())
    assert result["data"]["manifest"] == str(manifest_path) and result["data"]["content_hash"] == content_hash
    tags = MlflowClient(store).get_run(summary["run_id"]).data.tags
    assert tags[TAG_MANIFEST] == str(manifest_path) and tags[TAG_MANIFEST_HASH] == content_hash

    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    capfd.readouterr()
    assert run_with_config("train", _cfg(lakehouse, store, *settings, "train.epochs=2"), train) == EXIT_CONFIG
    assert f"train.output_dir={out} belongs to another job" in capfd.readouterr().err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints


def test_a_disk_that_fills_during_training_is_named_in_the_one_line_error(spark, lakehouse, tmp_path, small_disk):
    """The first checkpoint does not fit: the rank's error names ENOSPC, although its failure
    record could not be written either (the order of a cause and its consequences on other
    ranks is `failure_report`'s test)."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = _cfg(lakehouse, store, f"train.output_dir={small_disk}", "train.epochs=1", "train.checkpoint_every=1",
               "train.num_processes=1", "mlflow.system_metrics=false")
    with pytest.raises(StageError) as caught:
        train(spark, cfg, "r")
    line = one_line(caught.value)
    assert line.startswith("training failed, MLflow run ") and "rank 0 (local rank 0, host " in line
    assert "No space left on device" in line and "ENOSPC" in line
    run = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("lakebert").experiment_id])[0]
    assert run.info.status == "FAILED"


def test_a_store_outage_during_a_checkpoint_upload_reports_the_ranks_own_error(spark, lakehouse, tmp_path,
                                                                              s3_bucket, s3_server, monkeypatch):
    """The S3 server goes away (a proxy cut) as rank 0 starts writing its first checkpoint: the
    failure records and their folder cannot be read either, and the error is still the rank's."""
    from tests.servers import CuttableProxy

    proxy = CuttableProxy(int(s3_server.rsplit(":", 1)[1]), cut_on=b"/checkpoints/step-")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # the launcher and its processes go through the proxy
    store, out = f"sqlite:///{tmp_path / 'mlflow.db'}", f"s3a://{s3_bucket}/job"
    cfg = _cfg(lakehouse, store, f"train.output_dir={out}", "train.epochs=1", "train.checkpoint_every=1",
               "train.num_processes=1", "mlflow.system_metrics=false")
    with pytest.raises(StageError) as caught:
        train(spark, cfg, "r")
    assert proxy.cut.is_set()
    line = one_line(caught.value)
    assert "rank 0 (local rank 0, host " in line and f"{out}/checkpoints/step-000000001" in line, line
    assert "To enable traceback" not in line and "cannot list" not in line


def _pretrained_model_dir(root):
    """A small 'pretrained' BERT folder with its own tokenizer, as save_pretrained writes it."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tokenization import train_wordpiece

    tok = train_wordpiece((make_document(random.Random(i), LABELS[i % 4]) for i in range(400)), root / "tok",
                          vocab_size=700)
    model_dir = root / "pretrained"
    BertForSequenceClassification(BertConfig(vocab_size=700, hidden_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=128)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(str(tok)).save_pretrained(model_dir)
    return model_dir


def test_pretrained_local_model_trains_on_its_own_tokenizers_ids_with_fine_tuning_defaults(spark, lakehouse, tmp_path):
    model_dir = _pretrained_model_dir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_config(lakehouse, f"train.model={model_dir}", "tokenize.max_length=64",
                      f"tokenize.output={tmp_path / 'tokenized'}", "train.num_processes=2", "train.epochs=1",
                      f"mlflow.tracking_uri={store}", "mlflow.log_model=false", "mlflow.system_metrics=false")
    tokenized = tokenize(spark, cfg, "t")
    manifest = json.loads(Path(tokenized["manifest"]).read_text())
    assert manifest["tokenizer_path"] == manifest["tokenizer_model"] == str(model_dir)
    summary = train(spark, cfg, "r")
    assert summary["status"] == "done" and summary["defaults"]["kind"] == "fine-tuning"
    assert summary["defaults"]["lr"] == FINE_TUNING_DEFAULTS["lr"]
    run = MlflowClient(store).get_run(summary["run_id"])
    assert run.data.tags[TAG_TOKENIZER_PATH] == str(model_dir)
    assert float(run.data.params["train.lr"]) == FINE_TUNING_DEFAULTS["lr"]
    assert run.data.tags[TAG_DEFAULTS] == "fine-tuning"


def test_data_tokenized_for_another_model_fails_before_training(spark, lakehouse, tmp_path):
    model_dir = _pretrained_model_dir(tmp_path)
    store = tmp_path / "mlflow.db"
    with pytest.raises(StageError) as err:  # the lakehouse's data has a WordPiece tokenizer trained on silver
        train(spark, _cfg(lakehouse, f"sqlite:///{store}", f"train.model={model_dir}"), "r")
    assert "\n" not in str(err.value) and "does not match model" in str(err.value)
    assert not store.exists()


def test_unreachable_mlflow_server_fails_the_preflight_fast_without_showing_its_password(spark, lakehouse, tmp_path):
    uri = f"http://alice:PASSW0RD@127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(StageError) as err:
        train(spark, _cfg(lakehouse, uri), "r")
    assert time.monotonic() - started < 60  # a guard: MLflow's default retries took 4 m 42 s
    msg = str(err.value)
    assert msg.startswith("MLflow at http://alice:***@127.0.0.1:") and "PASSW0RD" not in msg
    assert "\n" not in msg


def test_failure_report_without_rank_details_skips_runtime_warnings(tmp_path):
    output = ("[lakebert train] step 120/120 loss 0.41\nProcess exited: killed by signal 9 (SIGKILL)\n"
              "OMP: Info #276: omp_set_nested routine deprecated, please use omp_set_max_active_levels instead.\n"
              "/x/torch/utils.py:12: UserWarning: something\n  warnings.warn(\n")
    report = failure_report(tmp_path, output)
    assert "killed by signal 9" in report and "OMP" not in report and "UserWarning" not in report


def test_failure_report_names_the_rank_and_its_error(tmp_path):
    torchrun_output = """
    Root Cause (first observed failure):
    [0]:
      time      : 2026-11-21_00:50:00
      host      : worker-3
      rank      : 1 (local_rank: 1)
      exitcode  : -9 (pid: 4242)
      error_file: <N/A>
      traceback : Signal 9 (SIGKILL) received by PID 4242
    """
    assert failure_report(tmp_path, torchrun_output) == \
        "rank 1 (local rank 1, pid 4242) exited with code -9: Signal 9 (SIGKILL) received by PID 4242"
    (tmp_path / "rank-0.json").write_text(json.dumps({"rank": 0, "local_rank": 0, "host": "h", "pid": 7,
        "error": "RuntimeError: [gloo/transport/tcp/pair.cc:545] Read error: Connection reset by peer"}))
    report = failure_report(tmp_path, torchrun_output)
    assert report.startswith("rank 1 (local rank 1, pid 4242) exited with code -9: Signal 9 (SIGKILL)")
    assert report.endswith("Connection reset by peer (after a peer failed)")
    (tmp_path / "rank-2.json").write_text(json.dumps(
        {"rank": 2, "local_rank": 0, "host": "w2", "pid": 8, "error": "ValueError: bad label"}))
    assert failure_report(tmp_path, "").startswith("rank 2 (local rank 0, host w2, pid 8) failed: ValueError: bad label")


def test_failure_report_takes_a_ranks_own_line_when_its_record_cannot_be_read(tmp_path):
    """A full disk or a store that is down loses the failure records (or their listing fails):
    the rank's line in the output still names the cause, before its peer's consequence."""
    lost = tmp_path / "a-file"
    lost.write_text("the failures folder cannot be listed under a file")
    output = ("[lakebert failure] rank 1 (local rank 1, host w1, pid 9): RuntimeError: [gloo] Connection closed by peer\n"
              "[lakebert failure] rank 0 (local rank 0, host w0, pid 8): OSError: [Errno 28] No space left on device "
              "(ENOSPC)\nrank      : 0 (local_rank: 0)\n  exitcode  : 1 (pid: 8)\n  error_file: <N/A>\n"
              "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html\n")
    assert failure_report(str(lost / "failures"), output) == (
        "rank 0 (local rank 0, host w0, pid 8) failed: OSError: [Errno 28] No space left on device (ENOSPC); "
        "rank 1 (local rank 1, host w1, pid 9) failed: RuntimeError: [gloo] Connection closed by peer "
        "(after a peer failed)")


def _launch(root, store, *overrides, master="local[2]"):
    """`lakebert train` in its own process (its own SparkContext), as a user runs it."""
    sets = [x for o in [*TEST_SPARK, f"spark.master={master}", f"lakehouse.root={root}", "tokenize.max_length=64",
                        *TRAIN, f"mlflow.tracking_uri={store}", "mlflow.system_metrics=false", *overrides]
            for x in ("--set", o)]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return subprocess.Popen([sys.executable, "-m", "spark_jobs.cli", "train", "--json", *sets], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_sigkill_of_one_process_then_rerun_resumes_from_s3_checkpoints_and_equals_an_uninterrupted_run(
        lakehouse, trained, tmp_path, s3_bucket):
    """The baseline (the module's run) keeps its checkpoints on local disk, the killed run on S3
    (no rename there: a checkpoint is complete when its marker is), and the resumed run, a
    `lakebert train` process as a user runs it, equals the baseline bitwise."""
    import storage

    opts = CHECKPOINTED
    base_store, baseline = trained["store"], trained["summary"]

    store = f"sqlite:///{tmp_path / 'killed.db'}"
    out_dir = f"s3a://{s3_bucket}/killed"
    proc = _launch(lakehouse, store, f"train.output_dir={out_dir}", *opts)
    target = f"{out_dir}/checkpoints/step-{20:09d}"
    deadline = time.time() + 300
    while not storage.exists(f"{target}/COMPLETE"):
        assert proc.poll() is None and time.time() < deadline, "training ended before step 20"
        time.sleep(0.05)
    victim = training_ranks(proc.pid).get("1")
    assert victim, "no rank-1 process found"
    victim.send_signal(signal.SIGKILL)
    code, out, err = _finish(proc)
    assert code == 1
    assert "rank 1" in err and "SIGKILL" in err and "ended FAILED" in err
    client = MlflowClient(store)
    run = client.search_runs(["1"])[0]
    assert run.info.status == "FAILED"
    killed_at = len(client.get_metric_history(run.info.run_id, "train/loss"))
    assert 20 <= killed_at < baseline["steps"]

    code, out, err = _finish(_launch(lakehouse, store, f"train.output_dir={out_dir}", *opts))
    assert code == 0, err[-3000:]
    resumed = json.loads(out.strip().splitlines()[-1])
    assert resumed["run_id"] == run.info.run_id and "resuming from" in out
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    points = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda p: p.step)
    assert [p.step for p in points] == list(range(1, baseline["steps"] + 1))  # the replay added no duplicates
    base_points = sorted(MlflowClient(base_store).get_metric_history(baseline["run_id"], "train/loss"),
                         key=lambda p: p.step)
    assert [p.value for p in points] == [p.value for p in base_points]  # every loss, bitwise
    assert not (tmp_path / "killed").exists()
    final = safetensors_load(storage.read_bytes(f"{out_dir}/checkpoints/step-{baseline['steps']:09d}/model.safetensors"))
    expected = load_file(str(Path(baseline["output_dir"]) / "checkpoints" / f"step-{baseline['steps']:09d}" /
                             "model.safetensors"))
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)
