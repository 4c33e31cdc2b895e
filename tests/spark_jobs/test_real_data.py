"""Real text end to end: the README's own-data command on real BBC News, all defaults.

The file is the team's shared copy of a public corpus (../shared/data/bbc-text.csv, 1,249
articles in 5 classes); a user's clone has no ../shared, so the test skips there.

The from-scratch default is below the run's linear baseline (TF-IDF + logistic regression on
the same tokens) on this split, so it is warned and does not take @champion (issue 31).

Without an id column a document's id is the hash of its file's path and its text, and the id
picks its split: the corpus is read from one fixed path outside the project
(`/tmp/lakebert-real-data/bbc-text.csv`, a copy made for the test), so every machine and
checkout trains and tests on the same split. Across splits the defaults' test macro F1 varies:
0.83 to 0.95 over six splits (docs/benchmarks.md, real data).
"""

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from spark_jobs.pipeline import pipeline
from tests.conftest import make_config
from training.tracking.tags import TAG_BELOW_BASELINE, TAG_DEGENERATE

BBC = Path(__file__).resolve().parents[3] / "shared" / "data" / "bbc-text.csv"

FIXED = Path("/tmp/lakebert-real-data/bbc-text.csv")  # the split depends on the path: the same on every machine

pytestmark = pytest.mark.skipif(not BBC.is_file(), reason=f"real data {BBC} is absent (only CI and the team have it)")


@pytest.fixture
def bbc() -> Path:
    FIXED.parent.mkdir(exist_ok=True)
    shutil.copyfile(BBC, FIXED)
    return FIXED


def test_bbc_with_the_own_data_command_and_defaults_learns_a_model_that_is_not_degenerate(spark, tmp_path, bbc,
                                                                                           capsys):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_config(tmp_path / "lh", f"ingest.source={bbc}", "ingest.format=csv", "ingest.label_column=category",
                      f"mlflow.tracking_uri={store}", "mlflow.system_metrics=false")
    assert cfg.train.defaults_kind == "from-scratch"
    summary = pipeline(spark, cfg, "bbc")
    train = summary["stages"]["train"]
    assert train["degenerate"] is False and not [w for w in train["warnings"] if "degenerate" in w]
    assert summary["metrics"]["test"]["f1_macro"] >= 0.85  # the bar; TF-IDF + LR reaches 0.94
    run = MlflowClient(store).get_run(train["run_id"])
    assert run.data.tags[TAG_DEGENERATE] == "false"
    assert run.data.metrics["validation/f1_macro"] > run.data.metrics["validation/baseline_f1_macro"] + 0.5
    # Against the linear baseline on the same tokens (docs/benchmarks.md: below it when written, so no
    # @champion, as the rule wants; issue 31): the summary shows both figures, and @champion follows the rule.
    baseline = train["baseline"]
    assert "model vs linear baseline on validation: macro F1" in capsys.readouterr().out
    assert run.data.metrics["baseline/validation/f1_macro"] == pytest.approx(baseline["validation"]["f1_macro"])
    gap = baseline["validation"]["f1_macro"] - summary["metrics"]["validation"]["f1_macro"]
    assert baseline["below"] is (gap > 0.02) and run.data.tags[TAG_BELOW_BASELINE] == str(gap > 0.02).lower()
    assert train["champion"]["moved"] is not baseline["below"]
    assert bool([w for w in train["warnings"] if "below the linear baseline" in w]) is baseline["below"]
