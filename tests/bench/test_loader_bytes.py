"""bench/loader_bytes.py runs end to end and its figures hold together."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_loader_bytes_reports_each_rank_reading_its_share_against_the_whole_split():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "loader_bytes.py"), "--rows", "6000",
                           "--group-rows", "100", "--files", "3", "--ranks", "2", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["ranks"] for r in rows] == [2, 3]
    for r in rows:
        assert r["whole_per_rank"] == [r["split_bytes"]] * r["ranks"]
        assert sum(r["own_per_rank"]) == r["split_bytes"] and max(r["own_per_rank"]) <= r["bound"]
    assert "| 3 |" in proc.stdout  # the Markdown table for docs/benchmarks.md
