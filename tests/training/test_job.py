"""training.job: a job's identity and where its files live."""

from conf import load_config
from training import job

MANIFEST = {"content_hash": "c1", "tokenizer_fingerprint": "t1", "rows": {"train": 10}}


def _cfg(tmp_path, *overrides):
    return load_config(overrides=[f"lakehouse.root={tmp_path}", *overrides])


def test_job_key_follows_what_is_trained_not_where_it_reports(tmp_path):
    key = job.job_key(_cfg(tmp_path), MANIFEST)
    assert job.job_key(_cfg(tmp_path, "train.output_dir=/elsewhere", "train.log_every=3"), MANIFEST) == key
    judged = ("train.baseline_margin=0.1", "train.require_beat_baseline=false", "train.baseline_max_rows=10")
    assert job.job_key(_cfg(tmp_path, *judged), MANIFEST) == key  # how the model is judged, not what is trained
    assert job.job_key(_cfg(tmp_path, "train.lr=0.01"), MANIFEST) != key
    assert job.job_key(_cfg(tmp_path), {**MANIFEST, "content_hash": "c2"}) != key


def test_a_jobs_folder_is_named_by_its_key_under_the_lakehouse(tmp_path):
    cfg = _cfg(tmp_path)
    assert job.output_dir(cfg, MANIFEST) == str(tmp_path / "train" / job.job_key(cfg, MANIFEST))
    assert job.output_dir(_cfg(tmp_path, f"train.output_dir={tmp_path / 'x'}"), MANIFEST) == str(tmp_path / "x")
    assert job.output_dir(_cfg("s3a://b/lh"), MANIFEST) == f"s3a://b/lh/train/{job.job_key(_cfg('s3a://b/lh'), MANIFEST)}"


def test_a_failed_ranks_record_is_read_back_redacted(tmp_path):
    from conf.redact import remember_secrets

    remember_secrets({"mlflow": {"password": "hunter2-secret"}})
    try:
        raise ValueError("cannot log in with hunter2-secret")
    except ValueError as exc:
        job.write_failure(tmp_path, rank=1, local_rank=1, exc=exc)
    failures = job.read_failures(job.failures_dir(tmp_path))
    assert list(failures) == [1] and failures[1]["error"].startswith("ValueError: cannot log in with ")
    assert "hunter2-secret" not in failures[1]["error"] + failures[1]["traceback"]
