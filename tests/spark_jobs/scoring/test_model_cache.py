"""spark_jobs.scoring.model_cache: a downloaded model is reused only from a private folder, and only as verified."""

import os
import stat
import tempfile
from pathlib import Path

import pytest

from spark_jobs.scoring.model_cache import cached_model, folder_digest, model_workdir, untrusted_folder


@pytest.fixture
def downloads():
    """A download_fn that writes a model folder in the staging folder, and the list of its calls."""
    calls = []

    def download(staging):
        calls.append(staging)
        folder = Path(staging) / "model"
        folder.mkdir()
        (folder / "MLmodel").write_text("flavors: {}\n")
        return str(folder)

    return download, calls


def test_a_verified_model_is_reused_and_a_changed_one_downloaded_again(tmp_path, downloads):
    download, calls = downloads
    target = str(tmp_path / "lakebert-model-k")
    assert cached_model(target, download) == target and len(calls) == 1
    assert cached_model(target, download) == target and len(calls) == 1  # verified: reused
    Path(target, "MLmodel").write_text("changed\n")
    Path(f"{target}.zip").write_bytes(b"an archive of the changed folder")
    cached_model(target, download)
    assert len(calls) == 2 and Path(target, "MLmodel").read_text() == "flavors: {}\n"
    assert not Path(f"{target}.zip").exists()  # the executors' archive of the old folder is gone
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".download-")]  # no staging left


def test_a_folder_without_its_marker_is_not_trusted(tmp_path, downloads):
    download, calls = downloads
    target = tmp_path / "lakebert-model-k"
    target.mkdir()
    (target / "planted.py").write_text("import os\n")
    cached_model(str(target), download)
    assert len(calls) == 1 and not (target / "planted.py").exists()


def test_the_digest_covers_names_contents_and_links(tmp_path):
    (tmp_path / "a").write_text("1")
    before = folder_digest(str(tmp_path))
    (tmp_path / "a").write_text("2")
    changed = folder_digest(str(tmp_path))
    os.symlink("/etc/passwd", tmp_path / "b")
    assert len({before, changed, folder_digest(str(tmp_path))}) == 3


def test_a_folder_others_can_write_or_a_link_is_untrusted(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert untrusted_folder(str(private)) is None
    os.chmod(private, 0o770)
    assert untrusted_folder(str(private)).startswith("writable by group or others (mode 770)")
    os.symlink(private, tmp_path / "link")
    assert untrusted_folder(str(tmp_path / "link")) == "not a directory (a symbolic link)"


def test_the_workdir_is_per_model_version_in_a_private_folder_of_this_user(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    one = Path(model_workdir("sqlite:///m.db", "clf", "1", "r1"))
    assert one != Path(model_workdir("sqlite:///m.db", "clf", "2", "r2"))
    assert one.parent == tmp_path / f"lakebert-score-{os.getuid()}"
    assert stat.S_IMODE(os.stat(one.parent).st_mode) == 0o700
