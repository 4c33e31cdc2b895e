"""spark_jobs.registry: every stage is one record in its own module; the registry reads them
without importing lakebert, and each stage declares exactly the config its code reads."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conf.help import check_sections
from spark_jobs.registry import HERE, Stage, config_of, load, on_demand, read_record, stages, steps
from tests.spark_jobs.config_reads import reads, undeclared

REPO = Path(__file__).resolve().parents[2]
RUNNABLE = [name for name, stage in stages().items() if stage.body is not None]
# Reads the scan finds that are not the stage's: score reads `score.source` and `score.format`
# through ingest's reader, on a copy of the config whose ingest.source/format they replace.
NOT_READ = {"score": {"ingest.source", "ingest.format"}}


def test_the_pipeline_its_on_demand_stages_and_the_commands_come_from_the_records():
    assert list(stages()) == ["run", "ingest", "clean", "tokenize", "train", "audit", "score", "tune", "sample-data"]
    assert [s.name for s in steps()] == ["ingest", "clean", "tokenize", "train"]
    assert [(s.name, s.after) for s in on_demand()] == [("audit", "tokenize"), ("score", "train"), ("tune", "tokenize")]
    assert stages()["tokenize"].script == "spark_jobs/tokenize_silver.py"
    assert all((REPO / stage.script).is_file() for stage in stages().values())


@pytest.mark.parametrize("name", list(stages()))
def test_a_record_read_from_the_source_is_the_one_the_module_declares(name):
    light, loaded = stages()[name], load(name)
    named = {f: getattr(loaded, f).__name__ if callable(getattr(loaded, f)) else getattr(loaded, f)
             for f in ("body", "summary", "up_to_date")}
    assert dataclasses.replace(loaded, **named) == light


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_stage_reads_only_config_it_declares(name):
    found = reads(stages()[name].module)
    assert found, "the scan found no config read at all"
    assert set(undeclared(config_of(name), found)) == NOT_READ.get(name, set())


@pytest.mark.parametrize("name, removed, missed", [
    ("train", "tokenize.output", "tokenize.output"),        # read in training.job, reached from train
    ("clean", "tokenize.lowercase", "tokenize.lowercase"),  # clean's dedup_key=auto
    ("ingest", "ingest", "ingest.source"),                  # the stage's own section
    ("tokenize", "tables.silver", "tables"),                # a section read whole (`getattr(cfg.tables, role)`)
])
def test_the_scan_fails_a_stage_whose_declaration_misses_a_key(name, removed, missed):
    declared = tuple(n for n in config_of(name) if n != removed)
    assert missed in undeclared(declared, reads(stages()[name].module))


@pytest.mark.parametrize("name", list(stages()))
def test_a_declaration_names_only_sections_and_keys_that_exist(name):
    assert check_sections(config_of(name)) == config_of(name)  # else ValueError


def test_reading_the_registry_imports_nothing_but_the_standard_library():
    """What the Airflow DAG does at parse time: run the file, not import lakebert."""
    code = ("import json, runpy, sys; before = set(sys.modules); "
            "r = runpy.run_path('spark_jobs/registry.py'); r['stages'](); "
            "print(json.dumps(sorted(m for m in set(sys.modules) - before "
            "if m.split('.')[0] not in sys.stdlib_module_names)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_no_module_of_the_stages_shadows_the_standard_library():
    """spark-submit puts the script's folder first on sys.path."""
    assert [p.stem for p in HERE.glob("*.py") if p.stem in sys.stdlib_module_names] == []


TOY = '''
from spark_jobs.registry import Stage

STAGE = "toy"


def toy(spark, cfg, stage_run_id):
    return dict(rows=0)


STAGE_RECORD = Stage(name=STAGE, body=toy, description="a toy", config=("lakehouse",), {extra})
'''


def test_a_new_module_with_a_record_is_a_new_stage(tmp_path):
    (tmp_path / "toy_stage.py").write_text(TOY.format(extra="after='base', timeout_hours=0.5"))
    (tmp_path / "base.py").write_text(TOY.replace('"toy"', '"base"').replace("def toy", "def base")
                                      .replace("body=toy", "body=base").format(extra="step=5, timeout_hours=1, summary=base"))
    found = stages(tmp_path)
    assert list(found) == ["base", "toy"]
    assert found["toy"] == Stage(name="toy", body="toy", description="a toy", config=("lakehouse",), after="base",
                                 timeout_hours=0.5, module="spark_jobs.toy_stage")


@pytest.mark.parametrize("extra, message", [
    ("step=10", "needs a body and timeout_hours|summary line"),
    ("step=10, timeout_hours=1", "summary line"),
    ("after='ingest', timeout_hours=1", "not a pipeline step"),
    ("timeout_hours=len('x')", "must be a literal"),
    ("step=UNKNOWN", "neither a literal nor a module-level string constant"),
])
def test_a_record_the_cli_pipeline_or_dag_cannot_use_is_refused(tmp_path, extra, message):
    (tmp_path / "toy_stage.py").write_text(TOY.format(extra=extra))
    with pytest.raises(ValueError, match=message):
        stages(tmp_path)


def test_a_module_named_like_the_standard_library_is_refused(tmp_path):
    (tmp_path / "tokenize.py").write_text(TOY.format(extra=""))
    with pytest.raises(ValueError, match="shadow"):
        stages(tmp_path)
    assert read_record(tmp_path / "tokenize.py").module == "spark_jobs.tokenize"
