"""bench/train_cpu.py and bench/train_gpu.py --cpu run end to end and report what they promise.

They measure nothing here (a machine's speed is not a test); they check that both sides ran
the same work and that the reported figures are consistent with each other.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration  # each runs a benchmark script end to end (tens of seconds)


def _run(script, *args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args, "--out", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_cpu_runs_ours_and_hf_trainer_on_the_same_tokens(tmp_path):
    out = _run("train_cpu.py", "--steps", "4", "--batch-size", "8", "--rounds", "1", tmp_path=tmp_path)
    assert out["ours"]["tokens"] == out["hf"]["tokens"] > 0  # the same rows, every real token counted once
    # the ratio is of the unrounded speeds, so it matches the printed (rounded) ones within rounding
    assert out["ratio_vs_hf_trainer"] == pytest.approx(out["ours_tokens_per_s"] / out["hf_tokens_per_s"], abs=1e-3)
    assert out["variants"]["ours_no_prefetch"]["same_losses_as_default"] is True  # prefetching changes nothing
    assert out["ours"]["padding_fraction"] <= out["variants"]["ours_no_bucketing"]["padding_fraction"]


def test_train_gpu_runs_on_cpu_with_the_flag_and_reports_mfu(tmp_path):
    out = _run("train_gpu.py", "--cpu", "--models", "small", "--seqs", "64", "--steps", "6", "--warmup-steps", "2",
               "--batch-size", "8", "--nproc", "2", tmp_path=tmp_path)
    assert out["device"] == "cpu" and out["processes"] == 2
    (row,) = out["results"]
    assert row["model"] == "small" and row["seq"] == 64 and row["ours"]["steps"] == 6
    assert row["ours"]["tokens_per_s"] > 0 and row["hf"]["tokens_per_s"] > 0
    assert abs(row["ours_mfu"] - row["ours"]["tokens_per_s"] * row["flops_per_token"] / (2 * 790e12)) < 1e-12
    assert row["ratio_vs_hf_trainer"] > 0
    assert 0 <= row["ours"]["data_wait_fraction"] < 1
