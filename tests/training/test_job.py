"""training.job: a job's identity and where its files live."""

import dataclasses

import pytest

from conf import load_config
from tokenization.dataset import Manifest
from training import job

MANIFEST = Manifest.from_dict({"content_hash": "c1", "tokenizer_fingerprint": "t1", "rows": {"train": 10}})


def _cfg(tmp_path, *overrides):
    return load_config(overrides=[f"lakehouse.root={tmp_path}", *overrides])


def test_job_key_follows_what_is_trained_not_where_it_reports(tmp_path):
    key = job.job_key(_cfg(tmp_path), MANIFEST)
    assert job.job_key(_cfg(tmp_path, "train.output_dir=/elsewhere", "train.log_every=3"), MANIFEST) == key
    judged = ("train.baseline_margin=0.1", "train.require_beat_baseline=false", "train.baseline_max_rows=10")
    assert job.job_key(_cfg(tmp_path, *judged), MANIFEST) == key  # how the model is judged, not what is trained
    assert job.job_key(_cfg(tmp_path, "train.lr=0.01"), MANIFEST) != key
    assert job.job_key(_cfg(tmp_path), dataclasses.replace(MANIFEST, content_hash="c2")) != key


def test_a_jobs_folder_is_named_by_its_key_under_the_lakehouse(tmp_path):
    cfg = _cfg(tmp_path)
    assert job.output_dir(cfg, MANIFEST) == str(tmp_path / "train" / job.job_key(cfg, MANIFEST))
    assert job.output_dir(_cfg(tmp_path, f"train.output_dir={tmp_path / 'x'}"), MANIFEST) == str(tmp_path / "x")
    assert job.output_dir(_cfg("s3a://b/lh"), MANIFEST) == f"s3a://b/lh/train/{job.job_key(_cfg('s3a://b/lh'), MANIFEST)}"


def test_a_failed_ranks_record_is_read_back_redacted_and_its_line_says_the_same(tmp_path, capsys):
    from conf.redact import remember_secrets

    remember_secrets({"mlflow": {"password": "hunter2-secret"}})
    try:
        raise ValueError("cannot log in with hunter2-secret")
    except ValueError as exc:
        job.report_failure(str(tmp_path), rank=1, local_rank=1, exc=exc)
    failures = job.read_failures(job.failures_dir(tmp_path))
    assert list(failures) == [1] and failures[1]["error"].startswith("ValueError: cannot log in with ")
    assert "hunter2-secret" not in failures[1]["error"] + failures[1]["traceback"]
    printed = capsys.readouterr().out
    assert "hunter2-secret" not in printed
    assert job.failures_in_output(printed)[1]["error"] == failures[1]["error"]


def test_a_rank_that_cannot_write_its_record_still_says_why_on_stdout(tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")  # the record's folder cannot be made: as on a full or lost store
    try:
        raise OSError(28, "No space left on device")
    except OSError as exc:
        job.report_failure(str(blocked), rank=0, local_rank=0, exc=exc)
    found = job.failures_in_output("torchrun noise\n" + capsys.readouterr().out)
    assert found[0]["error"] == "OSError: [Errno 28] No space left on device (ENOSPC)"


def _claim(tmp_path, folder, *overrides):
    cfg = _cfg(tmp_path, f"train.output_dir={folder}", *overrides)
    job.claim_output_dir(cfg, str(folder), job.job_key(cfg, MANIFEST))


def test_an_empty_output_folder_is_claimed_for_its_job_and_refused_to_another(tmp_path):
    folder = tmp_path / "out"
    _claim(tmp_path, folder)
    _claim(tmp_path, folder)  # the same job again: resumes there
    with pytest.raises(job.OutputDirError, match=r"belongs to another job .* give this config its own"):
        _claim(tmp_path, folder, "train.lr=0.01")


def test_a_folder_of_files_lakebert_did_not_write_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "thesis"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "thesis.txt").write_text("years of work")
    with pytest.raises(job.OutputDirError, match=r"is not empty and lakebert did not make it"):
        _claim(tmp_path, folder)
    assert sorted(p.name for p in folder.rglob("*")) == ["checkpoints", "thesis.txt"]


def test_a_default_job_folder_made_before_the_marker_existed_is_adopted(tmp_path):
    cfg = _cfg(tmp_path)
    folder = job.output_dir(cfg, MANIFEST)
    (tmp_path / "train" / job.job_key(cfg, MANIFEST) / "checkpoints").mkdir(parents=True)
    job.claim_output_dir(cfg, folder, job.job_key(cfg, MANIFEST))
    assert (tmp_path / "train" / job.job_key(cfg, MANIFEST) / job.OWNER_FILE).is_file()


def test_clearing_failures_removes_the_rank_records_only(tmp_path):
    folder = tmp_path / job.FAILURES
    folder.mkdir()
    for name in ("rank-0.json", "rank-12.json", "keep.txt", "rank-notes.json"):
        (folder / name).write_text("{}")
    job.clear_failures(str(tmp_path))
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt", "rank-notes.json"]
