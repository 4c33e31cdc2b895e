"""training.train: single process, resume, and torchrun with 2 gloo processes."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlflow import MlflowClient

from conf import load_config
from training.train import train

REPO = Path(__file__).resolve().parents[2]
# Each trains a real job (in this process, under torchrun or as a subprocess): integration tests.
pytestmark = pytest.mark.integration


def _cfg(root, out, *overrides, store=None):
    """Each test has its own MLflow store, by default beside its output folder."""
    return load_config(overrides=[f"lakehouse.root={root}", f"train.output_dir={out}", "train.epochs=2",
                                  "train.batch_size=16", "train.seed=3", f"mlflow.tracking_uri={store or _store(out)}",
                                  "mlflow.system_metrics=false", *overrides])


def _store(out):
    return f"sqlite:///{Path(out).parent / (Path(out).name + '.db')}"


def test_single_process_learns_beyond_the_majority_class(tokenized_root, tmp_path):
    result = train(_cfg(tokenized_root, tmp_path / "out"))
    val = result.metrics["validation"]
    counts = [sum(row) for row in val["confusion_matrix"]]
    assert val["accuracy"] > max(counts) / sum(counts) + 0.1
    losses = result.history["loss"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert result.steps == 2 * 30  # 480 rows / 16 per batch, 2 epochs
    assert set(result.metrics["test"]) >= {"loss", "accuracy", "precision_macro", "recall_macro", "f1_macro"}
    assert json.loads((tmp_path / "out" / "result.json").read_text())["steps"] == 60


def test_a_model_that_beats_the_linear_baseline_takes_champion_and_one_below_it_is_warned_and_keeps_it(
        tokenized_root, tmp_path):
    from training.baseline import ARTIFACT, ARTIFACT_DIR
    from training.tracking.tags import TAG_BELOW_BASELINE, TAG_CHAMPION

    store = _store(tmp_path / "runs")
    good = train(_cfg(tokenized_root, tmp_path / "good", "train.epochs=3", "train.batch_size=8", store=store))
    assert good.baseline["below"] is False and not [w for w in good.warnings if "baseline" in w]
    assert good.metrics["validation"]["f1_macro"] >= good.baseline["validation"]["f1_macro"] - 0.02
    assert good.champion["moved"] and good.champion["version"] == "1"

    worse = train(_cfg(tokenized_root, tmp_path / "worse", store=store))  # 2 epochs of 16 rows: it learned less
    assert worse.degenerate is False and worse.baseline["below"] is True
    gap = worse.baseline["validation"]["f1_macro"] - worse.metrics["validation"]["f1_macro"]
    assert gap > 0.02
    (warning,) = [w for w in worse.warnings if "baseline" in w]
    assert warning.startswith("the model is below the linear baseline") and "train.model" in warning
    assert worse.registered_model["version"] == "2" and not worse.champion["moved"]
    assert "below the linear baseline" in worse.champion["reason"]
    client = MlflowClient(store)
    assert str(client.get_model_version_by_alias("lakebert-classifier", "champion").version) == "1"
    run = client.get_run(worse.run_id)
    assert run.data.tags[TAG_BELOW_BASELINE] == "true" and "stays on version 1" in run.data.tags[TAG_CHAMPION]
    assert client.get_run(good.run_id).data.tags[TAG_BELOW_BASELINE] == "false"
    for split in ("validation", "test"):  # the baseline's metrics, under their own prefix
        assert run.data.metrics[f"baseline/{split}/f1_macro"] == pytest.approx(worse.baseline[split]["f1_macro"])
    assert run.data.metrics["baseline/seconds"] == worse.baseline["seconds"] > 0
    assert f"{ARTIFACT_DIR}/{ARTIFACT}" in {a.path for a in client.list_artifacts(worse.run_id, ARTIFACT_DIR)}


def test_resume_from_the_runs_artifacts_after_a_crash_equals_an_uninterrupted_run_bitwise(tokenized_root, tmp_path, capsys):
    opts = ("train.checkpoint_every=7", "train.grad_accum=2")
    full = train(_cfg(tokenized_root, tmp_path / "a", *opts))
    with pytest.raises(SystemExit):
        train(_cfg(tokenized_root, tmp_path / "b", *opts), stop_after_steps=18)  # checkpoints: steps 7, 14 and 15 (epoch end)
    client = MlflowClient(_store(tmp_path / "b"))
    crashed = client.search_runs(["1"])[0]
    assert crashed.info.status == "FAILED"  # a crash never leaves the run RUNNING or FINISHED
    # Restart "on another machine": an empty output folder, so the checkpoint comes from MLflow.
    resumed = train(_cfg(tokenized_root, tmp_path / "b2", *opts, store=_store(tmp_path / "b")))
    assert resumed.run_id == crashed.info.run_id  # the same job resumes its run
    fetched = tmp_path / "b2" / "checkpoints" / f"step-{15:09d}"  # the epoch-end one
    assert f"resuming from {fetched} (step 15/" in capsys.readouterr().out  # fetched from the run's artifacts
    assert resumed.history["loss"] == full.history["loss"]
    assert resumed.steps == full.steps
    a = load_file(str(Path(full.best_checkpoint) / "model.safetensors"))
    b = load_file(str(Path(resumed.best_checkpoint) / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    points = client.get_metric_history(resumed.run_id, "train/loss")
    assert sorted(p.step for p in points) == list(range(1, full.steps + 1))  # the replay added no duplicates
    assert [p.value for p in sorted(points, key=lambda p: p.step)] == full.history["loss"]
    assert client.get_run(resumed.run_id).info.status == "FINISHED"


def test_rerunning_a_finished_job_is_up_to_date(tokenized_root, tmp_path):
    cfg = _cfg(tokenized_root, tmp_path / "out", "train.epochs=1")
    first = train(cfg)
    again = train(cfg)
    assert again.status == "up_to_date" and again.run_id == first.run_id
    assert again.registered_model == first.registered_model == {"name": "lakebert-classifier", "version": "1"}
    assert again.metrics["test"]["accuracy"] == pytest.approx(first.metrics["test"]["accuracy"])


def test_torchrun_with_two_gloo_processes(tokenized_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
           "--set", f"lakehouse.root={tokenized_root}", "--set", f"train.output_dir={tmp_path / 'ddp'}",
           "--set", "train.epochs=1", "--set", "train.batch_size=16",
           "--set", f"mlflow.tracking_uri={_store(tmp_path / 'ddp')}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2 and result["steps"] == 15  # 240 rows per rank / 16
    assert result["metrics"]["validation"]["examples"] == 120  # evaluated over both ranks' shards
    runs = MlflowClient(_store(tmp_path / "ddp")).search_runs(["1"])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one run for two processes


def test_two_ranks_read_only_their_own_row_groups_and_use_every_row_once(sharded_root, tmp_path):
    from training.data import TokenizedSplit

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
           "--set", f"lakehouse.root={sharded_root}", "--set", f"train.output_dir={tmp_path / 'ddp'}",
           "--set", "train.epochs=2", "--set", "train.batch_size=16", "--set", "train.shuffle_buffer=50",
           "--set", f"mlflow.tracking_uri={_store(tmp_path / 'ddp')}", "--set", "mlflow.log_model=false"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    split = TokenizedSplit.open(sharded_root / "tokenized", "train")
    largest = max(g.bytes for g in split.row_groups)
    data = result["data"]
    assert data["ranks_read_own_row_groups"] and data["train_bytes"] == split.num_bytes
    per_rank = data["train_bytes_read_per_rank"]
    assert sum(per_rank) == 2 * split.num_bytes  # two epochs, each row group read by one rank per epoch
    assert all(b <= 2 * (split.num_bytes / 2 + largest) for b in per_rank), per_rank
    most = split.most_rank_rows(2, epochs=2, seed=3)
    assert most > 240 and result["steps"] == 2 * math.ceil(most / 16)  # the larger share sets the steps
    assert result["metrics"]["validation"]["examples"] == 120  # evaluated over both ranks' own row groups
    client = MlflowClient(_store(tmp_path / "ddp"))
    logged = client.get_run(result["run_id"]).data.metrics
    assert [logged[f"data/train_bytes_read_rank{r}"] for r in range(2)] == per_rank


def test_balanced_class_weights_are_inverse_label_frequencies(tokenized_root):
    from training.data import TokenizedSplit
    from training.trainer import class_weights

    split = TokenizedSplit.open(tokenized_root / "tokenized", "train")
    counts = torch.tensor(split.label_counts(4), dtype=torch.float32)
    assert int(counts.sum()) == 480
    weights = class_weights(split.label_counts(4), "balanced")
    assert torch.allclose(weights * counts, torch.full((4,), 480 / 4))  # every label weighs the same in total
    assert class_weights(split.label_counts(4), None) is None


def test_class_weights_and_gradient_checkpointing_train(tokenized_root, tmp_path):
    result = train(_cfg(tokenized_root, tmp_path / "out", "train.epochs=1", "train.class_weights=balanced",
                        "train.gradient_checkpointing=true"))
    assert result.status == "done" and result.steps == 30
    assert all(math.isfinite(x) for x in result.history["loss"])


def test_another_registered_model_is_scored_on_this_runs_validation_rows_by_label_name(tokenized_root):
    """How a champion trained elsewhere is compared: its own tokenizer, labels matched by name."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from training.data import TokenizedSplit
    from training.model import build_model
    from training.champion import score_other_model
    from training.distributed import DistEnv
    from training.trainer import evaluate

    manifest_path = tokenized_root / "tokenized" / "k" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    split = TokenizedSplit.open(manifest_path, "validation")
    ours = Tokenizer.from_file(str(Path(manifest["tokenizer_path"]) / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(manifest["tokenizer_path"])
    torch.manual_seed(0)
    model = build_model("tiny", manifest["label_map"], ours.get_vocab_size()).eval()
    env = DistEnv(0, 1, 0, torch.device("cpu"))
    want = evaluate(model, split, env, 32, 0, len(manifest["label_map"]))
    same = score_other_model(model, hf, split, ours, manifest["label_map"], True, 64, env.device, 32)
    assert same["confusion_matrix"] == want["confusion_matrix"] and same["f1_macro"] == want["f1_macro"]
    # Through text: decoded with our tokenizer, encoded with its own (here the same vocabulary)
    text = score_other_model(model, hf, split, ours, manifest["label_map"], False, 64, env.device, 32)
    assert text["examples"] == want["examples"] and abs(text["accuracy"] - want["accuracy"]) < 0.05
    # Its label ids in another order: matched by name, so the same metrics
    shuffled = {label: (i + 1) % 4 for label, i in manifest["label_map"].items()}
    assert score_other_model(model, hf, split, ours, shuffled, True, 64, env.device, 32)["examples"] == want["examples"]
    assert score_other_model(model, hf, split, ours, {"x": 0, "y": 1}, True, 64, env.device, 32) is None


def test_data_and_checkpoints_on_s3_resume_after_a_crash_bitwise(tokenized_root, tmp_path, s3_bucket, capsys):
    from safetensors.torch import load as load_bytes

    import storage

    storage.upload(str(tokenized_root / "tokenized"), f"s3a://{s3_bucket}/tokenized")  # the tokenizer stays local
    on_s3 = (f"train.data=s3a://{s3_bucket}/tokenized", "train.checkpoint_every=7", "mlflow.log_model=false")
    full = train(_cfg(tokenized_root, f"s3a://{s3_bucket}/full", *on_s3, store=_store(tmp_path / "full")))
    with pytest.raises(SystemExit):
        train(_cfg(tokenized_root, f"s3a://{s3_bucket}/crashed", *on_s3, store=_store(tmp_path / "crashed")),
              stop_after_steps=18)
    marked = [n for n in storage.listdir(f"s3a://{s3_bucket}/crashed/checkpoints")
              if storage.is_file(f"s3a://{s3_bucket}/crashed/checkpoints/{n}/COMPLETE")]
    assert marked == [f"step-{7:09d}", f"step-{14:09d}"]  # 30 steps per epoch: the crash at 18 came after 14
    capsys.readouterr()
    resumed = train(_cfg(tokenized_root, f"s3a://{s3_bucket}/crashed", *on_s3, store=_store(tmp_path / "crashed")))
    assert f"resuming from s3a://{s3_bucket}/crashed/checkpoints/step-{14:09d} (step 14/" in capsys.readouterr().out
    assert resumed.history["loss"] == full.history["loss"]
    assert resumed.best_checkpoint.startswith(f"s3a://{s3_bucket}/crashed/best/")
    a = load_bytes(storage.read_bytes(f"{full.best_checkpoint}/model.safetensors"))
    b = load_bytes(storage.read_bytes(f"{resumed.best_checkpoint}/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(storage.read_text(f"s3a://{s3_bucket}/crashed/result.json"))["steps"] == full.steps
    assert storage.is_file(f"s3a://{s3_bucket}/crashed/confusion_matrix_test.png")
    assert not any(tmp_path.rglob("step-*"))  # nothing of the checkpoints on local disk


def test_a_process_whose_data_is_not_the_jobs_planned_data_stops_before_training(tokenized_root, tmp_path):
    from tokenization.dataset import DataError
    from training.distributed import init_distributed
    from training.train import open_data
    from training.tracking.runs import RunPlan

    cfg = _cfg(tokenized_root, tmp_path / "out")
    data = open_data(cfg, init_distributed(False), None)
    assert data.manifest_path == str(tokenized_root / "tokenized" / "k" / "manifest.json")
    planned = RunPlan("sqlite:///x.db", "run", "new", "job", data_hash="the-data-the-launcher-saw")
    with pytest.raises(DataError, match=r"not the data the-data-the-launcher-saw that job job was started on"):
        open_data(cfg, init_distributed(False), planned)
