"""spark_jobs.stage: any failure (a Java exception too) ends with one line on stderr, with the
full trace in the run's error.log, and no secret in any output."""

from pathlib import Path

from spark_jobs.ingest import ingest
from spark_jobs.stage import EXIT_INPUT, ERROR_LOG, run_with_config
from tests.conf.test_redact import SECRETS
from tests.conftest import make_config


def test_java_exception_ends_with_one_redacted_line_and_the_trace_in_the_run_log(spark, tmp_path, capfd):
    src = tmp_path / "in.csv"
    src.write_text("text,label\nA document long enough to count as one.,x\n")
    used = [(key, value, secret) for key, value, secret in SECRETS
            if not key.startswith(("lakehouse.root", "ingest.source"))]  # those two must stay real here
    root = tmp_path / "lh"
    # An unknown charset makes Spark's CSV reader throw a Java exception, which no stage code catches.
    cfg = make_config(root, f"ingest.source={src}", "ingest.format=csv", "ingest.options.encoding=no-such-charset",
                      *[f"{key}={value}" for key, value, _ in used])
    assert run_with_config("ingest", cfg, ingest) == EXIT_INPUT
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ingest error: ")
    assert "no-such-charset" in lines[0] and "(full trace in " in lines[0]
    log = Path(lines[0].rsplit("(full trace in ", 1)[1].rstrip(")"))
    assert log.name == ERROR_LOG and log.parent.parent == root / "_runs" / "ingest"
    trace = log.read_text()
    assert "Traceback" in trace and "no-such-charset" in trace
    assert out.startswith("# lakebert ingest: resolved config (secrets redacted)")
    for _, _, secret in used:
        for where, text in (("stdout", out), ("stderr", err), ("error.log", trace)):
            assert secret not in text, (secret, where)
